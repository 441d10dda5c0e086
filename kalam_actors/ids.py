"""Job types and typed, time-ordered job ids."""

from __future__ import annotations

import enum
import os
import random
import re
import threading
import time
from collections.abc import Callable
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

    # "<prefix>-", set below. A plain attribute: a dict keyed by JobType hashes through Python.
    _id_head: str

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
for _type in JobType:
    _type._id_head = _PREFIX_OF[_type] + "-"
del _type

# Crockford's base32 alphabet is in ascending ASCII order, so the text of an id sorts exactly
# like the 128 bits it encodes: 48 bits of milliseconds, then 80 bits of per-process randomness
# that is incremented within one millisecond (the ULID fields). Unlike ULID text, the 128 bits
# are shifted left by two to fill the 26 characters: the last one holds 3 bits and two zeros.
_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Ten bits at a time: two characters per table lookup.
_PAIRS: Final = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)
# The last pair holds the value's low 8 bits and the two padding zeros.
_LAST_PAIRS: Final = _PAIRS[::4]
_TAIL_BITS: Final = 18  # the last four characters; the other 22 are cached between ids
_TAIL_MAX: Final = (1 << _TAIL_BITS) - 1
_MASK_30: Final = (1 << 30) - 1
_SUFFIX_LEN: Final = 26
_ID_RE: Final = re.compile(
    r"(?P<prefix>[A-Z]{2})-[0-9A-HJKMNP-TV-Z]{26}"
)


def _encode_head(head: int) -> str:
    """The first 22 characters of a suffix: ``head`` is the value without its tail bits."""
    p = _PAIRS
    # Split into 30-bit ints first: shifts and masks on those are cheaper than on 110 bits.
    a, b, c, d = head >> 90, head >> 60 & _MASK_30, head >> 30 & _MASK_30, head & _MASK_30
    # Unrolled: a comprehension costs a frame and a loop.
    return "".join((
        p[a >> 10], p[a & 1023], p[b >> 20], p[b >> 10 & 1023], p[b & 1023],
        p[c >> 20], p[c >> 10 & 1023], p[c & 1023], p[d >> 20], p[d >> 10 & 1023], p[d & 1023],
    ))


def _encode(value: int) -> str:
    """The 26-character suffix of the 128-bit ``value`` (``ms << 80 | random``)."""
    tail = value & _TAIL_MAX
    return _encode_head(value >> _TAIL_BITS) + _PAIRS[tail >> 8] + _LAST_PAIRS[tail & 255]


class _SuffixClock:
    """Hands out monotonic, process-unique 128-bit id values; safe to call from any thread.

    The last value handed out is kept split: its tail (low 18 bits), and the text of the rest,
    which changes only with the millisecond or once every 2**18 ids.
    """

    _lock: threading.Lock
    _random: random.Random
    _last_ms: int  # the latest wall-clock millisecond seen
    _head: int  # the last value handed out, shifted right past its tail
    _head_text: str
    _tail: int

    def __init__(
        self,
        time_ns: Callable[[], int] = time.time_ns,
        make_random: Callable[[], random.Random] = random.Random,
    ) -> None:
        self._time_ns = time_ns
        self._make_random = make_random
        self.after_fork()

    def next(self) -> str:
        """A fresh suffix."""
        with self._lock:
            ms = self._time_ns() // 1_000_000
            if ms > self._last_ms or self._tail == _TAIL_MAX:
                self._take(ms, 1)
            else:
                # Same millisecond, or the wall clock stepped back: keep counting up.
                self._tail += 1
            head, tail = self._head_text, self._tail
        return head + _PAIRS[tail >> 8] + _LAST_PAIRS[tail & 255]

    def take(self, n: int) -> int:
        """Reserve ``n`` consecutive fresh values; return the first."""
        with self._lock:
            return self._take(self._time_ns() // 1_000_000, n)

    def _take(self, ms: int, n: int) -> int:
        first = (self._head << _TAIL_BITS | self._tail) + 1
        if ms > self._last_ms:
            self._last_ms = ms
            # 79 random bits leave room to count up.
            start = ms << 80 | self._random.getrandbits(79)
            if start > first:  # else earlier ids already counted past it: go on counting
                first = start
        last = first + n - 1
        head = last >> _TAIL_BITS
        if head != self._head:
            self._head, self._head_text = head, _encode_head(head)
        self._tail = last & _TAIL_MAX
        return first

    def after_fork(self) -> None:
        """Forget the sequence and the random generator, which the parent goes on using, and
        the lock, which a thread of the parent may hold."""
        self._lock = threading.Lock()
        # Seeded from os.urandom, so each process draws its own starts. Not a CSPRNG: ids are no
        # secrets (they count up), and os.urandom per millisecond costs about as much as encoding.
        self._random = self._make_random()
        self._last_ms = -1
        self._head, self._tail, self._head_text = 0, -1, ""


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
        return cls(job_type._id_head + _suffixes.next())

    @classmethod
    def new_many(cls, job_type: JobType, n: int) -> list[JobId]:
        """Make ``n`` fresh ids for jobs of ``job_type``, in increasing order.

        Cheaper per id than :meth:`new`: the ids are reserved under one lock, and each run of
        up to 256 shares all but its last two characters.

        Raises:
            ValueError: if ``n`` is negative.
        """
        if n < 0:
            raise ValueError(f"cannot make {n} job ids")
        if n == 1:
            return [cls.new(job_type)]  # the run bookkeeping below only costs for one id
        ids: list[JobId] = []
        value = _suffixes.take(n) if n else 0
        end = value + n
        while value < end:
            run_end = min(end, (value | 255) + 1)
            common = job_type._id_head + _encode(value)[:-2]
            last_pairs = _LAST_PAIRS[value & 255 : (run_end - 1 & 255) + 1]
            ids += map(cls, map(common.__add__, last_pairs))
            value = run_end
        return ids

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
