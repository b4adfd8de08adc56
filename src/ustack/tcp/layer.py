"""TCP in the Stack: demultiplexing, listeners, resets, timers, transmission.

The layer owns every connection of the Stack in one dict keyed by the
4-tuple (local ip, local port, remote ip, remote port) and every listener
by (ip, port).  A segment that matches neither is answered with a reset as
RFC 9293 3.10.7.1 says.  After any event touches a connection (a segment,
a timer, an application call) ``service`` hands its events to the
application, then collects its segments (so a reply written from a
callback leaves with the ACK), writes them into frames, and keeps its one
Stack timer.

The common segment -- in-order data or an ACK of new data in ESTABLISHED --
takes header prediction (``TcpConnection.receive_predicted``) and is
serviced once per receive batch rather than once per segment: the
application sees one READABLE for the batch and one ACK answers it, as
after the kernel's GRO.  Every other segment is serviced at once, so each
out-of-order segment still earns its own duplicate ACK (RFC 5681 4.2).
"""

from __future__ import annotations

import errno
import random
from collections.abc import Callable
from functools import partial
from typing import Final

from ustack.net.host import RX_CSUM_OK, Host
from ustack.net.icmp import TokenBucket
from ustack.net.interface import HEADROOM, Interface
from ustack.net.ipv4 import DEFAULT_TTL, Ipv4Layer, ProtocolHandler
from ustack.net.ports import EphemeralPorts
from ustack.net.route import NextHop
from ustack.net.sockaddr import ANY, AddressArg
from ustack.net.sockaddr import parse as _addr
from ustack.tcp import cookies, pathmtu
from ustack.tcp import seq as sq
from ustack.tcp import syncookies as sc
from ustack.tcp.config import TcpConfig, apply_options
from ustack.tcp.connection import TcpConnection
from ustack.tcp.drops import count_drop, count_header_error
from ustack.tcp.isn import IsnGenerator
from ustack.tcp.output import segments_to_send
from ustack.tcp.ports import Binding, PortTable
from ustack.tcp.segment import Event, OutSegment, Segment
from ustack.tcp.socket import TcpListener, TcpSocket, os_error
from ustack.tcp.states import Ev, State
from ustack.tcp.tcb import TS_OPTION_LEN
from ustack.tcp.timewait import TimeWaitRecord, TimeWaitTable, record_of
from ustack.tcp.trace import Tracer
from ustack.timers import Timer
from ustack.wire import ipv4 as wip
from ustack.wire import tcp as wtcp
from ustack.wire.checksum import sum_mod
from ustack.wire.errors import ParseError
from ustack.wire.tcp import ACK, FIN, RST, SYN, URG

# A super-frame's payload: 64 000 bytes keeps IPv4 total length (16 bits)
# within bounds with the largest TCP header.
GSO_MAX_PAYLOAD: Final = 64000
# A received payload this large is read through a view (see ``input``).
_VIEW_MIN: Final = 4096
# In-order data received in one batch is acknowledged once, but never more
# than this much at a time (what one GRO super-segment holds on Linux).
STRETCH_ACK_BYTES: Final = 65536
Key = tuple[bytes, int, bytes, int]

# Header prediction takes ACK (and PSH, ECE, CWR) but none of these flags.
_PREDICTION_MASK: Final = SYN | FIN | RST | URG | ACK

