"""The TPACKET_V2 receive ring goes past slots the kernel left unwritten.

Seen under SYN floods that overran the ring: the kernel held a slot (one to
three at a time) while it wrote the ones after it, and a reader that waits
at that slot never hears another frame (the stack stopped answering even
ARP).  A slot the kernel holds while one of the next ``HOLE_LOOKAHEAD`` is
written is watched for ``hole_wait`` (the kernel may be writing it on
another CPU), then gone past with the held ones before the written one,
and counted; written in time, it is read in order as any other.
"""

from __future__ import annotations

import mmap
import os
import struct
import time

from ustack.link.rings import RxRingV2

_SLOT = 256
_MAC_OFF = 32 + 10


def ring(n: int) -> tuple[RxRingV2, mmap.mmap, list[int]]:
    mm = mmap.mmap(-1, _SLOT * n)
    slots = [i * _SLOT for i in range(n)]
    return RxRingV2(mm, slots, 10), mm, slots


def write(mm: mmap.mmap, off: int, frame: bytes, sec: int = 0) -> None:
    """The kernel's write of one slot: the frame, its receive time (tp_sec),
    then the status USER."""
    mm[off + _MAC_OFF:off + _MAC_OFF + len(frame)] = frame
    struct.pack_into("=II", mm, off + 16, sec, 0)
    struct.pack_into("=IIIH", mm, off, 1, len(frame), len(frame), _MAC_OFF)


def frame(i: int) -> bytes:
    return bytes([i]) * 60


def test_a_slot_left_behind_is_gone_past() -> None:
    rx, mm, slots = ring(8)
    write(mm, slots[0], frame(0))
    # slot 1 held by the kernel; 2 and 3 written after it
    write(mm, slots[2], frame(2))
    write(mm, slots[3], frame(3))
    assert rx.recv(64) == [frame(0), frame(2), frame(3)]
    assert rx.st.holes == 1
    # The reader is in step again: the next slots come in order.
    write(mm, slots[4], frame(4))
    assert rx.recv(64) == [frame(4)]


def test_several_slots_left_behind_are_gone_past_together() -> None:
    rx, mm, slots = ring(16)
    write(mm, slots[3], frame(3))  # 0, 1, 2 held
    assert rx.recv(64) == [frame(3)]
    assert rx.st.holes == 3


def test_a_written_slot_beyond_the_lookahead_is_no_evidence() -> None:
    """Only a written slot close after the held one says the kernel moved
    on; the reader waits for the held one as usual."""
    rx, mm, slots = ring(64)
    write(mm, slots[RxRingV2.HOLE_LOOKAHEAD + 1], frame(9))
    t0 = time.monotonic()
    assert rx.recv(64) == [] and rx.st.holes == 0
    assert time.monotonic() - t0 < RxRingV2.HOLE_WAIT  # and does not wait at all


def test_a_slot_written_within_the_wait_is_read_in_order() -> None:
    rx, mm, slots = ring(8)
    rx.hole_wait = 2.0  # the writer below is another process: give it time
    write(mm, slots[1], frame(1))
    # The kernel's write on another CPU: a child process sharing the ring's
    # memory (a thread would wait for the GIL the compiled watch holds).
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        time.sleep(0.05)
        write(mm, slots[0], frame(0))
        os._exit(0)
    try:
        assert rx.recv(64) == [frame(0), frame(1)]
    finally:
        os.waitpid(pid, 0)
    assert rx.st.holes == 0


def test_an_empty_ring_is_no_hole() -> None:
    rx, _, _ = ring(4)
    for _ in range(3):
        assert rx.recv(64) == []
    assert rx.st.holes == 0


def test_a_frame_older_than_the_last_one_read_is_no_evidence() -> None:
    """A slot gone past a lap ago and written late holds an old frame: the
    reader, waiting where the kernel writes next, must not jump to it."""
    rx, mm, slots = ring(8)
    write(mm, slots[0], frame(0), sec=5)
    assert rx.recv(64) == [frame(0)]
    write(mm, slots[3], frame(3), sec=4)  # the late one, from before
    assert rx.recv(64) == [] and rx.st.holes == 0
    write(mm, slots[1], frame(1), sec=6)
    assert rx.recv(64) == [frame(1)]


def test_a_hole_written_late_is_read_on_the_next_lap() -> None:
    """Gone past, then written after all: the kernel cannot reuse it until
    the reader frees it, and the reader reaches it on its next lap."""
    rx, mm, slots = ring(4)
    write(mm, slots[1], frame(1))
    assert rx.recv(64) == [frame(1)]
    write(mm, slots[0], frame(0))  # late
    write(mm, slots[2], frame(2))
    write(mm, slots[3], frame(3))
    assert rx.recv(64) == [frame(2), frame(3), frame(0)]
