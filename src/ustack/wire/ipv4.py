"""The IPv4 header (RFC 791): parse, build, address helpers.

Options are carried as raw bytes and skipped by IHL; nothing here interprets
them (RFC 1122 3.2.1.8 requires only that unknown options are ignored, and
dispatch never depends on them).
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from typing import Final, NamedTuple

from ustack.wire.checksum import sum_mod
from ustack.wire.errors import ParseError

HEADER: Final = struct.Struct("!BBHHHBBH4s4s")
# An Ethernet header (14 bytes, copied as they are) followed by ``HEADER``.
FRAMED_HEADER: Final = struct.Struct("!14sBBHHHBBH4s4s")
MIN_HEADER_LEN: Final = 20
MAX_HEADER_LEN: Final = 60
PROTO_ICMP: Final = 1
PROTO_TCP: Final = 6
PROTO_UDP: Final = 17
FLAG_DF: Final = 0x4000
FLAG_MF: Final = 0x2000
OFFSET_MASK: Final = 0x1FFF

__all__ = [
    "FLAG_DF",
    "FLAG_MF",
    "FRAMED_HEADER",
    "HEADER",
    "MAX_HEADER_LEN",
    "MIN_HEADER_LEN",
    "OFFSET_MASK",
    "PROTO_ICMP",
    "PROTO_TCP",
    "PROTO_UDP",
    "Ipv4Header",
    "addr_from_str",
    "addr_to_str",
    "build",
    "header_bytes",
    "pack_framed_header_into",
    "pack_header_into",
    "pack_plain_header_into",
    "parse",
    "parse_cidr",
]


class Ipv4Header(NamedTuple):
    header_len: int
    """Header length in bytes (IHL * 4); the payload starts here."""
    tos: int
    total_length: int
    ident: int
    flags: int
    """The DF/MF bits exactly as in the field (``field & 0xE000``)."""
    frag_offset: int
    """Fragment offset in bytes (the field counts 8-byte units)."""
    ttl: int
    proto: int
    checksum: int
    src: bytes
    dst: bytes
    options: bytes
    """Raw option bytes (``header_len - 20`` of them), ``b""`` when none."""

    @property
    def more_fragments(self) -> bool:
        return bool(self.flags & FLAG_MF)

    @property
    def dont_fragment(self) -> bool:
        return bool(self.flags & FLAG_DF)


# The fixed header's fields in order: version/IHL, TOS, total length, ident,
# flags/fragment offset, TTL, protocol, checksum, source, destination.
Fields = tuple[int, int, int, int, int, int, int, int, bytes, bytes]


def unpack_fields(data: bytes | bytearray | memoryview, offset: int) -> Fields:
    """The 20-byte header at ``offset``, unchecked (the caller has the bytes).
    Typed: struct gives Any, and native ints make the callers' arithmetic C."""
    fields: Fields = HEADER.unpack_from(data, offset)
    return fields


def parse(data: bytes | bytearray | memoryview, verify_checksum: bool = True) -> Ipv4Header:
    """Parse and validate the header at the start of ``data``.

    The payload is ``data[h.header_len:h.total_length]``; bytes after
    ``total_length`` (Ethernet minimum-frame padding) are allowed and ignored.
    Raises ParseError with reason ipv4_short, ipv4_version, ipv4_header_len,
    ipv4_total_length or ipv4_checksum.
    """
    n = len(data)
    if n < 20:
        raise ParseError("ipv4_short", f"{n} bytes")
    vihl, tos, total_length, ident, ff, ttl, proto, csum, src, dst = unpack_fields(data, 0)
    if vihl >> 4 != 4:
        raise ParseError("ipv4_version", str(vihl >> 4))
    hl = (vihl & 0x0F) << 2
    if hl < 20:
        raise ParseError("ipv4_header_len", f"IHL {hl >> 2}")
    if n < hl:
        raise ParseError("ipv4_short", f"{n} bytes < header length {hl}")
    if total_length < hl or total_length > n:
        raise ParseError("ipv4_total_length", f"{total_length} (header {hl}, have {n})")
    # RFC 1071: the header including its checksum field sums to all ones,
    # which is 0 modulo 0xFFFF (never the empty sum: the version is non-zero).
    if verify_checksum and sum_mod(data[:hl]):
        raise ParseError("ipv4_checksum", f"{csum:#06x}")
    # tuple.__new__ skips the NamedTuple's Python-level __new__ (which parses
    # its arguments): about 100 ns less per datagram, compiled.
    return tuple.__new__(
        Ipv4Header,
        (
            hl,
            tos,
            total_length,
            ident,
            ff & 0xE000,
            (ff & OFFSET_MASK) << 3,
            ttl,
            proto,
            csum,
            src,
            dst,
            bytes(data[20:hl]) if hl > 20 else b"",
        ),
    )


