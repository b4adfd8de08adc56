"""What a connection sends, and when (RFC 9293 3.8; FreeBSD's tcp_output.c).

Functions over the TCB (``tcb.py``), called by the connection
(``segments_to_send``, the retransmissions of loss recovery and of the
timers): the SYN and SYN-ACK, data within the send window and the
congestion window (RFC 5681) with Nagle (RFC 896, RFC 1122 4.2.3.4) and
sender SWS avoidance (RFC 9293 3.8.6.2.1), limited transmit (RFC 3042),
recovery with RACK and PRR (RFC 8985, RFC 6937) or SACK-based recovery's
NextSeg (RFC 6675 5), the tail loss probe (RFC 8985 7), the resend after a timeout
(RFC 5681 3.1), the FIN, ACKs (delayed or not), challenge ACKs (RFC 5961)
and resets.  Every segment carries the ACK field, the window it is time to
advertise and the options (timestamps, SACK blocks) of the moment.
"""

from __future__ import annotations

from typing import Final

from ustack.tcp import seq as sq
from ustack.tcp.segment import OutSegment
from ustack.tcp.states import State
from ustack.tcp.tcb import Tcb
from ustack.wire import tcp as wtcp
from ustack.wire.tcp import ACK, FIN, PSH, SYN

# Duplicate ACKs per RCV.NXT that go one per out-of-order segment before
# the rest of a receive batch shares one (Linux's TCP_FASTRETRANS_THRESH in
# __tcp_ack_snd_check): a sender counting duplicate ACKs (RFC 5681 3.2,
# DupThresh) gets its three.
DUPACKS_AT_ONCE: Final = 3


def ack_out_of_order(tp: Tcb) -> None:
    """An out-of-order segment arrived (queued, or beyond the window): ACK
    at once (RFC 5681 4.2 SHOULD, RFC 9293 3.10.7.4), with SACK blocks.

    Past the first DUPACKS_AT_ONCE duplicate ACKs for one RCV.NXT, a
    segment that went into the first SACK block (extending the train after
    a hole) may leave its ACK to the end of the receive batch
    (``ack_at_batch_end``; the layer services the connection then): the
    frames of a batch are taken within microseconds and every ACK they
    cause leaves in the same flush, so one ACK carrying the newest blocks
    (RFC 2018 4) says all that the train of them would, at the same time.
    A segment landing anywhere else is ACKed as it comes, so no block
    changed since the last ACK can drop out of the three or four an option
    holds unreported (the sender would take its data for lost).  Linux
    compresses SACKs the same way (tcp_comp_sack_*; tcp_sack_new_ofo_skb
    sends before rotating a block out); a receiver answering each segment
    of a 64-frame batch sent 60 ACKs, all but the last stale, for the
    sender to process.  Without SACK every duplicate ACK goes: it is all
    the sender learns (RFC 5681 3.2).
    """
    tp.ack_now = True
    if not tp.sack_ok:
        return
    rcv_nxt = tp.rcv_nxt
    if tp.dupacks_at != rcv_nxt:
        tp.dupacks_at = rcv_nxt
        tp.dupacks_sent = 0
    if tp.dupacks_sent < DUPACKS_AT_ONCE:
        tp.dupacks_sent += 1
    elif tp.rcvq.ooo.same_first:
        tp.ack_at_batch_end = True


def options(tp: Tcb, now: float, syn: int) -> bytes:
    """The option bytes of our next segment (Linux's layout, ``wire.tcp``)."""
    if not syn and not (tp.sack_ok and (tp.rcvq.ooo.nbytes or tp.dsack is not None)):
        # The common case, built directly: NOP NOP TS or nothing.
        return wtcp.ts_option(tp.ts_now(now), tp.ts_recent) if tp.ts_ok else b""
    cfg = tp.cfg
    state = tp.state
    ts = (tp.ts_now(now), tp.ts_recent) if tp.ts_ok or (
        syn and cfg.timestamps and state is State.SYN_SENT) else None
    if syn:
        return wtcp.build_options(
            mss=cfg.mss,
            wscale=tp.rcv_wscale if cfg.window_scaling and (
                state is State.SYN_SENT or tp.rcv_wscale or tp.snd_wscale) else None,
            sack_permitted=cfg.sack and (state is State.SYN_SENT or tp.sack_ok),
            ts=ts if ts is None or state is State.SYN_SENT or tp.ts_ok else None,
        )
    limit = 3 if tp.ts_ok else 4
    blocks = tp.rcvq.ooo.sack_blocks(limit)
    if tp.dsack is not None:
        # RFC 2883 4: the duplicate first (once), then the blocks as usual;
        # the block holding it, if queued, is the most recent one (4.1.2).
        blocks = [tp.dsack, *blocks[:limit - 1]]
        tp.dsack = None
    return wtcp.build_options(sack_blocks=blocks, ts=ts)


