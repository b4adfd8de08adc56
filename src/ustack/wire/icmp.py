"""ICMP for IPv4 (RFC 792): echo, destination unreachable, time exceeded.

Error messages quote the offending datagram; ``build_error`` sizes the quote
by RFC 1812 4.3.2.3 and ``quoted`` recovers the quoted header and transport
bytes so the stack can find the socket an error belongs to.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from ustack.wire.checksum import sum_mod
from ustack.wire.errors import ParseError
from ustack.wire.ipv4 import OFFSET_MASK, Ipv4Header, unpack_fields

ECHO_REPLY: Final = 0
DEST_UNREACH: Final = 3
ECHO_REQUEST: Final = 8
TIME_EXCEEDED: Final = 11

# Destination Unreachable codes (RFC 792, RFC 1191 for FRAG_NEEDED).
NET_UNREACH: Final = 0
HOST_UNREACH: Final = 1
PROTO_UNREACH: Final = 2
PORT_UNREACH: Final = 3
FRAG_NEEDED: Final = 4
# Time Exceeded codes.
TTL_EXCEEDED: Final = 0
REASM_TIME_EXCEEDED: Final = 1

HEADER: Final = struct.Struct("!BBHI")
HEADER_LEN: Final = 8

# RFC 1812 4.3.2.3: an ICMP error datagram should not exceed 576 bytes.
# Our error datagrams carry a 20-byte IP header and the 8-byte ICMP header.
MAX_ERROR_DATAGRAM: Final = 576
MAX_QUOTE: Final = MAX_ERROR_DATAGRAM - 20 - HEADER_LEN

__all__ = [
    "DEST_UNREACH",
    "ECHO_REPLY",
    "ECHO_REQUEST",
    "FRAG_NEEDED",
    "HEADER",
    "HEADER_LEN",
    "HOST_UNREACH",
    "MAX_QUOTE",
    "NET_UNREACH",
    "PORT_UNREACH",
    "PROTO_UNREACH",
    "REASM_TIME_EXCEEDED",
    "TIME_EXCEEDED",
    "TTL_EXCEEDED",
    "IcmpMessage",
    "build",
    "build_echo",
    "build_error",
    "parse",
    "quoted",
]


class IcmpMessage(NamedTuple):
    type: int
    code: int
    checksum: int
    rest: int
    """The 32-bit "rest of header" word (echo id/seq, next-hop MTU, unused)."""
    body: bytes
    """Everything after the 8-byte header: echo data or the quoted datagram."""

    @property
    def ident(self) -> int:
        return self.rest >> 16

    @property
    def seq(self) -> int:
        return self.rest & 0xFFFF

    @property
    def next_hop_mtu(self) -> int:
        """RFC 1191: the low 16 bits of "rest" in a Fragmentation Needed message."""
        return self.rest & 0xFFFF


def parse(data: bytes | bytearray | memoryview, verify_checksum: bool = True) -> IcmpMessage:
    """Parse an ICMP message (the IP payload).  Reasons: icmp_short, icmp_checksum."""
    n = len(data)
    if n < 8:
        raise ParseError("icmp_short", f"{n} bytes")
    type_: int
    code: int
    csum: int
    rest: int
    type_, code, csum, rest = HEADER.unpack_from(data, 0)
    # RFC 792: checksum over the whole message, odd length padded, must sum
    # to all ones (0 mod 0xFFFF).  A message of all zero bytes sums to 0,
    # which is not all ones; only a zero header can start one.
    if verify_checksum and (
        sum_mod(data) or (not (type_ | code | csum | rest) and not any(data))
    ):
        raise ParseError("icmp_checksum", f"{csum:#06x}")
    return IcmpMessage(type_, code, csum, rest, bytes(data[8:]))


def build(type_: int, code: int, rest: int, body: bytes | bytearray | memoryview) -> bytes:
    """Any ICMP message: header with checksum + body."""
    s = (type_ << 8) + code + rest + sum_mod(body)
    r = s % 0xFFFF
    # r == 0 is either the true zero sum (all-zero message: checksum 0xFFFF)
    # or "negative zero" 0xFFFF (checksum 0), the choice a 16-bit fold makes.
    csum = 0xFFFF - r if r else (0 if s or any(body) else 0xFFFF)
    return HEADER.pack(type_, code, csum, rest) + body


def build_echo(type_: int, ident: int, seq: int, payload: bytes | bytearray | memoryview) -> bytes:
    """An Echo Request or Echo Reply (``type_`` ECHO_REQUEST or ECHO_REPLY)."""
    return build(type_, 0, (ident << 16) | seq, payload)


def build_error(
    type_: int, code: int, original: bytes | bytearray | memoryview, mtu: int = 0
) -> bytes:
    """An error message quoting ``original``, the offending IP datagram.

    The quote holds the IP header and as much of the payload as keeps the
    whole error datagram within 576 bytes (RFC 1812 4.3.2.3), which is always
    at least the header + 8 bytes RFC 792 asks for.  Link padding after the
    original's total length is not quoted.  ``mtu`` is the next-hop MTU for
    FRAG_NEEDED (RFC 1191), placed in the low 16 bits of "rest".
    """
    end = len(original)
    if end >= 4:
        total = (original[2] << 8) | original[3]
        if 20 <= total < end:
            end = total
    if end > MAX_QUOTE:
        end = MAX_QUOTE
    return build(type_, code, mtu & 0xFFFF, original[:end])


def quoted(msg: IcmpMessage) -> tuple[Ipv4Header, bytes]:
    """The quoted datagram of an error message: its IP header and transport bytes.

    The header is parsed without checksum verification (routers may have
    changed TTL and checksum, RFC 1812 4.3.2.3) and its total length may
    exceed what was quoted.  Raises ParseError("icmp_quote") unless the body
    holds an IPv4 header and at least 8 bytes after it (RFC 792).
    """
    body = msg.body
    n = len(body)
    if n < 28:
        raise ParseError("icmp_quote", f"{n} bytes")
    vihl, tos, total_length, ident, ff, ttl, proto, csum, src, dst = unpack_fields(body, 0)
    hl = (vihl & 0x0F) << 2
    if vihl >> 4 != 4 or hl < 20:
        raise ParseError("icmp_quote", f"version/IHL byte {vihl:#04x}")
    if n < hl + 8:
        raise ParseError("icmp_quote", f"{n} bytes < header {hl} + 8")
    if total_length < hl:
        raise ParseError("icmp_quote", f"total length {total_length} < header {hl}")
    # Drop padding a sender quoted past the original's end, keeping >= 8 bytes.
    end = total_length if hl + 8 <= total_length < n else n
    hdr = Ipv4Header(hl, tos, total_length, ident, ff & 0xE000, (ff & OFFSET_MASK) << 3,
                     ttl, proto, csum, src, dst, body[20:hl])
    return hdr, body[hl:end]
