"""What a SACK sender does with RACK-TLP's verdicts (RFC 8985, RFC 6937).

Functions over the TCB (``tcb.py``), called by the connection on ACKs and
by ``timeouts.py`` when RACK's timers expire:

- ``on_ack``: an ACK with RACK: RFC 8985 6.2 steps 1-4, the TLP episode
  (7.4.2), loss detection, PRR's share of the ACK (RFC 6937 3);
- ``rack_detect``: RFC 8985 6.2 step 5 with the reordering window of step
  4; arms the reordering timer (6.3) for segments not yet past it, and
  starts fast recovery when something is lost;
- ``enter_recovery``: fast recovery with RACK: ssthresh and cwnd from the
  congestion controller (RFC 5681 3.2 step 2, RFC 9438 4.6), the recovery
  point (RFC 6582 3.2, RFC 6675 5), PRR's start (RFC 6937 3); what RACK
  marked lost goes first (``output._send_prr``);
- ``reorder_timeout``: RFC 8985 6.3, RACK_reo_timeout();
- ``loss_probe``: RFC 8985 7.3, the tail loss probe when the PTO expires;
- ``fast_retransmit``: without RACK (no SACK, or config.rack off), the
  DupThresh entry of NewReno (RFC 5681 3.2, RFC 6582) or RFC 6675 5.

The state is the Rack's (``rack.py``), the Recovery's (``recovery.py``) and
the TCB's ``tlp_end``/``tlp_retrans`` (TLP.end_seq, TLP.is_retrans).
"""

from __future__ import annotations

from ustack.tcp import output
from ustack.tcp import seq as sq
from ustack.tcp.rack import INF as REO_INF
from ustack.tcp.rack import REO_TIMER_SLACK
from ustack.tcp.states import State
from ustack.tcp.tcb import Tcb


def on_ack(tp: Tcb, old_una: int, sacked_before: int, dsack: bool, ts_ecr: int,
           pure_dup: bool, now: float) -> None:
    """An ACK with RACK-TLP: update RACK, end a loss probe episode, mark
    losses, start or pace fast recovery (RFC 8985 6.2, 7.4; RFC 6937)."""
    rack = tp.rack
    sb = tp.sb
    rec = tp.rec
    una = tp.snd_una
    rtt = tp.rtt
    min_rtt = rtt.min_rtt if rtt.samples else 0.0
    lost_rtx = rack.lost_retransmits
    reorders = rack.reorders
    rack.update(una, old_una, sb, now, ts_ecr, min_rtt, dsack, rec.active)
    if tp.undo.marker is not None:
        _check_undo(tp, old_una, dsack, ts_ecr, now)
    if tp.tlp_end is not None:
        _tlp_ack(tp, old_una, dsack, pure_dup, now)
    was_active = rec.active
    rack_detect(tp, now)
    c = tp.counters
    if rack.lost_retransmits != lost_rtx:
        c.TcpExtTCPLostRetransmit += rack.lost_retransmits - lost_rtx
    if rack.reorders != reorders:
        c.TcpExtTCPSACKReorder += rack.reorders - reorders
    if rec.active:
        # RFC 6937 3: DeliveredData = delta(SND.UNA) + delta(SACKed).
        delivered = sq.sub(una, old_una) + sb.sacked_bytes() - sacked_before
        rec.prr_ack(delivered, tp.flight(), tp.cc.ssthresh, tp.mss)
        if not was_active and rec.sndcnt < tp.mss:
            rec.sndcnt = tp.mss  # the fast retransmit goes whatever PRR says


def _check_undo(tp: Tcb, old_una: int, dsack: bool, ts_ecr: int, now: float) -> None:
    """Was the last reduction spurious (``undo.py``)?  Every retransmission
    of it D-SACKed (RFC 2883), or the ACK that first passes it echoes a
    TSval older than the first retransmission (Eifel, RFC 3522): undo it."""
    undo = tp.undo
    sb = tp.sb
    if dsack and sb.dsack_block is not None:
        undo.on_dsack(sb.dsack_block[0], sb.dsack_block[1])
    c = tp.counters
    if undo.all_dsacked():
        c.TcpExtTCPDSACKUndo += 1
    elif undo.delayed(old_una, tp.snd_una, ts_ecr) and not tp.rack.rtx:
        # (With retransmissions of other holes still in flight, Linux's
        # tcp_try_undo_partial waits: those may be real losses.)
        if undo.rto:
            c.TcpExtTCPLossUndo += 1
        elif sq.ge(tp.snd_una, tp.rec.recover):
            c.TcpExtTCPFullUndo += 1
        else:
            c.TcpExtTCPPartialUndo += 1
    else:
        return
    undo_reduction(tp, now)


