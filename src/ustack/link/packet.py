"""An AF_PACKET socket on an existing interface, with mmapped rings.

``PacketDevice("veth0")`` sees every frame on the wire of ``veth0`` (the
interface is put in promiscuous mode so frames for our own MAC arrive) and
transmits frames onto it, bypassing the kernel's IP stack; the kernel's
addresses on the interface stay the kernel's.  ``hwaddr`` is the interface's
MAC, which the stack may use or replace with its own.

Receive modes (``rx_ring``), selectable because the best one depends on
the traffic.  Measured on a 2-core VM over veth with 64-byte frames, cost
of ``recv_batch`` per frame and an ARP round trip to the kernel:

``"v2"``  TPACKET_V2 ring (default): one slot per frame, handed over as
          soon as the kernel has written it.  ~0.6 us/frame to receive;
          ARP request/response round trip 5 us.
``"v3"``  TPACKET_V3 ring: frames packed into blocks.  ~0.4 us/frame, but
          a block reaches us only when full or when its retire timer
          (``retire_ms``, 1 ms at least) fires: a lone request waits ~1 ms
          (measured round trip 1000 us median).  For bulk receive and
          capture, not for request/response.
``"none"`` plain ``recv``/``sendmsg``, one system call per frame: ~1.2 us/frame,
          round trip 6 us.  The fallback where rings are not available.

Transmit uses a TX ring (one ``send()`` per batch) unless ``rx_ring="none"``
or ``tx_frames=0``.  PACKET_QDISC_BYPASS sends straight to the driver (no
qdisc, and no copy of our frames to other packet sockets);
PACKET_IGNORE_OUTGOING keeps the frames the host itself sends on the
interface out of our receive path.

``fanout_group`` joins the socket to a PACKET_FANOUT group of that id
(one socket per worker process, ``ustack ... --workers N``): the kernel
hands each frame to one member, by ``fanout_mode`` (``"hash"``: the
symmetric flow hash, so both directions of a flow reach one worker);
``fanout_defrag`` has the kernel reassemble IPv4 fragments first, so the
fragments of a datagram are not spread over the members.  ``bpf_filter``,
a classic BPF program (``ustack.link.bpf``), has the kernel drop the frames
it refuses before they reach the socket.

``rx_from`` receives through another device's socket and ring instead of
opening its own: with ``--workers N`` the parent opens every worker's
fanout member once (``tx_frames=0``) and holds it across the worker's
lives, since the kernel picks a member by ``hash % members`` in the order
they joined, and a member that left and joined again would move the
flows of the others (cli/workers.py).  Such a device transmits through a
socket of its own, bound with protocol 0 (it receives nothing), with a
TX ring of its own: the kernel keeps its position in a TX ring to itself,
so an inherited one could not be taken over.  The receive ring is taken
over where the kernel left it (``RxRingV2.resync``).  ``close`` closes
this process's copy of both sockets.

The socket always has PACKET_VNET_HDR on: a received frame whose
checksum the kernel vouches for (verified, or partial because a local
sender with checksum offload built it: a veth peer with the default
offloads) comes out marked (``vnet.CsumOkFrame``, ``caps.rx_csum_marks``)
and is not verified again, and the TX ring copies whole frames instead of
lending its pages (see ``rings.TxRing``).  Super-frames (GRO/TSO, up to
64 KB) that do not fit a V2 slot are read whole from the socket's queue
(``rings.RxRingV2``).  ``vnet_hdr=True`` additionally advertises transmit
offloads in ``caps`` and enables ``send_gso``.
"""

from __future__ import annotations

import errno
import mmap
import socket
import struct
from collections.abc import Sequence