class TcpLayer(ProtocolHandler):
    # RFC 5961 7: challenge ACKs are limited per second (Linux's default
    # net.ipv4.tcp_challenge_ack_limit is 1000).
    CHALLENGE_ACK_LIMIT: Final = 1000.0
    # Connections kept in TIME-WAIT at most (Linux's net.ipv4.tcp_max_tw_buckets):
    # a server that closes first (HTTP's Connection: close) puts every
    # connection there for 2 MSL, a full connection each here (several KB):
    # at 10,000 connections a second that is 600,000 of them.  Past the
    # bound a connection leaves TIME-WAIT at once, counted.
    MAX_TIME_WAIT: Final = 1 << 15  # (32768; the ephemeral range is net/ports.py's)

    def __init__(self, host: Host, ip: Ipv4Layer) -> None:
        self.host = host
        self.ip = ip
        self.config = TcpConfig()
        self.conns: dict[Key, TcpSocket] = {}
        self.listeners: dict[tuple[bytes, int], TcpListener] = {}
        self.isn = IsnGenerator()
        # SYN cookies (tcp/cookies.py): every listener's mode unless it has
        # its own (Linux's net.ipv4.tcp_syncookies, 1 by default), and the
        # secret, which worker processes may share (``SynCookieSecret.raw``).
        self.syncookies = cookies.ON
        self.cookie_secret = sc.SynCookieSecret()
        # Sockets an application call touched since the last ``run_dirty``.
        self.dirty: dict[TcpSocket, None] = {}
        self._challenge_acks = TokenBucket(self.CHALLENGE_ACK_LIMIT, self.CHALLENGE_ACK_LIMIT)
        self.ephemeral = EphemeralPorts()
        # Connections whose MSS a path MTU estimate lowered, with the timer
        # that gives it back when the estimate expires (``_watch_pmtu``).
        self._pmtu_watch: dict[TcpSocket, Timer] = {}
        self.max_time_wait = self.MAX_TIME_WAIT
        self.time_wait = 0  # connections in TIME-WAIT now (whole or as a record)
        # Closed connections in TIME-WAIT, as records (tcp/timewait.py), and
        # the one timer that expires them.
        self.tw = TimeWaitTable()
        self._tw_timer: Timer | None = None
        # Which local ports are taken, and ports bound before listen or connect.
        self.ports = PortTable(host, self.listeners, self.conns, self.tw.records)
        # Bound once: every connection holds these (a bound method made per
        # connection was 72 bytes of each, issue 12).
        self._on_timer_cb: Callable[[TcpSocket, float], None] = self._on_timer
        self._challenge_cb: Callable[[float], bool] = self._challenge_allowed
        self.tracer: Tracer | None = None  # --trace: every new connection's (tcp/trace.py)
        ip.protocols[wip.PROTO_TCP] = self
        ip.errors[wip.PROTO_TCP] = self.icmp_error

    # ==================================================================
    # Application entry points
    # ==================================================================

    def path_mss(self, iface: Interface, rip: bytes) -> int:
        """The largest MSS towards ``rip``: the path MTU (the interface's,
        or less where fragmentation-needed taught us, RFC 1191) less the
        IPv4 and TCP headers."""
        return self.ip.pmtu.mtu(rip, iface.mtu, self.host.now) - 40

    def _config_for(self, iface: Interface, rip: bytes) -> TcpConfig:
        cfg = self.config.copy()  # connections change theirs
        cfg.mss = min(cfg.mss, self.path_mss(iface, rip))
        if iface.gso and not cfg.max_segment:
            # docs/architecture.md, principle 6: hand the device 64 KB super-frames and
            # let it cut them (the IPv4 total length field caps them).
            cfg.max_segment = GSO_MAX_PAYLOAD
        return cfg

    def _socket(self, conn: TcpConnection, listener: TcpListener | None = None) -> TcpSocket:
        sock = TcpSocket(self.host, self.dirty, self._on_timer_cb, conn, listener)
        if self.tracer is not None:
            conn.attach_tracer(self.tracer)
        self.conns[(*conn.local, *conn.remote)] = sock
        return sock

    def listen(self, address: AddressArg, backlog: int = 128, *,
               syncookies: str | int | None = None, **options: object) -> TcpListener:
        """A listening endpoint.  ``options`` are ``TcpConfig`` fields, as for
        ``connect``, that its connections take over the layer's defaults
        (``TcpListener.set_options`` changes them later).  ``syncookies``
        (``off``, ``on``, ``always``) is its own SYN cookie mode instead of
        the layer's (``TcpLayer.syncookies``)."""
        mode = -1 if syncookies is None else cookies.parse_mode(syncookies)
        ip, port = _addr(address)
        if ip != ANY and ip not in self.host.local_addrs:
            raise os_error(errno.EADDRNOTAVAIL)
        if port == 0:
            port = self.ephemeral.pick(lambda p: self.ports.in_use(ip, p), errno.EADDRINUSE)
        if self.ports.listening(ip, port):
            raise os_error(errno.EADDRINUSE)
        listener = TcpListener(self.listeners, ip, port, backlog)
        listener.set_options(**options)  # TypeError for an unknown name, before it listens
        listener.syncookies = mode
        self.listeners[(ip, port)] = listener
        return listener

    def connect(self, address: AddressArg, *, source: AddressArg | None = None,
                local_port: int = 0, config: TcpConfig | None = None,
                **options: object) -> TcpSocket:
        """Active open: returns at once; the socket reports Event.CONNECTED.

        ``source`` is the local ``(ip, port)``: ip one of ours (else
        EADDRNOTAVAIL) or ANY for the route's (RFC 1122 3.3.4.3), port 0
        for an ephemeral one (else it is ``local_port``'s).  An ephemeral
        port need only make the 4-tuple unique (Linux's
        __inet_hash_connect), so each source address has the whole range
        towards each destination.  ``options`` override the layer's
        defaults for this connection, by ``TcpConfig`` field name:
        ``cc="newreno"``, ``nodelay=True``, ``rcvbuf=...``,
        ``keepalive=True`` ...
        """
        rip, rport = _addr(address)
        if rip == ANY or rport == 0:
            raise os_error(errno.EINVAL if rport == 0 else errno.ECONNREFUSED)
        lip = ANY
        if source is not None:
            lip, sport = _addr(source)
            if lip != ANY and lip not in self.host.local_addrs:
                raise os_error(errno.EADDRNOTAVAIL)
            if sport:
                # A port asked for is bound first, as by bind(): a listener
                # on it (at that address or the wildcard) refuses it.
                if self.ports.listening(lip, sport):
                    raise os_error(errno.EADDRINUSE)
                local_port = sport
        hop = self.ip.route(rip, lip)
        lip = hop.src
        records = self.tw.records
        lport = local_port or self.ephemeral.pick(
            lambda p: (lip, p, rip, rport) in self.conns or (lip, p, rip, rport) in records
            or p in self.ports.bound or self.ports.listening(ANY, p))
        if (lip, lport, rip, rport) in self.conns or (lip, lport, rip, rport) in records:
            raise os_error(errno.EADDRINUSE)
        now = self.host.now
        cfg = config or self._config_for(hop.iface, rip)
        apply_options(cfg, options)
        conn = TcpConnection((lip, lport), (rip, rport),
                             self.isn.isn(lip, lport, rip, rport, now), cfg, now,
                             self._challenge_cb, ts_offset=random.getrandbits(32),
                             counters=self.host.counters)
        sock = self._socket(conn)
        conn.connect(now)
        self.host.counters.TcpActiveOpens += 1
        self.kick(sock)
        return sock

    # -- bind (before listen or connect) ----------------------------------

    def bind(self, ip: bytes, port: int, *, reuse: bool = False) -> Binding:
        """``PortTable.bind`` with the layer's ephemeral ports."""
        return self.ports.bind(ip, port, self.ephemeral, reuse=reuse)

    def unbind(self, b: Binding) -> None:
        self.ports.unbind(b)

    def _challenge_allowed(self, now: float) -> bool:
        if self._challenge_acks.take(now):
            self.host.counters.TcpExtTCPChallengeACK += 1
            return True
        self.host.counters.TcpExtTCPChallengeACKLimited += 1
        return False

    # ==================================================================
    # Receive
    # ==================================================================

    def input(self, iface: Interface, src: bytes, dst: bytes, payload: bytes,
              pkt: bytes, rx: int) -> None:
        host = self.host
        c = host.counters
        # RFC 9293 3.1: the checksum covers the pseudo-header and the segment
        # (unless the kernel vouched for it: RX_CSUM_OK).
        try:
            sport, dport, seq, ack, hl, flags, window = wtcp.parse_fields(
                payload, -1 if rx & RX_CSUM_OK else sum_mod(src + dst))
        except ParseError as e:
            count_header_error(c, e)
            return
        c.TcpInSegs += 1
        sock = self.conns.get((dst, dport, src, sport))
        text: bytes | None  # the segment's text, if it was cut out already
        # Header prediction (RFC 9293 3.10.7.4 with the outcomes known, see
        # TcpConnection.receive_predicted): only ACK/PSH set, and options that
        # are exactly timestamps in Linux's layout or none at all.
        if sock is not None and flags & _PREDICTION_MASK == ACK and (hl == 20 or (
                hl == 32 and payload[20:24] == wtcp.TS_ALIGNED)):
            if hl == 32:
                ts_val, ts_ecr = wtcp.unpack_ts(payload, 24)
            else:
                ts_val = -1
                ts_ecr = 0
            conn = sock.conn
            # A large payload is read through a view: it is copied once,
            # into the receive queue (a view costs more than copying a
            # small one).
            n = len(payload)
            data = payload[hl:] if n < _VIEW_MIN else memoryview(payload)[hl:]
            if conn.receive_predicted(seq, ack, window, data, ts_val, ts_ecr, host.now):
                if n > hl:
                    c.TcpExtTCPHPHits += 1
                else:
                    c.TcpExtTCPHPAcks += 1
                # Serviced once after the whole receive batch (the
                # Stack's flush runs ``run_dirty``): the application
                # gets one READABLE for every in-order segment of the
                # batch, and one ACK covers them, as after the kernel's
                # GRO -- up to GRO's 64 KB, beyond which it goes now.
                if conn.acks_pending < STRETCH_ACK_BYTES:
                    self.dirty[sock] = None
                else:
                    self.service(sock)
                return
            # Refused: the general path takes the text cut out already, if
            # it is a copy (it may keep it; a view of the frame it must not).
            text = data if isinstance(data, bytes) else None
        else:
            text = None
        if hl > 20:
            try:
                opts = wtcp.parse_options(payload[20:hl])
            except ParseError as e:
                c.TcpInErrs += 1
                c.drop(e.reason)
                return
        else:
            opts = wtcp.NO_OPTIONS
        if text is None:
            text = payload[hl:] if hl < len(payload) else b""
        seg = Segment(seq, ack, flags, window, text, opts)
        now = host.now
        if sock is not None:
            conn = sock.conn
            if conn.state is State.TIME_WAIT and flags & SYN and not flags & (ACK | RST | FIN):
                # RFC 6191 / RFC 1122 4.2.2.13: a new SYN may reopen a TIME-WAIT
                # connection when it starts above what the old one used (or
                # carries a newer timestamp).
                # With timestamps on both sides the timestamp decides (PAWS);
                # otherwise the sequence number must be beyond the old one.
                if conn.ts_ok and opts.ts_val is not None:
                    newer = sq.gt(opts.ts_val, conn.ts_recent)
                else:
                    newer = sq.gt(seq, conn.rcv_nxt)
                if newer and ((dst, dport) in self.listeners or (ANY, dport) in self.listeners):
                    self._forget(sock)
                    sock = None
            if sock is not None:
                dropped = conn.receive(seg, now)
                if dropped:
                    count_drop(c, dropped)
                if conn.ack_at_batch_end:
                    # Its ACK goes with the batch's last (output.ack_out_of_order).
                    conn.ack_at_batch_end = False
                    self.dirty[sock] = None
                else:
                    self.service(sock)
                return
        listener = self.listeners.get((dst, dport)) or self.listeners.get((ANY, dport))
        if self.tw.records:
            rec = self.tw.records.get((dst, dport, src, sport))
            if rec is not None:
                if flags & (SYN | ACK | RST | FIN) == SYN and listener is not None and (
                        sq.gt(opts.ts_val, rec.ts_recent) if rec.ts_ok and opts.ts_val is not None
                        else sq.gt(seq, rec.rcv_nxt)):
                    # RFC 6191: a newer SYN reopens the 4-tuple (as above).
                    self.tw.remove(rec.key)
                    self.time_wait -= 1
                else:
                    self._time_wait_input(rec, seq, ack, flags, len(seg.payload),
                                          opts.ts_val, now)
                    return
        if listener is not None:
            if flags & RST:
                # RFC 9293 3.10.7.2 LISTEN, first check: a RST is ignored
                # (SYN+RST too: never a connection).
                c.drop("tcp_listen_rst")
                return
            if flags & ACK:
                # RFC 9293 3.10.7.2 LISTEN, second check: any ACK is bad --
                # unless it brings back one of our SYN cookies.
                if not flags & SYN and self._cookie_ack(listener, iface, dst, dport, src, sport,
                                                        seg, now):
                    return
                self._send_rst(dst, dport, src, sport, ack, 0, RST)
                return
            if flags & SYN:
                if flags & FIN:
                    # SYN+FIN (with or without PSH, URG) is no opening a
                    # real stack sends, only a scanner's probe: Linux drops
                    # it in LISTEN (drop reason TCP_FLAGS), and so do we
                    # rather than answer with a SYN-ACK.
                    c.drop("tcp_listen_syn_fin")
                    return
                self._passive_open(listener, iface, dst, dport, src, sport, seg, now)
                return
            c.drop("tcp_listen_no_syn")
            return
        self._reset_for(dst, dport, src, sport, seg)

    def _listener_config(self, listener: TcpListener, iface: Interface, rip: bytes) -> TcpConfig:
        cfg = self._config_for(iface, rip)
        options = listener.options
        if options:
            # The listener's options (Linux clones the listening socket), set
            # before the SYN is answered: its window scale comes from rcvbuf
            # (RFC 7323 2.2).  The MSS stays within the interface's MTU.
            apply_options(cfg, options)
            cfg.mss = min(cfg.mss, self.path_mss(iface, rip))
        return cfg

    def _passive_open(self, listener: TcpListener, iface: Interface, lip: bytes, lport: int,
                      rip: bytes, rport: int, seg: Segment, now: float) -> None:
        c = self.host.counters
        # Drop early on overload (docs/architecture.md, principle 3), as
        # Linux's tcp_conn_request: with the accept queue full, a SYN is
        # dropped whatever the mode (a connection would have nowhere to
        # wait) and the peer retransmits it; connections not yet accepted
        # (handshaking or queued) are bounded by the backlog, and a SYN
        # beyond it is answered with a cookie (mode on) or dropped.
        backlog = listener.backlog
        queued = len(listener.accept_queue)
        if queued >= backlog:
            c.TcpExtListenOverflows += 1
            c.TcpExtListenDrops += 1
            return
        if cookies.cookie_now(listener, self.syncookies):
            c.TcpExtTCPReqQFullDoCookies += 1  # (every cookie, as Linux's tcp_syn_flood_action)
            self._cookie_synack(listener, iface, lip, lport, rip, rport, seg, now)
            return
        if queued + listener.syn_received >= backlog:
            c.TcpExtTCPReqQFullDrop += 1
            c.TcpExtListenDrops += 1
            return
        cfg = self._listener_config(listener, iface, rip)
        if lip == iface.ip:
            lip = iface.ip  # the interface's bytes, not a copy cut from each SYN (issue 12)
        conn = TcpConnection((lip, lport), (rip, rport),
                             self.isn.isn(lip, lport, rip, rport, now), cfg, now,
                             self._challenge_cb, ts_offset=random.getrandbits(32),
                             counters=self.host.counters)
        sock = self._socket(conn, listener)
        listener.half_open.add(sock)
        conn.accept_syn(seg, now)
        c.TcpPassiveOpens += 1
        self.service(sock)

    # -- SYN cookies (tcp/cookies.py) -------------------------------------

    def _cookie_synack(self, listener: TcpListener, iface: Interface, lip: bytes, lport: int,
                       rip: bytes, rport: int, syn: Segment, now: float) -> None:
        """Answer ``syn`` with a cookie SYN-ACK and keep nothing (no copy of
        the settings either, unless the listener has options of its own)."""
        hop = self.host.routes.lookup(rip, lip)
        if hop is None:
            return
        cfg = cookies.listener_settings(self.config, listener)
        mss = min(cfg.mss, self.path_mss(iface, rip))
        out = cookies.synack(self.cookie_secret, lip, lport, rip, rport, syn, cfg, mss, now)
        listener.cookie_sent = now
        self.host.counters.TcpExtSyncookiesSent += 1
        self._emit(hop, lip, lport, rip, rport, out, ttl=cfg.ttl, tos=cfg.tos)

    def _cookie_ack(self, listener: TcpListener, iface: Interface, lip: bytes, lport: int,
                    rip: bytes, rport: int, seg: Segment, now: float) -> bool:
        """An ACK to ``listener`` with no connection: if it returns one of
        our cookies, the connection it completes (True); False when it is
        no cookie of ours (the caller resets it, RFC 9293 3.10.7.2).  Mode
        on checks only within two minutes of the listener's last cookie
        (Linux's tcp_synq_no_recent_overflow); off never."""
        mode = cookies.mode_of(listener, self.syncookies)
        if mode == cookies.OFF or (mode == cookies.ON and
                                   now - listener.cookie_sent > sc.MAX_AGE * sc.PERIOD):
            return False
        c = self.host.counters
        cfg = self._listener_config(listener, iface, rip)
        syn = cookies.syn_for_ack(self.cookie_secret, lip, lport, rip, rport, seg, cfg, now)
        if syn is None:
            c.TcpExtSyncookiesFailed += 1
            return False
        if len(listener.accept_queue) >= listener.backlog:
            # Linux drops it (tcp_abort_on_overflow=0): the client's next
            # segment brings the cookie again.
            c.TcpExtListenOverflows += 1
            c.TcpExtListenDrops += 1
            return True
        c.TcpExtSyncookiesRecv += 1
        if lip == iface.ip:
            lip = iface.ip
        conn = TcpConnection((lip, lport), (rip, rport), sq.add(seg.ack, -1), cfg, now,
                             self._challenge_cb,
                             ts_offset=sc.ts_offset(self.cookie_secret, rip, lip, rport, lport),
                             counters=c)
        sock = self._socket(conn, listener)
        listener.half_open.add(sock)
        cookies.open_from_cookie(conn, syn, now)
        c.TcpPassiveOpens += 1
        dropped = conn.receive(seg, now)
        if dropped:
            count_drop(c, dropped)
        self.service(sock)
        return True

    def _reset_for(self, lip: bytes, lport: int, rip: bytes, rport: int, seg: Segment) -> None:
        """RFC 9293 3.10.7.1, CLOSED: answer anything but a RST with a RST."""
        self.host.counters.drop("tcp_no_socket")
        if seg.flags & RST:
            return
        if seg.flags & ACK:
            self._send_rst(lip, lport, rip, rport, seg.ack, 0, RST)
        else:
            seg_len = len(seg.payload) + (1 if seg.flags & SYN else 0) + (
                1 if seg.flags & FIN else 0)
            self._send_rst(lip, lport, rip, rport, 0, sq.add(seg.seq, seg_len), RST | ACK)

    def _send_rst(self, lip: bytes, lport: int, rip: bytes, rport: int, seq: int, ack: int,
                  flags: int) -> None:
        if self.send_unattached(lip, lport, rip, rport, OutSegment(seq, ack, flags, 0, b"", b"")):
            self.host.counters.TcpOutRsts += 1

    def send_unattached(self, lip: bytes, lport: int, rip: bytes, rport: int, s: OutSegment,
                        ttl: int = DEFAULT_TTL, tos: int = 0) -> bool:
        """Send ``s`` for no connection of ours (a reset, a cookie SYN-ACK,
        a stateless response); False when no route leads to ``rip``."""
        hop = self.host.routes.lookup(rip, lip)
        if hop is None:
            return False
        self._emit(hop, lip, lport, rip, rport, s, 0, ttl, tos)
        return True

    def icmp_error(self, qh: wip.Ipv4Header, qdata: bytes, type_: int, code: int,
                   mtu: int) -> None:
        sport = (qdata[0] << 8) | qdata[1]
        dport = (qdata[2] << 8) | qdata[3]
        c = self.host.counters
        sock = self.conns.get((qh.src, sport, qh.dst, dport))
        if sock is None:
            c.drop("tcp_icmp_error_no_socket")
            return
        conn = sock.conn
        # RFC 5927 4.1: only believe an error that quotes a sequence number
        # in flight, SND.UNA =< SEG.SEQ < SND.NXT, so a blind attacker must
        # guess one (Linux's counter for the others: OutOfWindowIcmps).
        seq_q = int.from_bytes(qdata[4:8], "big")
        if not sq.between(conn.snd_una, seq_q, conn.snd_nxt):
            c.TcpExtOutOfWindowIcmps += 1
            return
        now = self.host.now
        if type_ == 3 and code == 4:
            # RFC 1191: the path MTU towards the peer goes down for every
            # connection made to it from now on, and this one's segments
            # shrink to it.
            hop = self.host.routes.lookup(qh.dst, qh.src)
            if hop is None:
                return
            pmtu = self.ip.pmtu.lower(qh.dst, mtu, qh.total_length, hop.iface.mtu, now)
            if pathmtu.path_mtu(conn, pmtu, now):
                self._watch_pmtu(sock)
            self.service(sock)
            return
        opening = conn.state is State.SYN_SENT
        conn.icmp_error(type_, code, mtu, now)
        if opening and conn.state is State.CLOSED:
            c.TcpAttemptFails += 1  # RFC 4022: SYN-SENT straight to CLOSED
        self.service(sock)

    def _watch_pmtu(self, sock: TcpSocket) -> None:
        """When the path MTU estimate that shrank ``sock``'s segments
        expires (RFC 1191 6.3), give it back its MSS: one timer per
        connection, re-armed while the estimate is renewed."""
        if sock in self._pmtu_watch:
            return
        expires = self.ip.pmtu.expires(sock.conn.remote[0])
        if expires is not None:
            self._pmtu_watch[sock] = self.host.timers.call_at(
                expires, partial(self._pmtu_expired, sock))

    def _pmtu_expired(self, sock: TcpSocket, now: float) -> None:
        self._pmtu_watch.pop(sock, None)
        conn = sock.conn
        if self.conns.get((*conn.local, *conn.remote)) is not sock:
            return  # gone meanwhile
        rip = conn.remote[0]
        expires = self.ip.pmtu.expires(rip)
        if expires is not None and expires > now:
            self._watch_pmtu(sock)  # renewed: a later error lowered it again
            return
        hop = self.host.routes.lookup(rip, conn.local[0])
        if hop is not None:
            pathmtu.path_mtu(conn, hop.iface.mtu, now)
            self.service(sock)

    # ==================================================================
    # Service: output, timers, events
    # ==================================================================

    def kick(self, sock: TcpSocket) -> None:
        """An application call changed ``sock``: service it before the next flush."""
        self.dirty[sock] = None

    def run_dirty(self) -> None:
        """Service every socket the application touched (the Stack calls this).

        Callbacks run from here may touch sockets again; those are serviced
        in the next round, so nothing waits for another poll iteration.
        """
        for _ in range(64):  # bounded: a callback loop cannot hang the Stack
            if not self.dirty:
                return
            batch = list(self.dirty)
            self.dirty.clear()
            for sock in batch:
                self.service(sock)

    def service(self, sock: TcpSocket) -> None:
        """Deliver ``sock``'s events, transmit what it has, keep its timer.

        Events go first: a reply the application writes from its callback
        then leaves in this same pass, carrying the ACK of the segment that
        caused it (one segment instead of an ACK and then the data).
        """
        if sock.detached:
            return  # (an application call on the closed socket kicked it)
        conn = sock.conn
        if conn.events:
            self._deliver(sock, conn)
        host = self.host
        segs = segments_to_send(conn, host.now)
        if segs:
            lip, lport = conn.local
            rip, rport = conn.remote
            routes = host.routes
            hop = routes.cache.get(lip + rip) or routes.lookup(rip, lip)
            if hop is not None:
                c = host.counters
                mss = conn.mss
                # The MSS allows for the timestamps; a super-frame whose
                # header also carries SACK blocks is cut smaller, so that each
                # segment still fits the MTU (DF is set).
                opt_room = TS_OPTION_LEN if conn.ts_ok else 0
                for s in segs:
                    if s.flags & RST:
                        c.TcpOutRsts += 1
                    n_opt = len(s.options)
                    self._emit(hop, lip, lport, rip, rport, s,
                               mss if n_opt <= opt_room else mss + opt_room - n_opt,
                               conn.cfg.ttl, conn.cfg.tos)
        if conn.events:
            # Raised by a callback's own calls (abort, close) or by the
            # transmission; anything they queue leaves from run_dirty.
            self._deliver(sock, conn)
        elif sock in self.dirty:
            del self.dirty[sock]  # its writes left above
        if conn.total_retransmits != sock.retransmits_counted:
            host.counters.TcpRetransSegs += conn.total_retransmits - sock.retransmits_counted
            sock.retransmits_counted = conn.total_retransmits
        # Timer: one Stack timer per connection.  It is moved only when the
        # connection needs it earlier; one that fires early (the deadline
        # moved later or went away) finds nothing due and is re-armed, so a
        # timer restarted by every ACK costs no heap operation per segment.
        deadline = conn.timers.next()
        if deadline is not None:
            armed = sock.timer
            if armed is None or deadline < armed.deadline:
                if armed is not None:
                    armed.cancel()
                sock.timer = host.timers.call_at(deadline, sock.timer_callback)
        # TcpCurrEstab is a gauge (RFC 4022): ESTABLISHED or CLOSE-WAIT now.
        state = conn.state
        estab = state is State.ESTABLISHED or state is State.CLOSE_WAIT
        if estab is not sock.counted_estab:
            sock.counted_estab = estab
            host.counters.TcpCurrEstab += 1 if estab else -1
        tw = state is State.TIME_WAIT
        if tw is not sock.counted_tw:
            if not tw:
                sock.counted_tw = False
                self.time_wait -= 1
            elif self.time_wait < self.max_time_wait:
                sock.counted_tw = True
                self.time_wait += 1
            else:
                # Linux's tcp_time_wait on a full table: "TCP: time wait
                # bucket table overflow", the connection is not kept.
                host.counters.TcpExtTCPTimeWaitOverflow += 1
                conn.timers.timewait = None
                conn.close_now(0, Ev.TIMEWAIT_EXPIRED)
                state = conn.state
        if state is State.CLOSED:
            self._forget(sock)
        elif tw and sock.closed and sock.counted_tw and conn.timers.delack is None:
            self._to_record(sock, conn)

    # -- TIME-WAIT as a record (tcp/timewait.py) ---------------------------

    def _to_record(self, sock: TcpSocket, conn: TcpConnection) -> None:
        """``sock`` is in TIME-WAIT, closed by the application, its last ACK
        sent: keep a record of it instead (still counted in ``time_wait``)."""
        rec = record_of(conn, self.host.now)
        self._forget(sock)
        sock.detached = True
        self.time_wait += 1
        self.tw.add(rec)
        self._arm_tw_timer()

    def _arm_tw_timer(self) -> None:
        deadline = self.tw.next_deadline()
        if deadline < 0:
            return
        armed = self._tw_timer
        if armed is None or deadline < armed.deadline:
            if armed is not None:
                armed.cancel()
            self._tw_timer = self.host.timers.call_at(deadline, self._on_tw_timer)

    def _on_tw_timer(self, now: float) -> None:
        self._tw_timer = None
        self.time_wait -= self.tw.expire(now)
        self._arm_tw_timer()

    def _time_wait_input(self, rec: TimeWaitRecord, seq: int, ack: int, flags: int,
                         text_len: int, ts_val: int | None, now: float) -> None:
        deadline = rec.deadline
        why, answer, challenge = rec.receive(seq, ack, flags, text_len, ts_val, now)
        if why:
            count_drop(self.host.counters, why)
        if rec.deadline != deadline:
            self.tw.restarted(rec)
        if answer and (not challenge or self._challenge_allowed(now)):
            lip, lport, rip, rport = rec.key
            hop = self.host.routes.lookup(rip, lip)
            if hop is not None:
                self._emit(hop, lip, lport, rip, rport,
                           rec.ack(now, rec.dsack_for(seq, text_len, flags)
                                   if why == "tcp_invalid_sequence" else None),
                           0, rec.ttl, rec.tos)

    def _deliver(self, sock: TcpSocket, conn: TcpConnection) -> None:
        events = conn.events
        while events:
            ev = events.pop(0)
            if ev is Event.READABLE or ev is Event.WRITABLE:
                cb = sock.on_event
                if cb is not None:
                    cb(sock, ev)
            else:
                self._event(sock, ev)

    def _on_timer(self, sock: TcpSocket, now: float) -> None:
        sock.timer = None
        sock.conn.handle_timer(now)
        self.service(sock)

    def _event(self, sock: TcpSocket, ev: Event) -> None:
        c = self.host.counters
        listener = sock.listener
        if ev is Event.CONNECTED:
            if listener is not None:
                listener.half_open.discard(sock)
                if listener.closed:
                    sock.abort()
                    return
                listener.established(sock)
                return
        elif ev is Event.RESET:
            if sock.conn.state is State.CLOSED and sock.conn.error == errno.ECONNREFUSED:
                c.TcpAttemptFails += 1
            else:
                c.TcpEstabResets += 1
        elif ev is Event.CLOSED and listener is not None:
            # Died in SYN-RECEIVED (however many segments it took: a peer
            # retransmitting its SYN): it leaves the SYN queue.
            listener.half_open.discard(sock)
        sock.dispatch(ev)

    def _forget(self, sock: TcpSocket) -> None:
        if sock.counted_tw:
            sock.counted_tw = False
            self.time_wait -= 1
        if sock.listener is not None:
            sock.listener.half_open.discard(sock)  # whatever ended it
        conn = sock.conn
        key = (*conn.local, *conn.remote)
        if self.conns.get(key) is sock:
            del self.conns[key]
        t = sock.timer
        if t is not None:
            t.cancel()
            sock.timer = None
        t = self._pmtu_watch.pop(sock, None)
        if t is not None:
            t.cancel()

    def _emit(self, hop: NextHop, lip: bytes, lport: int, rip: bytes, rport: int,
              s: OutSegment, mss: int = 0, ttl: int = DEFAULT_TTL, tos: int = 0) -> None:
        """Write one segment into a frame and hand it to IPv4.

        The interface makes the frame (``Interface.tcp_frame``): on a device
        with offloads it asks the device to finish the checksum, and a
        segment longer than the MSS is a super-frame for the device to cut
        (TSO); the header then carries the partial checksum.
        """
        payload = s.payload
        plen = len(payload)
        hl = 20 + len(s.options)
        iface = hop.iface
        buf = iface.tcp_frame(HEADROOM + hl + plen, HEADROOM + hl,
                              mss if mss and plen > mss else 0)
        if plen:
            buf[HEADROOM + hl:] = payload
        c = self.host.counters
        psum = s.payload_sum
        if psum >= 0:
            # Stored segments of a Presegmented: their sum is folded in, the
            # payload is not read again (RFC 1071 2(B)).
            c.TcpPresegmentedOut += 1
            wtcp.pack_header_into(buf, HEADROOM, lip, rip, lport, rport, s.seq, s.ack,
                                  s.flags, s.window, s.options, payload, partial=iface.gso,
                                  addr_sum=hop.addr_sum, payload_sum=psum)
        else:
            wtcp.pack_header_into(buf, HEADROOM, lip, rip, lport, rport, s.seq, s.ack,
                                  s.flags, s.window, s.options, payload, partial=iface.gso,
                                  addr_sum=hop.addr_sum)  # (hop.src is lip: looked up from it)
        c.TcpOutSegs += 1
        # DF on every segment (as Linux): a router answers "fragmentation
        # needed" rather than fragment it (RFC 1191 path MTU discovery).
        self.ip.output(hop, rip, wip.PROTO_TCP, buf, ttl, tos, df=True)

    def connections(self) -> list[TcpSocket]:
        return list(self.conns.values())
