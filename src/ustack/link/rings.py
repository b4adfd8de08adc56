"""Walking AF_PACKET's mmapped rings (Documentation/networking/packet_mmap.rst).

The rings are shared memory: the kernel and we hand frame slots (TPACKET_V2,
and the transmit ring) or whole blocks of frames (TPACKET_V3 receive) back and
forth by writing a status word.  Everything here reads and writes the mmap
with precompiled ``struct.Struct`` ``unpack_from``/``pack_into``; a received
frame is copied out with one mmap slice.  Ordering: the kernel publishes a
slot's contents before its status (smp_wmb) and we read the status first;
on x86, loads are not reordered with loads nor stores with stores (Intel SDM
vol. 3, 8.2.2), so plain Python reads and writes keep the protocol.

With the socket's virtio-net header on (PACKET_VNET_HDR), every received
frame has the 10-byte header just before its MAC header and every frame
written to the transmit ring starts with one.
"""

from __future__ import annotations

import mmap
import struct
import sys
import time
from collections.abc import Callable, Sequence
from typing import Final

from ustack.link import vnet
from ustack.link.base import Frame

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_COPY = 2  # the whole frame is also on the socket's queue (PACKET_COPY_THRESH)
TP_STATUS_AVAILABLE = 0
TP_STATUS_SEND_REQUEST = 1
TP_STATUS_WRONG_FORMAT = 4

ETH_HLEN = 14

_U32 = struct.Struct("=I")
# struct tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1
# whose first words are block_status, num_pkts, offset_to_first_pkt.
_BLK_STATUS_OFF = 8
_BLK = struct.Struct("=III")
# tpacket_hdr_v1's seq_num: the kernel numbers the blocks it retires.
_BLK_SEQ_OFF = 24
_U64 = struct.Struct("=Q")
# struct tpacket3_hdr: tp_next_offset, (tp_sec, tp_nsec), tp_snaplen,
# tp_len, tp_status, tp_mac.
_PKT3 = struct.Struct("=I8xIIIH")
# struct tpacket2_hdr: tp_status, tp_len, tp_snaplen, tp_mac.
_PKT2 = struct.Struct("=IIIH")
# tpacket2_hdr's tp_sec, tp_nsec: when the kernel received the frame.
_TS2 = struct.Struct("=II")
_TS2_OFF = 16

# Two u32 words of a transmit slot's header (tp_status and tp_len, in the
# version's order), the 24 bytes up to the data, then the vnet header.
_TX_META = struct.Struct("=II24xBBHHHH")


def slot_offsets(base: int, block_size: int, block_nr: int, frame_size: int) -> list[int]:
    """Offsets of every frame slot; slots never straddle a block."""
    per_block = block_size // frame_size
    return [
        base + b * block_size + i * frame_size for b in range(block_nr) for i in range(per_block)
    ]


class RxStats:
    """Counters the receive walkers share with the device."""

    __slots__ = ("bad_vnet_hdr", "copied", "csum_trusted", "holes", "tapped", "truncated")

    def __init__(self) -> None:
        self.truncated = 0  # frames that did not fit a slot and were lost
        self.copied = 0  # frames that did not fit a slot, read whole from the queue
        self.csum_trusted = 0  # frames the kernel vouches for (vnet.CsumOkFrame)
        self.bad_vnet_hdr = 0
        self.tapped = 0  # frames a FrameTap took in the ring (never copied out)
        self.holes = 0  # slots the kernel skipped, gone past (RxRingV2._hole)


class FrameTap:
    """Sees each received frame in the ring before it is copied out
    (``RxRingV2.tap``), and takes the ones it wants: a receiver of a flood
    of small, known frames (``ustack flood``'s answers) reads the fields it
    needs where the kernel wrote them, with no frame object, no copy and
    no trip through the layers.  ``take`` returns True for a frame it took
    (the ring then frees the slot; the frame is gone), False to leave it
    to the stack.  ``trusted``: the kernel vouched for its transport
    checksum (the virtio-net header's flags).  A native base class, as
    ``SlotWriter``."""

    __slots__ = ()

    def take(self, buf: mmap.mmap, start: int, length: int, trusted: bool) -> bool:
        raise NotImplementedError


