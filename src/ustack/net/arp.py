"""ARP (RFC 826) on the wire: answering, learning, resolving, announcing.

One ``ArpLayer`` serves every interface; each interface keeps its own table
(``Interface.arp``, ``net/neighbours.py``: the cache and the packets waiting
for a neighbour).  Here are the rules that send frames: the reply to a
request for our address, the broadcast request (retried ``ArpTable.RETRY``
seconds apart, ``ArpTable.TRIES`` times) for a next hop not in the cache,
the unicast probe that refreshes an entry past ``REACHABLE``, and the
gratuitous announcement of our addresses at start.

An interface may hold many addresses (``Interface.addrs``): a request for
any of them is answered, from that address, and each is announced.  They
are ours, not neighbours: none takes a place in the table, whose bounds
(``ArpTable.MAX_ENTRIES``, ``MAX_PENDING``) do not grow with them.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from functools import partial
from typing import Final

from ustack.net.host import Host
from ustack.net.interface import Interface
from ustack.net.neighbours import ArpTable, Pending
from ustack.wire import arp as warp
from ustack.wire import ethernet
from ustack.wire.errors import ParseError

_ETH_ARP: Final = ethernet.ETHERTYPE_ARP.to_bytes(2, "big")
_ETH_IP: Final = ethernet.ETHERTYPE_IPV4.to_bytes(2, "big")
_ZERO_MAC: Final = b"\x00" * 6
_ZERO_IP: Final = b"\x00" * 4
_LIMITED_BROADCAST: Final = b"\xff\xff\xff\xff"
_MIN_FRAME: Final = 60  # Ethernet minimum without FCS; ARP frames are padded to it

# Address conflict detection before an address is claimed (RFC 5227 2.1):
# PROBE_NUM probes, PROBE_MIN..PROBE_MAX seconds apart, then ANNOUNCE_WAIT
# more for a late answer.  The RFC's 1-2 s spacing is for hosts that boot
# once; a command starts in a terminal or a test, many times (every stack
# a test suite starts pays it), and the kernel on the other side of a TAP
# or veth answers in well under a millisecond: 0.16-0.2 s tells the same
# on such a link, and three probes still ride out a lost frame or two
# (ustack.claim).  The RFC's random PROBE_WAIT before the first probe is
# left out: it spreads hosts that power up together, which processes do not.
PROBE_NUM: Final = 3
PROBE_MIN: Final = 0.04
PROBE_MAX: Final = 0.06
ANNOUNCE_WAIT: Final = 0.08


def arp_frame(eth_dst: bytes, mac: bytes, op: int, spa: bytes, tha: bytes, tpa: bytes) -> bytes:
    """An ARP packet from ``mac`` in its Ethernet frame, padded to the minimum."""
    f = eth_dst + mac + _ETH_ARP + warp.build(op, mac, spa, tha, tpa)
    return f + bytes(_MIN_FRAME - len(f)) if len(f) < _MIN_FRAME else f


def probe_frame(mac: bytes, ip: bytes) -> bytes:
    """An ARP probe from ``mac`` for ``ip`` (RFC 5227 2.1.1): a broadcast
    request with sender IP 0.0.0.0, so no neighbour caches an address we
    do not hold yet, and target hardware address zero."""
    return arp_frame(ethernet.BROADCAST, mac, warp.OP_REQUEST, _ZERO_IP, _ZERO_MAC, ip)


def probe_conflict(frame: bytes, mac: bytes,
                   addrs: AbstractSet[bytes]) -> tuple[bytes, bytes] | None:
    """``(address, their MAC)`` if ``frame``, received while probing for
    ``addrs`` from ``mac``, shows the address is someone else's (RFC 5227
    2.1.1): any ARP packet whose sender IP is one of them (a reply to our
    probe, or its owner's own traffic), or another host's probe for one of
    them (it wants the address too).  None for anything else."""
    if len(frame) < 14 + warp.LEN or frame[12:14] != _ETH_ARP:
        return None
    try:
        pkt = warp.parse(frame[14:])
    except ParseError:
        return None
    if pkt.sha == mac:
        return None  # our own probe, looped back
    if pkt.spa in addrs:
        return pkt.spa, pkt.sha
    if pkt.spa == _ZERO_IP and pkt.op == warp.OP_REQUEST and pkt.tpa in addrs:
        return pkt.tpa, pkt.sha
    return None


class ArpLayer:
    __slots__ = ("host",)

    def __init__(self, host: Host) -> None:
        self.host = host

    # -- transmit ---------------------------------------------------------

    def resolve(self, iface: Interface, next_hop: bytes, frame: bytearray) -> None:
        """Send an IPv4 frame (14 bytes of headroom) to the neighbour ``next_hop``
        whose entry is not fresh (``ArpTable.fresh_hdr`` said None; a fresh
        one needs nothing but its header, which ``Ipv4Layer.output`` writes).

        An entry past ``REACHABLE`` but not expired still serves, and one
        unicast request per ``RETRY`` refreshes it; a broadcast next hop
        takes the broadcast MAC; anything else waits for a resolution.
        """
        e = iface.arp.entries.get(next_hop)
        now = self.host.now
        if e is not None and now < e.expires:
            frame[0:14] = e.hdr
            iface.txq.append(frame)
            if now >= e.probe_at:
                e.probe_at = now + ArpTable.RETRY
                self._send(iface, warp.OP_REQUEST, e.mac, next_hop, e.mac)
            return
        if next_hop == _LIMITED_BROADCAST or next_hop == iface.broadcast:
            frame[0:14] = ethernet.BROADCAST + iface.mac + _ETH_IP
            iface.txq.append(frame)
            return
        self._enqueue(iface, next_hop, frame, now)

    def request(self, iface: Interface, next_hop: bytes) -> bool:
        """Resolve ``next_hop`` with no datagram waiting for it (a sender
        that builds its own frames, ``ustack flood``, wants the MAC once):
        a broadcast request, retried as for a datagram, unless the entry
        is fresh or a resolution is under way.  False when the table has
        no room for another resolution (``MAX_PENDING``)."""
        table = iface.arp
        now = self.host.now
        if table.fresh_hdr(next_hop, now) is not None or next_hop in table.pending:
            return True
        if len(table.pending) >= ArpTable.MAX_PENDING:
            self.host.counters.drop("arp_pending_full")
            return False
        p = table.pending[next_hop] = Pending()
        p.spa = iface.ip
        self._solicit(iface, next_hop, p, now)
        return True

    def _enqueue(self, iface: Interface, next_hop: bytes, frame: bytearray, now: float) -> None:
        c = self.host.counters
        table = iface.arp
        p = table.pending.get(next_hop)
        if p is None:
            if len(table.pending) >= ArpTable.MAX_PENDING:
                c.drop("arp_pending_full")
                c.IpOutDiscards += 1
                return
            p = table.pending[next_hop] = Pending()
            # The request says the datagram's source when it is an address
            # of this interface (Linux's arp_announce=0), so the neighbour
            # learns the address it is about to answer.
            src = bytes(frame[26:30])
            p.spa = src if src in iface.addrs else iface.ip
            self._solicit(iface, next_hop, p, now)
        if p.nbytes + len(frame) > ArpTable.QUEUE_BYTES_PER_NEIGHBOUR:
            c.drop("arp_queue_full")
            c.IpOutDiscards += 1
            return
        p.frames.append(frame)
        p.nbytes += len(frame)

    def _solicit(self, iface: Interface, next_hop: bytes, p: Pending, now: float) -> None:
        p.tries += 1
        self._send(iface, warp.OP_REQUEST, ethernet.BROADCAST, next_hop, _ZERO_MAC, p.spa)
        p.timer = self.host.timers.call_at(now + ArpTable.RETRY,
                                           partial(self._retry, iface, next_hop))

    def _retry(self, iface: Interface, next_hop: bytes, now: float) -> None:
        table = iface.arp
        p = table.pending.get(next_hop)
        if p is None:
            return
        if p.tries < ArpTable.TRIES:
            self._solicit(iface, next_hop, p, now)
            return
        del table.pending[next_hop]
        c = self.host.counters
        c.ArpResolveFailed += 1
        for _ in p.frames:
            c.drop("arp_unresolved")
            c.IpOutDiscards += 1

    def announce(self, iface: Interface) -> None:
        """Gratuitous ARP for every address of ``iface`` (``announce_address``)."""
        for ip in iface.addrs:
            self.announce_address(iface, ip)

    def announce_address(self, iface: Interface, ip: bytes) -> None:
        """Gratuitous ARP: a request for our own address (RFC 5227 2.3)."""
        self._send(iface, warp.OP_REQUEST, ethernet.BROADCAST, ip, _ZERO_MAC, spa=ip)

    def _send(self, iface: Interface, op: int, eth_dst: bytes, tpa: bytes, tha: bytes,
              spa: bytes | None = None) -> None:
        iface.txq.append(arp_frame(eth_dst, iface.mac, op, spa or iface.ip, tha, tpa))
        c = self.host.counters
        if op == warp.OP_REQUEST:
            c.ArpOutRequests += 1
        else:
            c.ArpOutReplies += 1

    # -- receive ----------------------------------------------------------

    def input(self, iface: Interface, body: bytes) -> None:
        """Process an ARP packet (the Ethernet payload), RFC 826 "Packet reception"."""
        c = self.host.counters
        try:
            pkt = warp.parse(body)
        except ParseError as err:
            c.drop(err.reason)
            return
        if pkt.op == warp.OP_REQUEST:
            c.ArpInRequests += 1
        else:
            c.ArpInReplies += 1
        if pkt.sha[0] & 1 or pkt.sha == _ZERO_MAC:
            c.drop("arp_bad_sender_mac")  # a multicast sender MAC is never valid
            return
        spa, tpa = pkt.spa, pkt.tpa
        ours = iface.addrs
        if spa in ours:
            # Someone else claims our address (RFC 5227 2.4); never cache it.
            if pkt.sha != iface.mac:
                c.drop("arp_address_conflict")
            return
        if spa == _ZERO_IP:
            # An RFC 5227 2.1.1 probe: nobody to cache; if it asks for our
            # address, answer so the prober sees it is taken.
            if tpa in ours and pkt.op == warp.OP_REQUEST:
                self._send(iface, warp.OP_REPLY, pkt.sha, spa, pkt.sha, spa=tpa)
            return
        if not iface.on_link(spa) or spa == iface.broadcast:
            # A neighbour is on the link's subnet: a sender outside it (or
            # claiming the broadcast address) is someone planting an entry
            # we would never use honestly.  Not learned, not answered (Linux
            # answers only where the route back to the sender validates).
            c.drop("arp_sender_off_link")
            return
        table = iface.arp
        # RFC 826 "Packet reception": update an existing entry from any
        # packet (the "merge_flag"); create one only when the packet is a
        # request for our address (we answer it, and the sender is about to
        # talk to us) or comes from a neighbour we are resolving (its reply
        # to our request, or its announcement).  An unsolicited reply makes
        # no entry, as on Linux (arp_accept=0): else anyone on the link
        # could fill the cache or pre-empt a resolution.
        for_us = tpa in ours
        request_for_us = for_us and pkt.op == warp.OP_REQUEST
        if spa in table.entries or spa in table.pending or request_for_us:
            self._learn(iface, spa, pkt.sha)
        elif for_us:
            c.drop("arp_unsolicited_reply")
        if request_for_us:
            # The reply is from the address asked for (RFC 826: the target's
            # protocol address becomes the sender's), whichever of ours.
            self._send(iface, warp.OP_REPLY, pkt.sha, spa, pkt.sha, spa=tpa)

    def _learn(self, iface: Interface, ip: bytes, mac: bytes) -> None:
        """Create or confirm the entry for ``ip`` and release what waited for it."""
        table = iface.arp
        e = table.learn(ip, mac, self.host.now)
        p = table.pending.pop(ip, None)
        if p is not None:
            if p.timer is not None:
                p.timer.cancel()
            hdr = e.hdr
            for frame in p.frames:
                frame[0:14] = hdr
            iface.txq.extend(p.frames)
