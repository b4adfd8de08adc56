"""An in-memory Ethernet link between two endpoints of one process.

``pipe_pair()`` returns two devices; frames sent on one are received on the
other, in order, with nothing lost unless the receiving queue is full.  It is
the link under unit and simulation tests: no root, no kernel, no clock.

Readiness: each endpoint owns an eventfd that is readable exactly while its
receive queue is non-empty, so a ``select()``/``selectors`` run loop can
wait on ``fileno()``.  The sender writes one wake-up count when the queue goes
from empty to non-empty and the receiver drains it when the queue empties, so
an endpoint nobody ever polls costs nothing and a sender never blocks on the
descriptor (the eventfd counter is written at most once before a drain).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence

from ustack.link.base import Capabilities, DeviceBase, Frame
from ustack.link.errors import LinkError

ETH_HLEN = 14


class Waker:
    """An eventfd that is readable while ``armed``."""

    __slots__ = ("_fd", "armed")

    def __init__(self) -> None:
        self.armed = False
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def fileno(self) -> int:
        return self._fd

    def arm(self) -> None:
        if not self.armed:
            self.armed = True
            os.eventfd_write(self._fd, 1)

    def disarm(self) -> None:
        if self.armed:
            self.armed = False
            os.eventfd_read(self._fd)  # resets the counter to 0

    def close(self) -> None:
        os.close(self._fd)


class PipeDevice(DeviceBase):
    """One end of an in-memory link; create pairs with ``pipe_pair``.

    A pipe has no MAC of its own (``hwaddr`` is None): the stack on each end
    brings one.
    """

    COUNTERS = (
        "rx_frames",
        "rx_bytes",
        "tx_frames",
        "tx_bytes",
        "tx_queue_full",
        "tx_oversize",
        "tx_runt",
        "tx_peer_closed",
    )
    tx_oversize = 0  # longer than mtu + 14
    tx_runt = 0  # shorter than an Ethernet header
    tx_peer_closed = 0  # sent while no open peer was there to take them

    def __init__(self, name: str, mtu: int, queue_len: int) -> None:
        if mtu < 68 or queue_len < 1:
            raise LinkError(f"pipe {name}: mtu must be >= 68 and queue_len >= 1")
        self.name = name
        self._caps = Capabilities(mtu=mtu, max_frame=mtu + ETH_HLEN)
        self._max_frame = mtu + ETH_HLEN
        self._queue_len = queue_len
        self._rxq: deque[bytes] = deque()
        self._waker = Waker()
        self._peer: PipeDevice | None = None
        self._closed = False

    def fileno(self) -> int:
        if self._closed:
            raise LinkError(f"pipe {self.name}: closed")
        return self._waker.fileno()

    def recv_batch(self, max_frames: int, now: float) -> list[bytes]:
        q = self._rxq
        if not q or max_frames <= 0:
            if self._closed:
                raise LinkError(f"pipe {self.name}: closed")
            return []
        if len(q) <= max_frames:
            out = list(q)
            q.clear()
        else:
            popleft = q.popleft
            out = [popleft() for _ in range(max_frames)]
        self.rx_frames += len(out)
        self.rx_bytes += sum(map(len, out))
        if not q:
            self._waker.disarm()
        return out

    def send_batch(self, frames: Sequence[Frame], now: float) -> int:
        if self._closed:
            raise LinkError(f"pipe {self.name}: closed")
        peer = self._peer
        if peer is None or peer._closed:
            self.tx_peer_closed += len(frames)
            return 0
        q = peer._rxq
        room = self._queue_len - len(q)
        max_frame = self._max_frame
        taken = 0
        nbytes = 0
        for i, f in enumerate(frames):
            n = len(f)
            if n > max_frame or n < ETH_HLEN:
                if n < ETH_HLEN:
                    self.tx_runt += 1
                else:
                    self.tx_oversize += 1
                continue
            if taken >= room:
                # Everything from the first refusal on is dropped: the queue
                # stays full until the peer receives.
                self.tx_queue_full += len(frames) - i
                break
            # bytes(b) of a bytes object is the object itself: no copy unless
            # the caller handed a mutable buffer it may reuse.
            q.append(f if type(f) is bytes else bytes(f))
            taken += 1
            nbytes += n
        if taken:
            self.tx_frames += taken
            self.tx_bytes += nbytes
            peer._waker.arm()
        return taken

    def queued(self) -> int:
        """Frames waiting in this end's receive queue."""
        return len(self._rxq)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._rxq.clear()
            self._waker.close()

    def __repr__(self) -> str:
        return f"PipeDevice({self.name!r}, queued={len(self._rxq)})"


def pipe_pair(
    mtu: int = 1500, *, queue_len: int = 1024, names: tuple[str, str] = ("pipe0", "pipe1")
) -> tuple[PipeDevice, PipeDevice]:
    """Two connected in-memory devices; each queues up to ``queue_len`` frames.

    Frames longer than ``mtu + 14`` or shorter than an Ethernet header are
    dropped on send (``tx_oversize``, ``tx_runt``); frames that find the
    peer's queue full are dropped (``tx_queue_full``).
    """
    a = PipeDevice(names[0], mtu, queue_len)
    b = PipeDevice(names[1], mtu, queue_len)
    a._peer = b
    b._peer = a
    return a, b
