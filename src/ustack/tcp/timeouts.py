"""What happens when a timer of a connection expires (RFC 9293 3.10.8).

Functions over the TCB (``tcb.py``); the deadlines themselves are
``timers.py``'s.  In the order ``expire`` handles them:

- TIME-WAIT's 2*MSL elapsed: the connection is gone (RFC 9293 3.6);
- an orphan's FIN-WAIT-2 timeout: reaped (Linux's tcp_fin_timeout);
- retransmission (RFC 6298 5.4-5.7, RFC 5681 3.1, RFC 6675 5.1): back off,
  give up after R2 (R1 tells the application first, RFC 9293 3.8.3), resend
  the SYN or everything outstanding;
- RACK's reordering timer and the tail loss probe (RFC 8985 6.3, 7.3:
  ``losses.py``);
- delayed ACK (RFC 1122 4.2.3.2): the ACK goes now;
- persist (RFC 9293 3.8.6.1): probe a zero window, or send what sender SWS
  avoidance was holding back;
- keepalive (RFC 1122 4.2.3.6): a probe, or the end after too many; and
  ``set_keepalive``, the application turning it on, off or retimed.
"""

from __future__ import annotations

import errno

from ustack.tcp import losses, output
from ustack.tcp import seq as sq
from ustack.tcp.segment import Event
from ustack.tcp.states import Ev, State
from ustack.tcp.tcb import Tcb
from ustack.wire.tcp import ACK

_ETIMEDOUT = errno.ETIMEDOUT


def expire(tp: Tcb, now: float) -> None:
    """Handle every timer of ``tp`` whose deadline has passed."""
    t = tp.timers
    if t.timewait is not None and now >= t.timewait:
        t.timewait = None
        tp.close_now(0, Ev.TIMEWAIT_EXPIRED)
        return
    if t.finwait2 is not None and now >= t.finwait2:
        t.finwait2 = None
        if tp.state is State.FIN_WAIT_2:
            tp.close_now(0, Ev.FINWAIT2_EXPIRED)
            return
    if t.rtx is not None and now >= t.rtx:
        t.rtx = None
        _retransmission(tp, now)
    if t.probe is not None and now >= t.probe:
        t.probe = None
        if t.probe_reo:
            t.probe_reo = False
            losses.reorder_timeout(tp, now)
        else:
            losses.loss_probe(tp, now)
    if t.delack is not None and now >= t.delack:
        t.delack = None
        tp.ack_now = True
    if t.persist is not None and now >= t.persist:
        t.persist = None
        _persist(tp, now)
    if t.keepalive is not None and now >= t.keepalive:
        t.keepalive = None
        _keepalive(tp, now)


def _retransmission(tp: Tcb, now: float) -> None:
    state = tp.state
    cfg = tp.cfg
    tp.retransmits += 1
    if state is State.SYN_SENT:
        limit = cfg.syn_retries
    elif state is State.SYN_RECEIVED:
        limit = cfg.synack_retries
    else:
        limit = cfg.retries2
    if tp.retransmits > limit:
        tp.events.append(Event.TIMED_OUT)
        tp.close_now(tp.soft_error or _ETIMEDOUT, Ev.TIMEOUT)
        return
    if tp.retransmits == cfg.retries1 + 1:
        tp.events.append(Event.SOFT_ERROR)  # RFC 9293 3.8.3: R1 reached
    tp.rtt.backoff()  # RFC 6298 5.5
    tp.rtt_seq = None  # Karn
    if state is State.SYN_SENT or state is State.SYN_RECEIVED:
        tp.send_syn = True
        tp.total_retransmits += 1  # TcpRetransSegs counts a SYN's too (Linux)
        tp.timers.arm_rtx(now, tp.rtt.rto)
        return
    if tp.snd_una == tp.snd_nxt:
        return
    tp.counters.TcpExtTCPTimeouts += 1
    # RFC 5681 3.1 / RFC 6298 5.4: shrink the window and resend from SND.UNA.
    # (RFC 8985 6.3/7: an RTO ends any loss probe episode; what RACK had
    # marked is part of the resend.)
    if tp.retransmits == 1 and not tp.rec.active:
        # The first timeout of an episode (consecutive ones, or one in a
        # fast recovery, keep the record of the first reduction).
        tp.undo.start(tp.snd_una, tp.snd_nxt, tp.cc.cwnd, tp.cc.ssthresh, True)
    tp.cc.on_rto(tp.flight(), now)
    if tp.use_rack:
        tp.rack.forget_all(tp.snd_nxt)
        tp.tlp_end = None
        t = tp.timers
        t.probe = None
        t.probe_reo = False
    tp.rec.on_rto(tp.snd_una, tp.snd_nxt)  # (and the scoreboard's, RFC 6675 5.1)
    tp.timers.arm_rtx(now, tp.rtt.rto)
    if tp.tracer is not None:
        tp.trace("rto")


def _persist(tp: Tcb, now: float) -> None:
    t = tp.timers
    data_end = tp.sendq.end
    if tp.snd_wnd == 0 and sq.lt(tp.snd_nxt, data_end):
        # Zero-window probe (RFC 9293 3.8.6.1, MUST-36; RFC 1122 4.2.2.17),
        # as Linux sends it: SEG.SEQ = SND.UNA - 1 and no data, which the
        # peer must answer with an ACK carrying its current window.  Nothing
        # new is put in flight, so the probe can never be mistaken for data
        # the peer has not seen.
        tp.pending_rtx.append(output.segment(tp, sq.add(tp.snd_una, -1), ACK, b"", now))
        t.persist_backoff = min(t.persist_backoff + 1, 12)
        t.arm_persist(now, tp.rtt.rto, tp.cfg.max_rto)
    elif sq.lt(tp.snd_nxt, data_end):
        # The window is open but small and data waits: the override of
        # sender SWS avoidance (RFC 9293 3.8.6.2.1) sends what fits.
        output.send_one(tp, now, tp.pending_rtx)


def _keepalive(tp: Tcb, now: float) -> None:
    cfg = tp.cfg
    if tp.state not in (State.ESTABLISHED, State.CLOSE_WAIT) or not cfg.keepalive:
        return
    t = tp.timers
    if t.probes >= cfg.keepalive_probes:
        tp.events.append(Event.TIMED_OUT)
        tp.close_now(_ETIMEDOUT, Ev.TIMEOUT)
        return
    t.probes += 1
    # RFC 1122 4.2.3.6: a segment with SEG.SEQ = SND.NXT - 1 and no data.
    tp.pending_rtx.append(output.segment(tp, sq.add(tp.snd_nxt, -1), ACK, b"", now))
    t.keepalive = now + cfg.keepalive_interval


def set_keepalive(tp: Tcb, enabled: bool, now: float, idle: float | None = None,
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
    cfg = tp.cfg
    timers = tp.timers
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
        timers.keepalive = None
        timers.probes = 0
        return
    if tp.state not in (State.ESTABLISHED, State.CLOSE_WAIT) or timers.probes:
        return
    if not was or timers.keepalive is None:
        timers.keepalive = now + cfg.keepalive_idle
    elif new_idle:
        timers.keepalive = max(now, tp.last_activity + cfg.keepalive_idle)