def undo_reduction(tp: Tcb, now: float) -> None:
    """Back to the state before a spurious reduction (RFC 4015 3.2, Linux's
    tcp_undo_cwnd_reduction): cwnd and ssthresh restored, recovery (fast
    or after the RTO) over, and what RACK marked lost judged again, now with
    a reordering window (RFC 8985 6.2 step 4: reordering was seen)."""
    undo = tp.undo
    tp.cc.undo(undo.prior_cwnd, undo.prior_ssthresh, now)
    undo.marker = None
    rec = tp.rec
    una = tp.snd_una
    if rec.active:
        rec.finish()
    rec.rtx_nxt = None
    rec.sndcnt = 0
    rec.recover = sq.add(una, -1)  # a real loss may start a recovery at once
    if tp.tracer is not None:
        tp.trace("undo")
    rack = tp.rack
    rack.reordering_seen = True
    rack.lost.clear()
    rack.lost_bytes = 0
    rack.scan = una


def _tlp_ack(tp: Tcb, old_una: int, dsack: bool, pure_dup: bool, now: float) -> None:
    """RFC 8985 7.4.2, TLP_process_ack(): did the probe repair a loss?"""
    end = tp.tlp_end
    una = tp.snd_una
    if end is None or sq.lt(una, end):
        return
    if not tp.tlp_retrans or dsack:
        tp.tlp_end = None  # new data delivered, or the probe was redundant
    elif sq.gt(una, end):
        # The probe repaired the loss of the tail: a congestion event
        # (RFC 8985 7.4.2: "invoke congestion control"), as Linux's CWR.
        tp.tlp_end = None
        tp.counters.TcpExtTCPLossProbeRecovery += 1
        cc = tp.cc
        cc.on_congestion(sq.sub(tp.snd_nxt, old_una), now)
        cc.on_recovery_end(now)
    elif pure_dup:
        tp.tlp_end = None  # both copies arrived: no loss


