"""The virtio-net header that TAP (IFF_VNET_HDR) and AF_PACKET (PACKET_VNET_HDR)
put in front of every frame when offloads are on.

Layout (virtio spec 1.x, 5.1.6 "Device Operation"; Linux
include/uapi/linux/virtio_net.h), in host byte order on a little-endian host
(legacy virtio and tun/packet without TUNSETVNETBE use the CPU's order)::

    u8  flags        VIRTIO_NET_HDR_F_NEEDS_CSUM, _DATA_VALID
    u8  gso_type     NONE, TCPV4, UDP, TCPV6, UDP_L4 (| ECN)
    u16 hdr_len      bytes of headers in front of the payload (GSO)
    u16 gso_size     payload bytes per segment (GSO)
    u16 csum_start   where the partial checksum's coverage starts
    u16 csum_offset  where from csum_start the checksum field is
    u16 num_buffers  only in the 12-byte "mergeable rx buffers" form

A frame marked NEEDS_CSUM carries, in its checksum field, the folded
pseudo-header sum; whoever completes it sums from ``csum_start`` to the end
of the frame and stores the complement there (the same rule as the kernel's
skb_checksum_help, which also writes 0xFFFF for a result of 0, as RFC 768
demands for UDP and as is harmless for TCP).
"""

from __future__ import annotations

import struct

from ustack.wire.checksum import ones_sum

F_NEEDS_CSUM = 1
F_DATA_VALID = 2

GSO_NONE = 0
GSO_TCPV4 = 1
GSO_UDP = 3
GSO_TCPV6 = 4
GSO_UDP_L4 = 5
GSO_ECN = 0x80

# "=" is native order with standard sizes and no padding: see module doc.
HDR = struct.Struct("=BBHHHH")
HDR_MRG = struct.Struct("=BBHHHHH")
HDR_LEN = HDR.size  # 10: AF_PACKET with PACKET_VNET_HDR
HDR_MRG_LEN = HDR_MRG.size  # 12: what TAP is set to with TUNSETVNETHDRSZ

_CSUM = struct.Struct("!H")


class CsumOkFrame(bytes):
    """A received frame whose transport checksum needs no verification.

    The kernel says so in the virtio-net header: DATA_VALID (it verified the
    checksum) or NEEDS_CSUM (it built the packet itself and left the
    checksum partial, as for its own TSO/GRO super-frames: the data never
    crossed a wire).  Verifying, or first completing, a 64 KB super-frame
    in Python costs more than everything else TCP does with it
    (docs/architecture.md, principle 6: skip checksums the header marks valid).  A partial
    checksum stays in the frame as the kernel left it.
    """

    __slots__ = ()


def rx_frame(flags: int, frame: bytes | memoryview) -> bytes:
    """``frame`` as received behind a header with ``flags``, marked if trusted.

    Pass a memoryview of the received buffer: the frame is then copied once
    (a super-frame is 64 KB), not sliced out and copied again.
    """
    if flags & (F_NEEDS_CSUM | F_DATA_VALID):
        return CsumOkFrame(frame)
    return bytes(frame)


def strip_batch(raw: list[bytes], hlen: int) -> tuple[list[bytes], int, int]:
    """Frames received behind ``hlen``-byte headers, without them.

    Returns ``(frames, bad, trusted)``: frames too short to hold a header
    are dropped and counted as ``bad``; those the kernel vouches for are
    marked (``rx_frame``) and counted as ``trusted``.
    """
    out: list[bytes] = []
    append = out.append
    bad = trusted = 0
    for data in raw:
        if len(data) <= hlen:
            bad += 1
            continue
        flags = data[0]
        if flags:
            trusted += 1
            append(rx_frame(flags, memoryview(data)[hlen:]))
        else:
            append(data[hlen:])
    return out, bad, trusted


class GsoFrame(bytearray):
    """A frame that travels with its own virtio-net header (``vnet``).

    The transport that builds a super-frame (or asks for a partial
    checksum) attaches the header here, so it stays with the frame through
    ARP's pending queue; the Stack's flush hands such batches to the
    device's ``send_gso``.
    """

    __slots__ = ("vnet",)

    def __init__(self, size: int, vnet: bytes) -> None:
        super().__init__(size)
        self.vnet = vnet


def zero_header(hlen: int) -> bytes:
    """A header that claims nothing: a complete, ordinary frame follows."""
    return bytes(hlen)


def gso_header(
    hlen: int,
    *,
    csum_start: int,
    csum_offset: int,
    gso_type: int = GSO_NONE,
    gso_size: int = 0,
    hdr_len: int = 0,
) -> bytes:
    """A header asking the kernel to finish the checksum (and cut segments).

    The frame behind it must hold the folded pseudo-header sum in its
    checksum field.  With ``gso_type`` TCPV4 and ``gso_size`` = MSS the
    kernel cuts the payload into MSS-sized segments, fixing IP ids, lengths,
    sequence numbers and checksums (it is the sender's TSO).
    """
    if hlen == HDR_LEN:
        return HDR.pack(F_NEEDS_CSUM, gso_type, hdr_len, gso_size, csum_start, csum_offset)
    if hlen == HDR_MRG_LEN:
        return HDR_MRG.pack(F_NEEDS_CSUM, gso_type, hdr_len, gso_size, csum_start, csum_offset, 0)
    raise ValueError(f"vnet header length must be {HDR_LEN} or {HDR_MRG_LEN}, got {hlen}")


def finish_csum(frame: bytes, csum_start: int, csum_offset: int) -> bytes | None:
    """``frame`` with its partial checksum finished; None if the offsets do not fit.

    The field at ``csum_start + csum_offset`` holds the pseudo-header sum, so
    summing everything from ``csum_start`` (field included) gives the full
    one's-complement sum whose complement is the checksum (RFC 1071).
    """
    pos = csum_start + csum_offset
    if pos + 2 > len(frame):
        return None
    c = ~ones_sum(memoryview(frame)[csum_start:]) & 0xFFFF
    return frame[:pos] + _CSUM.pack(c or 0xFFFF) + frame[pos + 2 :]


def strip_rx(data: bytes, hlen: int) -> tuple[bytes | None, bool]:
    """The frame behind a received header, with any partial checksum finished.

    Returns ``(frame, completed)``; ``frame`` is None when the header is
    malformed (offsets outside the frame), which the caller counts as a drop.
    """
    if len(data) < hlen:
        return None, False
    if not data[0] & F_NEEDS_CSUM:
        return data[hlen:], False
    _, _, _, _, start, off = HDR.unpack_from(data)
    # Work on ``data`` in place of a cut copy: one concatenation builds the
    # finished frame.
    pos = hlen + start + off
    if pos + 2 > len(data):
        return None, False
    c = ~ones_sum(memoryview(data)[hlen + start :]) & 0xFFFF
    return data[hlen:pos] + _CSUM.pack(c or 0xFFFF) + data[pos + 2 :], True