from ustack.link import bpf, vnet
from ustack.link.base import Capabilities, DeviceBase, Frame, no_vnet_hdr
from ustack.link.errors import LinkError, from_os_error, reason
from ustack.link.netif import interface_index, interface_mac, interface_mtu
from ustack.link.rings import (
    FrameTap,
    RxRingV2,
    RxRingV3,
    RxStats,
    SlotWriter,
    TxRing,
    slot_offsets,
)

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_COPY_THRESH = 7
PACKET_VERSION = 10
PACKET_TX_RING = 13
PACKET_LOSS = 14
PACKET_VNET_HDR = 15
PACKET_FANOUT = 18
PACKET_QDISC_BYPASS = 20
PACKET_IGNORE_OUTGOING = 23
# linux/if_packet.h: a flag in the upper half of PACKET_FANOUT's mode; the
# kernel reassembles IPv4 fragments before it picks a member, so every
# fragment of a datagram reaches the one socket its flow hashes to.
PACKET_FANOUT_FLAG_DEFRAG = 1 << 15
TPACKET_V2 = 1
TPACKET_V3 = 2
ETH_P_ALL = 0x0003
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33

FANOUT_MODES = {"hash": 0, "lb": 1, "cpu": 2, "rollover": 3, "rnd": 4, "qm": 5}

_REQ = struct.Struct("=4I")  # struct tpacket_req
_REQ3 = struct.Struct("=7I")  # struct tpacket_req3
_MREQ = struct.Struct("=iHH8s")  # struct packet_mreq
_STATS3 = struct.Struct("=III")  # struct tpacket_stats_v3 (V1/V2: first two)
_INT = struct.Struct("=i")

ETH_HLEN = 14
_RECV_SIZE = 65536 + ETH_HLEN + vnet.HDR_LEN
_GSO_MAX_FRAME = ETH_HLEN + 65535
_RX_MODES = ("v3", "v2", "none")
# A TPACKET_V3 block must hold a 64 KB super-frame whole (V3 frames are
# bounded by the block, not by a slot size): frame + virtio-net header +
# tpacket header and sockaddr_ll, 16-byte aligned.
_VNET_FRAME_SIZE = 65536 + 256


