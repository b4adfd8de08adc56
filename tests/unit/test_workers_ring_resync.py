"""A worker's next life takes over the receive ring its parent holds.

With ``--workers N`` the parent keeps each worker's fanout socket (and its
mmapped ring) across the worker's lives (cli/workers.py); where the kernel
writes next is known to the kernel only, and the ring object the new life
inherits says slot 0.  ``resync`` makes the next read start at the oldest
slot handed over (the earliest receive time), so the frames that waited
while no worker ran are read in order, and a ring with nothing in it is
not pending until the kernel writes somewhere.
"""

from __future__ import annotations

import mmap
import struct

from ustack.link.rings import RxRingV2, RxRingV3

_SLOT = 256
_MAC_OFF = 32 + 10


def write(mm: mmap.mmap, off: int, frame: bytes, sec: int) -> None:
    mm[off + _MAC_OFF:off + _MAC_OFF + len(frame)] = frame
    struct.pack_into("=II", mm, off + 16, sec, 0)
    struct.pack_into("=IIIH", mm, off, 1, len(frame), len(frame), _MAC_OFF)


def frame(i: int) -> bytes:
    return bytes([i]) * 60


def test_v2_the_next_life_starts_at_the_oldest_frame_and_wraps() -> None:
    mm = mmap.mmap(-1, _SLOT * 8)
    slots = [i * _SLOT for i in range(8)]
    rx = RxRingV2(mm, slots, 10)
    # The last life read up to slot 5; the kernel then wrote 6, 7, 0, 1.
    for sec, i in enumerate([6, 7, 0, 1], start=100):
        write(mm, slots[i], frame(i), sec)
    before = RxRingV2(mm, slots, 10)  # a reader at slot 0, as inherited
    assert before.recv(64) == [frame(0), frame(1)]  # out of order, then stuck
    for sec, i in enumerate([0, 1], start=102):
        write(mm, slots[i], frame(i), sec)
    rx.resync()
    assert rx.pending()
    assert rx.recv(64) == [frame(6), frame(7), frame(0), frame(1)]
    write(mm, slots[2], frame(2), 104)  # and on in step
    assert rx.recv(64) == [frame(2)]


def test_v2_an_empty_ring_waits_for_the_kernels_first_write() -> None:
    mm = mmap.mmap(-1, _SLOT * 8)
    slots = [i * _SLOT for i in range(8)]
    rx = RxRingV2(mm, slots, 10)
    rx.resync()
    assert not rx.pending() and rx.recv(64) == []
    write(mm, slots[5], frame(5), 7)  # wherever the kernel is
    assert rx.pending()
    assert rx.recv(64) == [frame(5)]
    write(mm, slots[6], frame(6), 8)
    assert rx.recv(64) == [frame(6)]


_BLOCK = 1024


def block(mm: mmap.mmap, b: int, seq: int, frames: list[bytes]) -> None:
    """The kernel retiring block ``b`` with ``frames`` (tpacket3_hdr each)."""
    base = b * _BLOCK
    first = 48
    off = base + first
    for k, f in enumerate(frames):
        nxt = 128 if k + 1 < len(frames) else 0
        struct.pack_into("=I8xIIIH", mm, off, nxt, len(f), len(f), 0, 64)
        mm[off + 64:off + 64 + len(f)] = f
        off += 128
    struct.pack_into("=Q", mm, base + 24, seq)
    struct.pack_into("=III", mm, base + 8, 1, len(frames), first)


def test_v3_the_next_life_starts_at_the_oldest_block() -> None:
    mm = mmap.mmap(-1, _BLOCK * 4)
    rx = RxRingV3(mm, 0, _BLOCK, 4, 0)
    block(mm, 2, 11, [frame(1), frame(2)])
    block(mm, 3, 12, [frame(3)])
    block(mm, 0, 13, [frame(4)])
    rx.resync()
    assert rx.recv(64) == [frame(1), frame(2), frame(3), frame(4)]
