"""The UDP header (RFC 768) and its checksum over the IPv4 pseudo-header."""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from ustack.wire.checksum import sum_mod, sum_pair, sum_span
from ustack.wire.errors import ParseError

HEADER: Final = struct.Struct("!HHHH")
HEADER_LEN: Final = 8
PROTO_UDP: Final = 17

__all__ = ["HEADER", "HEADER_LEN", "UdpHeader", "build", "pack_header_into", "parse",
           "parse_sum"]


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
    if src is None or dst is None:
        sport, dport, length, csum, _ = parse_sum(data, b"", b"", True)
    else:
        sport, dport, length, csum, _ = parse_sum(data, src, dst)
    return UdpHeader(sport, dport, length, csum)


def parse_sum(data: bytes | bytearray | memoryview, src: bytes, dst: bytes,
              trusted: int = 0) -> tuple[int, int, int, int, int]:
    """``parse`` for the receive path: (sport, dport, length, checksum, payload sum).

    ``src`` and ``dst`` are the IPv4 addresses of the pseudo-header, read
    only when the checksum is verified: not when ``trusted`` (a frame the
    kernel vouched for) nor when the field is zero.  The payload sum is the
    payload read as one integer modulo 0xFFFF (``checksum.sum_mod``), a
    by-product of verifying, or -1 when nothing was verified: an
    application that sends the same bytes back passes it on and they are
    never summed twice (RFC 1071 2(B): sums compose).
    """
    # (Read as bytes: compiled, its bytes are then read natively.)
    return _parse_sum(data if isinstance(data, bytes) else bytes(data), src, dst, trusted)


def _parse_sum(data: bytes, src: bytes, dst: bytes, trusted: int) -> tuple[int, int, int, int, int]:
    n = len(data)
    if n < 8:
        raise ParseError("udp_short", f"{n} bytes")
    # The four 16-bit fields read byte by byte: compiled, native integer
    # reads of the bytes object, no tuple of boxed values.
    sport = (data[0] << 8) | data[1]
    dport = (data[2] << 8) | data[3]
    length = (data[4] << 8) | data[5]
    csum = (data[6] << 8) | data[7]
    if length < 8 or length > n:
        raise ParseError("udp_length", f"{length} (have {n})")
    if csum and not trusted:
        # Pseudo-header (RFC 768) + the datagram must sum to all ones, which
        # is 0 mod 0xFFFF (never the empty sum: the protocol field is 17);
        # the addresses' sum is their words' (RFC 1071 2(B)), summed in
        # place: as one 8-byte integer they are past mypyc's 63-bit native ints.
        v = sum_span(data, 0, length)
        if (v + PROTO_UDP + length + sum_pair(src, dst)) % 0xFFFF:
            raise ParseError("udp_checksum", f"{csum:#06x}")
        # The header is four 16-bit words, so the payload's own sum is the
        # datagram's minus theirs (RFC 1071 2(B)).
        return sport, dport, length, csum, (v - sport - dport - length - csum) % 0xFFFF
    return sport, dport, length, csum, -1


def pack_header_into(
    buf: bytearray | memoryview,
    offset: int,
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    payload: bytes | bytearray | memoryview,
    payload_sum: int = -1,
    addr_sum: int = -1,
) -> None:
    """Write the 8-byte header with its checksum at ``buf[offset:]``.

    The payload itself is not copied: the caller places it after the header
    (it is only read to compute the checksum).  ``payload_sum``, when >= 0,
    is ``checksum.sum_mod(payload)`` known already; ``addr_sum``, when >= 0,
    is ``src + dst`` read as one integer (the route cache keeps it), or any
    value congruent to it modulo 0xFFFF.
    """
    length = 8 + len(payload)
    # Pseudo-header (addresses, protocol, length) + header + payload, from
    # sums of field values (RFC 1071 2(B)) and the given sums where known.
    if payload_sum < 0:
        payload_sum = sum_mod(payload)
    if addr_sum < 0:
        addr_sum = int.from_bytes(src + dst, "big")
    # addr_sum reduced first: 8 address bytes are past mypyc's 63-bit native
    # ints, and every sum with it would be a long-integer operation.
    r = (payload_sum + addr_sum % 0xFFFF + PROTO_UDP + length + sport + dport + length) % 0xFFFF
    # The checksum is 0xFFFF - r, in 1..0xFFFF: never 0, which RFC 768
    # reserves for "no checksum".  (r == 0: the folded sum is 0xFFFF, whose
    # complement 0 is sent as the other zero, 0xFFFF; the sum is never truly
    # zero because the pseudo-header protocol field is 17.)
    HEADER.pack_into(buf, offset, sport, dport, length, 0xFFFF - r)


def build(
    src: bytes, dst: bytes, sport: int, dport: int, payload: bytes | bytearray | memoryview
) -> bytes:
    """Header (with checksum) + payload, the payload copied once (into the result)."""
    hdr = bytearray(8)
    pack_header_into(hdr, 0, src, dst, sport, dport, payload)
    return bytes(hdr) + payload