_rx_frame = vnet.rx_frame


class RxRingV3:
    """TPACKET_V3 receive ring: the kernel fills variable-sized frames into a
    block and hands over the whole block when it is full or when the retire
    timer (tp_retire_blk_tov) fires; we hand it back when every frame in it
    has been copied out.  A batch may stop in the middle of a block."""

    def __init__(
        self, mm: mmap.mmap, base: int, block_size: int, block_nr: int, vnet_hlen: int
    ) -> None:
        self._mm = mm
        self._blocks = [base + b * block_size for b in range(block_nr)]
        self._nr = block_nr
        self._hlen = vnet_hlen
        self._blk = 0
        self._left = 0  # frames not yet taken from the current block
        self._off = 0  # offset of the next frame in the current block
        self._synced = True
        self.st = RxStats()

    def resync(self) -> None:
        """Take over a ring another reader used (a worker's next life, the
        ring inherited from the parent: ``PacketDevice(rx_from=...)``): where
        the kernel is is not known, so the next ``recv`` starts at the
        oldest block handed over (the lowest ``seq_num``), and until one is
        there, nothing is pending.  A block the last reader had begun is
        read again from its start (its frames once more: TCP copes)."""
        self._synced = False
        self._left = 0

    def _sync(self) -> bool:
        mm = self._mm
        best = -1
        best_seq = 0
        for i, off in enumerate(self._blocks):
            if _U32.unpack_from(mm, off + _BLK_STATUS_OFF)[0] & TP_STATUS_USER:
                seq: int = _U64.unpack_from(mm, off + _BLK_SEQ_OFF)[0]
                if best < 0 or seq < best_seq:
                    best, best_seq = i, seq
        if best < 0:
            return False
        self._blk = best
        self._synced = True
        return True

    def pending(self) -> bool:
        """True when the next block (or the rest of one) is ours to read."""
        if self._left:
            return True
        if not self._synced and not self._sync():
            return False
        return bool(_U32.unpack_from(self._mm, self._blocks[self._blk] + _BLK_STATUS_OFF)[0] & 1)

    def recv(self, max_frames: int) -> list[bytes]:
        if not self._synced and not self._sync():
            return []
        mm = self._mm
        blocks = self._blocks
        hlen = self._hlen
        unpack_pkt = _PKT3.unpack_from
        out: list[bytes] = []
        append = out.append
        left = self._left
        off = self._off
        blk = self._blk
        n = 0
        while n < max_frames:
            if not left:
                status, left, first = _BLK.unpack_from(mm, blocks[blk] + _BLK_STATUS_OFF)
                if not status & TP_STATUS_USER:
                    left = 0
                    break
                off = blocks[blk] + first
                if not left:  # an empty block retired by the timer
                    _U32.pack_into(mm, blocks[blk] + _BLK_STATUS_OFF, TP_STATUS_KERNEL)
                    blk = blk + 1 if blk + 1 < self._nr else 0
                    continue
            nxt, snaplen, length, _status, mac = unpack_pkt(mm, off)
            start = off + mac
            if snaplen != length:
                self.st.truncated += 1
            elif hlen and mm[start - hlen]:  # vnet flags: the kernel vouches for it
                self.st.csum_trusted += 1
                append(_rx_frame(mm[start - hlen], memoryview(mm)[start : start + snaplen]))
                n += 1
            else:
                append(mm[start : start + snaplen])
                n += 1
            left -= 1
            if left:
                off += nxt
            else:
                _U32.pack_into(mm, blocks[blk] + _BLK_STATUS_OFF, TP_STATUS_KERNEL)
                blk = blk + 1 if blk + 1 < self._nr else 0
        self._left = left
        self._off = off
        self._blk = blk
        return out


