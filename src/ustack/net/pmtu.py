"""Path MTU per destination (RFC 1191), learned from "fragmentation needed".

Every TCP segment leaves with DF set (as Linux sends them), so a router whose
next hop has a smaller MTU drops it and answers ICMP destination
unreachable, code 4, with that MTU (RFC 1191 4).  The transport that sent
the segment checks the error is about a segment in flight (RFC 5927 4.1)
and only then asks ``lower`` here: the estimate for that destination goes
down, never up (RFC 1191 6.3), and every connection to it sends smaller
segments.  An estimate is kept ``EXPIRES`` seconds (RFC 1191 6.3: "a
timer of 10 minutes"), then forgotten, so the path's MTU is tried again.

Bounds: a reported MTU below ``MIN_MTU`` (552, Linux's ip_rt_min_pmtu) is
taken as ``MIN_MTU``, so a forged error cannot shrink segments to a few
bytes (RFC 5927 7: the attack that degrades throughput); an old router
that reports 0 (RFC 1191 5, pre-RFC 1191 routers) gets the plateau below
the quoted datagram's length (RFC 1191 7, table 7-1), within the same
bound.  The table is bounded (``MAX_ENTRIES``, expired entries go first).
"""

from __future__ import annotations

from typing import Final

# RFC 1191 7, table 7-1: common MTUs, largest first.
PLATEAUS: Final = (65535, 32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68)


class PathMtu:
    EXPIRES: Final = 600.0
    MIN_MTU: Final = 552
    MAX_ENTRIES: Final = 4096

    __slots__ = ("entries",)

    def __init__(self) -> None:
        # destination -> (path MTU, when the estimate expires)
        self.entries: dict[bytes, tuple[int, float]] = {}

    def mtu(self, dst: bytes, link_mtu: int, now: float) -> int:
        """The MTU towards ``dst``: the estimate if one is current, capped
        by the first hop's (``link_mtu``), else the first hop's."""
        e = self.entries.get(dst)
        if e is None:
            return link_mtu
        if e[1] <= now:
            del self.entries[dst]
            return link_mtu
        return min(e[0], link_mtu)

    def expires(self, dst: bytes) -> float | None:
        e = self.entries.get(dst)
        return e[1] if e is not None else None

    def lower(self, dst: bytes, reported: int, quoted_len: int, link_mtu: int,
              now: float) -> int:
        """Take a fragmentation-needed error about a datagram of
        ``quoted_len`` bytes to ``dst`` reporting next-hop MTU ``reported``
        (0: not reported); returns the path MTU now in force."""
        current = self.mtu(dst, link_mtu, now)
        if reported == 0:
            # RFC 1191 7: the largest plateau below the datagram's length.
            reported = PLATEAUS[-1]
            for p in PLATEAUS:
                if p < quoted_len:
                    reported = p
                    break
        new = max(reported, self.MIN_MTU)
        if new >= current:
            return current  # RFC 1191 6.3: never raised by an error
        entries = self.entries
        if dst not in entries and len(entries) >= self.MAX_ENTRIES:
            for d in [d for d, e in entries.items() if e[1] <= now]:
                del entries[d]
            if len(entries) >= self.MAX_ENTRIES:
                del entries[next(iter(entries))]  # the oldest insertion
        entries[dst] = (new, now + self.EXPIRES)
        return new
