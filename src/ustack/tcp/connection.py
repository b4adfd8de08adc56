"""One TCP connection, sans-I/O (RFC 9293), shaped like aioquic's QuicConnection.

The connection never touches a socket or a clock.  The layer feeds it parsed
segments with ``receive(seg, now)``, collects what it wants to transmit with
``segments_to_send(now)``, fires its timer with ``handle_timer(now)`` when
``next_timer()`` says so, and reads ``next_event()`` to tell the application
what happened.  The application side is ``send``, ``recv``, ``shutdown``,
``close`` and ``abort``.  Every situation can therefore be replayed in a test
with a fake clock.

Sequence space (RFC 9293 3.4): ``iss`` is our SYN; data byte k (from 0) of
the stream sits at ``iss + 1 + k``; a FIN, once queued, sits right after the
last data byte.  ``snd_una`` is the oldest unacknowledged sequence number,
``snd_nxt`` the next new one (it is never wound back: retransmissions are
sent from ``snd_una`` without moving it, as Linux does).  The send queue
``_sq`` holds every data byte from ``_sq_seq`` on, sent or not, until it is
acknowledged.

What is implemented here, with the RFC for each rule at the place it is
applied: the full state machine of ``states.py``; segment acceptability and
trimming; RFC 5961 challenge ACKs (rate limited by the layer); window
scaling, timestamps, RTTM and PAWS (RFC 7323); MSS (RFC 6691, RFC 9293
MUST-15/16); RTO (RFC 6298) with Karn's rule; R1/R2 and SYN retries (RFC 9293
MUST-20..23); fast retransmit with NewReno recovery (RFC 6582) and limited
transmit (RFC 3042); SACK generation (RFC 2018) and SACK-based recovery
(RFC 6675); sender and receiver silly-window avoidance (RFC 9293 3.8.6.2);
zero-window probing (3.8.6.1); delayed ACK (RFC 1122 4.2.3.2); Nagle
(RFC 896) with a no-delay switch; keepalive (RFC 1122 4.2.3.6); ICMP soft
errors (RFC 1122 4.2.3.9, RFC 5461); congestion control by ``cc.py``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from ustack.tcp import seq as sq
from ustack.tcp.cc import CongestionControl, make_cc
from ustack.tcp.reassembly import ReassemblyQueue
from ustack.tcp.rto import RttEstimator
from ustack.tcp.sack import Scoreboard
from ustack.tcp.states import RECEIVING, SENDING, Ev, State, next_state
from ustack.wire import tcp as wtcp
from ustack.wire.tcp import ACK, FIN, PSH, RST, SYN, TcpOptions

_MASK = 0xFFFFFFFF
_ts_option = wtcp.ts_option
DEFAULT_PEER_MSS = 536  # RFC 9293 MUST-15: assume 536 when the peer sends no MSS
TS_OPTION_LEN = 12  # NOP NOP TS: what every non-SYN segment carries with timestamps


@dataclass(slots=True)
class TcpConfig:
    """Per-connection settings (the layer's defaults, changed per socket)."""

    mss: int = 1460  # the MSS we advertise: MTU - 40 (RFC 9293 3.7.1)
    rcvbuf: int = 1 << 20
    sndbuf: int = 1 << 20
    nodelay: bool = False
    cc: str = "cubic"
    sack: bool = True
    timestamps: bool = True
    window_scaling: bool = True
    delack: float = 0.040  # RFC 1122 4.2.3.2: < 0.5 s; Linux's minimum
    initial_rto: float = 1.0
    min_rto: float = 0.2
    max_rto: float = 120.0
    # RFC 9293 MUST-23: at least 3 minutes for a SYN; 7 retries give up at
    # about 4 minutes (Linux's default of 6 stops at 127 s, short of it).
    syn_retries: int = 7
    synack_retries: int = 6  # a passive half-open connection holds a backlog slot: 127 s
    retries1: int = 3  # RFC 9293 3.8.3: R1, after which the application hears a soft error
    retries2: int = 15  # R2 (Linux tcp_retries2): well beyond the 100 s MUST-20 minimum
    msl: float = 30.0  # TIME-WAIT lasts 2*MSL = 60 s, as on Linux
    fin_timeout: float = 60.0  # orphaned FIN-WAIT-2 is reaped after this (Linux)
    keepalive: bool = False
    keepalive_idle: float = 7200.0  # RFC 1122 4.2.3.6: >= 2 hours by default
    keepalive_interval: float = 75.0
    keepalive_probes: int = 9
    max_segment: int = 0  # largest payload per segment handed down (TSO); 0 = one MSS


class Segment(NamedTuple):
    """An inbound segment as the layer parsed it (window unscaled)."""

    seq: int
    ack: int
    flags: int
    window: int
    payload: bytes
    opts: TcpOptions


class OutSegment(NamedTuple):
    """An outbound segment; ``window`` is the field value (already scaled)."""

    seq: int
    ack: int
    flags: int
    window: int
    options: bytes
    payload: bytes


class Event(Enum):
    CONNECTED = "connected"
    READABLE = "readable"  # data or EOF can be read
    WRITABLE = "writable"  # send buffer space opened
    CLOSED = "closed"  # the connection reached CLOSED (error says why, 0 = normally)
    RESET = "reset"  # the peer reset it (also followed by CLOSED)
    TIMED_OUT = "timed out"
    SOFT_ERROR = "soft error"  # R1 reached or ICMP error: informational


class TcpError(Exception):
    """Misuse of the connection API; the socket layers map it to OSError."""

    def __init__(self, errno_: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno_


class TcpConnection:
    def __init__(self, local: tuple[bytes, int], remote: tuple[bytes, int], iss: int,
                 config: TcpConfig, now: float,
                 challenge_allowed: Callable[[float], bool] | None = None,
                 ts_offset: int = 0) -> None:
        self.local = local
        self.remote = remote
        self.cfg = config
        self.state = State.CLOSED
        self._challenge_allowed = challenge_allowed or (lambda now: True)
        # Send sequence variables (RFC 9293 3.3.1).
        self.iss = iss
        self.snd_una = iss
        self.snd_nxt = iss
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_sndwnd = 0
        self._sq = bytearray()
        self._sq_seq = (iss + 1) & _MASK
        self.fin_queued = False
        self.fin_acked = False
        # Receive sequence variables.
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_adv = 0  # right edge of the window we last advertised
        self._rq = bytearray()  # in-order data the application has not read
        self._ooo = ReassemblyQueue(config.rcvbuf)
        self.peer_fin = False  # the peer's FIN has been consumed (EOF)
        self._peer_fin_seq: int | None = None  # a FIN seen beyond a gap
        # Options (RFC 7323, 2018, 6691).
        self.peer_mss = DEFAULT_PEER_MSS
        self.snd_wscale = 0
        self.rcv_wscale = 0
        self.ts_ok = False
        self.ts_recent = 0
        self.ts_recent_age = 0.0
        self._ts_offset = ts_offset
        self.sack_ok = False
        self.mss = min(DEFAULT_PEER_MSS, config.mss)  # effective send MSS (payload)
        # Loss recovery and congestion control.
        self.rtt = RttEstimator(initial_rto=config.initial_rto, min_rto=config.min_rto,
                                max_rto=config.max_rto)
        self.cc: CongestionControl = make_cc(config.cc, self.mss, now)
        self.sb = Scoreboard()
        self.dupacks = 0
        self._lt_budget = 0  # segments limited transmit may still send
        self.in_recovery = False
        self.recover = iss  # RFC 6582 "recover"
        self._inflate = 0  # NewReno cwnd inflation during fast recovery
        self._rtx_nxt: int | None = None  # after an RTO: next sequence to resend
        self._rtx_end = 0
        self.retransmits = 0  # consecutive timeouts (R1/R2 count)
        self.total_retransmits = 0
        self._rtt_seq: int | None = None  # segment being timed (no timestamps)
        self._rtt_time = 0.0
        self._last_send = now  # when new data last went out (idle restart)
        # Timers (absolute deadlines or None).
        self._t_rtx: float | None = None
        self._t_delack: float | None = None
        self._t_persist: float | None = None
        self._t_keepalive: float | None = None
        self._t_2msl: float | None = None
        self._t_finwait2: float | None = None
        self._persist_backoff = 0
        self._probes = 0
        # Output state.
        self._pending_rtx: list[OutSegment] = []  # retransmissions and probes
        self._ack_now = False
        self.acks_pending = 0  # bytes received since our last ACK
        self._last_ack_sent = 0  # RFC 7323 Last.ACK.sent
        self._send_syn = False
        self._rst: OutSegment | None = None
        self._challenge = False
        # Events for the application, read by the layer (``next_event``).
        self.events: deque[Event] = deque()
        self.error = 0  # errno the application sees (SO_ERROR)
        self.soft_error = 0
        self.orphan = False
        self.shut_rd = False
        self.last_activity = now
        self.bytes_in = 0
        self.bytes_out = 0
        self.segs_in = 0
        self.segs_out = 0

    # ==================================================================
    # Opening
    # ==================================================================

    def connect(self, now: float) -> None:
        """Active open (RFC 9293 3.10.1): send SYN, enter SYN-SENT."""
        if self.state is not State.CLOSED:
            raise TcpError(106, "connect() on a connection that is not closed")  # EISCONN
        self._move(Ev.APP_CONNECT)
        self.rcv_wscale = self._choose_wscale() if self.cfg.window_scaling else 0
        self.snd_nxt = (self.iss + 1) & _MASK
        self._send_syn = True
        self._arm_rtx(now)

    def accept_syn(self, seg: Segment, now: float) -> None:
        """Passive open: a listener got ``seg`` (a SYN) and made this connection.

        RFC 9293 3.10.7.2 (LISTEN, third check): set RCV.NXT = SEG.SEQ + 1,
        IRS = SEG.SEQ, send SYN,ACK with ISS, enter SYN-RECEIVED.
        """
        self.state = State.LISTEN
        self._move(Ev.RCV_SYN)
        self._take_syn_options(seg)
        self.irs = seg.seq
        self.rcv_nxt = (seg.seq + 1) & _MASK
        self.snd_wnd = seg.window  # never scaled in a SYN (RFC 7323 2.2)
        self.snd_wl1, self.snd_wl2 = seg.seq, self.iss
        self.snd_nxt = (self.iss + 1) & _MASK
        self._send_syn = True
        self._arm_rtx(now)

    def _choose_wscale(self) -> int:
        # The smallest shift that lets us advertise the whole buffer (RFC 7323
        # 2.3): 65535 << shift >= rcvbuf, i.e. 2**shift >= ceil(rcvbuf / 65535).
        need = -(-self.cfg.rcvbuf // 65535)
        return min((need - 1).bit_length() if need > 1 else 0, 14)

    def _take_syn_options(self, seg: Segment) -> None:
        o = seg.opts
        cfg = self.cfg
        if o.mss:
            self.peer_mss = o.mss
        if o.wscale is not None and cfg.window_scaling:
            # RFC 7323 2.3: a shift above 14 is used as 14.
            self.snd_wscale = min(o.wscale, 14)
            if self.state is not State.SYN_SENT or not self.rcv_wscale:
                self.rcv_wscale = self._choose_wscale()
        else:
            self.snd_wscale = self.rcv_wscale = 0
        self.sack_ok = cfg.sack and o.sack_permitted
        if cfg.timestamps and o.ts_val is not None:
            self.ts_ok = True
            self.ts_recent = o.ts_val
        else:
            self.ts_ok = False
        self._set_mss()

    def _set_mss(self) -> None:
        # RFC 9293 3.7.1 / RFC 6691: the send MSS is the smaller of the peer's
        # MSS and our own (MTU - 40), less the options every segment carries.
        mss = min(self.peer_mss, self.cfg.mss)
        if self.ts_ok:
            mss -= TS_OPTION_LEN
        self.mss = max(mss, 64)
        self.cc.set_mss(self.mss)

    # ==================================================================
    # Application side
    # ==================================================================

    def send(self, data: bytes | bytearray | memoryview, now: float, *,
             force: bool = False) -> int:
        """Queue data; returns how many bytes the send buffer took (maybe 0).

        ``force`` takes all of it, beyond the buffer's size if need be.
        """
        if self.error:
            raise TcpError(self.error, "connection failed")
        if self.state not in SENDING or self.fin_queued:
            raise TcpError(32, "cannot send after shutdown or close")  # EPIPE
        room = self.cfg.sndbuf - len(self._sq)
        n = len(data)
        if force:
            self._sq += data
            return n
        if room <= 0:
            return 0
        if n <= room:
            self._sq += data
            return n
        self._sq += memoryview(data)[:room]
        return room

    def recv(self, max_bytes: int) -> bytes:
        """Take up to ``max_bytes`` of in-order data (b"" at EOF or when empty).

        Reading opens the receive window; a window update is sent when the
        opening is worth one (receiver SWS avoidance, RFC 9293 3.8.6.2.2).
        """
        if not self._rq:
            return b""
        before = self._window_to_offer()
        rq = self._rq
        if max_bytes >= len(rq):
            data = bytes(rq)
            rq.clear()
        else:
            data = bytes(memoryview(rq)[:max_bytes])
            del rq[:max_bytes]
        if self.state in RECEIVING or self.state is State.CLOSE_WAIT:
            after = self._window_to_offer()
            adv = sq.sub(self.rcv_adv, self.rcv_nxt)
            if after > adv and (adv < self.mss or before == 0) and after - adv >= min(
                    self.cfg.rcvbuf // 2, self.mss):
                self._ack_now = True
        return data

    @property
    def readable_bytes(self) -> int:
        return len(self._rq)

    @property
    def at_eof(self) -> bool:
        return self.peer_fin and not self._rq

    @property
    def send_space(self) -> int:
        return max(0, self.cfg.sndbuf - len(self._sq))

    @property
    def unsent_bytes(self) -> int:
        return len(self._sq) - max(0, sq.sub(self.snd_nxt, self._sq_seq))

    def shutdown_write(self, now: float) -> None:
        """shutdown(SHUT_WR): queue our FIN behind any queued data."""
        if self.fin_queued or self.state not in SENDING:
            return
        if self.state is State.SYN_SENT:
            self._close_now(0)
            return
        self.fin_queued = True
        self._move(Ev.APP_CLOSE)

    def close(self, now: float) -> None:
        """close(): like shutdown(SHUT_WR), and the application lets go.

        Unread data or data arriving later means the application lost it,
        so the connection is reset instead (RFC 2525 2.17, Linux; RFC 9293
        3.10.4 allows either for unread data).
        """
        self.orphan = True
        self.shut_rd = True
        if self.state in (State.CLOSED, State.TIME_WAIT):
            return
        if self.state is State.SYN_SENT:
            self._close_now(0)
            return
        if self._rq:
            self.abort(now)
            return
        self.shutdown_write(now)
        if self.state is State.FIN_WAIT_2:
            self._t_finwait2 = now + self.cfg.fin_timeout

    def abort(self, now: float) -> None:
        """Send RST (if synchronized) and close at once (RFC 9293 3.10.5)."""
        if self.state in (State.SYN_RECEIVED, State.ESTABLISHED, State.FIN_WAIT_1,
                          State.FIN_WAIT_2, State.CLOSE_WAIT, State.CLOSING, State.LAST_ACK):
            self._rst = OutSegment(self.snd_nxt, 0, RST, 0, b"", b"")
        self._close_now(0, Ev.APP_ABORT)

    def _post(self, ev: Event) -> None:
        """Queue a readiness event (READABLE, WRITABLE) unless one is waiting.

        The application acts on the state, not on each event: one READABLE
        covers every segment of a receive batch.
        """
        if ev not in self.events:
            self.events.append(ev)

    def next_event(self) -> Event | None:
        return self.events.popleft() if self.events else None

    # ==================================================================
    # Segment arrival (RFC 9293 3.10.7)
    # ==================================================================

    def receive(self, seg: Segment, now: float) -> None:
        self.segs_in += 1
        self.last_activity = now
        if self.cfg.keepalive and self._t_keepalive is not None:
            self._probes = 0
            self._t_keepalive = now + self.cfg.keepalive_idle
        state = self.state
        if state is State.SYN_SENT:
            self._receive_syn_sent(seg, now)
        elif state is State.CLOSED or state is State.LISTEN:
            return  # the layer answers segments for closed/listening endpoints
        else:
            self._receive_synchronized(seg, now)

    def receive_predicted(self, seq: int, ack: int, window: int, payload: bytes | memoryview,
                          ts_val: int, ts_ecr: int, now: float) -> bool:
        """Header prediction: take the common segment without the general path.

        Van Jacobson's prediction (RFC 1323 appendix; FreeBSD tcp_input's
        "fast path"): in ESTABLISHED, with no recovery, no reassembly and no
        pending FIN, a segment whose flags are only ACK (and PSH), whose SEQ
        is RCV.NXT, whose timestamp passes PAWS and whose ACK lies in
        [SND.UNA, SND.NXT] is either an ACK of new data or in-order data (or
        both).  For it every check of RFC 9293 3.10.7.4 has a known outcome,
        so the steps below are that section's with the branches already
        taken; the result is the same state as ``receive`` would leave.

        The layer has checked the flags and that the options are exactly
        NOP NOP TS (``ts_val`` >= 0) or absent (``ts_val`` = -1).  Returns
        False, having changed nothing, when the segment is not predicted.
        """
        if self.state is not State.ESTABLISHED or seq != self.rcv_nxt:
            return False
        una = self.snd_una
        acked = (ack - una) & _MASK
        n = len(payload)
        if (acked > ((self.snd_nxt - una) & _MASK) or not (acked or n) or self.in_recovery
                or self._rtx_nxt is not None or self._ooo.nbytes or self._sq_seq != una
                or self._peer_fin_seq is not None or not window):
            return False
        if self.ts_ok:
            # RFC 7323 5.3 PAWS: TSval must not be older than TS.Recent.
            if ts_val < 0 or (ts_val - self.ts_recent) & _MASK >= 0x80000000:
                return False
        elif ts_val >= 0:
            return False
        # The segment must fit the window we offered (no trimming), and it
        # must be newer than the one the send window was taken from (SND.WL1/WL2).
        room = (self.rcv_adv - seq) & _MASK
        if n > (room if room < 0x80000000 else 0):
            return False
        wl1 = self.snd_wl1
        if wl1 != seq and (seq - wl1) & _MASK >= 0x80000000:
            return False
        if wl1 == seq and (ack - self.snd_wl2) & _MASK >= 0x80000000:
            return False
        # -- predicted: RFC 9293 3.10.7.4 with the outcomes known ----------
        self.segs_in += 1
        self.last_activity = now
        if self._t_keepalive is not None and self.cfg.keepalive:
            self._probes = 0
            self._t_keepalive = now + self.cfg.keepalive_idle
        # RFC 7323 4.3 (2): TS.Recent from the segment covering Last.ACK.sent.
        if ts_val >= 0 and (self._last_ack_sent - seq) & _MASK < 0x80000000:
            self.ts_recent = ts_val
            self.ts_recent_age = now
        # Fifth check, the ACK field: SND.UNA < SEG.ACK =< SND.NXT.
        if acked:
            in_flight = (self.snd_nxt - una) & _MASK
            # In ESTABLISHED no FIN is queued: every acked byte is data.
            del self._sq[:acked]
            self._sq_seq = self.snd_una = ack
            self.bytes_out += acked
            self.retransmits = 0
            self._probes = 0
            if self.cfg.sndbuf > len(self._sq):
                self._post(Event.WRITABLE)
            rtt = self.rtt
            if ts_ecr > 0 and self.ts_ok:  # RFC 7323 4.1 RTTM
                r = ((self._ts_now(now) - ts_ecr) & _MASK) / 1000.0
                if r < 60.0:
                    rtt.sample(r)
            elif self._rtt_seq is not None and sq.gt(ack, self._rtt_seq):
                rtt.sample(now - self._rtt_time)
                self._rtt_seq = None
            rtt.reset_backoff()
            self.cc.on_ack(acked, in_flight, now, rtt.srtt)
            self.dupacks = 0
            # RFC 6298 5.2/5.3: stop the timer when all is acked, else restart it.
            self._t_rtx = None if ack == self.snd_nxt else now + rtt.rto
        # The send window (3.10.7.4: the segment is newer than SND.WL1/WL2).
        wnd = window << self.snd_wscale
        self.snd_wnd = wnd
        self.snd_wl1 = seq
        self.snd_wl2 = ack
        if wnd > self.max_sndwnd:
            self.max_sndwnd = wnd
        self._t_persist = None
        self._persist_backoff = 0
        # Seventh, the segment text: in order, inside the window.
        if n:
            self._rq += payload
            self.rcv_nxt = (seq + n) & _MASK
            self.bytes_in += n
            self._post(Event.READABLE)
            # RFC 1122 4.2.3.2, counted in bytes as in _accept_data.
            pending = self.acks_pending + n
            self.acks_pending = pending
            if pending > self.mss:
                self._ack_now = True
            elif self._t_delack is None:
                self._t_delack = now + self.cfg.delack
        return True

    def _receive_syn_sent(self, seg: Segment, now: float) -> None:
        """RFC 9293 3.10.7.3, SYN-SENT.

        First check the ACK bit: if SEG.ACK =< ISS or SEG.ACK > SND.NXT, send
        a reset (unless the RST bit is set) and discard.  Second, the RST
        bit: with an acceptable ACK, the connection is reset; otherwise drop.
        Fourth, the SYN bit: record IRS and options; if our SYN is ACKed,
        enter ESTABLISHED and ACK; otherwise (simultaneous open) enter
        SYN-RECEIVED and send SYN,ACK.
        """
        f = seg.flags
        if f & ACK and (sq.le(seg.ack, self.iss) or sq.gt(seg.ack, self.snd_nxt)):
            if not f & RST:
                self._rst = OutSegment(seg.ack, 0, RST, 0, b"", b"")
            return
        if f & RST:
            if f & ACK:
                self._reset(111)  # ECONNREFUSED
            return
        if not f & SYN:
            return
        self._take_syn_options(seg)
        self.irs = seg.seq
        self.rcv_nxt = (seg.seq + 1) & _MASK
        if f & ACK:
            self.snd_una = seg.ack
            self._send_syn = False
            # RFC 9293 3.10.7.3: SND.WND from the SYN,ACK, SND.WL1/WL2 set
            # from it unconditionally (a SYN's window is never scaled).
            self._update_window(seg, scaled=False, force=True)
            self._rtt_sample_syn(seg, now)
            if self.retransmits:
                self.rtt.reset_backoff()
                self.rtt.fallback()  # RFC 6298 5.7: the SYN timed out, no sample
            self._stop_rtx()
            self._move(Ev.RCV_SYN_ACK)
            self.events.append(Event.CONNECTED)
            self._ack_now = True
            self._start_keepalive(now)
            if seg.payload:
                self._accept_data(seg.seq + 1, seg.payload, now)
        else:
            # Simultaneous open (RFC 9293 figure 7).
            self._move(Ev.RCV_SYN)
            self.snd_wnd = seg.window
            self._send_syn = True  # now a SYN,ACK
            self._arm_rtx(now)

    def _acceptable(self, seg: Segment, seg_len: int) -> bool:
        # RFC 9293 3.10.7.4, first check, the four cases of the table.
        wnd = sq.sub(self.rcv_adv, self.rcv_nxt)
        if wnd < 0:
            wnd = 0
        s = seg.seq
        if seg_len == 0:
            if wnd == 0:
                return s == self.rcv_nxt
            return sq.between(self.rcv_nxt, s, (self.rcv_nxt + wnd) & _MASK)
        if wnd == 0:
            return False
        end = (self.rcv_nxt + wnd) & _MASK
        return sq.between(self.rcv_nxt, s, end) or sq.between(
            self.rcv_nxt, (s + seg_len - 1) & _MASK, end)

    def _receive_synchronized(self, seg: Segment, now: float) -> None:
        """RFC 9293 3.10.7.4: SYN-RECEIVED and every later state."""
        f = seg.flags
        if (self.state is State.SYN_RECEIVED and f & SYN and f & ACK
                and seg.seq == self.irs):
            # Simultaneous open (RFC 9293 figure 7, line 7): the peer's
            # SYN,ACK repeats its SYN, which we have; take it as the ACK.
            f &= ~SYN
            seg = seg._replace(seq=(seg.seq + 1) & _MASK, flags=f)
        payload = seg.payload
        seg_len = len(payload) + (1 if f & SYN else 0) + (1 if f & FIN else 0)
        # RFC 7323 5.3 PAWS, before the sequence check: a segment whose
        # TSval is older than TS.Recent is a duplicate from an old incarnation.
        o = seg.opts
        if (self.ts_ok and o.ts_val is not None and not f & RST
                and sq.lt(o.ts_val, self.ts_recent)
                and now - self.ts_recent_age < 24 * 86400):
            self._ack_now = True
            return
        # First, check the sequence number.
        if (not f & (SYN | RST) and sq.ge(seg.seq, self.rcv_nxt)
                and sq.sub(self.rcv_adv, self.rcv_nxt) <= 0):
            # Our window is zero: no text can be taken, but "special
            # allowance should be made to accept valid ACKs" (3.10.7.4).
            # That includes a pure ACK whose SEQ is the peer's SND.NXT,
            # beyond our RCV.NXT when some of its data was lost: dropping
            # it would leave our own retransmissions unacknowledged while
            # the window stays shut.  The ACK still has to pass RFC 5961
            # 5.2 below; text and FIN are dropped (the peer resends them).
            if seg_len:
                self._ack_now = True
            f &= ~FIN
            seg = seg._replace(seq=self.rcv_nxt, payload=b"", flags=f)
            payload = b""
            seg_len = 0
        if not self._acceptable(seg, seg_len):
            if self.state is State.TIME_WAIT and f & FIN:
                # A retransmitted FIN: ACK it and restart the 2 MSL timer (3.10.7.4 eighth).
                self._t_2msl = now + 2 * self.cfg.msl
            if not f & RST:
                self._ack_now = True
            return
        # RFC 7323 4.3 (2): remember the timestamp of the segment that
        # covers the last ACK we sent, so a delayed ACK echoes the oldest.
        if self.ts_ok and o.ts_val is not None and sq.le(seg.seq, self._last_ack_sent):
            self.ts_recent = o.ts_val
            self.ts_recent_age = now
        # Second, check the RST bit (RFC 5961 3.2): exactly at RCV.NXT resets;
        # elsewhere in the window only earns a challenge ACK.
        if f & RST:
            if seg.seq == self.rcv_nxt:
                if self.state is State.TIME_WAIT:
                    return  # RFC 1337: ignore RST in TIME-WAIT
                self._reset(104 if self.state is not State.SYN_RECEIVED else 111)
            else:
                self._challenge_ack(now)
            return
        # Fourth, check the SYN bit (RFC 5961 4.2): any SYN here gets a
        # challenge ACK, never a reset of the connection.
        if f & SYN:
            self._challenge_ack(now)
            return
        # Fifth, check the ACK field.
        if not f & ACK:
            return
        if self.state is State.SYN_RECEIVED:
            # If SND.UNA < SEG.ACK =< SND.NXT enter ESTABLISHED, else reset.
            if sq.lt(self.snd_una, seg.ack) and sq.le(seg.ack, self.snd_nxt):
                self._send_syn = False
                self._update_window(seg, scaled=True, force=True)
                self._rtt_sample_syn(seg, now)
                if self.retransmits:
                    self.rtt.reset_backoff()
                    self.rtt.fallback()  # RFC 6298 5.7
                self.snd_una = (self.iss + 1) & _MASK
                self._stop_rtx()
                self.retransmits = 0
                # (close() during SYN-RECEIVED already moved us to FIN-WAIT-1.)
                if not self.fin_queued:
                    self._move(Ev.RCV_ACK_OF_SYN)
                self.events.append(Event.CONNECTED)
                self._start_keepalive(now)
            else:
                self._rst = OutSegment(seg.ack, 0, RST, 0, b"", b"")
                return
        if not self._process_ack(seg, now):
            return
        # Seventh, process the segment text.
        # (In CLOSE-WAIT, CLOSING, LAST-ACK and TIME-WAIT the peer already
        # sent its FIN: the text is ignored.)
        if payload and self.state in RECEIVING:
            if self.shut_rd and self.orphan:
                # Data for an application that closed: RST (RFC 2525 2.17).
                self._rst = OutSegment(self.snd_nxt, 0, RST, 0, b"", b"")
                self._close_now(104, Ev.RCV_DATA_AFTER_CLOSE)
                return
            self._accept_data(seg.seq, payload, now)
        # Eighth, check the FIN bit.
        if f & FIN:
            fin_seq = (seg.seq + len(payload)) & _MASK
            if self.state in RECEIVING or self.state is State.SYN_RECEIVED:
                if fin_seq == self.rcv_nxt:
                    self._consume_fin(now)
                elif sq.gt(fin_seq, self.rcv_nxt):
                    self._peer_fin_seq = fin_seq  # delivered once the gap fills
                    self._ack_now = True
            else:
                self._ack_now = True

    def _challenge_ack(self, now: float) -> None:
        # RFC 5961 7: challenge ACKs are rate limited (by the layer, globally).
        if self._challenge_allowed(now):
            self._challenge = True

    # -- ACK processing -------------------------------------------------

    def _process_ack(self, seg: Segment, now: float) -> bool:
        """RFC 9293 3.10.7.4 fifth check, ESTABLISHED and later; RFC 5961 5.2.

        Returns False when the segment is to be dropped here.
        """
        ack = seg.ack
        una = self.snd_una
        # RFC 5961 5.2: the ACK must be within [SND.UNA - MAX.SND.WND, SND.NXT].
        if sq.gt(ack, self.snd_nxt):
            self._challenge_ack(now)  # ACKs data we never sent
            return False
        if sq.lt(ack, (una - self.max_sndwnd) & _MASK):
            self._challenge_ack(now)
            return False
        newly_sacked = 0
        if self.sack_ok and seg.opts.sack_blocks:
            newly_sacked = self.sb.update(ack if sq.gt(ack, una) else una, self.snd_nxt,
                                          seg.opts.sack_blocks)
        if sq.gt(ack, una):
            self._ack_new_data(seg, now)
        elif ack == una:
            # RFC 5681 2: a duplicate ACK carries no data, no SYN/FIN, the same
            # window, and arrives while data is outstanding.  RFC 6675 2: an
            # ACK that SACKs new data counts too, even if the window changed.
            wnd = seg.window << self.snd_wscale
            if (not seg.payload and not seg.flags & (SYN | FIN) and self.snd_nxt != una
                    and (wnd == self.snd_wnd or newly_sacked > 0)):
                self._update_window(seg, scaled=True)
                self._dupack(seg, now)
            else:
                self._update_window(seg, scaled=True)
        else:
            return True  # an old duplicate ACK: ignore it, keep processing
        state = self.state
        if state is State.TIME_WAIT:
            return True
        if self.fin_queued and not self.fin_acked and self.snd_una == self._fin_end():
            self.fin_acked = True
            if state is State.FIN_WAIT_1:
                self._move(Ev.RCV_ACK_OF_FIN)
                if self.orphan:
                    self._t_finwait2 = now + self.cfg.fin_timeout
            elif state is State.CLOSING:
                self._move(Ev.RCV_ACK_OF_FIN)
                self._enter_time_wait(now)
            elif state is State.LAST_ACK:
                self._close_now(0, Ev.RCV_ACK_OF_FIN)
                return False
        return True

    def _fin_end(self) -> int:
        """Sequence number just after our FIN (valid once the FIN is queued)."""
        return (self._sq_seq + len(self._sq) + 1) & _MASK

    def _ack_new_data(self, seg: Segment, now: float) -> None:
        ack = seg.ack
        acked = sq.sub(ack, self.snd_una)
        in_flight = self._flight()
        # Drop acknowledged bytes from the send queue (a FIN is not in it).
        data_acked = min(acked, len(self._sq) - max(0, sq.sub(self.snd_una, self._sq_seq)))
        if data_acked > 0:
            start = sq.sub(self.snd_una, self._sq_seq)
            if start < 0:
                start = 0
            drop = start + data_acked
            del self._sq[:drop]
            self._sq_seq = (self._sq_seq + drop) & _MASK
            if self.send_space > 0:
                self._post(Event.WRITABLE)
        self.snd_una = ack
        self.bytes_out += max(0, data_acked)
        self.retransmits = 0
        self._probes = 0
        # RTT measurement: timestamps (RFC 7323 4.1) or one timed segment (Karn).
        rtt: float | None = None
        o = seg.opts
        if self.ts_ok and o.ts_ecr and self._rtx_nxt is None:
            # (Not while resending after an RTO: the ACK of resent data may
            # echo the TSval of its first transmission, when the earlier
            # ACK was lost, and the sample would include the whole timeout;
            # each inflated RTO then inflates the next sample.  Karn's rule,
            # applied to timestamps.)
            r = ((self._ts_now(now) - o.ts_ecr) & _MASK) / 1000.0
            if r < 60.0:
                rtt = max(r, 0.0)
        elif self._rtt_seq is not None and sq.gt(ack, self._rtt_seq):
            rtt = now - self._rtt_time
            self._rtt_seq = None
        if rtt is not None:
            self.rtt.sample(rtt)
        self.rtt.reset_backoff()
        if self._rtx_nxt is not None:
            if sq.ge(ack, self._rtx_end):
                self._rtx_nxt = None
            elif sq.lt(self._rtx_nxt, ack):
                self._rtx_nxt = ack
        # Loss recovery (RFC 6582 / RFC 6675) or normal growth.
        if self.in_recovery:
            if sq.ge(ack, self.recover):
                self.in_recovery = False
                self._inflate = 0
                if self.sack_ok:
                    self.sb.exit_recovery()
                self.cc.on_recovery_end(now)
            elif not self.sack_ok:
                # RFC 6582 3.2 step 5: a partial ACK retransmits the next
                # hole and deflates the window by the amount acknowledged.
                self._inflate = max(0, self._inflate - acked) + self.mss
                self._retransmit_at(self.snd_una, now)
                self._arm_rtx(now, restart=True)
        else:
            self.cc.on_ack(acked, in_flight, now, self.rtt.srtt)
        self.dupacks = 0
        self._update_window(seg, scaled=True)
        # RFC 6298 5.2/5.3: stop the timer when all is acked, else restart it.
        if self.snd_una == self.snd_nxt:
            self._stop_rtx()
        else:
            self._arm_rtx(now, restart=True)

    def _dupack(self, seg: Segment, now: float) -> None:
        self.dupacks += 1
        if self.dupacks <= 2:
            self._lt_budget = 1  # RFC 3042: the first two dupACKs each allow one
        if self.in_recovery:
            if not self.sack_ok:
                self._inflate += self.mss  # RFC 5681 3.2 step 4
            return
        lost = self.sack_ok and self.sb.is_lost(self.snd_una, self.mss)
        # RFC 6582 3.2 step 2: only if the ACK covers more than "recover",
        # so one loss window does not cause two reductions.
        if (self.dupacks >= 3 or lost) and (
                sq.gt(self.snd_una, self.recover) or self.recover == self.iss):
            self._enter_recovery(now)

    def _enter_recovery(self, now: float) -> None:
        # ssthresh comes from FlightSize, taken before recovery starts (RFC
        # 5681 3.2 step 2, RFC 6675 5 step 4.2, RFC 9438 4.6); inside
        # recovery _flight() is the SACK pipe, which is not FlightSize.
        self.cc.on_congestion(self._flight(), now)
        self.in_recovery = True
        self.recover = self.snd_nxt
        if self.sack_ok:
            # RFC 6675 5 step 4.3: the segment at SND.UNA is presumed lost
            # and retransmitted at once, whatever the pipe says.
            self.sb.enter_recovery(self.snd_una, self.snd_nxt, self.mss)
            n = self._retransmit_at(self.snd_una, now)
            if n:
                self.sb.on_retransmit(self.snd_una, n)
        else:
            self._inflate = 3 * self.mss  # RFC 5681 3.2 step 3
            self._retransmit_at(self.snd_una, now)
        self._arm_rtx(now, restart=True)

    def _update_window(self, seg: Segment, *, scaled: bool, force: bool = False) -> None:
        # RFC 9293 3.10.7.4: update the send window only from a segment that
        # is newer than the one it was last taken from (SND.WL1/WL2).
        if force or sq.lt(self.snd_wl1, seg.seq) or (
                self.snd_wl1 == seg.seq and sq.le(self.snd_wl2, seg.ack)):
            wnd = seg.window << self.snd_wscale if scaled else seg.window
            self.snd_wnd = wnd
            self.snd_wl1, self.snd_wl2 = seg.seq, seg.ack
            if wnd > self.max_sndwnd:
                self.max_sndwnd = wnd
            if wnd:
                self._t_persist = None
                self._persist_backoff = 0

    def _rtt_sample_syn(self, seg: Segment, now: float) -> None:
        if self.ts_ok and seg.opts.ts_ecr:
            self.rtt.sample(max(0.0, ((self._ts_now(now) - seg.opts.ts_ecr) & _MASK) / 1000.0))
        elif self.retransmits == 0 and self._rtt_seq is not None:
            self.rtt.sample(now - self._rtt_time)
        self._rtt_seq = None

    # -- receiving data -------------------------------------------------

    def _accept_data(self, seg_seq: int, payload: bytes, now: float) -> None:
        rcv_nxt = self.rcv_nxt
        # Trim what we already have and what lies beyond the window.
        off = sq.sub(rcv_nxt, seg_seq)
        if off > 0:
            payload = payload[off:]
            seg_seq = rcv_nxt
        wnd_end = self.rcv_adv if sq.gt(self.rcv_adv, rcv_nxt) else rcv_nxt
        room = sq.sub(wnd_end, seg_seq)
        if room < len(payload):
            payload = payload[:max(room, 0)]
        if not payload:
            self._ack_now = True
            return
        if seg_seq == rcv_nxt:
            self._rq += payload
            n = len(payload)
            rcv_nxt = (rcv_nxt + n) & _MASK
            if self._ooo.nbytes:
                more = self._ooo.pop_ready(rcv_nxt)
                if more:
                    self._rq += more
                    rcv_nxt = (rcv_nxt + len(more)) & _MASK
                    n += len(more)
                self._ack_now = True  # a hole was (partly) filled: ACK at once
            self.rcv_nxt = rcv_nxt
            self.bytes_in += n
            self._post(Event.READABLE)
            if self._peer_fin_seq is not None and self._peer_fin_seq == rcv_nxt:
                self._consume_fin(now)
                return
            # RFC 1122 4.2.3.2 / RFC 5681 4.2: ACK at least every second
            # full-sized segment, otherwise within the delayed-ACK time.
            # Counted in bytes (as Linux does: more than one MSS waiting),
            # so a coalesced super-frame is ACKed at once.
            self.acks_pending += len(payload)
            if self.acks_pending > self.mss:
                self._ack_now = True
            elif self._t_delack is None:
                self._t_delack = now + self.cfg.delack
        else:
            # Out of order: queue it and ACK at once (RFC 5681 4.2), with SACK.
            self._ooo.add(seg_seq, payload, rcv_nxt)
            self._ack_now = True

    def _consume_fin(self, now: float) -> None:
        self.rcv_nxt = (self.rcv_nxt + 1) & _MASK
        self._peer_fin_seq = None
        self.peer_fin = True
        self._ack_now = True
        self.events.append(Event.READABLE)
        state = self.state
        if state is State.FIN_WAIT_1 and self.fin_acked:
            self._move(Ev.RCV_FIN_ACK_OF_FIN)
        else:
            self._move(Ev.RCV_FIN)
        if self.state is State.TIME_WAIT:
            self._enter_time_wait(now)

    def _enter_time_wait(self, now: float) -> None:
        self._stop_rtx()
        self._t_finwait2 = None
        self._t_keepalive = None
        self._t_persist = None
        self._t_2msl = now + 2 * self.cfg.msl

    # ==================================================================
    # Output
    # ==================================================================

    def _ts_now(self, now: float) -> int:
        return (int(now * 1000) + self._ts_offset) & _MASK

    def _flight(self) -> int:
        """Bytes (and SYN/FIN) sent and not yet acknowledged, as the sender counts them."""
        if self._rtx_nxt is not None:
            return sq.sub(self._rtx_nxt, self.snd_una)  # after an RTO, only what was resent
        if self.in_recovery and self.sack_ok:
            return self.sb.pipe(self.snd_una, self.snd_nxt, self.mss)
        return sq.sub(self.snd_nxt, self.snd_una)

    def _window_to_offer(self) -> int:
        free = self.cfg.rcvbuf - len(self._rq) - self._ooo.nbytes
        return max(0, free)

    def _advertise(self) -> int:
        """The window field for the next segment; the right edge never moves left."""
        rcv_nxt = self.rcv_nxt
        cur = (self.rcv_adv - rcv_nxt) & _MASK
        if cur >= 0x80000000:
            cur = 0
        rcvbuf = self.cfg.rcvbuf
        free = self._window_to_offer()
        # Receiver SWS avoidance (RFC 9293 3.8.6.2.2): open the window only
        # by at least min(RCV.BUFF/2, MSS); never shrink it (3.8.6).
        if free > cur and (free == rcvbuf or free - cur >= min(rcvbuf // 2, self.mss) or (
                cur == 0 and free >= self.mss)):
            wnd = free
        else:
            wnd = cur
        shift = self.rcv_wscale
        field = wnd >> shift
        if field > 0xFFFF:
            field = 0xFFFF
        self.rcv_adv = (rcv_nxt + (field << shift)) & _MASK
        return field

    def _options(self, now: float, syn: bool) -> bytes:
        ts = (self._ts_now(now), self.ts_recent) if self.ts_ok or (
            syn and self.cfg.timestamps and self.state is State.SYN_SENT) else None
        if syn:
            return wtcp.build_options(
                mss=self.cfg.mss,
                wscale=self.rcv_wscale if self.cfg.window_scaling and (
                    self.state is State.SYN_SENT or self.rcv_wscale or self.snd_wscale) else None,
                sack_permitted=self.cfg.sack and (self.state is State.SYN_SENT or self.sack_ok),
                ts=ts if ts is None or self.state is State.SYN_SENT or self.ts_ok else None,
            )
        blocks = self._ooo.sack_blocks(3 if self.ts_ok else 4) if (
            self.sack_ok and self._ooo.nbytes) else ()
        if not blocks:
            # The common case, built directly: NOP NOP TS or nothing.
            return b"" if ts is None else _ts_option(ts[0], ts[1])
        return wtcp.build_options(sack_blocks=blocks, ts=ts)

    def _segment(self, seq: int, flags: int, payload: bytes, now: float) -> OutSegment:
        syn = bool(flags & SYN)
        if flags & ACK:
            self._ack_now = False
            self.acks_pending = 0
            self._t_delack = None
            self._last_ack_sent = self.rcv_nxt
        window = self._advertise() if not syn else min(self._window_to_offer(), 0xFFFF)
        if syn:
            self.rcv_adv = (self.rcv_nxt + window) & _MASK
        self.segs_out += 1
        return OutSegment(seq, self.rcv_nxt if flags & ACK else 0, flags, window,
                          self._options(now, syn), payload)

    def _retransmit_at(self, seq: int, now: float, out: list[OutSegment] | None = None) -> int:
        """Queue a retransmission of one segment starting at ``seq``; returns its length."""
        self.total_retransmits += 1
        if self._rtt_seq is not None and sq.le(seq, self._rtt_seq):
            self._rtt_seq = None  # Karn: never time a retransmitted segment
        seg = self._data_segment(seq, self.mss, now)
        if seg is None:
            return 0
        if out is None:
            self._pending_rtx.append(seg)
        else:
            out.append(seg)
        return len(seg.payload) + (1 if seg.flags & FIN else 0)

    def _data_segment(self, seq: int, max_len: int, now: float) -> OutSegment | None:
        """A segment carrying stream bytes from ``seq`` (and the FIN if it follows)."""
        off = sq.sub(seq, self._sq_seq)
        if off < 0:
            return None
        # One copy (a slice of the bytearray would be copied twice); the
        # view is gone before the queue next changes size.
        payload = bytes(memoryview(self._sq)[off:off + max_len])
        flags = ACK
        end = (seq + len(payload)) & _MASK
        if self.fin_queued and end == (self._sq_seq + len(self._sq)) & _MASK and len(
                payload) < max_len + 1:
            flags |= FIN
        elif not payload:
            return None
        if payload and off + len(payload) == len(self._sq):
            flags |= PSH
        return self._segment(seq, flags, payload, now)

    def segments_to_send(self, now: float) -> list[OutSegment]:
        """Everything the connection wants on the wire now, in order."""
        out: list[OutSegment] = []
        if self._rst is not None:
            out.append(self._rst)
            self._rst = None
            self.segs_out += 1
        state = self.state
        if state is State.CLOSED or state is State.LISTEN:
            return out
        if self._send_syn:
            self._send_syn = False
            flags = SYN | ACK if state is State.SYN_RECEIVED else SYN
            if self._t_rtx is None:
                self._arm_rtx(now)
            if self._rtt_seq is None and self.retransmits == 0:
                self._rtt_seq, self._rtt_time = self.iss, now
            out.append(self._segment(self.iss, flags, b"", now))
            return out
        if state is State.SYN_SENT:
            return out  # nothing received yet that an ACK could acknowledge
        if state is State.SYN_RECEIVED:
            # A challenge ACK (RFC 5961 3.2, 4.2) or the ACK answering an
            # unacceptable segment (RFC 9293 3.10.7.4 first check).
            if self._challenge or self._ack_now:
                self._challenge = False
                out.append(self._segment(self.snd_nxt, ACK, b"", now))
            return out
        if self._pending_rtx:
            out.extend(self._pending_rtx)
            self._pending_rtx.clear()
        if state is not State.TIME_WAIT:
            self._send_data(now, out)
        if self._challenge:
            self._challenge = False
            out.append(self._segment(self.snd_nxt, ACK, b"", now))
        elif self._ack_now and not (out and out[-1].flags & ACK):
            out.append(self._segment(self.snd_nxt, ACK, b"", now))
        return out

    def _send_data(self, now: float, out: list[OutSegment]) -> None:
        mss = self.mss
        seg_max = max(self.cfg.max_segment, mss)
        if self.in_recovery and self.sack_ok:
            # RFC 6675 5 (C): while cwnd - pipe >= 1 SMSS, send NextSeg().
            cwnd = self.cc.cwnd
            data_end = (self._sq_seq + len(self._sq)) & _MASK
            while cwnd - self.sb.pipe(self.snd_una, self.snd_nxt, mss) >= mss:
                nxt = self.sb.next_seg(self.snd_una, self.snd_nxt, mss, data_end)
                if nxt is None:
                    break
                s, length = nxt
                if s == self.snd_nxt:
                    if not self._send_new(now, out, min(length, mss), force_one=True):
                        break
                else:
                    self.sb.on_retransmit(s, length)
                    if not self._retransmit_at(s, now, out):
                        break
            return
        if self._rtx_nxt is not None:
            # After an RTO: resend what was outstanding, cwnd allowing (RFC 5681 3.1).
            while self._rtx_nxt is not None and sq.lt(self._rtx_nxt, self._rtx_end):
                if self.cc.cwnd - sq.sub(self._rtx_nxt, self.snd_una) < mss:
                    return
                if self.sack_ok:
                    for left, right in self.sb.blocks():
                        if sq.between(left, self._rtx_nxt, right):
                            self._rtx_nxt = right  # the peer has it: skip
                    if not sq.lt(self._rtx_nxt, self._rtx_end):
                        break
                n = self._retransmit_at(self._rtx_nxt, now, out)
                if not n:
                    self._rtx_nxt = None
                    break
                self._rtx_nxt = (self._rtx_nxt + n) & _MASK
            if self._rtx_nxt is not None and not sq.lt(self._rtx_nxt, self._rtx_end):
                self._rtx_nxt = None
        # New data (and the FIN); the test in front skips the call when
        # everything queued has been sent.
        while (self.fin_queued or self.snd_nxt != (self._sq_seq + len(self._sq)) & _MASK) and (
                self._send_new(now, out, seg_max)):
            pass

    def _send_new(self, now: float, out: list[OutSegment], seg_max: int,
                  force_one: bool = False) -> bool:
        """Send one new segment if window, congestion, Nagle and SWS allow it."""
        mss = self.mss
        snd_nxt = self.snd_nxt
        data_end = (self._sq_seq + len(self._sq)) & _MASK
        avail = sq.sub(data_end, snd_nxt)
        fin_pending = self.fin_queued and not self.fin_acked and snd_nxt == data_end
        if avail <= 0 and not fin_pending:
            return False
        if fin_pending and sq.sub(snd_nxt, data_end) >= 1:
            return False  # FIN already sent
        usable_wnd = sq.sub((self.snd_una + self.snd_wnd) & _MASK, snd_nxt)
        cwnd = self.cc.cwnd + self._inflate
        flight = self._flight()
        usable = min(usable_wnd, cwnd - flight) if not force_one else min(usable_wnd, mss)
        if (usable < mss and self._lt_budget and not self.in_recovery and not force_one
                and flight <= cwnd + 2 * mss):
            # RFC 3042 limited transmit: one new segment per early dupACK.
            self._lt_budget -= 1
            usable = min(usable_wnd, mss)
        if avail <= 0:
            # Only the FIN is left; it needs no window space of its own here
            # (the peer always accepts a FIN at RCV.NXT with its data).
            seg = self._segment(self.snd_nxt, ACK | FIN, b"", now)
            out.append(seg)
            self.snd_nxt = (self.snd_nxt + 1) & _MASK
            self._arm_rtx(now)
            return False
        if usable <= 0:
            if usable_wnd <= 0 and flight == 0 and self._t_persist is None:
                self._arm_persist(now)
            return False
        n = min(avail, usable, seg_max)
        if n < mss and not force_one:
            # Sender SWS avoidance (RFC 9293 3.8.6.2.1): a segment shorter
            # than the MSS goes only if it carries everything queued, or at
            # least half the largest window the peer has offered; otherwise
            # wait for the window to open (the persist timer overrides).
            if n < avail and (self.max_sndwnd == 0 or n < self.max_sndwnd // 2):
                if self._t_persist is None and flight == 0:
                    self._arm_persist(now)
                return False
            # Nagle (RFC 896, RFC 1122 4.2.3.4): no small segment while
            # data is outstanding, unless TCP_NODELAY.
            if flight and not self.cfg.nodelay:
                return False
        if self.snd_una == self.snd_nxt and data_end != self.snd_nxt:
            # Sending restarts after an idle period (RFC 5681 4.1, RFC 9438).
            self.cc.on_idle(now - self._last_send, self.rtt.rto, now)
        data = self._data_segment(self.snd_nxt, n, now)
        if data is None:
            return False
        self._last_send = now
        out.append(data)
        length = len(data.payload) + (1 if data.flags & FIN else 0)
        if self._rtt_seq is None and not self.ts_ok:
            self._rtt_seq, self._rtt_time = self.snd_nxt, now
        self.snd_nxt = (self.snd_nxt + length) & _MASK
        self._arm_rtx(now)
        return not data.flags & FIN

    # ==================================================================
    # Timers
    # ==================================================================

    def next_timer(self) -> float | None:
        best: float | None = None
        for t in (self._t_rtx, self._t_delack, self._t_persist, self._t_keepalive,
                  self._t_2msl, self._t_finwait2):
            if t is not None and (best is None or t < best):
                best = t
        return best

    def handle_timer(self, now: float) -> None:
        if self._t_2msl is not None and now >= self._t_2msl:
            self._t_2msl = None
            self._close_now(0, Ev.TIMEWAIT_EXPIRED)
            return
        if self._t_finwait2 is not None and now >= self._t_finwait2:
            self._t_finwait2 = None
            if self.state is State.FIN_WAIT_2:
                self._close_now(0, Ev.FINWAIT2_EXPIRED)
                return
        if self._t_rtx is not None and now >= self._t_rtx:
            self._t_rtx = None
            self._on_rto(now)
        if self._t_delack is not None and now >= self._t_delack:
            self._t_delack = None
            self._ack_now = True
        if self._t_persist is not None and now >= self._t_persist:
            self._t_persist = None
            self._on_persist(now)
        if self._t_keepalive is not None and now >= self._t_keepalive:
            self._t_keepalive = None
            self._on_keepalive(now)

    def _arm_rtx(self, now: float, restart: bool = False) -> None:
        if self._t_rtx is None or restart:
            self._t_rtx = now + self.rtt.rto

    def _stop_rtx(self) -> None:
        self._t_rtx = None

    def _arm_persist(self, now: float) -> None:
        # RFC 9293 3.8.6.1: probe a zero window, backing off like the RTO.
        rto = min(max(self.rtt.rto, 0.2) * (1 << self._persist_backoff), self.cfg.max_rto)
        self._t_persist = now + rto

    def _on_persist(self, now: float) -> None:
        data_end = (self._sq_seq + len(self._sq)) & _MASK
        if self.snd_wnd == 0 and sq.lt(self.snd_nxt, data_end):
            # Zero-window probe (RFC 9293 3.8.6.1, MUST-36; RFC 1122
            # 4.2.2.17), as Linux sends it: SEG.SEQ = SND.UNA - 1 and no
            # data, which the peer must answer with an ACK carrying its
            # current window.  Nothing new is put in flight, so the probe
            # can never be mistaken for data the peer has not seen.
            self._pending_rtx.append(
                self._segment((self.snd_una - 1) & _MASK, ACK, b"", now))
            self._persist_backoff = min(self._persist_backoff + 1, 12)
            self._arm_persist(now)
        elif sq.lt(self.snd_nxt, data_end):
            # The window is open but small and data waits (SWS override timer).
            seg = self._data_segment(self.snd_nxt, min(self.mss, max(1, self.snd_wnd)), now)
            if seg is not None:
                self._pending_rtx.append(seg)
                self.snd_nxt = (self.snd_nxt + len(seg.payload)) & _MASK
                self._arm_rtx(now)

    def _on_rto(self, now: float) -> None:
        state = self.state
        self.retransmits += 1
        if state is State.SYN_SENT:
            limit = self.cfg.syn_retries
        elif state is State.SYN_RECEIVED:
            limit = self.cfg.synack_retries
        else:
            limit = self.cfg.retries2
        if self.retransmits > limit:
            self.events.append(Event.TIMED_OUT)
            self._close_now(self.soft_error or 110, Ev.TIMEOUT)  # ETIMEDOUT
            return
        if self.retransmits == self.cfg.retries1 + 1:
            self.events.append(Event.SOFT_ERROR)  # RFC 9293 3.8.3: R1 reached
        self.rtt.backoff()  # RFC 6298 5.5
        self._rtt_seq = None  # Karn
        if state in (State.SYN_SENT, State.SYN_RECEIVED):
            self._send_syn = True
            self._arm_rtx(now)
            return
        if self.snd_una == self.snd_nxt:
            return
        # RFC 5681 3.1 / RFC 6298 5.4: shrink the window and resend from SND.UNA.
        self.cc.on_rto(self._flight(), now)
        self.in_recovery = False
        self._inflate = 0
        self.dupacks = 0
        self.recover = self.snd_nxt
        # RFC 6675 5.1: keep the SACK information; what it covers is not resent.
        self.sb.on_rto(self.snd_una, self.snd_nxt)
        self._rtx_nxt = self.snd_una
        self._rtx_end = self.snd_nxt
        self._arm_rtx(now)

    def _start_keepalive(self, now: float) -> None:
        if self.cfg.keepalive:
            self._t_keepalive = now + self.cfg.keepalive_idle

    def set_keepalive(self, enabled: bool, now: float, idle: float | None = None,
                      interval: float | None = None, probes: int | None = None) -> None:
        """Turn keep-alives on or off, optionally with new timings (SO_KEEPALIVE,
        TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT).

        RFC 1122 4.2.3.6: a probe goes out only after the connection has
        been idle for ``idle`` seconds.  As on Linux, turning keep-alives on
        arms the timer ``idle`` from now (tcp_set_keepalive), and a new idle
        time while no probe is outstanding counts from the last segment
        received (keepalive_time_elapsed); turning them off stops the timer
        and forgets unanswered probes.  A connection not yet established
        arms it when it gets there.
        """
        cfg = self.cfg
        was = cfg.keepalive
        if interval is not None:
            cfg.keepalive_interval = interval
        if probes is not None:
            cfg.keepalive_probes = probes
        new_idle = idle is not None and idle != cfg.keepalive_idle
        if idle is not None:
            cfg.keepalive_idle = idle
        cfg.keepalive = enabled
        if not enabled:
            self._t_keepalive = None
            self._probes = 0
            return
        if self.state not in (State.ESTABLISHED, State.CLOSE_WAIT) or self._probes:
            return
        if not was or self._t_keepalive is None:
            self._t_keepalive = now + cfg.keepalive_idle
        elif new_idle:
            self._t_keepalive = max(now, self.last_activity + cfg.keepalive_idle)

    def _on_keepalive(self, now: float) -> None:
        if self.state not in (State.ESTABLISHED, State.CLOSE_WAIT) or not self.cfg.keepalive:
            return
        if self._probes >= self.cfg.keepalive_probes:
            self.events.append(Event.TIMED_OUT)
            self._close_now(110, Ev.TIMEOUT)
            return
        self._probes += 1
        # RFC 1122 4.2.3.6: a segment with SEG.SEQ = SND.NXT - 1 and no data.
        self._pending_rtx.append(self._segment((self.snd_nxt - 1) & _MASK, ACK, b"", now))
        self._t_keepalive = now + self.cfg.keepalive_interval

    # ==================================================================
    # Errors and closing
    # ==================================================================

    def icmp_error(self, type_: int, code: int, mtu: int, now: float) -> None:
        """An ICMP error about one of our segments (RFC 1122 4.2.3.9, RFC 5461).

        Reported as a soft error: it is what the application learns if the
        connection later times out.  Fragmentation needed lowers the MSS.
        """
        if type_ == 3 and code == 4 and mtu >= 68:
            new = mtu - 40 - (TS_OPTION_LEN if self.ts_ok else 0)
            if 64 <= new < self.mss:
                self.mss = new
                self.cc.set_mss(new)
            return
        errno_ = {0: 101, 1: 113, 2: 92, 3: 111}.get(code, 113) if type_ == 3 else 113
        self.soft_error = errno_
        self.events.append(Event.SOFT_ERROR)

    def _reset(self, errno_: int) -> None:
        self.events.append(Event.RESET)
        self._close_now(errno_, Ev.RCV_RST)

    def _close_now(self, errno_: int, ev: Ev = Ev.APP_ABORT) -> None:
        if errno_ and not self.error:
            self.error = errno_
        # Every event that ends here has a row leading to CLOSED in the table
        # (checked by the tests); CLOSED is set directly for the ones (abort
        # of an unsynchronized connection) that need no row.
        self.state = State.CLOSED
        self._t_rtx = self._t_delack = self._t_persist = None
        self._t_keepalive = self._t_2msl = self._t_finwait2 = None
        self._send_syn = False
        self._ack_now = False
        self.events.append(Event.CLOSED)

    def _move(self, ev: Ev) -> None:
        self.state = next_state(self.state, ev)

    # ==================================================================
    # Introspection
    # ==================================================================

    def stats(self) -> dict[str, object]:
        s: dict[str, object] = {
            "state": self.state.value,
            "cwnd": self.cc.cwnd,
            "ssthresh": self.cc.ssthresh,
            "srtt": self.rtt.srtt,
            "rttvar": self.rtt.rttvar,
            "rto": self.rtt.rto,
            "retransmits": self.total_retransmits,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "segs_in": self.segs_in,
            "segs_out": self.segs_out,
            "mss": self.mss,
            "snd_wnd": self.snd_wnd,
            "rcv_wnd": sq.sub(self.rcv_adv, self.rcv_nxt),
            "sack_blocks": self.sb.blocks() if self.sack_ok else [],
            "sack": self.sack_ok,
            "timestamps": self.ts_ok,
            "wscale": (self.snd_wscale, self.rcv_wscale),
            "cc": self.cc.name,
            "unacked": sq.sub(self.snd_nxt, self.snd_una),
            "unsent": self.unsent_bytes,
        }
        return s

