"""ARP (RFC 826) for one interface: cache, resolver, pending queue, replies.

Cache entries hold the 14-byte Ethernet header already built for that
neighbour, so the transmit hot path fills a frame's link header with one
slice assignment.  An entry is used freely for ``REACHABLE`` seconds after
it was last confirmed; after that the first use sends one unicast request
to refresh it (like Linux's STALE -> PROBE), and at ``EXPIRE`` it is gone
and the next packet waits for a fresh broadcast resolution.

Packets for an unresolved neighbour wait in a bounded queue (per neighbour
and in number of neighbours: principle 3, drop early with a name); the
request is retried every ``RETRY`` seconds, ``TRIES`` times in all (RFC 1122
2.3.2.1 asks for a rate limit of at most one request per second per
destination), then the queue is dropped and counted as ArpResolveFailed.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from ustack.link.base import Frame
from ustack.link.vnet import GsoFrame
from ustack.wire import arp as warp
from ustack.wire import ethernet
from ustack.wire.errors import ParseError

if TYPE_CHECKING:
    from ustack.net.interface import Interface
    from ustack.stack import Stack
    from ustack.timers import Timer

_ETH_ARP = ethernet.ETHERTYPE_ARP.to_bytes(2, "big")
_ETH_IP = ethernet.ETHERTYPE_IPV4.to_bytes(2, "big")
_ZERO_MAC = b"\x00" * 6
_ZERO_IP = b"\x00" * 4
_MIN_FRAME = 60  # Ethernet minimum without FCS; ARP frames are padded to it


class _Entry:
    __slots__ = ("confirmed", "expires", "hdr", "mac", "probe_at", "refresh_at")

    def __init__(self, mac: bytes, our_mac: bytes, now: float) -> None:
        self.mac = mac
        self.hdr = mac + our_mac + _ETH_IP
        self.confirmed = now
        # Until refresh_at the entry is used with no further thought; then
        # one unicast probe per RETRY refreshes it, until it expires.
        self.refresh_at = now + ArpTable.REACHABLE
        self.expires = now + ArpTable.EXPIRE
        self.probe_at = 0.0


class _Pending:
    __slots__ = ("frames", "nbytes", "timer", "tries")

    def __init__(self) -> None:
        self.frames: list[bytearray] = []
        self.nbytes = 0
        self.tries = 0
        self.timer: Timer | None = None


class ArpTable:
    REACHABLE = 30.0
    EXPIRE = 60.0
    RETRY = 1.0
    TRIES = 3
    # Bytes queued per unresolved neighbour, like Linux's unres_qlen_bytes:
    # enough for every fragment of a maximal UDP datagram.
    QUEUE_BYTES_PER_NEIGHBOUR = 212992
    MAX_PENDING = 256
    MAX_ENTRIES = 4096

    __slots__ = ("entries", "iface", "pending", "stack")

    def __init__(self, stack: Stack, iface: Interface) -> None:
        self.stack = stack
        self.iface = iface
        self.entries: dict[bytes, _Entry] = {}
        self.pending: dict[bytes, _Pending] = {}

    # -- transmit ---------------------------------------------------------

    def output(self, next_hop: bytes, frame: bytearray) -> None:
        """Send an IPv4 frame (14 bytes of headroom) to the neighbour ``next_hop``.

        Hot callers may do the first step themselves: an entry with
        ``now < fresh_until`` needs nothing but ``frame[0:14] = entry.hdr``.
        """
        e = self.entries.get(next_hop)
        now = self.stack.now
        if e is not None and now < e.expires:
            frame[0:14] = e.hdr
            self.iface.txq.append(frame)
            if now >= e.refresh_at and now >= e.probe_at:
                e.probe_at = now + self.RETRY
                self._send(warp.OP_REQUEST, e.mac, next_hop, e.mac)
            return
        if next_hop == b"\xff\xff\xff\xff" or next_hop == self.iface.broadcast:
            frame[0:14] = ethernet.BROADCAST + self.iface.mac + _ETH_IP
            self.iface.txq.append(frame)
            return
        self._enqueue(next_hop, frame, now)

    def _enqueue(self, next_hop: bytes, frame: bytearray, now: float) -> None:
        c = self.stack.counters
        p = self.pending.get(next_hop)
        if p is None:
            if len(self.pending) >= self.MAX_PENDING:
                c.drop("arp_pending_full")
                c.IpOutDiscards += 1
                return
            p = self.pending[next_hop] = _Pending()
            self._solicit(next_hop, p, now)
        if p.nbytes + len(frame) > self.QUEUE_BYTES_PER_NEIGHBOUR:
            c.drop("arp_queue_full")
            c.IpOutDiscards += 1
            return
        p.frames.append(frame)
        p.nbytes += len(frame)

    def _solicit(self, next_hop: bytes, p: _Pending, now: float) -> None:
        p.tries += 1
        self._send(warp.OP_REQUEST, ethernet.BROADCAST, next_hop, _ZERO_MAC)
        p.timer = self.stack.timers.call_at(now + self.RETRY, partial(self._retry, next_hop))

    def _retry(self, next_hop: bytes, now: float) -> None:
        p = self.pending.get(next_hop)
        if p is None:
            return
        if p.tries < self.TRIES:
            self._solicit(next_hop, p, now)
            return
        del self.pending[next_hop]
        c = self.stack.counters
        c.ArpResolveFailed += 1
        for _ in p.frames:
            c.drop("arp_unresolved")
            c.IpOutDiscards += 1

    def announce(self) -> None:
        """Gratuitous ARP: a request for our own address (RFC 5227 2.3)."""
        ip = self.iface.ip
        self._send(warp.OP_REQUEST, ethernet.BROADCAST, ip, _ZERO_MAC, spa=ip)

    def _send(self, op: int, eth_dst: bytes, tpa: bytes, tha: bytes,
              spa: bytes | None = None) -> None:
        iface = self.iface
        body = warp.build(op, iface.mac, spa or iface.ip, tha, tpa)
        frame = eth_dst + iface.mac + _ETH_ARP + body
        if len(frame) < _MIN_FRAME:
            frame += bytes(_MIN_FRAME - len(frame))
        iface.txq.append(frame)
        c = self.stack.counters
        if op == warp.OP_REQUEST:
            c.ArpOutRequests += 1
        else:
            c.ArpOutReplies += 1

    # -- receive ----------------------------------------------------------

    def input(self, body: bytes) -> None:
        """Process an ARP packet (the Ethernet payload), RFC 826 "Packet reception"."""
        c = self.stack.counters
        try:
            pkt = warp.parse(body)
        except ParseError as err:
            c.drop(err.reason)
            return
        iface = self.iface
        if pkt.op == warp.OP_REQUEST:
            c.ArpInRequests += 1
        else:
            c.ArpInReplies += 1
        if pkt.sha[0] & 1 or pkt.sha == _ZERO_MAC:
            c.drop("arp_bad_sender_mac")  # a multicast sender MAC is never valid
            return
        spa, tpa = pkt.spa, pkt.tpa
        if spa == iface.ip:
            # Someone else claims our address (RFC 5227 2.4); never cache it.
            if pkt.sha != iface.mac:
                c.drop("arp_address_conflict")
            return
        if spa == _ZERO_IP:
            # An RFC 5227 2.1.1 probe: nobody to cache; if it asks for our
            # address, answer so the prober sees it is taken.
            if tpa == iface.ip and pkt.op == warp.OP_REQUEST:
                self._send(warp.OP_REPLY, pkt.sha, spa, pkt.sha)
            return
        now = self.stack.now
        # RFC 826: update an existing entry from any packet ("merge_flag"),
        # add one when we are the target; a neighbour we are resolving is
        # learned from any packet it sends (an announcement answers us too).
        if spa in self.entries or tpa == iface.ip or spa in self.pending:
            self._learn(spa, pkt.sha, now)
        if tpa == iface.ip and pkt.op == warp.OP_REQUEST:
            self._send(warp.OP_REPLY, pkt.sha, spa, pkt.sha)

    def _learn(self, ip: bytes, mac: bytes, now: float) -> None:
        """Create or confirm the entry for ``ip`` and release what waited for it."""
        entries = self.entries
        e = entries.get(ip)
        if e is not None and e.mac == mac:
            e.confirmed = now
            e.refresh_at = now + self.REACHABLE
            e.expires = now + self.EXPIRE
        else:
            if e is None and len(entries) >= self.MAX_ENTRIES:
                self.expire(now)
                if len(entries) >= self.MAX_ENTRIES:
                    del entries[next(iter(entries))]  # the oldest insertion
            e = entries[ip] = _Entry(mac, self.iface.mac, now)
        p = self.pending.pop(ip, None)
        if p is not None:
            if p.timer is not None:
                p.timer.cancel()
            txq: list[Frame] = self.iface.txq
            for frame in p.frames:
                frame[0:14] = e.hdr
                txq.append(frame)
                if type(frame) is GsoFrame:
                    self.iface.gso_pending = True

    def expire(self, now: float) -> None:
        """Forget entries past their lifetime (called periodically by the Stack)."""
        dead = [ip for ip, e in self.entries.items() if e.expires <= now]
        for ip in dead:
            del self.entries[ip]

    def add_static(self, ip: bytes, mac: bytes) -> None:
        """A permanent entry (tests, `--arp` configuration)."""
        e = _Entry(mac, self.iface.mac, 0.0)
        e.refresh_at = e.expires = float("inf")
        self.entries[ip] = e
