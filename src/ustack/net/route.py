"""The routing table: longest-prefix match with a per-destination cache.

A host stack has few routes (the connected subnets and a default gateway),
but looks one up for every datagram it sends, so results are cached by
source and destination; the cache is bounded and cleared whenever the table
changes.  A next hop also says which source address the datagram carries
and the sum of the two addresses: decided here once per (source,
destination), so no layer compares addresses or sums them per datagram.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from ustack.net.interface import Interface
from ustack.net.sockaddr import ANY
from ustack.wire.checksum import sum_mod

_CACHE_MAX: Final = 4096


class Route(NamedTuple):
    network: int
    prefix_len: int
    gateway: bytes | None  # None: destination is on-link
    iface: Interface


class NextHop:
    """Where a datagram for one destination goes: out of ``iface`` to ``addr``.

    A plain class, not a NamedTuple: compiled, its fields are read as a
    native object's (every datagram sent reads three or four of them)."""

    __slots__ = ("addr", "addr_sum", "iface", "src")

    def __init__(self, iface: Interface, addr: bytes, src: bytes, addr_sum: int) -> None:
        self.iface = iface
        self.addr = addr  # the next hop's IPv4 address (the gateway or the destination)
        self.src = src  # the datagram's source address (see ``_hop``)
        # The sum of src and destination modulo 0xFFFF: the address part of
        # the IPv4 header sum and of the TCP/UDP pseudo-header sum (RFC 1071
        # 2(B): summing 16-bit words is grouping-independent modulo 0xFFFF),
        # computed once per (source, destination) instead of per datagram.
        self.addr_sum = addr_sum


def _hop(iface: Interface, addr: bytes, src: bytes, dst: bytes) -> NextHop:
    # The one rule for the source address: the outgoing interface's (RFC
    # 1122 3.3.4.3), unless the sender is bound to one of our addresses,
    # which is then the source wherever the route leads (4.1.3.5).
    if src == ANY:
        src = iface.ip
    return NextHop(iface, addr, src, sum_mod(src + dst))


class RouteTable:
    __slots__ = ("_routes", "cache", "generation")

    def __init__(self) -> None:
        self._routes: list[Route] = []
        # Keyed by source + destination (8 bytes; the source ANY for "the
        # route's own"), public so the transmit hot path can try it without
        # a call; a miss (or a None entry: no route) goes through ``lookup``.
        # Cleared in place, never rebound: layers hold it (UdpLayer).
        self.cache: dict[bytes, NextHop | None] = {}
        # Counts the changes of the table: a next hop a socket keeps for its
        # last destination (UdpSocket) is good while this has not moved.
        self.generation = 0

    def add(self, network: bytes, prefix_len: int, iface: Interface,
            gateway: bytes | None = None) -> None:
        mask = (0xFFFFFFFF << (32 - prefix_len)) & 0xFFFFFFFF
        net = int.from_bytes(network, "big") & mask
        self._routes.append(Route(net, prefix_len, gateway, iface))
        # Longest prefix first, so the first match is the best one.
        self._routes.sort(key=lambda r: -r.prefix_len)
        self.cache.clear()
        self.generation += 1

    def routes(self) -> list[Route]:
        return list(self._routes)

    def lookup(self, dst: bytes, src: bytes = ANY) -> NextHop | None:
        """The next hop for ``dst`` from ``src`` (one of our addresses, or
        ANY for the outgoing interface's); None when no route leads there."""
        cache = self.cache
        key = src + dst
        try:
            return cache[key]
        except KeyError:
            pass
        addr = int.from_bytes(dst, "big")
        hop: NextHop | None = None
        for r in self._routes:
            mask = (0xFFFFFFFF << (32 - r.prefix_len)) & 0xFFFFFFFF
            if addr & mask == r.network:
                hop = _hop(r.iface, r.gateway or dst, src, dst)
                break
        if dst == b"\xff\xff\xff\xff" and hop is None and self._routes:
            # Limited broadcast goes out of the first interface (RFC 1122 3.3.6).
            iface = self._routes[-1].iface
            hop = _hop(iface, dst, src, dst)
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[key] = hop
        return hop
