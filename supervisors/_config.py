"""Configuration records: strategies, restart types, intensity and backoff."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass


class Strategy(enum.Enum):
    """Which children a supervisor restarts when one of them crashes."""

    ONE_FOR_ONE = "one_for_one"
    """Restart only the crashed child."""
    ONE_FOR_ALL = "one_for_all"
    """Stop every child (reverse start order) and restart them all (start order)."""
    REST_FOR_ONE = "rest_for_one"
    """Restart the crashed child and every child started after it."""


class RestartType(enum.Enum):
    """When a child that stopped is started again."""

    PERMANENT = "permanent"
    """Always restarted, after a crash or a normal exit."""
    TRANSIENT = "transient"
    """Restarted only after a crash."""
    TEMPORARY = "temporary"
    """Never restarted."""


ONE_FOR_ONE = Strategy.ONE_FOR_ONE
ONE_FOR_ALL = Strategy.ONE_FOR_ALL
REST_FOR_ONE = Strategy.REST_FOR_ONE
PERMANENT = RestartType.PERMANENT
TRANSIENT = RestartType.TRANSIENT
TEMPORARY = RestartType.TEMPORARY


@dataclass(frozen=True)
class Intensity:
    """How many restarts a supervisor tolerates before it escalates.

    Attributes:
        max_restarts: Restarts allowed inside any window of ``period_s`` seconds;
            one more makes the supervisor escalate. ``0`` escalates on the first crash.
        period_s: Length of the sliding window, in seconds.
    """

    max_restarts: int = 3
    period_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {self.max_restarts}")
        if self.period_s <= 0:
            raise ValueError(f"period_s must be > 0, got {self.period_s}")


@dataclass(frozen=True)
class Backoff:
    """Exponential delay before restarting a child that keeps crashing.

    Attributes:
        min_s: Delay before the first restart.
        max_s: Upper bound of any delay.
        jitter: Fraction in ``[0, 1]`` by which a delay may be shortened at random,
            so that children crashing together do not restart in lockstep.
        reset_after_s: A child that stayed up this long before crashing starts
            again from ``min_s``.
    """

    min_s: float = 0.1
    max_s: float = 30.0
    jitter: float = 0.0
    reset_after_s: float = 60.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_s <= self.max_s:
            raise ValueError(f"need 0 <= min_s <= max_s, got {self.min_s} and {self.max_s}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be in [0, 1], got {self.jitter}")
        if self.reset_after_s < 0:
            raise ValueError(f"reset_after_s must be >= 0, got {self.reset_after_s}")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Return the delay before restart number ``attempt`` (0-based).

        A pure function of its arguments: ``min_s * 2**attempt`` capped at
        ``max_s``, then shortened by up to ``jitter`` of itself. Shortening (not
        lengthening) keeps ``max_s`` a real bound.

        Args:
            attempt: How many restarts of this child happened since it was last
                stable; 0 for the first.
            rng: Source of the jitter; only consulted when ``jitter > 0``.

        Returns:
            The delay in seconds.

        Raises:
            ValueError: If ``attempt`` is negative.
        """
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        # Compare exponents, not powers: 2**attempt overflows a float for large attempts.
        if self.min_s == 0:
            base = 0.0
        elif attempt >= 1024 or self.min_s * 2.0**attempt >= self.max_s:
            base = self.max_s
        else:
            base = self.min_s * 2.0**attempt
        if self.jitter == 0 or base == 0:
            return base
        source = rng if rng is not None else random.Random()
        return base * (1.0 - self.jitter * source.random())
