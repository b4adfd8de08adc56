"""ICMP for a host (RFC 792, RFC 1122 3.2.2).

Answers echo requests (a Record Route or Timestamp option comes back
updated with this host, RFC 1122 3.2.2.6); sends destination-unreachable errors for the layers
above (port unreachable for UDP, protocol unreachable for IP), under the
rules of RFC 1122 3.2.2 (never about an ICMP error, a broadcast or
multicast, a non-initial fragment, or a non-unicast source) and a global
token-bucket rate limit (RFC 1812 4.3.2.8; Linux icmp_msgs_per_sec); and
hands received errors about our own datagrams to the transport that sent
them (RFC 1122 3.2.2.1: "MUST be passed to the transport layer").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from ustack.net.host import RX_IP_BROADCAST, RX_LINK_BROADCAST, Host
from ustack.net.interface import HEADROOM, Interface
from ustack.net.ipv4 import MARTIAN_FIRST, Ipv4Layer, ProtocolHandler, error_header
from ustack.net.sockaddr import ANY
from ustack.wire import icmp as wicmp
from ustack.wire import ipv4 as wip
from ustack.wire import ipv4opts
from ustack.wire.checksum import sum_mod, update16
from ustack.wire.errors import ParseError

_ERROR_TYPES: Final = frozenset({wicmp.DEST_UNREACH, wicmp.TIME_EXCEEDED, 4, 5, 12})


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = 0.0

    def take(self, now: float) -> bool:
        t = self.tokens + (now - self.last) * self.rate
        self.last = now
        if t > self.burst:
            t = self.burst
        if t < 1.0:
            self.tokens = t
            return False
        self.tokens = t - 1.0
        return True


class IcmpLayer(ProtocolHandler):
    # Linux defaults: net.ipv4.icmp_msgs_per_sec=1000, icmp_msgs_burst=50.
    RATE: Final = 1000.0
    BURST: Final = 50.0

    __slots__ = ("bucket", "echo_ignore_broadcasts", "host", "ip", "wall_clock")

    def __init__(self, host: Host, ip: Ipv4Layer) -> None:
        self.host = host
        self.ip = ip
        self.bucket = TokenBucket(self.RATE, self.BURST)
        self.echo_ignore_broadcasts = True  # like Linux's default (RFC 1122 3.2.2.6 MAY)
        # UTC seconds, read only for the Timestamp option (RFC 791 wants
        # milliseconds since midnight UT, which the stack's clock is not).
        self.wall_clock: Callable[[], float] = time.time
        ip.protocols[wip.PROTO_ICMP] = self
        ip.icmp_error = self.send_error

    def input(self, iface: Interface, src: bytes, dst: bytes, payload: bytes, pkt: bytes,
              rx: int) -> None:
        host = self.host
        c = host.counters
        c.IcmpInMsgs += 1
        if (len(payload) >= 8 and payload[0] == wicmp.ECHO_REQUEST and not payload[1]
                and (dst == iface.ip or dst in host.local_addrs) and pkt[0] == 0x45
                and not sum_mod(payload)):
            # Echo fast path (RFC 792): the reply is the request with type 0.
            # Its checksum follows from the request's by RFC 1624 (only the
            # type byte changed), so the data is summed once, to verify it.
            # (The type byte is 8, so the data is not all zero and a zero sum
            # means a valid checksum.)
            c.IcmpInEchos += 1
            csum = update16((payload[2] << 8) | payload[3], wicmp.ECHO_REQUEST << 8, 0)
            buf = bytearray(HEADROOM + len(payload))
            buf[HEADROOM:] = payload
            buf[HEADROOM] = wicmp.ECHO_REPLY
            buf[HEADROOM + 2] = csum >> 8
            buf[HEADROOM + 3] = csum & 0xFF
            # RFC 1122 3.2.2.6: the reply's source is the request's
            # destination (one of ours: the fast path is for our unicast
            # addresses, a broadcast takes the general one).
            try:
                hop = self.ip.route(src, dst)
            except OSError:  # no route back (counted as IpOutNoRoutes)
                c.IcmpOutErrors += 1
                return
            self.ip.output(hop, src, wip.PROTO_ICMP, buf)
            c.IcmpOutMsgs += 1
            c.IcmpOutEchoReps += 1
            return
        try:
            m = wicmp.parse(payload)
        except ParseError as e:
            c.IcmpInErrors += 1
            if e.reason == "icmp_checksum":
                c.IcmpInCsumErrors += 1
            c.drop(e.reason)
            return
        t = m.type
        if t == wicmp.ECHO_REQUEST:
            c.IcmpInEchos += 1
            if rx & RX_IP_BROADCAST and self.echo_ignore_broadcasts:
                c.drop("icmp_echo_broadcast")
                return
            # RFC 792: the reply is the request with type 0; RFC 1624 turns the
            # checksum for the changed first word instead of summing the data.
            csum = update16(m.checksum, wicmp.ECHO_REQUEST << 8 | m.code, m.code)
            body = wicmp.HEADER.pack(wicmp.ECHO_REPLY, m.code, csum, m.rest) + m.body
            # RFC 1122 3.2.2.6: from the request's destination, unless that
            # was a broadcast (then the interface's address, 3.2.1.3).
            reply_src = ANY if rx & RX_IP_BROADCAST else dst
            hl = (pkt[0] & 15) << 2
            if hl > 20:
                # RFC 1122 3.2.2.6: Record Route and Timestamp options SHOULD
                # be updated with this host and returned in the reply.
                sent = self._reply_with_options(src, reply_src, body, pkt[20:hl])
                if sent is None:
                    return
                if sent:
                    c.IcmpOutEchoReps += 1
                    return
            if self._send(src, body, reply_src):
                c.IcmpOutEchoReps += 1
        elif t == wicmp.ECHO_REPLY:
            c.IcmpInEchoReps += 1
        elif t == wicmp.DEST_UNREACH or t == wicmp.TIME_EXCEEDED:
            if t == wicmp.DEST_UNREACH:
                c.IcmpInDestUnreachs += 1
            else:
                c.IcmpInTimeExcds += 1
            try:
                qh, qdata = wicmp.quoted(m)
            except ParseError as e:
                c.IcmpInErrors += 1
                c.drop(e.reason)
                return
            if qh.src != iface.ip and qh.src not in host.local_addrs:
                c.drop("icmp_quote_not_ours")
                return
            handler = self.ip.errors.get(qh.proto)
            if handler is None:
                c.drop("icmp_error_no_handler")
                return
            handler(qh, qdata, t, m.code, m.next_hop_mtu)
        else:
            c.drop("icmp_type_ignored")

    def send_error(self, type_: int, code: int, pkt: bytes, rx: int = 0, *, mtu: int = 0) -> None:
        """Send an ICMP error about the received datagram ``pkt``; ``rx`` are
        the properties of the frame it came in (``net.host.RX_*``)."""
        host = self.host
        c = host.counters
        h = error_header(pkt)
        # RFC 1122 3.2.2: never about a datagram sent to an IP broadcast
        # address or that came in a link-layer broadcast, ...
        if h is None or rx & (RX_IP_BROADCAST | RX_LINK_BROADCAST):
            c.drop("icmp_error_suppressed")
            return
        # RFC 1122 3.2.2: never send an error about ...
        if h.frag_offset:  # ... a non-initial fragment,
            c.drop("icmp_error_suppressed")
            return
        src = h.src
        if MARTIAN_FIRST[src[0]]:  # ... a source that is not one host (3.2.1.3's list),
            c.drop("icmp_error_suppressed")
            return
        if h.proto == wip.PROTO_ICMP:  # ... an ICMP error message,
            hl = h.header_len
            if len(pkt) <= hl or pkt[hl] in _ERROR_TYPES or pkt[hl] not in (0, 8, 13, 14, 15, 16):
                c.drop("icmp_error_suppressed")
                return
        if not self.bucket.take(host.now):  # ... and not too many of them.
            c.IcmpOutRateLimitGlobal += 1
            return
        body = wicmp.build_error(type_, code, pkt, mtu)
        if self._send(src, body):
            if type_ == wicmp.DEST_UNREACH:
                c.IcmpOutDestUnreachs += 1
            elif type_ == wicmp.TIME_EXCEEDED:
                c.IcmpOutTimeExcds += 1

    def _reply_with_options(self, dst: bytes, src: bytes, body: bytes,
                            options: bytes) -> bool | None:
        """Send the echo reply ``body`` with the request's ``options``
        updated (``wire.ipv4opts``): True if sent, False to send it plain
        (no option to return, or it would not fit), None when the options
        were malformed (dropped, counted)."""
        c = self.host.counters
        try:
            hop = self.ip.route(dst, src)
        except OSError:  # no route back (counted as IpOutNoRoutes)
            c.IcmpOutErrors += 1
            return None
        local = self.host.local_addrs
        # (The wall clock only for a Timestamp option: the type byte 68
        # somewhere, at worst a reading too many.)
        ms = int(self.wall_clock() % 86400.0 * 1000.0) if ipv4opts.OPT_TS in options else 0
        try:
            opts = ipv4opts.echo_options(options, hop.src, local.__contains__, ms)
        except ParseError as e:
            c.drop(e.reason)  # (a parameter problem, RFC 792, is not sent)
            return None
        if not opts or not self.ip.output_with_options(hop, dst, wip.PROTO_ICMP, body, opts):
            return False
        c.IcmpOutMsgs += 1
        return True

    def _send(self, dst: bytes, body: bytes, src: bytes = ANY) -> bool:
        """Send the ICMP message ``body`` to ``dst``; False if no route leads there."""
        c = self.host.counters
        try:
            hop = self.ip.route(dst, src)
        except OSError:  # no route (counted as IpOutNoRoutes)
            c.IcmpOutErrors += 1
            return False
        buf = bytearray(HEADROOM + len(body))
        buf[HEADROOM:] = body
        self.ip.output(hop, dst, wip.PROTO_ICMP, buf)
        c.IcmpOutMsgs += 1
        return True

    def send_echo(self, dst: bytes, ident: int, seq: int, data: bytes) -> None:
        """Send an echo request (for tools and tests)."""
        if self._send(dst, wicmp.build_echo(wicmp.ECHO_REQUEST, ident, seq, data)):
            self.host.counters.IcmpOutEchos += 1
