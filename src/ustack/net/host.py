"""The host context: what every layer may use of the host it runs on.

Layers get a small context, never the Stack (docs/architecture.md, Floors).  The Stack builds
one ``Host`` and hands it, with the layers below, to every layer it wires
together.  It holds the clock reading, the counters, the one timer heap, the
routing table and the local addresses; capabilities are per interface
(``Interface.gso``, the device's ``caps``).

``now`` is the time of the poll iteration in progress.  Only the Stack
writes it (``poll(now)``, ``flush(now)``, ``advance(now)``); the layers read
it where a rule needs the time and pass it on to the sans-I/O parts below
them (a TCP connection, the reassembler), which never read a clock.
"""

from __future__ import annotations

from typing import Final

from ustack.counters import Counters
from ustack.net.route import RouteTable
from ustack.timers import TimerHeap

# Properties of a received frame, passed up with it as one int (``rx``):
# nothing about the frame being processed is kept as layer state.
RX_CSUM_OK: Final = 1
"""The kernel vouched for the transport checksum (virtio-net header): skip it."""
RX_LINK_BROADCAST: Final = 2
"""The frame was a link-layer broadcast: no ICMP error may answer it (RFC 1122 3.2.2)."""
RX_IP_BROADCAST: Final = 4
"""The datagram was sent to a broadcast address (limited or our subnet's; IPv4
sets it): no ICMP error may answer it (RFC 1122 3.2.2, 4.1.3.1), and an echo
request to it may be ignored (3.2.2.6)."""


class Host:
    __slots__ = ("counters", "local_addrs", "now", "routes", "timers")

    def __init__(self) -> None:
        self.now = 0.0
        self.counters = Counters()
        self.timers = TimerHeap()
        self.routes = RouteTable()
        # Our unicast addresses (the receive path checks membership per
        # packet; which interface holds one is the interface's to say).
        self.local_addrs: set[bytes] = set()