def rack_detect(tp: Tcb, now: float) -> None:
    rack = tp.rack
    rec = tp.rec
    sb = tp.sb
    rtt = tp.rtt
    min_rtt = rtt.min_rtt if rtt.samples else 0.0
    if rack.reordering_seen and rack.min_rtt < REO_INF:
        # The window is a share of min_RTT: RACK's own, at the clock's
        # resolution (the timestamps' 1 ms ticks say 0 on a LAN).
        min_rtt = rack.min_rtt
    srtt = rtt.srtt if rtt.srtt is not None else 0.0
    if srtt < min_rtt:
        srtt = min_rtt  # (SRTT from 1 ms timestamps may be 0: no cap below it)
    reo = rack.reo_wnd(min_rtt, srtt, rec.active, sb.sacked_bytes() // tp.mss, sb.dupthresh)
    timeout = rack.detect(tp.snd_una, tp.snd_nxt, sb, now, reo)
    t = tp.timers
    if timeout > 0.0:
        # RFC 8985 6.3: check again when the first of them is due.
        # Once reordering was seen, REO_TIMER_SLACK later: a late segment
        # on a sub-millisecond path gets its ACK in before the timer.
        t.probe = now + timeout + (REO_TIMER_SLACK if rack.reordering_seen else 0.0)
        t.probe_reo = True
    elif t.probe_reo:
        t.probe = None
        t.probe_reo = False
    if not rec.active and rack.lost_bytes and rec.rtx_nxt is None \
            and rec.may_start(tp.snd_una, tp.iss):
        enter_recovery(tp, now)


def enter_recovery(tp: Tcb, now: float) -> None:
    """Fast recovery begins on RACK's loss marks (RFC 8985 6.2 step 5 hands
    the lost segments to the recovery algorithm; RFC 6937 paces them)."""
    tp.counters.TcpExtTCPSackRecovery += 1
    rec = tp.rec
    una = tp.snd_una
    nxt = tp.snd_nxt
    # ssthresh from the congestion window, as Linux (tcp_init_cwnd_reduction
    # -> CUBIC's recalc_ssthresh: beta * cwnd), not from FlightSize (RFC
    # 5681 3.2 step 2).  Loss is found while an ACK batch is taken, before
    # the window it opened is refilled: SND.NXT - SND.UNA was then a few
    # segments of a window of 15-40, and every recovery of a 20 MB send at
    # 1 % loss cut ssthresh to its 2-segment floor (a 7-segment window;
    # Linux kept 162).  cwnd cannot run ahead of what the path carried:
    # it grows only while the sender fills it (cc.on_ack's RFC 7661 check).
    # (SND.NXT - SND.UNA was no better above: it counts SACKed data, and
    # behind a hole that stays it grows past the window.)
    cc = tp.cc
    tp.undo.start(una, nxt, cc.cwnd, cc.ssthresh, False)
    cc.on_congestion(cc.cwnd, now)
    rec.start(una, nxt, tp.mss, True)
    rec.prr_start(tp.flight(), tp.mss)
    t = tp.timers
    if not t.probe_reo:
        t.probe = None  # no loss probe in recovery (RFC 8985 7.2)
    t.rtx = now + tp.rtt.rto
    if tp.tracer is not None:
        tp.trace("recovery")


def reorder_timeout(tp: Tcb, now: float) -> None:
    """RFC 8985 6.3: the reordering window of a segment has passed."""
    if tp.snd_una == tp.snd_nxt:
        return
    rack_detect(tp, now)
    rec = tp.rec
    if rec.active and rec.sndcnt <= 0 and tp.rack.lost_bytes:
        # The timer is no ACK: PRR has nothing delivered to pace by, so
        # one segment goes (Linux's tcp_rack_reo_timeout ends with a
        # retransmission of the head).
        rec.sndcnt = tp.mss


def loss_probe(tp: Tcb, now: float) -> None:
    """RFC 8985 7.3: the PTO expired with data outstanding and no ACK since."""
    state = tp.state
    if state is State.CLOSED or state is State.SYN_SENT or state is State.SYN_RECEIVED:
        return
    rec = tp.rec
    if (tp.snd_una == tp.snd_nxt or rec.active or rec.rtx_nxt is not None
            or tp.tlp_end is not None):
        return
    if tp.tracer is not None:
        tp.trace("tlp")
    if output.send_probe(tp, now):
        tp.counters.TcpExtTCPLossProbes += 1
        # RFC 8985 7.3: after the probe, the RTO timer restarts.
        tp.timers.rtx = now + tp.rtt.rto


def fast_retransmit(tp: Tcb, now: float) -> None:
    """Fast retransmit and fast recovery without RACK: NewReno (RFC 5681
    3.2, RFC 6582) or, with SACK, RFC 6675 5."""
    # ssthresh comes from FlightSize, taken before recovery starts (RFC
    # 5681 3.2 step 2, RFC 6675 5 step 4.2, RFC 9438 4.6); inside
    # recovery flight() is the SACK pipe, which is not FlightSize.
    c = tp.counters
    if tp.sack_ok:
        c.TcpExtTCPSackRecovery += 1
    else:
        c.TcpExtTCPRenoRecovery += 1
    c.TcpExtTCPFastRetrans += 1
    tp.cc.on_congestion(tp.flight(), now)
    tp.rec.start(tp.snd_una, tp.snd_nxt, tp.mss, tp.sack_ok)
    if tp.tracer is not None:
        tp.trace("fast-retransmit")
    if tp.sack_ok:
        # RFC 6675 5 step 4.3: the segment at SND.UNA is presumed lost
        # and retransmitted at once, whatever the pipe says.
        n = output.retransmit_at(tp, tp.snd_una, now)
        if n:
            tp.sb.on_retransmit(tp.snd_una, n)
    else:
        tp.rec.inflate = 3 * tp.mss  # RFC 5681 3.2 step 3
        output.retransmit_at(tp, tp.snd_una, now)
    tp.timers.rtx = now + tp.rtt.rto
