"""An in-memory link whose two ends are driven by different threads.

``pipe.pipe_pair`` serves one thread: its wake-up keeps an "armed" flag that
the sender sets and the receiver clears, and with the ends in two threads
(each Stack in its own ``ustack.socket`` Runtime) a frame appended while the
receiver clears the flag would sit unannounced until the next one came.

Here the eventfd is a count.  The sender appends its batch, then writes the
receiver's eventfd once; the receiver reads the eventfd *before* it takes
frames.  A frame appended after that read is announced by a write after it,
so the descriptor stays readable and no wake-up is lost; ``deque.append``
and ``popleft`` are atomic, so the queue needs no lock.  Both sides count
the writes (``signals``) and the reads (``taken``): a write for a frame the
receiver already took would leave the descriptor readable over an empty
queue, and a poll loop would spin on it, so an empty ``recv_batch`` reads it
away, a system call made only when the counts differ.  A lock orders each
write against ``close()``: a write never reaches a closed (perhaps reused)
descriptor number.

Frames, bounds and counters are ``PipeDevice``'s.
"""

from __future__ import annotations

import contextlib
import os
import threading

from ustack.link.errors import LinkError
from ustack.link.pipe import PipeDevice, Waker


class _CountingWaker(Waker):
    """An eventfd written once per batch (from any thread) and read by its owner."""

    __slots__ = ("_lock", "signals", "taken")

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.signals = 0  # writes made (or about to be: counted first)
        self.taken = 0  # of those, read by the receiver

    def arm(self) -> None:
        with self._lock:
            if self._fd >= 0:
                self.signals += 1
                os.eventfd_write(self._fd, 1)

    def disarm(self) -> None:
        """Read the count away (the owner's thread only)."""
        with contextlib.suppress(BlockingIOError):
            self.taken += os.eventfd_read(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class ThreadPipeDevice(PipeDevice):
    """One end of a thread-safe in-memory link; create pairs with ``thread_pipe_pair``.

    Each end is used by one thread (its Stack's); the two ends may be in two.
    """

    def __init__(self, name: str, mtu: int, queue_len: int) -> None:
        super().__init__(name, mtu, queue_len)
        self._waker.close()
        self._waker = self._counter = _CountingWaker()

    def recv_batch(self, max_frames: int, now: float) -> list[bytes]:
        q = self._rxq
        w = self._counter
        if not q:
            if self._closed:
                raise LinkError(f"pipe {self.name}: closed")
            if w.signals != w.taken:
                w.disarm()  # a wake-up for frames taken already: clear it
            return []
        if max_frames <= 0:
            return []
        w.disarm()  # before taking: frames appended from now on write after this read
        n = len(q)
        if n > max_frames:
            n = max_frames
        popleft = q.popleft  # one by one: the other thread may be appending
        out = [popleft() for _ in range(n)]
        if q:
            w.arm()  # more than one batch waits: stay readable
        self.rx_frames += n
        self.rx_bytes += sum(map(len, out))
        return out

    def __repr__(self) -> str:
        return f"ThreadPipeDevice({self.name!r}, queued={len(self._rxq)})"


def thread_pipe_pair(
    mtu: int = 1500, *, queue_len: int = 20_000, names: tuple[str, str] = ("tpipe0", "tpipe1")
) -> tuple[ThreadPipeDevice, ThreadPipeDevice]:
    """Two connected in-memory devices whose ends may live in different threads.

    As ``pipe_pair`` otherwise (same drops and counters).  The default queue
    is deeper: a Stack thread waiting for the GIL lets a burst pile up.
    """
    a = ThreadPipeDevice(names[0], mtu, queue_len)
    b = ThreadPipeDevice(names[1], mtu, queue_len)
    a._peer = b
    b._peer = a
    return a, b
