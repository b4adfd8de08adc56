"""The transmission control block: everything one connection remembers.

RFC 9293 3.3.1 names the variables (SND.UNA, SND.NXT, SND.WND, SND.WL1,
SND.WL2, ISS, RCV.NXT, RCV.WND, IRS); the extensions add their own
(window scale, timestamps, SACK, RTT, congestion window).  They are all
here, in one place, with the parts that hold state of their own: the send
and receive queues (``sendq.py``, ``rcvq.py``), loss recovery
(``recovery.py``), the timers (``timers.py``), the RTT estimator
(``rto.py``), congestion control (``cc.py``) and the SACK scoreboard
(``sack.py``).

The rules that change them live beside it, each in the module of its part
of RFC 9293: ``connection.py`` (the state machine, the application's calls,
segment arrival, 3.10), ``timeouts.py`` (3.10.8) and ``output.py`` (what
to send and when, 3.8).  Sequence space (3.4): ``iss`` is our SYN; data byte k (from 0)
sits at ``iss + 1 + k``; a FIN, once queued, sits right after the last data
byte (``sendq.end``).  ``snd_una`` is the oldest unacknowledged sequence
number, ``snd_nxt`` the next new one (never wound back: retransmissions go
from ``snd_una`` without moving it, as Linux does).
"""

from __future__ import annotations

from collections.abc import Callable

from ustack.counters import Counters
from ustack.tcp import seq as sq
from ustack.tcp.cc import CongestionControl, make_cc
from ustack.tcp.config import TcpConfig
from ustack.tcp.rack import Rack
from ustack.tcp.rcvq import ReceiveQueue
from ustack.tcp.recovery import Recovery
from ustack.tcp.rto import RttEstimator
from ustack.tcp.sack import Scoreboard
from ustack.tcp.segment import Event, OutSegment, Segment
from ustack.tcp.sendq import SendQueue
from ustack.tcp.states import Ev, State, next_state
from ustack.tcp.timers import ConnectionTimers
from ustack.tcp.trace import Tracer
from ustack.tcp.undo import Undo
from ustack.wire import ipv4

DEFAULT_PEER_MSS = 536  # RFC 9293 MUST-15: assume 536 when the peer sends no MSS
TS_OPTION_LEN = 12  # NOP NOP TS: what every non-SYN segment carries with timestamps


def _always(now: float) -> bool:
    return True


