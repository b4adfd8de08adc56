"""A Linux TAP device: the kernel sees an Ethernet interface, we hold its fd.

Frames the kernel transmits on the interface are read from the fd; frames we
write to the fd arrive at the kernel as if received on the wire
(Documentation/networking/tuntap.rst).  The kernel's side of the interface
has its own MAC and addresses; the stack on our side brings its own MAC and
IP ("IP per process"), so ``hwaddr`` is None.

With ``vnet_hdr=True`` every frame crosses the fd behind a 12-byte virtio-net
header (see ``ustack.link.vnet``).  With ``offload=True`` we also tell the
kernel (TUNSETOFFLOAD) that we accept partial checksums and TSO super-frames,
which saves the kernel its per-packet checksum and segmentation work; we then
finish partial checksums ourselves on receive so the stack always sees
complete frames (counted in ``rx_csum_completed``).  Receive may then deliver
TCP frames up to 64 KiB, larger than the MTU.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from collections.abc import Sequence

from ustack.link import vnet
from ustack.link.base import Capabilities, DeviceBase, Frame, no_vnet_hdr
from ustack.link.errors import LinkError, from_os_error, reason
from ustack.link.netif import (
    check_ifname,
    configure_host_side,
    interface_index,
    interface_mac,
    interface_mtu,
    set_mtu,
)

__all__ = [
    "TapDevice",
    "configure_host_side",
    "interface_index",
    "interface_mac",
]

TUN_PATH = "/dev/net/tun"

# linux/if_tun.h: _IOW('T', n, int) = 0x40045400 | n
TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8

IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
IFF_MULTI_QUEUE = 0x0100

TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04

_IFREQ_FLAGS = struct.Struct("16sH22x")
_INT = struct.Struct("i")

ETH_HLEN = 14
# Largest frame the fd can hand us: a 64 KiB IP packet (GSO) plus headers.
_READ_SIZE = 65536 + ETH_HLEN + vnet.HDR_MRG_LEN
# A TCP/IPv4 super-frame is bounded by the 16-bit IP total length.
_GSO_MAX_FRAME = ETH_HLEN + 65535


class TapDevice(DeviceBase):
    """A TAP interface ``name`` (created unless ``create=False``).

    ``mtu`` is applied to the interface when it differs.  ``multi_queue``
    opens one queue of an IFF_MULTI_QUEUE device, so N processes can each
    open the same name and the kernel spreads flows over them by hash.
    ``hwaddr`` is None: the interface's MAC belongs to the kernel side (see
    the module doc and ``kernel_mac``).
    """

    COUNTERS = (
        "rx_frames",
        "rx_bytes",
        "rx_csum_completed",
        "rx_csum_trusted",
        "rx_bad_vnet_hdr",
        "tx_frames",
        "tx_bytes",
        "tx_queue_full",
        "tx_link_down",
        "tx_invalid",
    )
    rx_csum_completed = 0
    rx_csum_trusted = 0  # frames the kernel vouches for (vnet.CsumOkFrame)
    rx_bad_vnet_hdr = 0  # shorter than the virtio-net header
    tx_link_down = 0  # the interface was down (EIO)
    tx_invalid = 0  # the kernel refused the frame itself (EINVAL, EMSGSIZE, EFAULT)

    def __init__(
        self,
        name: str,
        *,
        vnet_hdr: bool = False,
        mtu: int = 1500,
        create: bool = True,
        offload: bool = True,
        multi_queue: bool = False,
    ) -> None:
        raw = check_ifname(name)
        self.name = name
        self._fd = -1
        if not create:
            interface_index(name, "tap")  # raises "no such interface" early
        try:
            fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise from_os_error(f"tap: {TUN_PATH}", exc) from exc
        flags = IFF_TAP | IFF_NO_PI
        if vnet_hdr:
            flags |= IFF_VNET_HDR
        if multi_queue:
            flags |= IFF_MULTI_QUEUE
        try:
            try:
                res = fcntl.ioctl(fd, TUNSETIFF, _IFREQ_FLAGS.pack(raw, flags))
            except OSError as exc:
                if exc.errno == errno.EBUSY:
                    raise LinkError(
                        f"tap {name}: device busy (another process holds it)", exc.errno
                    ) from exc
                if exc.errno == errno.EINVAL:
                    raise LinkError(
                        f"tap {name}: kernel refused the device (an existing non-TAP "
                        "interface, or a multi_queue mismatch?)",
                        exc.errno,
                    ) from exc
                raise from_os_error(f"tap {name}", exc) from exc
            self.name = res[:16].rstrip(b"\0").decode()
            offload_flags = 0
            if vnet_hdr:
                try:
                    fcntl.ioctl(fd, TUNSETVNETHDRSZ, _INT.pack(vnet.HDR_MRG_LEN))
                    if offload:
                        offload_flags = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6
                    fcntl.ioctl(fd, TUNSETOFFLOAD, offload_flags)
                except OSError as exc:
                    raise from_os_error(f"tap {self.name}: vnet header setup", exc) from exc
            if interface_mtu(self.name) != mtu:
                set_mtu(self.name, mtu)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._vnet = vnet_hdr
        self._hlen = vnet.HDR_MRG_LEN if vnet_hdr else 0
        self._zero_hdr = vnet.zero_header(self._hlen)
        # With virtio-net headers a read may bring a 64 KB super-frame (GRO):
        # such reads go into this one buffer, reused (see _recv_vnet).
        self._rx_buf = bytearray(_READ_SIZE if vnet_hdr else 0)
        self._rx_view = memoryview(self._rx_buf)
        self._caps = Capabilities(
            mtu=mtu,
            max_frame=_GSO_MAX_FRAME if vnet_hdr else mtu + ETH_HLEN,
            vnet_hdr=vnet_hdr,
            vnet_hdr_len=self._hlen,
            # Transmit offloads need only the header: the kernel honours
            # NEEDS_CSUM and gso_type on any frame we write.
            csum_tx=vnet_hdr,
            tso=vnet_hdr,
            rx_csum_marks=vnet_hdr,
        )
        self.offload_flags = offload_flags

    # -- Device protocol -------------------------------------------------

    def kernel_mac(self) -> bytes:
        """The MAC of the kernel's side of the TAP."""
        return interface_mac(self.name)

    def fileno(self) -> int:
        if self._fd < 0:
            raise LinkError(f"tap {self.name}: closed")
        return self._fd

    def recv_batch(self, max_frames: int, now: float) -> list[bytes]:
        if self._vnet:
            return self._recv_vnet(max_frames)
        fd = self._fd
        out: list[bytes] = []
        append = out.append
        read = os.read
        try:
            for _ in range(max_frames):
                append(read(fd, _READ_SIZE))
        except BlockingIOError:
            pass
        except OSError as exc:
            self._rx_error(exc, bool(out))
        if not out:
            return out
        self.rx_frames += len(out)
        self.rx_bytes += sum(map(len, out))
        return out

    def _recv_vnet(self, max_frames: int) -> list[bytes]:
        """Read frames behind virtio-net headers; as ``vnet.strip_batch`` does
        with what ``os.read`` returns, without allocating 64 KB per read.

        ``os.read`` would allocate a read-sized object per frame and shrink
        it; with super-frames, the heap is then trimmed and grown again
        (brk, page faults) under a stream.  Each frame is copied out of the
        reused buffer instead: ``vnet.rx_frame`` copies it anyway (the same
        copies as from ``os.read``'s object).
        """
        fd = self._fd
        bufs = (self._rx_buf,)
        view = self._rx_view
        hlen = self._hlen
        out: list[bytes] = []
        append = out.append
        readv = os.readv
        bad = trusted = 0
        try:
            for _ in range(max_frames):
                n = readv(fd, bufs)
                if n <= hlen:
                    bad += 1  # too short to hold the header: dropped
                    continue
                flags = view[0]
                if flags:
                    trusted += 1
                    append(vnet.rx_frame(flags, view[hlen:n]))
                else:
                    append(bytes(view[hlen:n]))
        except BlockingIOError:
            pass
        except OSError as exc:
            self._rx_error(exc, bool(out) or bad > 0)
        self.rx_bad_vnet_hdr += bad
        self.rx_csum_trusted += trusted
        if out:
            self.rx_frames += len(out)
            self.rx_bytes += sum(map(len, out))
        return out

    def _rx_error(self, exc: OSError, got: bool) -> None:
        """A failed read; with frames in hand (``got``) they are delivered
        first, as the error repeats on the next call."""
        if got:
            return
        if self._fd < 0:
            raise LinkError(f"tap {self.name}: closed") from exc
        raise from_os_error(f"tap {self.name}: read", exc) from exc

    def send_batch(self, frames: Sequence[Frame], now: float) -> int:
        if self._vnet:
            zero = self._zero_hdr
            return self._writev([(zero, f) for f in frames])
        fd = self._fd
        write = os.write
        sent = 0
        nbytes = 0
        for i, f in enumerate(frames):
            try:
                nbytes += write(fd, f)
                sent += 1
            except OSError as exc:
                if not self._tx_error(exc, len(frames) - i):
                    break
        self.tx_frames += sent
        self.tx_bytes += nbytes
        return sent

    def send_gso(self, items: Sequence[tuple[bytes, Frame]], now: float) -> int:
        """Transmit frames that each carry a prepared virtio-net header.

        Build headers with ``vnet.gso_header(12, ...)``; the kernel finishes
        checksums (NEEDS_CSUM) and cuts super-frames (gso_type/gso_size).
        """
        if not self._vnet:
            raise no_vnet_hdr(f"tap {self.name}")
        return self._writev(items)

    def _writev(self, items: Sequence[tuple[bytes, Frame]]) -> int:
        fd = self._fd
        writev = os.writev
        hlen = self._hlen
        sent = 0
        nbytes = 0
        for i, item in enumerate(items):
            try:
                nbytes += writev(fd, item) - hlen
                sent += 1
            except OSError as exc:
                if not self._tx_error(exc, len(items) - i):
                    break
        self.tx_frames += sent
        self.tx_bytes += nbytes
        return sent

    def _tx_error(self, exc: OSError, remaining: int) -> bool:
        """Count a failed write; True to go on with the next frame."""
        code = exc.errno
        if code == errno.EINVAL or code == errno.EMSGSIZE or code == errno.EFAULT:
            self.tx_invalid += 1  # this frame is bad; the next may be fine
            return True
        if code in (errno.EAGAIN, errno.ENOBUFS, errno.ENOMEM):
            self.tx_queue_full += remaining
            return False
        if code == errno.EIO:
            # The interface is down (tun_get_user refuses writes then).
            self.tx_link_down += remaining
            return False
        if self._fd < 0:
            raise LinkError(f"tap {self.name}: closed") from exc
        raise LinkError(f"tap {self.name}: write: {reason(exc)}", code) from exc

    def close(self) -> None:
        """Release the fd; a non-persistent TAP disappears with it."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __repr__(self) -> str:
        return f"TapDevice({self.name!r}, vnet_hdr={self._vnet})"
