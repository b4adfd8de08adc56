"""ARP for IPv4 over Ethernet (RFC 826): the 28-byte packet, nothing else."""

from __future__ import annotations

import struct
from typing import NamedTuple

from ustack.wire.errors import ParseError

HEADER = struct.Struct("!HHBBH6s4s6s4s")
LEN = 28
OP_REQUEST = 1
OP_REPLY = 2
HTYPE_ETHERNET = 1
PTYPE_IPV4 = 0x0800

_unpack_from = HEADER.unpack_from
_pack = HEADER.pack
_tuple_new = tuple.__new__
# htype, ptype, hlen, plen of Ethernet/IPv4 ARP: checked with one comparison.
_FORMAT = (HTYPE_ETHERNET, PTYPE_IPV4, 6, 4)

__all__ = ["HEADER", "LEN", "OP_REPLY", "OP_REQUEST", "ArpPacket", "build", "parse"]


class ArpPacket(NamedTuple):
    op: int
    sha: bytes
    """Sender hardware (MAC) address."""
    spa: bytes
    """Sender protocol (IPv4) address."""
    tha: bytes
    tpa: bytes


def parse(data: bytes | bytearray | memoryview) -> ArpPacket:
    """Parse an Ethernet/IPv4 ARP packet; trailing link padding is ignored.

    Reasons: arp_short, arp_format (hardware/protocol type or length not
    Ethernet/IPv4), arp_op (opcode not request or reply).
    """
    if len(data) < LEN:
        raise ParseError("arp_short", f"{len(data)} bytes")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _unpack_from(data, 0)
    if (htype, ptype, hlen, plen) != _FORMAT:
        raise ParseError("arp_format", f"htype {htype} ptype {ptype:#06x} hlen {hlen} plen {plen}")
    if op != OP_REQUEST and op != OP_REPLY:
        raise ParseError("arp_op", str(op))
    return _tuple_new(ArpPacket, (op, sha, spa, tha, tpa))


def build(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> bytes:
    """The 28-byte ARP packet (the Ethernet header is the caller's)."""
    return _pack(HTYPE_ETHERNET, PTYPE_IPV4, 6, 4, op, sha, spa, tha, tpa)
