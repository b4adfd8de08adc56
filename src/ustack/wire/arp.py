"""ARP for IPv4 over Ethernet (RFC 826): the 28-byte packet, nothing else."""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from ustack.wire.errors import ParseError

HEADER: Final = struct.Struct("!HHBBH6s4s6s4s")
LEN: Final = 28
OP_REQUEST: Final = 1
OP_REPLY: Final = 2
HTYPE_ETHERNET: Final = 1
PTYPE_IPV4: Final = 0x0800

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
    htype: int
    ptype: int
    hlen: int
    plen: int
    op: int
    sha: bytes
    spa: bytes
    tha: bytes
    tpa: bytes
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = HEADER.unpack_from(data, 0)
    if htype != HTYPE_ETHERNET or ptype != PTYPE_IPV4 or hlen != 6 or plen != 4:
        raise ParseError("arp_format", f"htype {htype} ptype {ptype:#06x} hlen {hlen} plen {plen}")
    if op != OP_REQUEST and op != OP_REPLY:
        raise ParseError("arp_op", str(op))
    return ArpPacket(op, sha, spa, tha, tpa)


def build(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> bytes:
    """The 28-byte ARP packet (the Ethernet header is the caller's)."""
    return HEADER.pack(HTYPE_ETHERNET, PTYPE_IPV4, 6, 4, op, sha, spa, tha, tpa)