class Tcb:
    def __init__(self, local: tuple[bytes, int], remote: tuple[bytes, int], iss: int,
                 config: TcpConfig, now: float,
                 challenge_allowed: Callable[[float], bool] | None = None,
                 ts_offset: int = 0, counters: Counters | None = None) -> None:
        self.local = local
        # The stack's counters (the layer passes its host's), or our own.
        self.counters = counters if counters is not None else Counters()
        self.remote = remote
        self.cfg = config
        self.state = State.CLOSED
        # RFC 5961 7: may a challenge ACK go now?  (The layer's global limit.)
        self._challenge_allowed = challenge_allowed or _always
        # Send sequence variables (RFC 9293 3.3.1).
        self.iss = iss
        self.snd_una = iss
        self.snd_nxt = iss
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_sndwnd = 0  # the largest window the peer offered (SWS, RFC 5961 5.2)
        self.sendq = SendQueue(sq.add(iss, 1))
        self.fin_queued = False  # close()/shutdown(SHUT_WR): our FIN follows the data
        self.fin_acked = False
        # Receive sequence variables.
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_adv = 0  # right edge of the window we last advertised
        self.rcvq = ReceiveQueue(config)
        self.peer_fin = False  # the peer's FIN has been consumed (EOF)
        self.peer_fin_seq: int | None = None  # a FIN seen beyond a gap
        # Options (RFC 7323, 2018, 6691).
        self.peer_mss = DEFAULT_PEER_MSS
        self.snd_wscale = 0
        self.rcv_wscale = 0
        self.ts_ok = False
        self.ts_recent = 0
        self.ts_recent_age = 0.0
        self.ts_offset = ts_offset
        self.sack_ok = False
        # A duplicate the next ACK reports first, as a D-SACK block (RFC 2883).
        self.dsack: tuple[int, int] | None = None
        self.mss = min(DEFAULT_PEER_MSS, config.mss)  # effective send MSS (payload)
        # Loss recovery, RTT and congestion control.
        self.rtt = RttEstimator(initial_rto=config.initial_rto, min_rto=config.min_rto,
                                max_rto=config.max_rto)
        self.cc: CongestionControl = make_cc(config.cc, self.mss, now)
        self.cc.hystart = config.hystart  # RFC 9406, in the initial slow start
        self.cc.counters = self.counters
        self.sb = Scoreboard()
        self.rec = Recovery(iss, self.sb)  # (drives the scoreboard's recovery phases)
        self.rack = Rack(iss)  # RACK-TLP (RFC 8985), with SACK
        self.undo = Undo()  # the last reduction, to undo if spurious (RFC 3522, 2883)
        self.tlp_end: int | None = None  # TLP.end_seq: a loss probe is outstanding
        self.tlp_retrans = False  # ... and it was a retransmission
        self.use_rack = False  # SACK and config.rack: set by the SYN's options
        self.use_tlp = False  # ... and config.tlp
        self.retransmits = 0  # consecutive timeouts (R1/R2 count)
        self.total_retransmits = 0
        self.rtt_seq: int | None = None  # segment being timed (no timestamps)
        self.rtt_time = 0.0
        self.last_send = now  # when new data last went out (idle restart)
        self.timers = ConnectionTimers()
        # Output state.
        self.pending_rtx: list[OutSegment] = []  # retransmissions and probes
        self.ack_now = False
        # The ACK due may wait for the end of the receive batch (the layer
        # reads and clears it after each segment): an out-of-order segment
        # past the first DUPACKS_AT_ONCE duplicate ACKs for one RCV.NXT.
        self.ack_at_batch_end = False
        self.dupacks_at = 0  # the RCV.NXT of ...
        self.dupacks_sent = 0  # ... the duplicate ACKs counted so far
        self.acks_pending = 0  # bytes received since our last ACK
        self.last_ack_sent = 0  # RFC 7323 Last.ACK.sent
        self.send_syn = False
        self.rst: OutSegment | None = None
        self.challenge_due = False  # a challenge ACK goes with the next output (RFC 5961)
        # Events for the application, read by the layer (``next_event``).
        # READABLE and WRITABLE say what the state is, not what happened: one
        # is queued only when none is waiting (one READABLE covers every
        # segment of a receive batch; the test is written where they are
        # queued, on the per-segment path).
        # (A list, not a deque: it holds one or two at most, and an empty
        # deque takes 600 bytes, a tenth of an idle connection.)
        self.events: list[Event] = []
        self.error = 0  # errno the application sees (SO_ERROR)
        self.soft_error = 0
        self.orphan = False  # close(): the application reads no more (and holds no handle)
        self.last_activity = now
        self.bytes_in = 0
        self.bytes_out = 0
        self.segs_in = 0
        self.segs_out = 0
        # For ``ustack ss -i`` (tcp/info.py): bytes resent (counted where a
        # retransmission is made, never on the first transmission's path),
        # and the delivery rate: bytes acknowledged over the last sampling
        # interval of about a round trip, sampled on an ACK of new data once
        # the interval is over (one comparison per such ACK).
        self.bytes_retrans = 0
        self.delivery_rate = 0.0  # bytes per second, 0 until a first sample
        self.rate_due = now
        self.rate_time = now
        self.rate_bytes = 0
        # The event trace (tcp/trace.py): None unless the layer traces, and
        # every hook tests that first (one compare when off).
        self.tracer: Tracer | None = None
        self.trace_id = 0

    def sample_rate(self, now: float) -> None:
        """A delivery-rate sample (``rate_due`` has passed): the bytes
        acknowledged since the last one over the time since.  An interval
        much longer than it should be held idle time (nothing was in
        flight): it starts the next interval only."""
        srtt = self.rtt.srtt
        span = 0.1 if srtt is None else (srtt if srtt > 0.005 else 0.005)
        elapsed = now - self.rate_time
        if 0.0 < elapsed < 4.0 * span + 0.05:
            self.delivery_rate = (self.bytes_out - self.rate_bytes) / elapsed
        self.rate_time = now
        self.rate_bytes = self.bytes_out
        self.rate_due = now + span

    def ts_now(self, now: float) -> int:
        """Our TSval clock (RFC 7323 5.4: 1 ms ticks, from a random offset)."""
        return (int(now * 1000) + self.ts_offset) & sq.MASK  # a 32-bit clock (RFC 7323 4.1)

    def flight(self) -> int:
        """Bytes (and SYN/FIN) sent and not yet acknowledged, as the sender counts them."""
        rec = self.rec
        if self.use_rack and rec.rtx_nxt is None:
            # RFC 6675 4 SetPipe() with RACK's marks: what is outstanding,
            # less what was SACKed and what is lost and not yet resent (as
            # Linux counts in_flight, in recovery or not: SACKed data left
            # the network whether a recovery could start or not).
            return (sq.sub(self.snd_nxt, self.snd_una) - self.sb.sacked_bytes()
                    - self.rack.lost_bytes)
        return rec.flight(self.snd_una, self.snd_nxt, self.mss, self.sack_ok)

    def arm_probe(self, now: float) -> None:
        """Start the tail loss probe timer if a probe may go (RFC 8985 7.2):
        data outstanding, no recovery, no SACKed data, no probe outstanding.

        PTO = 2*SRTT, at least 2 ms (Linux's floor); with one segment in
        flight, SRTT*1.5 + 200 ms, long enough for a delayed ACK (RFC 8985
        7.2's WCDelAckT, as Linux computes it); 1 s before any RTT sample.
        Never later than the retransmission timer: the RTO comes first then.
        """
        t = self.timers
        rec = self.rec
        if (self.tlp_end is not None or rec.active or rec.rtx_nxt is not None or self.sb
                or self.snd_una == self.snd_nxt):
            if not t.probe_reo:
                t.probe = None
            return
        srtt = self.rtt.srtt
        if srtt is None:
            pto = 1.0
        else:
            pto = 2.0 * srtt
            if sq.sub(self.snd_nxt, self.snd_una) <= self.mss:
                one = 1.5 * srtt + 0.2
                if one > pto:
                    pto = one
            elif pto < 0.002:
                pto = 0.002
        deadline = now + pto
        rtx = t.rtx
        t.probe_reo = False
        t.probe = deadline if rtx is None or deadline < rtx else None

    # -- the options a SYN negotiates ------------------------------------

    def choose_wscale(self) -> int:
        # The smallest shift that lets us advertise the whole buffer (RFC 7323
        # 2.3): 65535 << shift >= rcvbuf, i.e. 2**shift >= ceil(rcvbuf / 65535),
        # or the largest autotuning may grow it to (rcvbuf_max).
        cfg = self.cfg
        need = -(-max(cfg.rcvbuf, cfg.rcvbuf_max) // 65535)
        return min((need - 1).bit_length() if need > 1 else 0, 14)

    def take_syn_options(self, seg: Segment) -> None:
        """What the peer's SYN (or SYN-ACK) offers, and what we take of it:
        MSS (RFC 6691), window scale (RFC 7323 2), SACK-permitted (RFC 2018),
        timestamps (RFC 7323 3)."""
        o = seg.opts
        cfg = self.cfg
        if o.mss:
            self.peer_mss = o.mss
        if o.wscale is not None and cfg.window_scaling:
            # RFC 7323 2.3: a shift above 14 is used as 14.
            self.snd_wscale = min(o.wscale, 14)
            if self.state is not State.SYN_SENT or not self.rcv_wscale:
                self.rcv_wscale = self.choose_wscale()
        else:
            self.snd_wscale = self.rcv_wscale = 0
        self.sack_ok = cfg.sack and o.sack_permitted
        # RACK-TLP needs SACK (RFC 8985 2: it is defined on SACKed segments).
        self.use_rack = self.sack_ok and cfg.rack
        self.use_tlp = self.use_rack and cfg.tlp
        if cfg.timestamps and o.ts_val is not None:
            self.ts_ok = True
            self.ts_recent = o.ts_val
        else:
            self.ts_ok = False
        self.set_mss()

    def set_mss(self) -> None:
        # RFC 9293 3.7.1 / RFC 6691: the send MSS is the smaller of the peer's
        # MSS and our own (MTU - 40), less the options every segment carries.
        mss = min(self.peer_mss, self.cfg.mss)
        if self.ts_ok:
            mss -= TS_OPTION_LEN
        self.mss = max(mss, 64)
        self.cc.set_mss(self.mss)

    # -- the state table (states.py) -------------------------------------

    def move(self, ev: Ev) -> None:
        """Take the table's row for ``ev`` (there is one: a missing row raises)."""
        self.state = next_state(self.state, ev)
        if self.tracer is not None:
            self.trace("close" if self.state is State.CLOSED else "state")

    def close_now(self, errno_: int, ev: Ev) -> None:
        """Go to CLOSED by the table's row for ``ev``: stop every timer and
        tell the application (``error`` says why, 0 = normally)."""
        if errno_ and not self.error:
            self.error = errno_
        self.move(ev)
        if self.state is not State.CLOSED:
            raise AssertionError(f"{ev} from the table does not close the connection")
        self.timers.stop_all()
        self.send_syn = False
        self.ack_now = False
        self.events.append(Event.CLOSED)

    # -- the event trace (tcp/trace.py) -----------------------------------

    def attach_tracer(self, tracer: Tracer) -> None:
        """Trace this connection from now on: its id, and the ``open`` event."""
        self.tracer = tracer
        self.trace_id = tracer.new_id()
        self.trace("open")

    def trace(self, ev: str, seq: int = -1, length: int = 0) -> None:
        """Hand the tracer event ``ev`` with the state of the moment; a
        segment's ``seq`` (absolute) and ``length`` for send and retransmit.
        Sequence numbers go out relative to the ISS (trace.py)."""
        tr = self.tracer
        if tr is None:
            return
        if tr.closed:  # tracing stopped (closed, or its file failed): stop asking
            self.tracer = None
            return
        iss = self.iss
        mask = sq.MASK
        fields: dict[str, object] = {
            "t": 0.0, "conn": self.trace_id, "ev": ev, "state": self.state.value,
            "una": (self.snd_una - iss) & mask, "nxt": (self.snd_nxt - iss) & mask,
            "cwnd": self.cc.cwnd, "ssthresh": self.cc.ssthresh, "srtt": self.rtt.srtt,
            "rto": self.rtt.rto, "inflight": self.flight(),
            "sacked": [[(a - iss) & mask, (b - iss) & mask] for a, b in self.sb.blocks()],
            "rwnd": self.snd_wnd, "wnd": sq.sub(self.rcv_adv, self.rcv_nxt),
        }
        if ev == "recv":
            # Data arrived: the receiver's side, relative to the peer's ISS
            # (its SYN 0): the segment, RCV.NXT after it, what waits beyond a gap.
            irs = self.irs
            fields["seq"] = (seq - irs) & mask
            fields["len"] = length
            fields["rcv"] = (self.rcv_nxt - irs) & mask
            fields["ooo"] = [[(a - irs) & mask, (b - irs) & mask]
                             for a, b in self.rcvq.ooo.blocks()]
        elif seq >= 0:
            rel = (seq - iss) & mask
            fields["seq"] = rel
            fields["len"] = length
            if ev == "retransmit":
                fields["rtx"] = [rel, (rel + length) & mask]
        elif ev == "open":
            fields["tuple"] = [ipv4.addr_to_str(self.local[0]), self.local[1],
                               ipv4.addr_to_str(self.remote[0]), self.remote[1]]
            fields["iss"] = iss
        tr.record(fields)

    # -- what the application and the layer read --------------------------

    @property
    def readable_bytes(self) -> int:
        return len(self.rcvq.buf)

    @property
    def at_eof(self) -> bool:
        return self.peer_fin and not self.rcvq.buf

    @property
    def send_space(self) -> int:
        return self.sendq.free(self.cfg.sndbuf)

    @property
    def unsent_bytes(self) -> int:
        return self.sendq.unsent(self.snd_nxt)

    @property
    def in_recovery(self) -> bool:
        return self.rec.active

    @property
    def recover(self) -> int:
        return self.rec.recover

    def stats(self) -> dict[str, object]:
        return {
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