class PacketDevice(DeviceBase):
    """AF_PACKET device on ``ifname``; see the module doc for the modes."""

    # Counters of the device itself; ``stats()`` adds the rings' own.
    rx_kernel_drops = 0  # PACKET_STATISTICS: the kernel found the ring full
    rx_ring_freezes = 0  # PACKET_STATISTICS: TPACKET_V3 queue freezes
    tx_kick_errors = 0  # a TX ring kick failed; the frames wait for the next
    tx_link_down = 0  # ENETDOWN, ENXIO
    tx_invalid = 0  # the kernel refused the frame itself (EINVAL, EMSGSIZE)
    _closed: bool
    mode: str

    def __init__(
        self,
        ifname: str,
        *,
        rx_ring: str = "v2",
        block_size: int = 1 << 17,
        block_count: int = 32,
        frame_size: int = 2048,
        tx_frames: int = 1024,
        retire_ms: int = 1,
        qdisc_bypass: bool = True,
        promisc: bool = True,
        vnet_hdr: bool = False,
        fanout_group: int | None = None,
        fanout_mode: str = "hash",
        fanout_defrag: bool = False,
        bpf_filter: list[bpf.Insn] | None = None,
        rcvbuf: int = 4 << 20,
        rx_from: PacketDevice | None = None,
    ) -> None:
        self.name = ifname
        what = f"packet {ifname}"
        self._rx_from: PacketDevice | None = None  # set once open: close() closes it
        if rx_from is not None:
            if rx_from._closed or rx_from.name != ifname:
                raise LinkError(f"{what}: rx_from must be an open device on {ifname}")
            # The receive side is rx_from's; this socket only transmits.
            rx_ring = "v2" if rx_from.mode != "none" else "none"
            promisc = False
            fanout_group = None
            bpf_filter = None
        if rx_ring not in _RX_MODES:
            raise LinkError(f"{what}: rx_ring must be one of v3, v2, none, got {rx_ring!r}")
        if fanout_mode not in FANOUT_MODES:
            raise LinkError(f"{what}: unknown fanout_mode {fanout_mode!r}")
        page = mmap.PAGESIZE
        if rx_ring == "v3":
            # A veth peer with offloads on (the default, with or without our
            # own vnet_hdr) hands over coalesced (GRO) and TSO super-frames
            # of up to 64 KB: a V3 block must hold one whole.  V2 keeps
            # small slots and reads such frames from the queue
            # (PACKET_COPY_THRESH, rings.RxRingV2): with 64 KB slots its
            # ring had 32 of them, and a burst of short connections
            # overflowed it (bench_tcp's crr timeouts).
            block_size = max(block_size, -(-_VNET_FRAME_SIZE // page) * page)
        if block_size <= 0 or block_size % page or frame_size < 64 or frame_size % 16:
            raise LinkError(
                f"{what}: block_size must be a multiple of {page} and frame_size of 16 (>= 64)"
            )
        if frame_size > block_size or block_count < 1 or tx_frames < 0:
            raise LinkError(f"{what}: frame_size must fit a block; counts must be positive")
        self._ifindex = interface_index(ifname, "packet")
        self._hwaddr = interface_mac(ifname)
        mtu = interface_mtu(ifname)
        self._closed = True
        self._mm: mmap.mmap | None = None
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except OSError as exc:
            raise from_os_error(what, exc) from exc
        self._sock = sock
        self._rsock = sock if rx_from is None else rx_from._sock  # what receives
        self.mode = rx_ring if rx_from is None else rx_from.mode
        # With a TX ring mapped, the kernel takes any sendmsg() as a ring
        # kick and ignores its data (packet_sendmsg -> tpacket_snd), so the
        # GSO path, which must send a header of its own per frame, has no ring.
        use_tx_ring = rx_ring != "none" and tx_frames > 0 and not vnet_hdr
        self._rx: RxRingV3 | RxRingV2 | None = None
        self._tx: TxRing | None = None
        tx_blocks = 0
        step = "setup"
        try:
            step = "PACKET_VNET_HDR"
            sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            self._hlen = vnet.HDR_LEN
            if rx_ring != "none":
                step = "PACKET_VERSION"
                version = TPACKET_V3 if rx_ring == "v3" else TPACKET_V2
                sock.setsockopt(SOL_PACKET, PACKET_VERSION, version)
                fpb = block_size // frame_size
                rx_size = block_size * block_count if rx_from is None else 0
                tx_blocks = -(-tx_frames // fpb) if use_tx_ring else 0
                if tx_blocks:
                    # A frame the kernel finds malformed is skipped, not left
                    # to block the ring; must be set before any ring exists.
                    step = "PACKET_LOSS"
                    sock.setsockopt(SOL_PACKET, PACKET_LOSS, 1)
                if rx_size:
                    step = "PACKET_RX_RING"
                    if version == TPACKET_V3:
                        req = _REQ3.pack(block_size, block_count, frame_size,
                                         fpb * block_count, retire_ms, 0, 0)
                    else:
                        req = _REQ.pack(block_size, block_count, frame_size, fpb * block_count)
                    sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
                if tx_blocks:
                    step = "PACKET_TX_RING"
                    if version == TPACKET_V3:
                        req = _REQ3.pack(
                            block_size, tx_blocks, frame_size, fpb * tx_blocks, 0, 0, 0
                        )
                    else:
                        req = _REQ.pack(block_size, tx_blocks, frame_size, fpb * tx_blocks)
                    sock.setsockopt(SOL_PACKET, PACKET_TX_RING, req)
                total = rx_size + tx_blocks * block_size
                if total:
                    step = "mmap"
                    mm = mmap.mmap(
                        sock.fileno(), total, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
                    )
                    self._mm = mm
                if not rx_size:
                    pass  # the ring that receives is rx_from's
                elif version == TPACKET_V3:
                    self._rx = RxRingV3(mm, 0, block_size, block_count, self._hlen)
                else:
                    step = "PACKET_COPY_THRESH"
                    sock.setsockopt(SOL_PACKET, PACKET_COPY_THRESH, 1)
                    slots = slot_offsets(0, block_size, block_count, frame_size)
                    self._rx = RxRingV2(mm, slots, self._hlen, self._recv_copy)
                if tx_blocks:
                    slots = slot_offsets(rx_size, block_size, tx_blocks, frame_size)
                    self._tx = TxRing(mm, slots, frame_size, 3 if version == TPACKET_V3 else 2)
            # The queue: every frame without a ring, the whole copies of
            # super-frames with a V2 ring.
            step = "SO_RCVBUFFORCE"
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
            except PermissionError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if tx_blocks:
                # Every frame sent from the ring is charged to the socket's
                # send buffer until it is freed (skb_set_owner_w); with the
                # default (212992 bytes, ~200 small frames at their truesize)
                # a kick finds no room (EAGAIN) while the frames of the last
                # ones are still on their way (the receiver on another core):
                # room for the whole ring, a frame's truesize being at most
                # its slot plus an skb's overhead (a SYN flood to a sink on
                # another core: 1.0 -> 1.07-1.11 M frames/s, half the kicks
                # finding the ring full).
                step = "SO_SNDBUFFORCE"
                sndbuf = tx_blocks * fpb * (frame_size + 1024)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, sndbuf)
                except PermissionError:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            if qdisc_bypass:
                step = "PACKET_QDISC_BYPASS"
                sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
            step = "PACKET_IGNORE_OUTGOING"
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            if bpf_filter is not None:
                step = "SO_ATTACH_FILTER"  # before the bind: no frame passes unfiltered
                bpf.attach(sock, bpf_filter)
            step = "bind"
            # Protocol 0 binds the device for sending and hooks nothing to
            # receive: the frames come through rx_from's socket.
            sock.bind((ifname, ETH_P_ALL if rx_from is None else 0))
            if promisc:
                step = "promiscuous membership"
                mreq = _MREQ.pack(self._ifindex, PACKET_MR_PROMISC, 0, b"")
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            if fanout_group is not None:
                step = "PACKET_FANOUT"
                mode = FANOUT_MODES[fanout_mode]
                if fanout_defrag:
                    mode |= PACKET_FANOUT_FLAG_DEFRAG
                arg = (fanout_group & 0xFFFF) | (mode << 16)
                # As 4 bytes: with the defrag flag the value passes INT_MAX,
                # which setsockopt's int argument refuses.
                sock.setsockopt(SOL_PACKET, PACKET_FANOUT, struct.pack("=I", arg))
            sock.setblocking(False)
        except OSError as exc:
            self._release()
            if exc.errno in (errno.ENODEV, errno.ENXIO):
                raise LinkError(f"packet: no such interface {ifname}", exc.errno) from exc
            raise from_os_error(f"{what}: {step}", exc) from exc
        except BaseException:
            self._release()
            raise
        if rx_from is not None:
            self._rx_from = rx_from
            self._rx = rx_from._rx
            if self._rx is not None:
                self._rx.resync()
        self._closed = False
        self._vnet = vnet_hdr
        tx_max = self._tx.max_frame if self._tx is not None else _GSO_MAX_FRAME
        self._caps = Capabilities(
            mtu=mtu,
            max_frame=min(tx_max, _GSO_MAX_FRAME) if vnet_hdr else mtu + ETH_HLEN,
            vnet_hdr=vnet_hdr,
            vnet_hdr_len=self._hlen if vnet_hdr else 0,
            csum_tx=vnet_hdr,
            tso=vnet_hdr,
            # The header is read on every socket (PACKET_VNET_HDR above):
            # its NEEDS_CSUM and DATA_VALID flags are what PACKET_AUXDATA's
            # TP_STATUS_CSUMNOTREADY and TP_STATUS_CSUM_VALID would say.
            rx_csum_marks=True,
        )
        self._zero_hdr = vnet.zero_header(self._hlen)
        self._none_rx = RxStats()

    # -- Device protocol -------------------------------------------------

    def fileno(self) -> int:
        if self._closed:
            raise LinkError(f"packet {self.name}: closed")
        return self._rsock.fileno()

    def pending(self) -> bool:
        """True when ``recv_batch`` would return a frame (ring modes only)."""
        return self._rx.pending() if self._rx is not None and not self._closed else False

    def recv_batch(self, max_frames: int, now: float) -> list[bytes]:
        if self._closed:
            raise LinkError(f"packet {self.name}: closed")
        rx = self._rx
        out = rx.recv(max_frames) if rx is not None else self._recv_plain(max_frames)
        if out:
            self.rx_frames += len(out)
            self.rx_bytes += sum(map(len, out))
        return out

    def _recv_plain(self, max_frames: int) -> list[bytes]:
        recv = self._rsock.recv
        raw: list[bytes] = []
        append = raw.append
        try:
            for _ in range(max_frames):
                append(recv(_RECV_SIZE))
        except BlockingIOError:
            pass
        except OSError as exc:
            if not raw:
                raise from_os_error(f"packet {self.name}: recv", exc) from exc
        out, bad, trusted = vnet.strip_batch(raw, self._hlen)
        c = self._none_rx
        c.bad_vnet_hdr += bad
        c.csum_trusted += trusted
        return out

    def _recv_copy(self) -> bytes | None:
        """The whole frame the kernel queued for a V2 slot too small for it
        (TP_STATUS_COPY), or None if the queue is unexpectedly empty."""
        try:
            raw = self._rsock.recv(_RECV_SIZE)
        except OSError:
            return None
        out, bad, trusted = vnet.strip_batch([raw], self._hlen)
        st = self._rx.st if self._rx is not None else self._none_rx
        st.bad_vnet_hdr += bad
        st.csum_trusted += trusted
        return out[0] if out else None

    def send_batch(self, frames: Sequence[Frame], now: float) -> int:
        if self._closed:
            raise LinkError(f"packet {self.name}: closed")
        tx = self._tx
        if tx is None:
            zero = self._zero_hdr
            return self._sendmsg([(zero, f) for f in frames])
        queued = tx.put(frames)
        if queued:
            self._kick()
        return queued

    def set_rx_tap(self, tap: FrameTap | None) -> bool:
        """Have ``tap`` see received frames in the ring before they are
        copied out (``rings.FrameTap``), or stop (None); False when the
        device has no TPACKET_V2 ring (V3 and plain receive have no tap)."""
        if not isinstance(self._rx, RxRingV2):
            return False
        self._rx.tap = tap
        return True

    def slot_prefix(self, frame_len: int) -> bytes | None:
        """What a ``SlotWriter`` writes before a frame of ``frame_len``
        bytes in a transmit slot (``TxRing.slot_prefix``), or None when the
        device has no TX ring (``rx_ring="none"``, ``vnet_hdr``): then
        there is no ``send_written``, frames go through ``send_batch``."""
        return self._tx.slot_prefix(frame_len) if self._tx is not None else None

    def send_written(self, writer: SlotWriter, n: int, frame_len: int, now: float) -> int:
        """Up to ``n`` frames of ``frame_len`` bytes written by ``writer``
        straight into free transmit slots (``TxRing.put_written``), then one
        kick; how many were written.  Fewer than ``n`` when the ring is
        full: the kernel frees slots as it transmits them."""
        if self._closed:
            raise LinkError(f"packet {self.name}: closed")
        tx = self._tx
        if tx is None:
            raise LinkError(f"packet {self.name}: no TX ring (send_written)")
        queued = tx.put_written(writer, n, frame_len)
        if queued:
            self._kick()
        return queued

    def kick(self) -> None:
        """A kick with nothing new queued, for a sender that found the ring
        full: the kernel frees slots as it releases the frames, on the CPU
        that sent them, in work it runs on the way out of a system call (or
        at the next interrupt); a sender spinning in user space for free
        slots leaves it none (with the receiver's work on another core,
        RPS, a flood stalled at 3,800 SYNs/s)."""
        if self._tx is not None and not self._closed:
            self._kick(empty=True)

    def send_gso(self, items: Sequence[tuple[bytes, Frame]], now: float) -> int:
        """Transmit frames that each carry a prepared 10-byte vnet header.

        Goes through ``sendmsg`` (a copy per frame), not the TX ring: a GSO
        super-frame's payload would otherwise be lent from ring pages.
        """
        if self._closed:
            raise LinkError(f"packet {self.name}: closed")
        if not self._vnet:
            raise no_vnet_hdr(f"packet {self.name}")
        return self._sendmsg(items)

    def _sendmsg(self, items: Sequence[tuple[bytes, Frame]]) -> int:
        sendmsg = self._sock.sendmsg
        hlen = self._hlen
        sent = 0
        nbytes = 0
        for i, item in enumerate(items):
            try:
                nbytes += sendmsg(item) - hlen
                sent += 1
            except OSError as exc:
                code = exc.errno
                if code in (errno.EINVAL, errno.EMSGSIZE):
                    self.tx_invalid += 1
                    continue
                remaining = len(items) - i
                if code in (errno.EAGAIN, errno.ENOBUFS, errno.ENOMEM):
                    self.tx_queue_full += remaining
                elif code in (errno.ENETDOWN, errno.ENXIO):
                    self.tx_link_down += remaining
                else:
                    raise LinkError(f"packet {self.name}: send: {reason(exc)}", code) from exc
                break
        self.tx_frames += sent
        self.tx_bytes += nbytes
        return sent

    def _kick(self, empty: bool = False) -> None:
        """Ask the kernel to transmit every slot marked SEND_REQUEST.
        ``empty``: none is (``kick``); the kernel then says EAGAIN while
        frames sent before are still on their way, which is no error."""
        try:
            self._sock.send(b"", socket.MSG_DONTWAIT)
        except BlockingIOError:
            if not empty:
                self.tx_kick_errors += 1
        except OSError as exc:
            # The frames stay queued in the ring and go with the next kick.
            if exc.errno in (errno.ENETDOWN, errno.ENXIO):
                self.tx_link_down += 1
            else:
                self.tx_kick_errors += 1

    def _kernel_stats(self) -> None:
        # Reading PACKET_STATISTICS resets the kernel's counters: accumulate.
        try:
            raw = self._rsock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS3.size)
        except OSError:
            return
        if len(raw) >= 8:
            raw = raw.ljust(_STATS3.size, b"\0")
            _packets, drops, freezes = _STATS3.unpack(raw)
            self.rx_kernel_drops += drops
            self.rx_ring_freezes += freezes

    def stats(self) -> dict[str, int]:
        if not self._closed:
            self._kernel_stats()
        rx = self._rx.st if self._rx is not None else self._none_rx
        tx = self._tx
        return {
            "rx_frames": self.rx_frames,
            "rx_bytes": self.rx_bytes,
            "rx_truncated": rx.truncated,
            "rx_copied": rx.copied,
            "rx_csum_trusted": rx.csum_trusted,
            "rx_bad_vnet_hdr": rx.bad_vnet_hdr,
            "rx_tapped": rx.tapped,
            "rx_ring_holes": rx.holes,
            "rx_kernel_drops": self.rx_kernel_drops,
            "rx_ring_freezes": self.rx_ring_freezes,
            "tx_frames": self.tx_frames + (tx.frames if tx else 0),
            "tx_bytes": self.tx_bytes + (tx.bytes if tx else 0),
            "tx_ring_full": tx.ring_full if tx else 0,
            "tx_oversize": tx.oversize if tx else 0,
            "tx_runt": tx.runt if tx else 0,
            "tx_wrong_format": tx.wrong_format if tx else 0,
            "tx_queue_full": self.tx_queue_full,
            "tx_kick_errors": self.tx_kick_errors,
            "tx_link_down": self.tx_link_down,
            "tx_invalid": self.tx_invalid,
        }

    def _release(self) -> None:
        self._rx = None
        self._tx = None
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        self._sock.close()
        rx_from, self._rx_from = self._rx_from, None
        if rx_from is not None:
            rx_from.close()  # this process's copy: the parent's stays open

    def close(self) -> None:
        """Unmap the rings and close the socket; safe to call twice."""
        if not self._closed:
            self._closed = True
            self._release()

    def __repr__(self) -> str:
        return f"PacketDevice({self.name!r}, rx_ring={self.mode!r})"
