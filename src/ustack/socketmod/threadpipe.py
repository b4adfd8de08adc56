"""An in-memory link whose two ends may be driven by different threads.

``link.pipe`` is for single-threaded tests: its wake-up keeps an "armed"
flag that both ends' threads would change.  Here the sender appends, then
writes the receiver's eventfd; the receiver reads the eventfd, then drains
the queue.  A frame appended after a drain has its eventfd write after that
read, so the descriptor stays readable and no wake-up is lost.  Used by the
tests and the benchmark of ``ustack.socket``, where each Stack runs in its
own Runtime thread.  (It belongs in ``link/`` once that package adopts it.)
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Sequence

from ustack.link.base import Capabilities, DeviceBase, Frame


class ThreadPipe(DeviceBase):
    COUNTERS = ("rx_frames", "tx_frames", "tx_queue_full")

    def __init__(self, name: str, queue_len: int) -> None:
        self.name = name
        self._caps = Capabilities()
        self._q: deque[bytes] = deque()
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._queue_len = queue_len
        self.peer: ThreadPipe | None = None

    def fileno(self) -> int:
        return self._fd

    def recv_batch(self, max_frames: int, now: float) -> list[bytes]:
        q = self._q
        if not q:
            return []
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._fd)
        if len(q) <= max_frames:
            # Popped one by one: the other thread may be appending meanwhile.
            out = [q.popleft() for _ in range(len(q))]
        else:
            out = [q.popleft() for _ in range(max_frames)]
            os.eventfd_write(self._fd, 1)  # more than one batch: stay readable
        self.rx_frames += len(out)
        return out

    def send_batch(self, frames: Sequence[Frame], now: float) -> int:
        peer = self.peer
        if peer is None or peer._fd < 0:
            return 0
        q = peer._q
        room = self._queue_len - len(q)
        n = 0
        for f in frames:
            if n >= room:
                self.tx_queue_full += len(frames) - n
                break
            q.append(f if type(f) is bytes else bytes(f))
            n += 1
        if n:
            self.tx_frames += n
            with contextlib.suppress(OSError):
                os.eventfd_write(peer._fd, 1)
        return n

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def thread_pipe_pair(queue_len: int = 20_000) -> tuple[ThreadPipe, ThreadPipe]:
    a, b = ThreadPipe("tpipe0", queue_len), ThreadPipe("tpipe1", queue_len)
    a.peer, b.peer = b, a
    return a, b