def _padded_options(options: bytes) -> bytes:
    # RFC 791: the header ends on a 32-bit boundary; pad with End-of-Option-
    # List (0) octets.  IHL is 4 bits, so at most 40 option bytes fit.
    rem = len(options) & 3
    if rem:
        options = bytes(options) + b"\x00" * (4 - rem)
    if len(options) > 40:
        raise ValueError(f"IPv4 options too long: {len(options)} > 40 bytes")
    return options


def _checksum(first: int, total_length: int, ident: int, ff: int, ttlproto: int,
              src: bytes, dst: bytes, options: bytes) -> int:
    # The sum of the header words computed from the field values, so the
    # header is written once (no second pass over the buffer).  A 32-bit
    # address is its two 16-bit words modulo 0xFFFF (RFC 1071 2(B)).
    s = first + total_length + ident + ff + ttlproto + sum_mod(src + dst)
    if options:
        s += sum_mod(options)
    r = s % 0xFFFF
    # r == 0 means the folded sum is 0xFFFF ("negative zero"), checksum 0.
    return 0xFFFF - r if r else 0


def pack_header_into(
    buf: bytearray | memoryview,
    offset: int,
    *,
    src: bytes,
    dst: bytes,
    proto: int,
    total_length: int,
    ident: int = 0,
    flags: int = 0,
    frag_offset: int = 0,
    ttl: int = 64,
    tos: int = 0,
    options: bytes = b"",
) -> int:
    """Write a header with its checksum at ``buf[offset:]``; return its length.

    ``total_length`` counts header + payload; ``frag_offset`` is in bytes and
    must be a multiple of 8.  Options are padded to a multiple of 4 with EOL.
    """
    if options:
        options = _padded_options(options)
        hl = 20 + len(options)
        buf[offset + 20 : offset + hl] = options
    else:
        hl = 20
    first = 0x4000 | (hl << 6) | tos
    ff = flags | (frag_offset >> 3)
    tp = (ttl << 8) | proto
    csum = _checksum(first, total_length, ident, ff, tp, src, dst, options)
    HEADER.pack_into(buf, offset, first >> 8, tos, total_length, ident, ff, ttl, proto, csum,
                     src, dst)
    return hl


def pack_plain_header_into(buf: bytearray | memoryview, offset: int, tos: int,
                           total_length: int, ident: int, flags_frag: int, ttl: int,
                           proto: int, src: bytes, dst: bytes, addr_sum: int) -> None:
    """The transmit hot path's ``pack_header_into``: no options, positional.

    ``flags_frag`` is the raw flags/fragment-offset field; ``addr_sum`` is
    ``int.from_bytes(src + dst, "big")`` (or any value congruent to it
    modulo 0xFFFF), which a caller caches per destination: the header
    checksum is then a sum of field values.
    """
    HEADER.pack_into(buf, offset, 0x45, tos, total_length, ident, flags_frag, ttl, proto,
                     _plain_checksum(tos, total_length, ident, flags_frag, ttl, proto, addr_sum),
                     src, dst)