def sack_room(tp: Tcb) -> int:
    """The option bytes our next segment carries beyond those the MSS
    allows for (timestamps): its SACK blocks, a pending D-SACK among them
    (counted as ``options`` will emit them, without taking the D-SACK)."""
    limit = 3 if tp.ts_ok else 4
    n = len(tp.rcvq.ooo.sack_blocks(limit)) + (1 if tp.dsack is not None else 0)
    return 2 + 2 + 8 * (n if n < limit else limit) if n else 0  # NOP NOP kind len blocks


def segment(tp: Tcb, seq: int, flags: int, payload: bytes | memoryview, now: float,
            payload_sum: int = -1) -> OutSegment:
    """A segment from ``seq`` with ``flags``: the ACK field, window and options
    filled in as of now.  One carrying ACK satisfies any pending ACK.
    ``payload_sum``: the payload's stored sum, -1 for none (OutSegment)."""
    syn = flags & SYN
    rcv_nxt = tp.rcv_nxt
    if flags & ACK:
        tp.ack_now = False
        tp.acks_pending = 0
        tp.timers.delack = None
        tp.last_ack_sent = rcv_nxt
    if syn:
        # A SYN's window is never scaled (RFC 7323 2.2).
        free = tp.rcvq.free()
        window = free if free < 0xFFFF else 0xFFFF
        tp.rcv_adv = sq.add(rcv_nxt, window)
    else:
        # The right edge never moves left (RFC 9293 3.8.6): what the scale
        # cannot express is rounded down, and that is what is advertised.
        shift = tp.rcv_wscale
        window = tp.rcvq.window(rcv_nxt, tp.rcv_adv, tp.mss) >> shift
        if window > 0xFFFF:
            window = 0xFFFF
        tp.rcv_adv = sq.add(rcv_nxt, window << shift)
    tp.segs_out += 1
    return OutSegment(seq, rcv_nxt if flags & ACK else 0, flags, window, options(tp, now, syn),
                      payload, payload_sum)


def data_segment(tp: Tcb, seq: int, max_len: int, now: float,
                 fin: bool = True) -> OutSegment | None:
    """A segment carrying stream bytes from ``seq`` (and the FIN if it
    follows, unless ``fin`` is False)."""
    q = tp.sendq
    if tp.sack_ok and (tp.rcvq.ooo.nbytes or tp.dsack is not None) and max_len <= tp.mss:
        # SACK blocks take their room from the payload (Linux's
        # tcp_current_mss): the MSS counts only the options every segment
        # carries, and the segment must still fit the MTU (DF is set).  A
        # super-frame is cut by the device to the size the layer gives it.
        room = tp.mss - sack_room(tp)
        if room < max_len:
            max_len = room
    payload = q.peek(seq, max_len)
    if payload is None:
        return None
    n = len(payload)
    last = sq.add(seq, n) == q.end  # up to the last byte queued
    flags = ACK
    if fin and tp.fin_queued and last:
        flags |= FIN
    elif not n:
        return None
    if n and last:
        flags |= PSH
    # Stored segments of a Presegmented come with their sum (SendQueue.peek).
    return segment(tp, seq, flags, payload, now, q.peek_sum)


def retransmit_at(tp: Tcb, seq: int, now: float, out: list[OutSegment] | None = None) -> int:
    """Queue a retransmission of one segment starting at ``seq``; returns its
    length in sequence space (0: nothing there to send).

    It carries what was sent before and nothing past it (RFC 6298 5.4: a
    retransmission; Linux resends only what its retransmit queue holds):
    up to one MSS, stopping at SND.NXT, and the FIN only once SND.NXT
    counts it.  Bytes beyond SND.NXT would be new data that SND.NXT does
    not cover: the peer's ACK for them is one "for unsent data", dropped
    (RFC 5961 5.2), and every later ACK too, for good.
    """
    tp.total_retransmits += 1
    if tp.rtt_seq is not None and sq.le(seq, tp.rtt_seq):
        tp.rtt_seq = None  # Karn: never time a retransmitted segment
    end = tp.sendq.end
    fin_sent = sq.gt(tp.snd_nxt, end)  # the FIN sits at ``end``; SND.NXT past it
    max_len = sq.sub(end if fin_sent else tp.snd_nxt, seq)
    if max_len < 0:
        return 0
    seg = data_segment(tp, seq, max_len if max_len < tp.mss else tp.mss, now, fin_sent)
    if seg is None:
        return 0
    n = len(seg.payload)
    if n:
        tp.bytes_retrans += n
        tp.undo.on_retransmit(seq, sq.add(seq, n), tp.ts_now(now))
    if tp.tracer is not None:
        tp.trace("retransmit", seq, n + (1 if seg.flags & FIN else 0))
    if out is None:
        tp.pending_rtx.append(seg)
    else:
        out.append(seg)
    return n + (1 if seg.flags & FIN else 0)


