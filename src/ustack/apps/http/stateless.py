"""Stateless HTTP (``ustack serve --stateless``): small responses with no
connection at all.

After the CAIA design (Swinburne; FreeBSD 9 patches): a response that fits
the client's initial window needs no connection block.  The SYN is
answered with a SYN cookie (the listener's mode is ``always``: tcp/cookies.py,
apps/cookie_tap.py) and nothing is kept.  The segment that brings the
request is checked by its cookie (its acknowledgement number less one is
the cookie, as for the handshake's ACK: that one carried no text), the
request is parsed from that one segment, and if its whole response fits
both the client's receive window and the initial window (RFC 6928: 10
segments) it is sent at once, its last segment with FIN.  Nothing is
stored: a retransmitted request is answered again the same way, the
client's ACKs are absorbed, its FIN is acknowledged from the numbers it
carries (a FIN that acknowledges only the cookie, with no request before
it, goes to a connection), and after that nothing remains of the exchange.
A FIN that follows a request the client sent but we never received is
acknowledged all the same (its numbers cannot be checked against a request
nothing remembers): a client that half-closes right after its request and
loses that segment is left without an answer.  HTTP clients read before
they close, so it takes a lost segment and a rare client.
A response segment the client loses is not sent again: nothing remembers
it, and the client's duplicate ACKs are absorbed like the others; the
client times out (or, with ``rst``, is told at once).  The design assumes
the small responses of a lossless path; anything else wants a connection.

Anything else goes to the TCP layer unchanged: segments of connections the
layer holds, SYNs, resets, and every request that does not qualify (not
one whole GET or HEAD of a static file in the segment, or a response too
large): the cookie completes the handshake there as for any ACK and the
server serves it on an ordinary connection (``HttpStatelessFallbacks``).

``rst``: a RST follows the FIN, as CAIA's servers did, so a client whose
FIN or final ACK is lost is not left waiting (it drops the connection at
once).  The trade-off: a client that loses a data segment can no longer
ask for it (its retransmission timer finds the connection reset, and it
reports an error instead of retrying), so it suits lossless paths and
clients that retry the request; off by default.
"""

from __future__ import annotations

from typing import Final

from ustack.apps.http.server import HttpServer
from ustack.net.host import RX_CSUM_OK
from ustack.net.interface import Interface
from ustack.net.ipv4 import ProtocolFront
from ustack.net.sockaddr import ANY
from ustack.stack import Stack
from ustack.tcp import cookies
from ustack.tcp import seq as sq
from ustack.tcp import syncookies as sc
from ustack.tcp.config import TcpConfig
from ustack.tcp.segment import OutSegment, Segment
from ustack.tcp.tcb import DEFAULT_PEER_MSS, TS_OPTION_LEN
from ustack.wire import ipv4 as wip
from ustack.wire import tcp as wtcp
from ustack.wire.checksum import sum_mod
from ustack.wire.errors import ParseError
from ustack.wire.tcp import ACK, FIN, PSH, RST, SYN

INITIAL_WINDOW: Final = 10  # segments (RFC 6928)