def pack_framed_header_into(buf: bytearray | memoryview, link_hdr: bytes, tos: int,
                            total_length: int, ident: int, flags_frag: int, ttl: int,
                            proto: int, src: bytes, dst: bytes, addr_sum: int) -> None:
    """``pack_plain_header_into`` at offset 14, with the 14-byte Ethernet
    header ``link_hdr`` before it: the frame's two headers in one write."""
    FRAMED_HEADER.pack_into(buf, 0, link_hdr, 0x45, tos, total_length, ident, flags_frag, ttl,
                            proto, _plain_checksum(tos, total_length, ident, flags_frag, ttl,
                                                   proto, addr_sum), src, dst)


def _plain_checksum(tos: int, total_length: int, ident: int, flags_frag: int, ttl: int,
                    proto: int, addr_sum: int) -> int:
    # addr_sum reduced first: 8 address bytes are past mypyc's 63-bit native
    # ints, and every sum with it would be a long-integer operation.
    r = (0x4500 + tos + total_length + ident + flags_frag + (ttl << 8) + proto
         + addr_sum % 0xFFFF) % 0xFFFF
    # r == 0 means the folded sum is 0xFFFF ("negative zero"), checksum 0.
    return 0xFFFF - r if r else 0


def header_bytes(
    src: bytes,
    dst: bytes,
    proto: int,
    total_length: int,
    *,
    ident: int = 0,
    flags: int = FLAG_DF,
    frag_offset: int = 0,
    ttl: int = 64,
    tos: int = 0,
    options: bytes = b"",
) -> bytes:
    """The header alone, as bytes (what ``build`` puts before the payload)."""
    if options:
        options = _padded_options(options)
    hl = 20 + len(options)
    first = 0x4000 | (hl << 6) | tos
    ff = flags | (frag_offset >> 3)
    csum = _checksum(first, total_length, ident, ff, (ttl << 8) | proto, src, dst, options)
    hdr = HEADER.pack(first >> 8, tos, total_length, ident, ff, ttl, proto, csum, src, dst)
    return hdr + options if options else hdr


def build(
    src: bytes,
    dst: bytes,
    proto: int,
    payload: bytes | bytearray | memoryview,
    *,
    ident: int = 0,
    flags: int = FLAG_DF,
    frag_offset: int = 0,
    ttl: int = 64,
    tos: int = 0,
    options: bytes = b"",
) -> bytes:
    """A whole datagram: header (with checksum) + payload."""
    hl = 20 + ((len(options) + 3) & ~3)
    return header_bytes(
        src, dst, proto, hl + len(payload), ident=ident, flags=flags,
        frag_offset=frag_offset, ttl=ttl, tos=tos, options=options,
    ) + payload


def addr_to_str(addr: bytes | bytearray | memoryview) -> str:
    """4 bytes -> dotted quad."""
    a = bytes(addr)
    if len(a) != 4:
        raise ValueError(f"an IPv4 address is 4 bytes, got {len(a)}")
    return f"{a[0]}.{a[1]}.{a[2]}.{a[3]}"


@functools.lru_cache(maxsize=1024)  # every connect() and sendto() parses its address
def addr_from_str(text: str) -> bytes:
    """Dotted quad -> 4 bytes; ValueError naming the bad input."""
    try:
        return ipaddress.IPv4Address(text).packed
    except ValueError as exc:
        raise ValueError(f"not an IPv4 address: {text!r} ({exc})") from None


def parse_cidr(text: str) -> tuple[bytes, int]:
    """``"198.18.0.2/24"`` -> ``(b"\\xc6\\x12\\x00\\x02", 24)``; ValueError if malformed."""
    addr, sep, plen = text.partition("/")
    if not sep or not plen.isdecimal() or not plen.isascii():
        raise ValueError(f"not an address/prefix-length: {text!r}")
    prefix = int(plen)
    if prefix > 32:
        raise ValueError(f"prefix length {prefix} > 32 in {text!r}")
    return addr_from_str(addr), prefix
