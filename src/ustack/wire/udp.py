"""The UDP header (RFC 768) and its checksum over the IPv4 pseudo-header."""

from __future__ import annotations

import struct
from typing import NamedTuple

from ustack.wire.checksum import sum_mod
from ustack.wire.errors import ParseError

HEADER = struct.Struct("!HHHH")
HEADER_LEN = 8
PROTO_UDP = 17

_unpack_from = HEADER.unpack_from
_pack_into = HEADER.pack_into
_pack = HEADER.pack
_from_bytes = int.from_bytes
_tuple_new = tuple.__new__

__all__ = ["HEADER", "HEADER_LEN", "UdpHeader", "build", "pack_header_into", "parse"]


class UdpHeader(NamedTuple):
    sport: int
    dport: int
    length: int
    """Header + payload length from the header; the payload is ``data[8:length]``."""
    checksum: int


def parse(
    data: bytes | bytearray | memoryview, src: bytes | None = None, dst: bytes | None = None
) -> UdpHeader:
    """Parse a whole datagram (header + payload, IP padding already removed).

    The checksum is verified only when both ``src`` and ``dst`` are given and
    the field is non-zero (RFC 768: zero means "no checksum").  Raises
    ParseError with reason udp_short, udp_length or udp_checksum.
    """
    n = len(data)
    if n < 8:
        raise ParseError("udp_short", f"{n} bytes")
    hdr = _unpack_from(data, 0)
    length = hdr[2]
    if length < 8 or length > n:
        raise ParseError("udp_length", f"{length} (have {n})")
    if src is not None and dst is not None and hdr[3]:
        # Pseudo-header (RFC 768) + the datagram must sum to all ones, which
        # is 0 mod 0xFFFF (never the empty sum: the protocol field is 17).
        v = sum_mod(data if length == n else data[:length])
        if (v + _from_bytes(src + dst, "big") + PROTO_UDP + length) % 0xFFFF:
            raise ParseError("udp_checksum", f"{hdr[3]:#06x}")
    return _tuple_new(UdpHeader, hdr)


def _checksum(src: bytes, dst: bytes, sport: int, dport: int, length: int,
              payload: bytes | bytearray | memoryview) -> int:
    # Pseudo-header (addresses, protocol, length) + header + payload.
    s = sum_mod(payload) + _from_bytes(src + dst, "big") + PROTO_UDP + length
    s += sport + dport + length
    r = s % 0xFFFF
    # r == 0: the folded sum is 0xFFFF and its complement 0, which RFC 768
    # reserves for "no checksum"; send the other zero, 0xFFFF.  The sum is
    # never truly zero because the pseudo-header protocol field is 17.
    return 0xFFFF - r if r else 0xFFFF


def pack_header_into(
    buf: bytearray | memoryview,
    offset: int,
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    payload: bytes | bytearray | memoryview,
) -> None:
    """Write the 8-byte header with its checksum at ``buf[offset:]``.

    The payload itself is not copied: the caller places it after the header
    (it is only read to compute the checksum).
    """
    length = 8 + len(payload)
    csum = _checksum(src, dst, sport, dport, length, payload)
    _pack_into(buf, offset, sport, dport, length, csum)


def build(
    src: bytes, dst: bytes, sport: int, dport: int, payload: bytes | bytearray | memoryview
) -> bytes:
    """Header (with checksum) + payload."""
    length = 8 + len(payload)
    return _pack(sport, dport, length, _checksum(src, dst, sport, dport, length, payload)) + payload