class RxRingV2:
    """TPACKET_V2 receive ring: fixed-size slots, each handed over on its own
    as soon as the kernel has written it (no block latency).

    A frame longer than a slot (a GRO or TSO super-frame of up to 64 KB from
    a veth peer with offloads on) is cut to the slot; with PACKET_COPY_THRESH
    on, the kernel also queues the whole frame on the socket and marks the
    slot TP_STATUS_COPY (packet_mmap.rst; net/packet/af_packet.c
    tpacket_rcv), both under the queue's lock, so the queue holds such
    frames in ring order: ``copy`` reads the next one.  Small slots (many
    of them: a burst of short frames does not overflow the ring) then cost
    nothing in correctness.  Without ``copy``, or when the kernel had no
    room to queue the copy, the cut frame is counted ``truncated`` and lost
    (TCP repairs it).
    """

    # Frames a tap may take per ``recv`` beyond ``max_frames``: a call
    # stays bounded when the tap takes everything.
    TAP_BUDGET: Final = 1024
    # How long a held slot with a written successor is waited for before it
    # is taken for a hole (``_hole``): far longer than the kernel's write.
    HOLE_WAIT: Final = 0.001
    HOLE_LOOKAHEAD: Final = 16  # slots after a held one looked at for a written one

    def __init__(self, mm: mmap.mmap, slots: list[int], vnet_hlen: int,
                 copy: Callable[[], bytes | None] | None = None) -> None:
        self._mm = mm
        self._copy = copy
        self._slots = slots
        self._n = len(slots)
        self._head = 0
        self._hlen = vnet_hlen
        self.st = RxStats()
        self.tap: FrameTap | None = None
        self.hole_wait = self.HOLE_WAIT  # (a test lengthens it)
        self._synced = True

    def resync(self) -> None:
        """Take over a ring another reader used: a worker's next life reads
        the ring of the socket its parent holds for it across lives
        (``PacketDevice(rx_from=...)``, cli/workers.py), and where the
        kernel writes next is known to the kernel only.  The next ``recv``
        starts at the oldest slot handed over (the earliest receive time):
        the frames that waited while no worker ran are read, in order,
        rather than dropped.  Until a slot is handed over, nothing is
        pending (the socket's readiness says when one is)."""
        self._synced = False

    def _sync(self) -> bool:
        mm = self._mm
        best = -1
        best_ts = 0
        for i, off in enumerate(self._slots):
            if _U32.unpack_from(mm, off)[0] & TP_STATUS_USER:
                sec, nsec = _TS2.unpack_from(mm, off + _TS2_OFF)
                ts: int = sec * 1_000_000_000 + nsec
                if best < 0 or ts < best_ts:
                    best, best_ts = i, ts
        if best < 0:
            return False
        self._head = best
        self._synced = True
        return True

    def pending(self) -> bool:
        if not self._synced and not self._sync():
            return False
        return bool(_U32.unpack_from(self._mm, self._slots[self._head])[0] & TP_STATUS_USER)

    def _hole(self, head: int) -> int:
        """How many slots from ``head`` on the kernel skipped: 0 for none
        (the ring is empty), -1 when ``head`` was written while watched.

        The kernel fills slots in order; slots it holds while a later one
        (within ``HOLE_LOOKAHEAD``) is already written are either being
        written now (on another CPU, a microsecond) or were left behind for
        good: seen under SYN floods that overran the ring (kernel 6.18, veth
        with offloads; one to three slots at a time), after which every
        later frame sat in slots the reader never reached and the stack
        heard nothing more.  The held slot is watched for ``hole_wait``
        here, not across calls (the kernel's readiness, read at its own
        head, may never wake the loop again), then gone past with the others
        before the written one; counted in ``holes``.  Should the kernel
        write one after all, the reader takes it on its next lap."""
        mm = self._mm
        slots = self._slots
        n = self._n
        # Evidence is a frame received after the one read last (the slot
        # before ``head``: its receive time stays where the kernel wrote it):
        # a frame written late into a slot gone past a lap ago is older, and
        # says nothing about where the kernel is now.
        ahead = 0
        for i in range(1, self.HOLE_LOOKAHEAD + 1):
            off = slots[(head + i) % n]
            if _U32.unpack_from(mm, off)[0] & TP_STATUS_USER:
                last = _TS2.unpack_from(mm, slots[head - 1] + _TS2_OFF)
                if _TS2.unpack_from(mm, off + _TS2_OFF) >= last:
                    ahead = i
                break
        if not ahead:
            return 0
        off = slots[head]
        deadline = time.monotonic() + self.hole_wait
        while time.monotonic() < deadline:
            if _U32.unpack_from(mm, off)[0] & TP_STATUS_USER:
                return -1  # it was being written: read it in order
        if _U32.unpack_from(mm, off)[0] & TP_STATUS_USER:
            return -1
        self.st.holes += ahead
        return ahead

    def recv(self, max_frames: int) -> list[bytes]:
        if not self._synced and not self._sync():
            return []
        mm = self._mm
        slots = self._slots
        nslots = self._n
        hlen = self._hlen
        unpack_pkt = _PKT2.unpack_from
        release = _U32.pack_into
        out: list[bytes] = []
        append = out.append
        head = self._head
        tap = self.tap
        budget = self.TAP_BUDGET
        n = 0
        while n < max_frames:
            off = slots[head]
            status, length, snaplen, mac = unpack_pkt(mm, off)
            if not status & TP_STATUS_USER:
                skipped = self._hole(head)
                if skipped == 0:
                    break
                if skipped > 0:
                    head = (head + skipped) % nslots  # left unwritten: go on past them
                continue  # past the hole, or written while it was watched: read on
            start = off + mac
            if snaplen != length:
                whole = self._copy() if status & TP_STATUS_COPY and self._copy else None
                if whole is None:
                    self.st.truncated += 1
                else:
                    self.st.copied += 1
                    append(whole)
                    n += 1
            elif tap is not None and budget and tap.take(
                    mm, start, snaplen, bool(hlen and mm[start - hlen])):
                self.st.tapped += 1
                budget -= 1
            elif hlen and mm[start - hlen]:  # vnet flags: the kernel vouches for it
                self.st.csum_trusted += 1
                append(_rx_frame(mm[start - hlen], memoryview(mm)[start : start + snaplen]))
                n += 1
            else:
                append(mm[start : start + snaplen])
                n += 1
            release(mm, off, TP_STATUS_KERNEL)
            head += 1
            if head == nslots:
                head = 0
        self._head = head
        return out


