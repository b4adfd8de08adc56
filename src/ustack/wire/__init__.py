"""Packet formats: parse and build, checksums.  No state, no I/O.

Every parser takes bytes, bytearray or memoryview and raises only
:class:`ParseError`, whose ``reason`` names the drop counter.
"""

from ustack.wire import arp, checksum, ethernet, icmp, ipv4, tcp, udp
from ustack.wire.errors import ParseError

__all__ = ["ParseError", "arp", "checksum", "ethernet", "icmp", "ipv4", "tcp", "udp"]