def segments_to_send(tp: Tcb, now: float) -> list[OutSegment]:
    """Everything the connection wants on the wire now, in order."""
    out: list[OutSegment] = []
    if tp.rst is not None:
        out.append(tp.rst)
        tp.rst = None
        tp.segs_out += 1
    state = tp.state
    if state is State.CLOSED or state is State.LISTEN:
        return out
    if tp.send_syn:
        tp.send_syn = False
        flags = SYN | ACK if state is State.SYN_RECEIVED else SYN
        tp.timers.arm_rtx(now, tp.rtt.rto)
        if tp.rtt_seq is None and tp.retransmits == 0:
            tp.rtt_seq, tp.rtt_time = tp.iss, now
        if tp.tracer is not None:  # (a SYN sent before: this one is resent)
            tp.trace("retransmit" if tp.segs_out else "send", tp.iss, 1)
        out.append(segment(tp, tp.iss, flags, b"", now))
        return out
    if state is State.SYN_SENT:
        return out  # nothing received yet that an ACK could acknowledge
    if state is State.SYN_RECEIVED:
        # A challenge ACK (RFC 5961 3.2, 4.2) or the ACK answering an
        # unacceptable segment (RFC 9293 3.10.7.4 first check).
        if tp.challenge_due or tp.ack_now:
            tp.challenge_due = False
            out.append(segment(tp, tp.snd_nxt, ACK, b"", now))
        return out
    if tp.pending_rtx:
        out.extend(tp.pending_rtx)
        tp.pending_rtx.clear()
    if state is not State.TIME_WAIT:
        _send_data(tp, now, out)
    if tp.challenge_due:
        tp.challenge_due = False
        out.append(segment(tp, tp.snd_nxt, ACK, b"", now))
    elif tp.ack_now and not (out and out[-1].flags & ACK):
        out.append(segment(tp, tp.snd_nxt, ACK, b"", now))
    return out


def _send_data(tp: Tcb, now: float, out: list[OutSegment]) -> None:
    mss = tp.mss
    rec = tp.rec
    if rec.active and tp.use_rack:
        _send_prr(tp, now, out)
        return
    if rec.active and tp.sack_ok:
        # RFC 6675 5 (C): while cwnd - pipe >= 1 SMSS, send NextSeg().
        sb = tp.sb
        cwnd = tp.cc.cwnd
        while cwnd - sb.pipe(tp.snd_una, tp.snd_nxt, mss) >= mss:
            nxt = sb.next_seg(tp.snd_una, tp.snd_nxt, mss, tp.sendq.end)
            if nxt is None:
                break
            s, length = nxt
            if s == tp.snd_nxt:
                if not _send_new(tp, now, out, min(length, mss), force_one=True):
                    break
            else:
                sb.on_retransmit(s, length)
                if not retransmit_at(tp, s, now, out):
                    break
        return
    if rec.rtx_nxt is not None and not _resend_after_rto(tp, now, out):
        return  # the congestion window is full of resent data
    if tp.use_rack and tp.rack.lost and not _resend_lost(tp, now, out):
        return
    # New data (and the FIN); the test in front skips the call when
    # everything queued has been sent.
    seg_max = tp.cfg.max_segment  # TSO: larger than the MSS, or 0
    if seg_max < mss:
        seg_max = mss
    before = tp.snd_nxt
    while (tp.fin_queued or tp.snd_nxt != tp.sendq.end) and _send_new(tp, now, out, seg_max):
        pass
    if tp.use_tlp and tp.snd_nxt != before:
        tp.arm_probe(now)  # RFC 8985 7.2: after new data (once per burst)