class SlotWriter:
    """Writes a frame straight into a transmit slot (``TxRing.put_written``).

    For a sender that makes its frames as it goes (``ustack flood``): rather
    than building a frame object that ``put`` then copies into the ring,
    ``write`` is handed the ring's memory and a slot's offset and writes the
    whole slot at once: the ``prefix`` the ring gave for its frame length
    (``TxRing.slot_prefix``: the slot header marked SEND_REQUEST and the
    virtio-net header), then the frame.  A base class the writers extend,
    not a callable: compiled, the ring calls ``write`` as a native method.
    """

    __slots__ = ()

    def write(self, buf: mmap.mmap | bytearray, offset: int) -> None:
        raise NotImplementedError


class TxRing:
    """The transmit ring: fill free slots in order, mark them SEND_REQUEST,
    and let one ``send()`` on the socket transmit them all.

    Every frame goes behind a 10-byte vnet header (the socket has
    PACKET_VNET_HDR on) whose ``hdr_len`` covers the whole frame.
    tpacket_snd copies ``hdr_len`` bytes into the skb and would attach the
    rest as references to the ring's pages, and a slot is marked free again
    when its skb is released, which on a local path (veth into the kernel's
    own stack) can happen before every reader is done with the data.
    Copying the whole frame (a memcpy of at most 1.5 KB in the kernel) keeps
    a reused slot from ever rewriting a frame someone still reads.

    The kernel reads SEND_REQUEST slots only inside our ``send()``, so the
    order of the writes that fill a slot does not matter: one
    ``pack_into`` writes tp_len, tp_status and the vnet header at once.
    """

    def __init__(self, mm: mmap.mmap, slots: list[int], frame_size: int, version: int) -> None:
        self._mm = mm
        self._slots = slots
        self._n = len(slots)
        self._head = 0
        self._v3 = version == 3
        # V2: tp_status@0, tp_len@4, data@32.  V3: tp_len@16, tp_status@20,
        # data@48 (tp_hdrlen - sizeof(sockaddr_ll)); the header sits at data.
        self._meta_off = 16 if self._v3 else 0
        st_off = 20 if self._v3 else 0
        # Status values the kernel writes back fit the low byte (0, 1, 2, 4),
        # except timestamp flags in bits 29-31 that may accompany AVAILABLE.
        self._st_byte = st_off if sys.byteorder == "little" else st_off + 3
        self._data_off = (48 if self._v3 else 32) + vnet.HDR_LEN
        self.max_frame = frame_size - self._data_off
        self.frames = 0
        self.bytes = 0
        self.ring_full = 0
        self.oversize = 0
        self.runt = 0
        self.wrong_format = 0

    def slot_prefix(self, frame_len: int) -> bytes:
        """The bytes of a slot before a frame of ``frame_len`` bytes, with
        the slot marked SEND_REQUEST: what a ``SlotWriter`` writes first.

        The same words ``put`` writes (tp_len, tp_status, the 24 bytes up
        to the data, a zero vnet header), behind V3's 16 leading bytes
        (tp_next_offset must be 0 on transmit; the rest is not read).
        """
        if not ETH_HLEN <= frame_len <= self.max_frame:
            raise ValueError(f"a frame of {frame_len} bytes does not fit a slot "
                             f"({ETH_HLEN}..{self.max_frame})")
        out = bytearray(self._data_off)
        hlen = vnet.HDR_LEN
        if self._v3:
            _TX_META.pack_into(out, self._meta_off, frame_len + hlen, TP_STATUS_SEND_REQUEST,
                               0, 0, frame_len, 0, 0, 0)
        else:
            _TX_META.pack_into(out, 0, TP_STATUS_SEND_REQUEST, frame_len + hlen,
                               0, 0, frame_len, 0, 0, 0)
        return bytes(out)

    def put_written(self, writer: SlotWriter, n: int, frame_len: int) -> int:
        """Have ``writer`` fill up to ``n`` free slots in order with frames
        of ``frame_len`` bytes (its prefix from ``slot_prefix(frame_len)``);
        how many it filled.  Stops at the first slot the kernel still holds:
        the caller tries again after the next kick (not a drop, so not
        counted in ``ring_full``)."""
        mm = self._mm
        slots = self._slots
        nslots = self._n
        st_byte = self._st_byte
        head = self._head
        queued = 0
        while queued < n:
            off = slots[head]
            status = mm[off + st_byte]
            if status:
                if not status & TP_STATUS_WRONG_FORMAT:
                    break
                self.wrong_format += 1  # the kernel skipped the old frame
            writer.write(mm, off)
            head += 1
            if head == nslots:
                head = 0
            queued += 1
        self._head = head
        self.frames += queued
        self.bytes += queued * frame_len
        return queued

    def put(self, frames: Sequence[Frame]) -> int:
        """Queue frames into free slots; returns how many were queued."""
        mm = self._mm
        slots = self._slots
        nslots = self._n
        v3 = self._v3
        meta = _TX_META.pack_into
        meta_off = self._meta_off
        st_byte = self._st_byte
        data_off = self._data_off
        max_frame = self.max_frame
        hlen = vnet.HDR_LEN
        head = self._head
        queued = 0
        skipped = 0
        nbytes = 0
        for f in frames:
            off = slots[head]
            status = mm[off + st_byte]
            if status:
                if status & TP_STATUS_WRONG_FORMAT:
                    self.wrong_format += 1  # the kernel skipped the old frame
                else:
                    self.ring_full += len(frames) - queued - skipped
                    break
            ln = len(f)
            if ln > max_frame or ln < ETH_HLEN:
                if ln < ETH_HLEN:
                    self.runt += 1
                else:
                    self.oversize += 1
                skipped += 1
                continue
            if v3:
                meta(mm, off + meta_off, ln + hlen, TP_STATUS_SEND_REQUEST, 0, 0, ln, 0, 0, 0)
            else:
                meta(mm, off, TP_STATUS_SEND_REQUEST, ln + hlen, 0, 0, ln, 0, 0, 0)
            d = off + data_off
            mm[d : d + ln] = f
            head += 1
            if head == nslots:
                head = 0
            queued += 1
            nbytes += ln
        self._head = head
        self.frames += queued
        self.bytes += nbytes
        return queued