class StatelessFront(ProtocolFront):
    """Sits before the TCP layer (``Ipv4Layer.protocols[6]``) and answers
    the server's port statelessly where it can (the module's rules)."""

    def __init__(self, stack: Stack, server: HttpServer, *, rst: bool = False) -> None:
        super().__init__(stack.ipv4, wip.PROTO_TCP)
        self.stack = stack
        self.tcp = stack.tcp
        self.server = server
        self.listener = server.listener
        self.port = server.listener.port
        self.rst = rst
        self.counters = server.counters
        # Every SYN gets a cookie: no SYN queue, nothing kept per client.
        self.listener.syncookies = cookies.ALWAYS

    def input(self, iface: Interface, src: bytes, dst: bytes, payload: bytes, pkt: bytes,
              rx: int) -> None:
        tcp = self.tcp
        if len(payload) < 20 or ((payload[2] << 8) | payload[3]) != self.port:
            tcp.input(iface, src, dst, payload, pkt, rx)
            return
        # A segment of a connection, or one the layer's rules take (SYN, RST,
        # no ACK, another address), goes on unparsed: it is parsed there.
        sport = (payload[0] << 8) | payload[1]
        key = (dst, self.port, src, sport)
        if (payload[13] & (SYN | RST) or not payload[13] & ACK or key in tcp.conns
                or (tcp.tw.records and key in tcp.tw.records)
                or (self.listener.ip != ANY and dst != self.listener.ip)):
            tcp.input(iface, src, dst, payload, pkt, rx)
            return
        try:
            sport, dport, seq, ack, hl, flags, window = wtcp.parse_fields(
                payload, -1 if rx & RX_CSUM_OK else sum_mod(src + dst))
            opts = wtcp.parse_options(payload[20:hl]) if hl > 20 else wtcp.NO_OPTIONS
        except ParseError:
            tcp.input(iface, src, dst, payload, pkt, rx)  # counted there
            return
        text = payload[hl:]
        c = self.counters
        if not text and not flags & FIN:
            self.stack.counters.TcpInSegs += 1
            c.HttpStatelessAcks += 1  # of the handshake, of our response
            return
        now = self.stack.now
        seg = Segment(seq, ack, flags, window, text, opts)
        cfg = cookies.listener_settings(tcp.config, self.listener)
        syn = cookies.syn_for_ack(tcp.cookie_secret, dst, dport, src, sport, seg, cfg, now)
        if not text:  # a FIN
            if syn is not None:
                # A FIN that acknowledges only the cookie: its request has
                # not come (lost, or still on its way); acknowledging the
                # FIN would acknowledge that too.  A connection waits for it.
                c.HttpStatelessFallbacks += 1
                tcp.input(iface, src, dst, payload, pkt, rx)
                return
            self.stack.counters.TcpInSegs += 1
            self._ack_fin(dst, dport, src, sport, seq, ack, opts, cfg, now)
            c.HttpStatelessFins += 1
            return
        if syn is None or not self._answer(iface, dst, dport, src, sport, seg, syn, cfg, now):
            # Not ours (the layer resets it and counts it), or not for
            # stateless service: a connection, as for any cookie's ACK.
            if syn is not None:
                c.HttpStatelessFallbacks += 1
            tcp.input(iface, src, dst, payload, pkt, rx)
            return
        self.stack.counters.TcpInSegs += 1
        c.HttpStatelessResponses += 1

    def _answer(self, iface: Interface, lip: bytes, lport: int, rip: bytes, rport: int,
                seg: Segment, syn: Segment, cfg: TcpConfig, now: float) -> bool:
        """Send the whole response to the request in ``seg`` with FIN, if it
        is one and fits (the client's window, the initial window)."""
        tcp = self.tcp
        so = syn.opts
        ts = so.ts_val is not None
        mss = min(so.mss or DEFAULT_PEER_MSS, cfg.mss, tcp.path_mss(iface, rip))
        if ts:
            mss -= TS_OPTION_LEN
        peer_ws = so.wscale if so.wscale is not None else 0
        limit = min(INITIAL_WINDOW * mss, seg.window << min(peer_ws, 14))
        response = self.server.respond_once(seg.payload, wip.addr_to_str(rip), limit)
        if response is None:
            return False
        n = len(response)
        iss = sq.add(seg.ack, -1)
        rcv_nxt = sq.add(seg.seq, len(seg.payload) + (1 if seg.flags & FIN else 0))
        our_ws = cookies.wscale_for(cfg) if so.wscale is not None else 0
        window = cookies.window_field(cfg, our_ws)
        options = b""
        if ts:
            options = wtcp.ts_option(
                cookies.ts_clock(tcp.cookie_secret, sc.words(rip, lip, rport, lport), now),
                seg.opts.ts_val or 0)
        view = memoryview(response)
        off = 0
        while off < n:
            end = min(off + mss, n)
            flags = ACK | (PSH | FIN if end == n else 0)
            tcp.send_unattached(lip, lport, rip, rport, OutSegment(
                sq.add(iss, 1 + off), rcv_nxt, flags, window, options, view[off:end]),
                cfg.ttl, cfg.tos)
            off = end
        if self.rst:
            tcp.send_unattached(lip, lport, rip, rport, OutSegment(
                sq.add(iss, 2 + n), 0, RST, 0, b"", b""), cfg.ttl, cfg.tos)
            self.stack.counters.TcpOutRsts += 1
        return True

    def _ack_fin(self, lip: bytes, lport: int, rip: bytes, rport: int, seq: int, ack: int,
                 opts: wtcp.TcpOptions, cfg: TcpConfig, now: float) -> None:
        """The client's FIN after our response (RFC 9293 3.10.7.4: in
        LAST-ACK we acknowledge it), from its own numbers: nothing was kept
        to check them against, and an ACK is all it gets."""
        tcp = self.tcp
        options = b""
        shift = 0
        if opts.ts_val is not None:
            options = wtcp.ts_option(
                cookies.ts_clock(tcp.cookie_secret, sc.words(rip, lip, rport, lport), now),
                opts.ts_val)
            shift = cookies.wscale_for(cfg)  # (the cookie offered it with timestamps)
        window = cookies.window_field(cfg, shift)
        tcp.send_unattached(lip, lport, rip, rport, OutSegment(
            ack, sq.add(seq, 1), ACK, window, options, b""), cfg.ttl, cfg.tos)
