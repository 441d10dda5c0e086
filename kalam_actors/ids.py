"""Job types and typed, time-ordered job ids."""

from __future__ import annotations

import enum
import os
import re
import threading
import time
from typing import Final

from .errors import InvalidJobId, UnknownJobType

__all__ = ["JobId", "JobType"]


class JobType(enum.Enum):
    """The kinds of maintenance work. The value is the type's name; ``prefix`` starts its ids."""

    FLUSH = "Flush"
    CLEANUP = "Cleanup"
    RETENTION = "Retention"
    STREAM_EVICTION = "StreamEviction"
    USER_CLEANUP = "UserCleanup"
    COMPACT = "Compact"
    BACKUP = "Backup"
    RESTORE = "Restore"
    JOB_CLEANUP = "JobCleanup"

    @property
    def prefix(self) -> str:
        """The two-letter id prefix, e.g. ``"FL"`` for Flush."""
        return _PREFIX_OF[self]

    @classmethod
    def parse(cls, text: str | JobType) -> JobType:
        """Accept a JobType, its name (``"Flush"``, ``"STREAM_EVICTION"``, case-insensitive,
        ``-``/``_`` ignored) or its prefix (``"FL"``).

        Raises:
            UnknownJobType: naming the text and the known types.
        """
        if isinstance(text, JobType):
            return text
        if isinstance(text, str):
            found = _BY_LOOSE_NAME.get(text.replace("_", "").replace("-", "").lower())
            if found is not None:
                return found
        known = ", ".join(f"{t.value} ({t.prefix})" for t in cls)
        raise UnknownJobType(f"unknown job type {text!r}; known types: {known}")


_PREFIX_OF: Final = {
    JobType.FLUSH: "FL",
    JobType.CLEANUP: "CL",
    JobType.RETENTION: "RT",
    JobType.STREAM_EVICTION: "SE",
    JobType.USER_CLEANUP: "UC",
    JobType.COMPACT: "CO",
    JobType.BACKUP: "BK",
    JobType.RESTORE: "RS",
    JobType.JOB_CLEANUP: "JC",
}
_TYPE_OF_PREFIX: Final = {prefix: t for t, prefix in _PREFIX_OF.items()}
_BY_LOOSE_NAME: Final = {
    **{t.value.lower(): t for t in JobType},
    **{t.name.replace("_", "").lower(): t for t in JobType},
    **{p.lower(): t for p, t in _TYPE_OF_PREFIX.items()},
}

# Crockford's base32 alphabet is in ascending ASCII order, so the text of an id sorts exactly
# like the 128 bits it encodes: 48 bits of milliseconds, then 80 bits of per-process randomness
# that is incremented within one millisecond (the ULID layout).
_CROCKFORD: Final = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Ten bits at a time: two characters per table lookup keeps an id at about a microsecond.
_PAIRS: Final = tuple(
    chr(_CROCKFORD[i >> 5]) + chr(_CROCKFORD[i & 31]) for i in range(1024)
)
_SUFFIX_LEN: Final = 26
_ID_RE: Final = re.compile(
    r"(?P<prefix>[A-Z]{2})-[0-9A-HJKMNP-TV-Z]{26}"
)


class _SuffixClock:
    """Makes monotonic, process-unique ULID suffixes; safe to call from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._random = 0

    def next(self) -> str:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms > self._last_ms:
                self._last_ms = ms
                self._random = int.from_bytes(os.urandom(10)) >> 1  # room to increment
            else:
                # Same millisecond, or the wall clock stepped back: stay ordered.
                self._random += 1
                ms = self._last_ms
            bits = ((ms << 80) | self._random) << 2  # 130 bits: 26 characters of 5 bits
        p = _PAIRS
        # Unrolled (a comprehension here costs a frame and a loop: twice the time of an id).
        return "".join((
            p[bits >> 120], p[bits >> 110 & 1023], p[bits >> 100 & 1023], p[bits >> 90 & 1023],
            p[bits >> 80 & 1023], p[bits >> 70 & 1023], p[bits >> 60 & 1023],
            p[bits >> 50 & 1023], p[bits >> 40 & 1023], p[bits >> 30 & 1023],
            p[bits >> 20 & 1023], p[bits >> 10 & 1023], p[bits & 1023],
        ))

    def after_fork(self) -> None:
        self._last_ms = -1


_suffixes = _SuffixClock()
if hasattr(os, "register_at_fork"):
    # A forked child must not continue its parent's random sequence.
    os.register_at_fork(after_in_child=_suffixes.after_fork)


class JobId(str):
    """A job id: ``<PREFIX>-<suffix>``, e.g. ``FL-01JD9Y3V2TQK8M4N6P0R5S7W9X``.

    Suffixes are time-ordered (a later id sorts after an earlier one) and unique across
    processes. A JobId is a ``str``; use :meth:`parse` to check text from outside.
    """

    __slots__ = ()

    @classmethod
    def new(cls, job_type: JobType) -> JobId:
        """Make a fresh id for a job of ``job_type``."""
        return cls(f"{job_type.prefix}-{_suffixes.next()}")

    @classmethod
    def parse(cls, text: object) -> JobId:
        """Check that ``text`` is a well-formed job id and return it as a JobId.

        Raises:
            InvalidJobId: naming what is wrong with it.
        """
        if isinstance(text, JobId):
            return text
        if not isinstance(text, str):
            raise InvalidJobId(f"job id must be a string, not {type(text).__name__}")
        match = _ID_RE.fullmatch(text)
        if match is None:
            shown = text if len(text) <= 64 else text[:64] + "…"
            raise InvalidJobId(
                f"malformed job id {shown!r}: expected <PREFIX>-<26 base32 characters>, "
                f"e.g. FL-01JD9Y3V2TQK8M4N6P0R5S7W9X"
            )
        if match["prefix"] not in _TYPE_OF_PREFIX:
            raise InvalidJobId(
                f"malformed job id {text!r}: unknown prefix {match['prefix']!r}; "
                f"known prefixes: {', '.join(_TYPE_OF_PREFIX)}"
            )
        return cls(text)

    @property
    def job_type(self) -> JobType:
        """The job type its prefix names."""
        return _TYPE_OF_PREFIX[self[:2]]

    @property
    def prefix(self) -> str:
        """The two-letter prefix."""
        return self[:2]