def _send_prr(tp: Tcb, now: float, out: list[OutSegment]) -> None:
    """Fast recovery with RACK: what RACK marked lost goes first, then new
    data, as much as PRR allows (RFC 6937 3: "sndcnt"; RFC 8985 6.2 step 5
    leaves what to send to the recovery algorithm)."""
    rec = tp.rec
    rack = tp.rack
    mss = tp.mss
    c = tp.counters
    while rec.sndcnt > 0:
        nxt = rack.next_lost(mss)
        if nxt is not None:
            s, length = nxt
            if rec.sndcnt < length:
                break
            n = retransmit_at(tp, s, now, out)
            if not n:
                break
            c.TcpExtTCPFastRetrans += 1
            rack.on_retransmit(s, sq.add(s, n), now, tp.ts_now(now))
            rec.prr_sent(n)
            continue
        before = tp.snd_nxt
        avail = sq.sub(tp.sendq.end, before)
        if avail > 0 and rec.sndcnt < min(avail, mss):
            break
        more = _send_new(tp, now, out, mss, force_one=True)
        sent = sq.sub(tp.snd_nxt, before)
        if not sent:
            break
        rec.prr_sent(sent)
        if not more:
            break


def _resend_lost(tp: Tcb, now: float, out: list[OutSegment]) -> bool:
    """Outside fast recovery (one may not start yet: RFC 6582 3.2 step 2),
    what RACK marked lost is resent first, as the congestion window allows;
    False when the window stopped it."""
    rack = tp.rack
    mss = tp.mss
    while True:
        nxt = rack.next_lost(mss)
        if nxt is None:
            return True
        pipe = sq.sub(tp.snd_nxt, tp.snd_una) - tp.sb.sacked_bytes() - rack.lost_bytes
        if tp.cc.cwnd - pipe < mss:
            return False
        s, _length = nxt
        n = retransmit_at(tp, s, now, out)
        if not n:
            return True
        tp.counters.TcpExtTCPFastRetrans += 1
        rack.on_retransmit(s, sq.add(s, n), now, tp.ts_now(now))


def send_probe(tp: Tcb, now: float) -> bool:
    """The tail loss probe (RFC 8985 7.3): a new segment if one is queued
    and the peer's window takes it, else the last segment sent again.
    False when there was nothing to send."""
    out = tp.pending_rtx
    before = tp.snd_nxt
    if sq.lt(before, tp.sendq.end) and tp.snd_wnd - sq.sub(before, tp.snd_una) >= min(
            tp.mss, sq.sub(tp.sendq.end, before)):
        _send_new(tp, now, out, tp.mss, force_one=True)
        if tp.snd_nxt != before:
            tp.tlp_retrans = False
            tp.tlp_end = tp.snd_nxt
            return True
    una = tp.snd_una
    nxt = tp.snd_nxt
    if una == nxt:
        return False
    # The last segment: up to one MSS ending at SND.NXT (a FIN with it).
    end = tp.sendq.end
    data_end = nxt if sq.le(nxt, end) else end  # without the FIN's sequence number
    s = sq.add(data_end, -tp.mss)
    if sq.lt(s, una):
        s = una
    n = retransmit_at(tp, s, now, out)
    if not n:
        return False
    tp.rack.on_retransmit(s, sq.add(s, n), now, tp.ts_now(now))
    tp.tlp_retrans = True
    tp.tlp_end = nxt
    return True


def _resend_after_rto(tp: Tcb, now: float, out: list[OutSegment]) -> bool:
    """After an RTO: resend what was outstanding, cwnd allowing (RFC 5681 3.1);
    with SACK, not what the peer reported it holds (RFC 6675 5.1).  False
    when the congestion window stopped it (no new data may go either)."""
    rec = tp.rec
    mss = tp.mss
    while rec.resending():
        nxt = rec.rtx_nxt
        assert nxt is not None
        if tp.cc.cwnd - sq.sub(nxt, tp.snd_una) < mss:
            return False
        if tp.sack_ok:
            for left, right in tp.sb.blocks():
                if sq.between(left, nxt, right):
                    nxt = right  # the peer has it: skip
            rec.rtx_nxt = nxt
            if not rec.resending():
                break
        n = retransmit_at(tp, nxt, now, out)
        if not n:
            rec.rtx_nxt = None
            break
        tp.counters.TcpExtTCPSlowStartRetrans += 1
        if tp.use_rack:  # RACK watches the resent segments too (RFC 8985 6.3)
            tp.rack.on_retransmit(nxt, sq.add(nxt, n), now, tp.ts_now(now))
        rec.rtx_nxt = sq.add(nxt, n)
    if not rec.resending():
        rec.rtx_nxt = None
    return True


