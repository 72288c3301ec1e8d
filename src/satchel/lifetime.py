"""Idle and absolute timeouts, and when to touch. Pure functions of a clock.

A session dies ``idle`` seconds after it was last seen, or ``absolute``
seconds after it was created, whichever comes first. Sliding expiry is
refreshed by a *touch*, at most once per ``touch_after`` (a tenth of the
idle timeout, at most 5 minutes), so a read-only request normally writes
nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

Clock = Callable[[], float]
"""Seconds since the epoch, as :func:`time.time` returns them."""

MAX_TOUCH_INTERVAL = 300.0

ExpiryReason = Literal["idle", "absolute"]


def seconds(value: timedelta | float | int | None, *, name: str) -> float | None:
    """A duration as seconds: a ``timedelta`` or a number, as Flask's lifetime is.

    ``None`` stays ``None`` (no limit). Zero or negative values are refused.
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        result = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        result = float(value)
    else:
        raise TypeError(f"{name} must be a timedelta or a number of seconds, not {value!r}")
    if result <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return result


@dataclass(frozen=True)
class Lifetime:
    """The timeout policy: ``idle`` seconds, ``absolute`` seconds or None."""

    idle: float
    absolute: float | None = None
    touch_after: float = field(init=False, repr=False, compare=False)
    """Seconds between touches: a tenth of :attr:`idle`, at most :data:`MAX_TOUCH_INTERVAL`."""

    def __post_init__(self) -> None:
        # Computed once: read on every request's commit.
        object.__setattr__(self, "touch_after", min(self.idle / 10.0, MAX_TOUCH_INTERVAL))

    def expires_at(self, created_at: float, last_seen: float) -> float:
        """When a session created then and last seen then dies."""
        deadline = last_seen + self.idle
        if self.absolute is not None:
            deadline = min(deadline, created_at + self.absolute)
        return deadline

    def is_expired(self, created_at: float, last_seen: float, now: float) -> bool:
        return now >= self.expires_at(created_at, last_seen)

    def expired_by(self, created_at: float, last_seen: float, now: float) -> ExpiryReason | None:
        """Which timeout ended a session created then and last seen then, at ``now``:
        ``"idle"``, ``"absolute"``, or None if it is live (:meth:`is_expired` is False).

        If both have passed, the one whose deadline came first (``"absolute"`` on a tie).
        """
        idle_deadline = last_seen + self.idle
        absolute = self.absolute
        if absolute is not None and now >= created_at + absolute:
            return "idle" if idle_deadline < created_at + absolute else "absolute"
        return "idle" if now >= idle_deadline else None

    def set_by(self, created_at: float, last_seen: float, expires_at: float) -> ExpiryReason:
        """Which timeout most likely set ``expires_at``, a stored deadline that has passed
        although these timeouts would keep the session (they were raised since it was set).

        A deadline is ``last_seen`` + the idle timeout then in force, or ``created_at`` + the
        absolute one. The answer is the timeout that must have changed least, as a ratio, to
        give it: ``expires_at - last_seen`` against :attr:`idle`, ``expires_at - created_at``
        against :attr:`absolute` (``"absolute"`` on a tie). Without an absolute timeout
        now, ``"idle"``; a deadline not after ``last_seen`` is no idle deadline:
        ``"absolute"``.
        """
        if self.absolute is None:
            return "idle"
        as_idle = expires_at - last_seen
        if as_idle <= 0:
            return "absolute"
        idle_change = abs(math.log(as_idle / self.idle))
        as_absolute = max(expires_at - created_at, as_idle)  # created_at <= last_seen
        absolute_change = abs(math.log(as_absolute / self.absolute))
        return "idle" if idle_change < absolute_change else "absolute"

    def touch_due(self, last_seen: float, now: float) -> bool:
        """True if the sliding expiry should be pushed forward on this request."""
        return now - last_seen >= self.touch_after


system_clock: Clock = time.time
