"""The open-loop schedule of a constant-rate run, and what it was owed.

Request k (from 0) is due at ``start + k / rate``, whatever happened to the
requests before it: the schedule is open loop.  A sender that cannot keep up
(a connection still busy, a stalled server, the generator's own CPU) sends
late, and a latency taken from the actual send time would hide exactly the
wait it was meant to show: the closed loop "coordinates" with the server and
omits the samples of its stall (Gil Tene's coordinated omission).  So
``take`` hands out the *intended* send time, and the caller records
``done - intended`` (wrk2's constant-throughput mode measures the same way;
HdrHistogram's ``record_corrected`` back-fills the same samples for a closed
loop whose expected interval is known).

What the schedule could not deliver is counted rather than hidden:

- ``late``: requests sent more than ``late_threshold`` after they were due.
  The default is one interval, at least ``LATE_FLOOR`` (1 ms): a request
  one whole interval late means the sender had fallen a slot behind (its
  successor was already due when it left), and below a millisecond a poll
  loop's own jitter (timer granularity, one batch of receive processing)
  would make nearly every request of a fast run "late".
- ``never_sent``: requests whose time came before the run ended but that
  were never sent (``finish``).

Sans-I/O: no clock is read; every call takes ``now`` (seconds, any
monotonic clock, the same one as ``start``).
"""

from __future__ import annotations

import math
from typing import Final

LATE_FLOOR: Final = 0.001


def _bounded_by_duration(rate: float, duration: float) -> int:
    """How many k >= 0 have k / rate < duration (the times ``time_of``
    computes, so that the bound agrees with them to the last bit)."""
    n = max(math.ceil(duration * rate), 0)
    while n > 0 and (n - 1) / rate >= duration:
        n -= 1
    while n / rate < duration:
        n += 1
    return n


class OpenLoop:
    """Requests at ``rate`` per second from ``start`` for ``duration``
    seconds and/or ``count`` requests (whichever ends first; one of the two
    is required: every load is bounded)."""

    __slots__ = ("_finished", "_next", "count", "duration", "interval", "late",
                 "late_threshold", "never_sent", "rate", "sent", "start", "total")

    def __init__(self, rate: float, start: float, duration: float | None = None,
                 count: int | None = None, late_threshold: float | None = None) -> None:
        if not (rate > 0.0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number, not {rate}")
        if duration is None and count is None:
            raise ValueError("an open loop needs a duration or a count")
        if duration is not None and not (duration >= 0.0 and math.isfinite(duration)):
            raise ValueError(f"duration must be a finite number >= 0, not {duration}")
        if count is not None and count < 0:
            raise ValueError(f"count must be >= 0, not {count}")
        self.rate = rate
        self.interval = 1.0 / rate
        self.start = start
        self.duration = duration
        self.count = count
        total = -1
        if duration is not None:
            total = _bounded_by_duration(rate, duration)
        if count is not None and (total < 0 or count < total):
            total = count
        self.total = total
        if late_threshold is None:
            late_threshold = max(LATE_FLOOR, self.interval)
        self.late_threshold = late_threshold
        self.sent = 0
        self.late = 0
        self.never_sent = 0
        self._next = 0
        self._finished = False

    def time_of(self, k: int) -> float:
        """The intended send time of request ``k`` (from 0)."""
        return self.start + k / self.rate

    def next_time(self) -> float | None:
        """When the next request not yet taken is due; None when none is left."""
        if self._finished or self._next >= self.total:
            return None
        return self.time_of(self._next)

    @property
    def done(self) -> bool:
        """Every request taken, or the run finished."""
        return self._finished or self._next >= self.total

    def due(self, now: float) -> int:
        """How many requests are due by ``now`` and not yet taken."""
        k = self._next
        if self._finished or k >= self.total or self.time_of(k) > now:
            return 0
        # The last due request: estimated, then corrected to agree with
        # time_of (the estimate may be one off by rounding).
        last = min(max(int((now - self.start) * self.rate), k), self.total - 1)
        while last + 1 < self.total and self.time_of(last + 1) <= now:
            last += 1
        while self.time_of(last) > now:
            last -= 1
        return last - k + 1

    def take(self, now: float) -> float | None:
        """The next due request, taken to be sent at ``now``: its intended
        send time (measure its latency from that), or None if none is due."""
        k = self._next
        if self._finished or k >= self.total:
            return None
        intended = self.time_of(k)
        if intended > now:
            return None
        self._next = k + 1
        self.sent += 1
        if now - intended > self.late_threshold:
            self.late += 1
        return intended

    def finish(self, end: float) -> int:
        """End the run at ``end``: the requests due by then and never taken
        are counted in ``never_sent`` (returned); nothing is taken after."""
        if not self._finished:
            self.never_sent = self.due(end)
            self._finished = True
        return self.never_sent