def send_one(tp: Tcb, now: float, out: list[OutSegment]) -> None:
    """Send one new segment of up to an MSS that the send window allows,
    whatever the congestion window, Nagle and sender SWS avoidance say: the
    persist timer's override (RFC 9293 3.8.6.2.1).  The one way new data
    goes out (``_send_new``): SND.NXT counts a FIN it carries, the segment
    is timed and restarts the retransmission timer."""
    _send_new(tp, now, out, tp.mss, force_one=True)


def _send_new(tp: Tcb, now: float, out: list[OutSegment], seg_max: int,
              force_one: bool = False) -> bool:
    """Send one new segment if window, congestion, Nagle and SWS allow it."""
    mss = tp.mss
    snd_nxt = tp.snd_nxt
    data_end = tp.sendq.end
    avail = sq.sub(data_end, snd_nxt)
    fin_pending = tp.fin_queued and not tp.fin_acked and snd_nxt == data_end
    if avail <= 0 and not fin_pending:
        return False  # nothing queued, or the FIN already sent
    rec = tp.rec
    outstanding = sq.sub(snd_nxt, tp.snd_una)
    # FlightSize is what is outstanding, except in recovery (Recovery.flight).
    flight = outstanding if (rec.rtx_nxt is None and not rec.active
                             and not tp.sb.sacked_bytes()) else tp.flight()
    # The send window's right edge, SND.UNA + SND.WND, less SND.NXT.
    usable_wnd = tp.snd_wnd - outstanding
    cwnd = tp.cc.cwnd + rec.inflate
    usable = mss if force_one else cwnd - flight
    if usable_wnd < usable:
        usable = usable_wnd
    if (usable < mss and rec.lt_budget and not rec.active and not force_one
            and flight <= cwnd + 2 * mss):
        # RFC 3042 limited transmit: one new segment per early dupACK.
        rec.lt_budget -= 1
        usable = min(usable_wnd, mss)
    timers = tp.timers
    if avail <= 0:
        # Only the FIN is left; it needs no window space of its own here
        # (the peer always accepts a FIN at RCV.NXT with its data).
        out.append(segment(tp, snd_nxt, ACK | FIN, b"", now))
        if tp.use_rack:
            tp.rack.on_send(snd_nxt, now)
        tp.snd_nxt = sq.add(snd_nxt, 1)
        if tp.tracer is not None:
            tp.trace("send", snd_nxt, 1)
        timers.arm_rtx(now, tp.rtt.rto)
        return False
    if usable <= 0:
        if usable_wnd <= 0 and flight == 0 and timers.persist is None:
            timers.arm_persist(now, tp.rtt.rto, tp.cfg.max_rto)
        return False
    n = avail if avail < usable else usable
    if seg_max < n:
        n = seg_max
    if n < mss and not force_one:
        # Sender SWS avoidance (RFC 9293 3.8.6.2.1): a segment shorter
        # than the MSS goes only if it carries everything queued, or at
        # least half the largest window the peer has offered; otherwise
        # wait for the window to open (the persist timer overrides).
        if n < avail and (tp.max_sndwnd == 0 or n < tp.max_sndwnd // 2):
            if timers.persist is None and flight == 0:
                timers.arm_persist(now, tp.rtt.rto, tp.cfg.max_rto)
            return False
        # Nagle (RFC 896, RFC 1122 4.2.3.4): no small segment while
        # data is outstanding, unless TCP_NODELAY -- or unless it is the
        # last of a Presegmented response, which is complete: nothing would
        # be added to it by waiting (as uncorking sends a partial segment).
        if flight and not tp.cfg.nodelay and not tp.sendq.ends_in_run():
            return False
    if tp.snd_una == snd_nxt and data_end != snd_nxt:
        # Sending restarts after an idle period (RFC 5681 4.1, RFC 9438).
        tp.cc.on_idle(now - tp.last_send, tp.rtt.rto, now)
    data = data_segment(tp, snd_nxt, n, now)
    if data is None:
        return False
    tp.last_send = now
    out.append(data)
    fin = data.flags & FIN
    if tp.rtt_seq is None and not tp.ts_ok:
        tp.rtt_seq, tp.rtt_time = snd_nxt, now
    if tp.use_rack:
        tp.rack.on_send(snd_nxt, now)
    tp.snd_nxt = sq.add(snd_nxt, len(data.payload) + 1 if fin else len(data.payload))
    if timers.rtx is None:  # RFC 6298 5.1: running, it keeps its deadline
        timers.rtx = now + tp.rtt.rto
    if tp.tracer is not None:
        tp.trace("send", snd_nxt, sq.sub(tp.snd_nxt, snd_nxt))
    return not fin
