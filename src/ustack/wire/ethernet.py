"""Ethernet II framing (IEEE 802.3 / RFC 894): 14-byte header, no FCS.

The kernel strips and appends the frame check sequence on TAP and AF_PACKET,
so frames seen here start at the destination MAC and end at the payload
(possibly followed by padding up to the 60-byte minimum, which the upper
layer trims using its own length field).
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from ustack.wire.errors import ParseError

HEADER: Final = struct.Struct("!6s6sH")
HEADER_LEN: Final = 14
ETHERTYPE_IPV4: Final = 0x0800
ETHERTYPE_ARP: Final = 0x0806
ETHERTYPE_VLAN: Final = 0x8100
BROADCAST: Final = b"\xff" * 6

_HEX: Final = frozenset("0123456789abcdefABCDEF")

__all__ = [
    "BROADCAST",
    "ETHERTYPE_ARP",
    "ETHERTYPE_IPV4",
    "ETHERTYPE_VLAN",
    "HEADER",
    "HEADER_LEN",
    "EthernetHeader",
    "build",
    "is_multicast",
    "mac_from_str",
    "mac_to_str",
    "pack_header_into",
    "parse",
]


class EthernetHeader(NamedTuple):
    dst: bytes
    src: bytes
    ethertype: int


def parse(frame: bytes | bytearray | memoryview) -> EthernetHeader:
    """Parse the 14-byte header; the payload starts at ``HEADER_LEN``.

    Raises ParseError("eth_short") when the frame cannot hold a header.
    """
    if len(frame) < HEADER_LEN:
        raise ParseError("eth_short", f"{len(frame)} bytes")
    dst: bytes
    src: bytes
    ethertype: int
    dst, src, ethertype = HEADER.unpack_from(frame, 0)
    return EthernetHeader(dst, src, ethertype)


def pack_header_into(
    buf: bytearray | memoryview, offset: int, dst: bytes, src: bytes, ethertype: int
) -> None:
    """Write the header at ``buf[offset:offset + 14]``."""
    HEADER.pack_into(buf, offset, dst, src, ethertype)


def build(dst: bytes, src: bytes, ethertype: int, payload: bytes | bytearray | memoryview) -> bytes:
    """A whole frame: header + payload (no padding; the link pads if needed)."""
    return HEADER.pack(dst, src, ethertype) + payload


def mac_to_str(mac: bytes | bytearray | memoryview) -> str:
    """``b"\\xaa\\xbb..."`` -> ``"aa:bb:cc:dd:ee:ff"``."""
    return bytes(mac).hex(":")


def mac_from_str(text: str) -> bytes:
    """``"aa:bb:cc:dd:ee:ff"`` (or with ``-``) -> 6 bytes; ValueError on bad input."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6 or not all(1 <= len(p) <= 2 and _HEX.issuperset(p) for p in parts):
        raise ValueError(f"not a MAC address (want aa:bb:cc:dd:ee:ff): {text!r}")
    return bytes([int(p, 16) for p in parts])


def is_multicast(mac: bytes | bytearray | memoryview) -> bool:
    """The I/G bit (least significant bit of the first octet, IEEE 802-2014 8.2).

    True for broadcast too, which is the all-ones group address.
    """
    return bool(mac[0] & 1)
