"""The ARP table of one interface: its neighbour cache and the packets
waiting for a neighbour to be resolved (RFC 826, RFC 1122 2.3.2.1).

Bookkeeping only: nothing here sends a frame or reads a clock (the protocol,
``net/arp.py``, does both and passes ``now`` in).  Cache entries hold the
14-byte Ethernet header already built for that neighbour, so the transmit
hot path fills a frame's link header with one slice assignment.  An entry is
used freely for ``REACHABLE`` seconds after it was last confirmed; after
that the first use sends one unicast request to refresh it (like Linux's
STALE -> PROBE), and at ``EXPIRE`` it is gone and the next packet waits for
a fresh broadcast resolution.

Packets for an unresolved neighbour wait in a bounded queue (per neighbour
and in number of neighbours: principle 3, drop early with a name); the
request is retried every ``RETRY`` seconds, ``TRIES`` times in all (RFC 1122
2.3.2.1 asks for a rate limit of at most one request per second per
destination), then the queue is dropped and counted as ArpResolveFailed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ustack.wire import ethernet

if TYPE_CHECKING:
    from ustack.timers import Timer

_ETH_IP: Final = ethernet.ETHERTYPE_IPV4.to_bytes(2, "big")
_FOREVER: Final = float("inf")  # the lifetime of a static entry


class Entry:
    """A resolved neighbour."""

    __slots__ = ("expires", "hdr", "mac", "probe_at", "refresh_at")

    def __init__(self, mac: bytes, our_mac: bytes, now: float) -> None:
        self.mac = mac
        self.hdr = mac + our_mac + _ETH_IP
        # Until refresh_at the entry is used with no further thought; then
        # one unicast probe per RETRY refreshes it, until it expires.
        self.refresh_at = now + ArpTable.REACHABLE
        self.expires = now + ArpTable.EXPIRE
        self.probe_at = 0.0


class Pending:
    """Frames waiting for one neighbour, and the state of its resolution."""

    __slots__ = ("frames", "nbytes", "spa", "timer", "tries")

    def __init__(self) -> None:
        self.frames: list[bytearray] = []
        self.spa = b""  # our address the requests are sent from (ArpLayer sets it)
        self.nbytes = 0
        self.tries = 0
        self.timer: Timer | None = None


class ArpTable:
    REACHABLE: Final = 30.0
    EXPIRE: Final = 60.0
    RETRY: Final = 1.0
    TRIES: Final = 3
    # Bytes queued per unresolved neighbour, like Linux's unres_qlen_bytes:
    # enough for every fragment of a maximal UDP datagram.
    QUEUE_BYTES_PER_NEIGHBOUR: Final = 212992
    MAX_PENDING: Final = 256
    MAX_ENTRIES: Final = 4096

    __slots__ = ("entries", "mac", "pending")

    def __init__(self, mac: bytes) -> None:
        self.mac = mac  # the interface's own: the source of every header built here
        self.entries: dict[bytes, Entry] = {}
        self.pending: dict[bytes, Pending] = {}

    def fresh_hdr(self, ip: bytes, now: float) -> bytes | None:
        """The link header for a frame to ``ip`` when its entry needs no ARP
        at all (cached, not due for a refresh), else None: the frame then
        goes through ``ArpLayer.resolve``."""
        e = self.entries.get(ip)
        return e.hdr if e is not None and now < e.refresh_at else None

    def learn(self, ip: bytes, mac: bytes, now: float) -> Entry:
        """Create or confirm the entry for ``ip`` (the oldest goes when full).

        A static entry (``add_static``) is what was configured: ARP neither
        confirms it into one that expires nor replaces its MAC (Linux's
        NUD_PERMANENT), and it is returned as it is.
        """
        entries = self.entries
        e = entries.get(ip)
        if e is not None and (e.mac == mac or e.expires == _FOREVER):
            if e.expires != _FOREVER:
                e.refresh_at = now + self.REACHABLE
                e.expires = now + self.EXPIRE
            return e
        if e is None and len(entries) >= self.MAX_ENTRIES:
            self.expire(now)
            if len(entries) >= self.MAX_ENTRIES:
                del entries[next(iter(entries))]  # the oldest insertion
        e = entries[ip] = Entry(mac, self.mac, now)
        return e

    def expire(self, now: float) -> None:
        """Forget entries past their lifetime (called periodically by the Stack)."""
        dead = [ip for ip, e in self.entries.items() if e.expires <= now]
        for ip in dead:
            del self.entries[ip]

    def add_static(self, ip: bytes, mac: bytes) -> None:
        """A permanent entry (tests, `--arp` configuration)."""
        e = Entry(mac, self.mac, 0.0)
        e.refresh_at = e.expires = _FOREVER
        self.entries[ip] = e
