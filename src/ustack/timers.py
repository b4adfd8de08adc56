"""One timer structure for the whole Stack (docs/architecture.md, principle 2).

A binary heap of (deadline, sequence, handle).  Cancelling only marks the
handle; the heap discards it when it reaches the top, so cancel is O(1) and
re-arming a timer (ARP retry, reassembly timeout, later the TCP RTO) never
searches the heap.  Time is whatever the Stack passes in: tests use a fake
clock.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Final


class Timer:
    """A scheduled callback; ``cancel()`` it to stop it from firing."""

    __slots__ = ("callback", "cancelled", "deadline")

    def __init__(self, deadline: float, callback: Callable[[float], None]) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        # The heap keeps the entry until its deadline comes up; without the
        # callback it no longer keeps what the callback holds alive (a
        # connection's timer held the whole connection, freed a second or a
        # minute later by the collector instead of at once: issue 12).
        self.callback = _spent


def _spent(now: float) -> None:
    """The callback of a cancelled timer (never called)."""


# The heap is purged of cancelled entries once it holds at least this many
# and at least half of them were armed since the last purge (``call_at``).
_PURGE_MIN: Final = 64


class TimerHeap:
    __slots__ = ("_armed", "_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        # Breaks ties between equal deadlines: first armed, first fired.
        self._seq = 0
        self._armed = 0  # timers armed since the last purge

    def __len__(self) -> int:
        return len(self._heap)

    def call_at(self, deadline: float, callback: Callable[[float], None]) -> Timer:
        """Run ``callback(now)`` once the clock passes ``deadline``."""
        t = Timer(deadline, callback)
        self._seq += 1
        heap = self._heap
        heapq.heappush(heap, (deadline, self._seq, t))
        self._armed += 1
        if 2 * self._armed >= len(heap) >= _PURGE_MIN:
            self._purge()
        return t

    def _purge(self) -> None:
        """Drop the cancelled entries.  Most timers of short connections are
        cancelled long before their deadline (a SYN's 1 s, an RTO moved
        earlier, every timer of a connection that closed); left in, they
        made the heap many times the live timers and every push and pop
        walk its depth (issue 12).  Once half the heap was armed since the
        last purge, so each purge's O(n) is paid for by n/2 pushes, and the
        heap stays within about twice the live timers (or _PURGE_MIN)."""
        heap = self._heap
        heap[:] = [e for e in heap if not e[2].cancelled]
        heapq.heapify(heap)
        self._armed = 0

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def run_due(self, now: float) -> int:
        """Fire every timer whose deadline is <= now; returns how many fired."""
        heap = self._heap
        fired = 0
        while heap and heap[0][0] <= now:
            _, _, t = heapq.heappop(heap)
            if not t.cancelled:
                t.cancelled = True  # a fired timer is spent; cancel() stays harmless
                t.callback(now)
                fired += 1
        return fired
