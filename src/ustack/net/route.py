"""The routing table: longest-prefix match with a per-destination cache.

A host stack has few routes (the connected subnets and a default gateway),
but looks one up for every datagram it sends, so results are cached by
destination; the cache is bounded and cleared whenever the table changes.
"""

from __future__ import annotations

from typing import NamedTuple

from ustack.net.interface import Interface

_CACHE_MAX = 4096


class Route(NamedTuple):
    network: int
    prefix_len: int
    gateway: bytes | None  # None: destination is on-link
    iface: Interface


class NextHop(NamedTuple):
    """Where a datagram for one destination goes: out of ``iface`` to ``addr``."""

    iface: Interface
    addr: bytes  # the next hop's IPv4 address (the gateway or the destination)
    src: bytes  # source address to use (RFC 1122 3.3.4.3: the interface's)
    # src and destination read as one 64-bit integer: the address part of the
    # IPv4 header sum and of the TCP/UDP pseudo-header sum (RFC 1071 2(B):
    # summing 16-bit words is grouping-independent modulo 0xFFFF), computed
    # once per destination instead of once per datagram.
    addr_sum: int


def _hop(iface: Interface, addr: bytes, dst: bytes) -> NextHop:
    return NextHop(iface, addr, iface.ip, int.from_bytes(iface.ip + dst, "big"))


class RouteTable:
    __slots__ = ("_routes", "cache")

    def __init__(self) -> None:
        self._routes: list[Route] = []
        # Public so the transmit hot path can try it without a call; a miss
        # (or a None entry: no route) goes through ``lookup``.
        self.cache: dict[bytes, NextHop | None] = {}

    def add(self, network: bytes, prefix_len: int, iface: Interface,
            gateway: bytes | None = None) -> None:
        mask = (0xFFFFFFFF << (32 - prefix_len)) & 0xFFFFFFFF
        net = int.from_bytes(network, "big") & mask
        self._routes.append(Route(net, prefix_len, gateway, iface))
        # Longest prefix first, so the first match is the best one.
        self._routes.sort(key=lambda r: -r.prefix_len)
        self.cache.clear()

    def routes(self) -> list[Route]:
        return list(self._routes)

    def lookup(self, dst: bytes) -> NextHop | None:
        cache = self.cache
        try:
            return cache[dst]
        except KeyError:
            pass
        addr = int.from_bytes(dst, "big")
        hop: NextHop | None = None
        for r in self._routes:
            mask = (0xFFFFFFFF << (32 - r.prefix_len)) & 0xFFFFFFFF
            if addr & mask == r.network:
                hop = _hop(r.iface, r.gateway or dst, dst)
                break
        if dst == b"\xff\xff\xff\xff" and hop is None and self._routes:
            # Limited broadcast goes out of the first interface (RFC 1122 3.3.6).
            iface = self._routes[-1].iface
            hop = _hop(iface, dst, dst)
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[dst] = hop
        return hop
