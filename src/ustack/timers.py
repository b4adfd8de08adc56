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


class TimerHeap:
    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        # Breaks ties between equal deadlines: first armed, first fired.
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def call_at(self, deadline: float, callback: Callable[[float], None]) -> Timer:
        """Run ``callback(now)`` once the clock passes ``deadline``."""
        t = Timer(deadline, callback)
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, t))
        return t

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
