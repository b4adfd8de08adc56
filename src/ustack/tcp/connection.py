"""One TCP connection, sans-I/O (RFC 9293), shaped like aioquic's QuicConnection.

The connection never touches a socket or a clock.  The layer feeds it parsed
segments with ``receive(seg, now)`` (or ``receive_predicted`` for the common
case), collects what it wants to transmit with ``segments_to_send(now)``,
fires its timer with ``handle_timer(now)`` when ``next_timer()`` says so,
and reads ``next_event()`` to tell the application what happened.  The
application side is ``send``, ``recv``, ``shutdown_write``, ``close``,
``abort`` and ``set_keepalive``.  Every situation can therefore be replayed
in a test with a fake clock.

This module holds the rules of RFC 9293 3.10, in its order: opening
(3.10.1, 3.10.7.2), the application's calls (3.10.2-3.10.5) and segment
arrival (3.10.7.3 SYN-SENT, 3.10.7.4 the numbered checks of every later
state), with the state table of ``states.py``; what the timers do when they
expire (3.10.8) is ``timeouts.py``'s.  What it
remembers is the TCB's (``tcb.py``, with the options a SYN negotiates);
what and when it sends is ``output.py``'s.  Also implemented, with the
RFC at the place each rule is applied: RFC 5961 challenge ACKs (rate
limited by the layer); window scaling, timestamps, RTTM and PAWS (RFC
7323); MSS (RFC 6691, RFC 9293 MUST-15/16); RTO (RFC 6298) with Karn's
rule; R1/R2 and SYN retries (RFC 9293 MUST-20..23); fast retransmit with
NewReno recovery (RFC 6582) and limited transmit (RFC 3042); SACK (RFC
2018, RFC 6675); zero-window probing (3.8.6.1); delayed ACK (RFC 1122
4.2.3.2); keepalive (RFC 1122 4.2.3.6); ICMP errors (RFC 1122 4.2.3.9,
RFC 5461, RFC 1191: ``icmperrors.py``, ``pathmtu.py``).

The layer calls ``output.segments_to_send`` and ``timers.next`` itself (one
call less per segment); ``segments_to_send`` and ``next_timer`` here are
the connection's sans-I/O interface for everyone else.  ``receive`` returns
why it dropped a segment (or its text), if it did: a Linux TcpExt
counter name where Linux has one (``PAWSEstab`` ...), else a drop reason
(``tcp_invalid_sequence`` ...); the layer counts it.
"""

from __future__ import annotations

import errno

from ustack.tcp import icmperrors, losses, output, timeouts
from ustack.tcp import seq as sq
from ustack.tcp.config import TcpConfig
from ustack.tcp.segment import Event, OutSegment, Segment, TcpError
from ustack.tcp.states import RECEIVING, SENDING, Ev, State
from ustack.tcp.tcb import Tcb
from ustack.wire.tcp import ACK, FIN, RST, SYN

# The types a user of the connection needs, importable from here too.
__all__ = ["Event", "OutSegment", "Segment", "TcpConfig", "TcpConnection", "TcpError"]

class TcpConnection(Tcb):
    # ==================================================================
    # Opening (RFC 9293 3.10.1, 3.10.7.2)
    # ==================================================================

    def connect(self, now: float) -> None:
        """Active open (RFC 9293 3.10.1): send SYN, enter SYN-SENT."""
        if self.state is not State.CLOSED:
            raise TcpError(errno.EISCONN, "connect() on a connection that is not closed")
        self.move(Ev.APP_CONNECT)
        self.rcv_wscale = self.choose_wscale() if self.cfg.window_scaling else 0
        self.snd_nxt = sq.add(self.iss, 1)
        self.send_syn = True
        self.timers.arm_rtx(now, self.rtt.rto)

    def accept_syn(self, seg: Segment, now: float) -> None:
        """Passive open: a listener got ``seg`` (a SYN) and made this connection.

        It starts in LISTEN (the listener's passive OPEN, 3.10.1), and RFC
        9293 3.10.7.2 (LISTEN, third check) applies: set RCV.NXT = SEG.SEQ
        + 1, IRS = SEG.SEQ, send SYN,ACK with ISS, enter SYN-RECEIVED.
        """
        self.move(Ev.APP_LISTEN)
        self.move(Ev.RCV_SYN)
        self.take_syn_options(seg)
        self.irs = seg.seq
        self.rcv_nxt = sq.add(seg.seq, 1)
        self.snd_wnd = seg.window  # never scaled in a SYN (RFC 7323 2.2)
        self.snd_wl1, self.snd_wl2 = seg.seq, self.iss
        self.snd_nxt = sq.add(self.iss, 1)
        self.send_syn = True
        self.timers.arm_rtx(now, self.rtt.rto)

    # ==================================================================
    # The application's calls (RFC 9293 3.10.2-3.10.5)
    # ==================================================================

    def send(self, data: bytes | bytearray | memoryview, now: float, *,
             force: bool = False) -> int:
        """Queue data; returns how many bytes the send buffer took (maybe 0).

        ``force`` takes all of it, beyond the buffer's size if need be.
        """
        if self.error:
            raise TcpError(self.error, "connection failed")
        if self.state not in SENDING or self.fin_queued:
            raise TcpError(errno.EPIPE, "cannot send after shutdown or close")
        if type(data) is not bytes and type(data) is not bytearray:
            # Any other buffer (a memoryview, an array of wider items) as a
            # view of its bytes: the send buffer and the stream count bytes.
            data = memoryview(data).cast("B")
        q = self.sendq
        n = len(data)
        if force:
            q.append(data)
            return n
        room = q.free(self.cfg.sndbuf)
        if n <= room:
            q.append(data)
            return n
        if not room:
            return 0
        q.append(memoryview(data)[:room])
        return room

    def recv(self, max_bytes: int) -> bytes:
        """Take up to ``max_bytes`` of in-order data (b"" at EOF or when empty).

        Reading opens the receive window; a window update is sent when the
        opening is worth one (receiver SWS avoidance, RFC 9293 3.8.6.2.2).
        """
        q = self.rcvq
        if not q.buf:
            return b""
        before = q.free()
        data = q.read(max_bytes)
        state = self.state
        if state in RECEIVING or state is State.CLOSE_WAIT:
            adv = sq.sub(self.rcv_adv, self.rcv_nxt)
            # Worth a segment only when the peer is, or was, held back by
            # our window (RFC 9293 3.8.6.2.2).
            if (adv < self.mss or before == 0) and q.opened_enough(adv, self.mss):
                self.ack_now = True
        return data

    def shutdown_write(self, now: float) -> None:
        """shutdown(SHUT_WR): queue our FIN behind any queued data."""
        if self.fin_queued or self.state not in SENDING:
            return
        if self.state is State.SYN_SENT:
            self.close_now(0, Ev.APP_CLOSE)  # RFC 9293 3.10.4: delete the TCB
            return
        self.fin_queued = True
        self.move(Ev.APP_CLOSE)

    def close(self, now: float) -> None:
        """close(): like shutdown(SHUT_WR), and the application lets go.

        Unread data or data arriving later means the application lost it,
        so the connection is reset instead (RFC 2525 2.17, Linux; RFC 9293
        3.10.4 allows either for unread data).
        """
        self.orphan = True
        if self.state in (State.CLOSED, State.TIME_WAIT):
            return
        if self.state is State.SYN_SENT:
            self.close_now(0, Ev.APP_CLOSE)
            return
        if self.rcvq.buf:
            self.abort(now)
            return
        self.shutdown_write(now)
        if self.state is State.FIN_WAIT_2:
            self.timers.finwait2 = now + self.cfg.fin_timeout

    def abort(self, now: float) -> None:
        """Send RST (if synchronized) and close at once (RFC 9293 3.10.5)."""
        if self.state in (State.SYN_RECEIVED, State.ESTABLISHED, State.FIN_WAIT_1,
                          State.FIN_WAIT_2, State.CLOSE_WAIT, State.CLOSING, State.LAST_ACK):
            self.rst = OutSegment(self.snd_nxt, 0, RST, 0, b"", b"")
        self.close_now(0, Ev.APP_ABORT)

    def next_event(self) -> Event | None:
        return self.events.pop(0) if self.events else None

    def set_keepalive(self, enabled: bool, now: float, idle: float | None = None,
                      interval: float | None = None, probes: int | None = None) -> None:
        """Turn keep-alives on or off, optionally with new timings (SO_KEEPALIVE,
        TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT): ``timeouts.set_keepalive``."""
        timeouts.set_keepalive(self, enabled, now, idle, interval, probes)

    # ==================================================================
    # Segment arrival (RFC 9293 3.10.7)
    # ==================================================================

    def receive(self, seg: Segment, now: float) -> str:
        """Process one segment; returns "" or why (part of) it was dropped."""
        self._arrived(now)
        state = self.state
        if state is State.SYN_SENT:
            return self._receive_syn_sent(seg, now)
        if state is State.CLOSED or state is State.LISTEN:
            return ""  # the layer answers segments for closed/listening endpoints
        return self._receive_synchronized(seg, now)

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
        taken, through the same effects as ``receive``: the result is the
        state ``receive`` would leave.

        The layer has checked the flags and that the options are exactly
        NOP NOP TS (``ts_val`` >= 0) or absent (``ts_val`` = -1).  Returns
        False, having changed nothing, when the segment is not predicted.
        """
        if self.state is not State.ESTABLISHED or seq != self.rcv_nxt:
            return False
        una = self.snd_una
        acked = sq.sub(ack, una)
        flight = sq.sub(self.snd_nxt, una)  # FlightSize: no recovery, no RTO resend
        n = len(payload)
        rec = self.rec
        if (acked < 0 or acked > flight or not (acked or n) or rec.active
                or rec.rtx_nxt is not None or self.rcvq.ooo.nbytes or self.sendq.seq != una
                or self.peer_fin_seq is not None or not window):
            return False
        if self.use_rack and (self.tlp_end is not None or self.sb or self.rack.lost
                              or self.rack.rtx):
            return False  # RACK-TLP has work on every ACK (losses.on_ack)
        if self.ts_ok:
            # RFC 7323 5.3 PAWS: TSval must not be older than TS.Recent.
            if ts_val < 0 or sq.lt(ts_val, self.ts_recent):
                return False
        elif ts_val >= 0:
            return False
        # The segment must fit the window we offered (no trimming), and it
        # must be newer than the one the send window was taken from (SND.WL1/WL2).
        if n and n > sq.sub(self.rcv_adv, seq):
            return False
        if not sq.pair_le(self.snd_wl1, self.snd_wl2, seq, ack):
            return False  # _update_window would not take this window
        # -- predicted: RFC 9293 3.10.7.4 with the outcomes known ----------
        self._arrived(now)
        # RFC 7323 4.3 (2): TS.Recent from the segment covering Last.ACK.sent.
        if ts_val >= 0 and sq.le(seq, self.last_ack_sent):
            self.ts_recent = ts_val
            self.ts_recent_age = now
        # Fifth check, the ACK field: SND.UNA < SEG.ACK =< SND.NXT.
        if acked:
            self._take_ack(ack, acked, ts_ecr, now)
            self.cc.on_ack(acked, flight, now, self.rtt.srtt)  # (no recovery: the guard)
        self._set_window(seq, ack, window << self.snd_wscale)
        if acked and self.tracer is not None:  # (after cwnd and the window moved)
            self.trace("ack")
        # Seventh, the segment text: in order, inside the window.
        if n:
            self._deliver(payload, now)
            if self.tracer is not None:
                self.trace("recv", seq, n)
        return True

    def _receive_syn_sent(self, seg: Segment, now: float) -> str:
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
                self.rst = OutSegment(seg.ack, 0, RST, 0, b"", b"")
            return "tcp_unacceptable_ack"
        if f & RST:
            if f & ACK:
                self._reset(errno.ECONNREFUSED)
                return ""
            return "tcp_rst_without_ack"
        if not f & SYN:
            return "tcp_no_syn"
        self.take_syn_options(seg)
        self.irs = seg.seq
        # Our SYN went out with RCV.NXT still 0 (output.segment: RCV.ADV =
        # RCV.NXT + its unscaled window); the window it offered starts at
        # RCV.NXT now that IRS is known (RFC 9293 3.10.7.3, RFC 7323 2.2).
        syn_window = sq.ahead(self.rcv_adv, self.rcv_nxt)
        self.rcv_nxt = sq.add(seg.seq, 1)
        self.rcv_adv = sq.add(self.rcv_nxt, syn_window)
        if not f & ACK:
            # Simultaneous open (RFC 9293 figure 7).
            self.move(Ev.RCV_SYN)
            self.snd_wnd = seg.window
            self.send_syn = True  # now a SYN,ACK
            self.timers.arm_rtx(now, self.rtt.rto)
            return ""
        self.snd_una = seg.ack
        self.send_syn = False
        # RFC 9293 3.10.7.3: SND.WND from the SYN,ACK, SND.WL1/WL2 set from
        # it unconditionally (a SYN's window is never scaled).
        self._set_window(seg.seq, seg.ack, seg.window)
        self._synchronized(seg, now)
        self.move(Ev.RCV_SYN_ACK)
        self.events.append(Event.CONNECTED)
        self.ack_now = True
        self._start_keepalive(now)
        if seg.payload:
            return self._accept_data(sq.add(seg.seq, 1), seg.payload, now)
        return ""

    def _synchronized(self, seg: Segment, now: float) -> None:
        """Our SYN is acknowledged: the first RTT sample (RFC 6298 2.2), or
        after a timed-out SYN, 3 s until one (RFC 6298 5.7)."""
        if self.ts_ok and seg.opts.ts_ecr:
            self.rtt.sample(sq.ahead(self.ts_now(now), seg.opts.ts_ecr) / 1000.0)
        elif self.retransmits == 0 and self.rtt_seq is not None:
            self.rtt.sample(now - self.rtt_time)
        self.rtt_seq = None
        if self.retransmits:
            self.rtt.reset_backoff()
            self.rtt.fallback()
        self.timers.rtx = None

    def _acceptable(self, seq: int, seg_len: int) -> bool:
        # RFC 9293 3.10.7.4, first check, the four cases of the table.
        rcv_nxt = self.rcv_nxt
        return sq.acceptable(rcv_nxt, sq.sub(self.rcv_adv, rcv_nxt), seq, seg_len)

    def _receive_synchronized(self, seg: Segment, now: float) -> str:
        """RFC 9293 3.10.7.4: SYN-RECEIVED and every later state."""
        f = seg.flags
        state = self.state
        if state is State.SYN_RECEIVED and f & SYN and f & ACK and seg.seq == self.irs:
            # Simultaneous open (RFC 9293 figure 7, line 7): the peer's
            # SYN,ACK repeats its SYN, which we have; take it as the ACK.
            f &= ~SYN
            seg = Segment(sq.add(seg.seq, 1), seg.ack, f, seg.window, seg.payload, seg.opts)
        payload = seg.payload
        seg_len = len(payload) + (1 if f & SYN else 0) + (1 if f & FIN else 0)
        # RFC 7323 5.3 PAWS, before the sequence check: a segment whose
        # TSval is older than TS.Recent is a duplicate from an old incarnation.
        o = seg.opts
        if (self.ts_ok and o.ts_val is not None and not f & RST
                and sq.lt(o.ts_val, self.ts_recent)
                and now - self.ts_recent_age < 24 * 86400):
            self.ack_now = True
            return "PAWSEstab"
        trimmed = ""
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
                self.ack_now = True
                trimmed = "TCPZeroWindowDrop"
            f &= ~FIN
            seg = Segment(self.rcv_nxt, seg.ack, f, seg.window, b"", seg.opts)
            payload = b""
            seg_len = 0
        if not self._acceptable(seg.seq, seg_len):
            if (self.sack_ok and seg.payload and not f & (SYN | RST)
                    and sq.le(sq.add(seg.seq, len(seg.payload)), self.rcv_nxt)):
                # Data we have: the ACK reports it as a D-SACK (RFC 2883 4.1.1).
                self.dsack = (seg.seq, sq.add(seg.seq, len(seg.payload)))
            if state is State.TIME_WAIT and f & FIN:
                # A retransmitted FIN: ACK it and restart the 2 MSL timer (3.10.7.4 eighth).
                self.timers.timewait = now + 2 * self.cfg.msl
            if (state is State.SYN_RECEIVED and f & (SYN | ACK | RST) == SYN
                    and seg.seq == self.irs):
                # The peer's SYN again: our SYN,ACK was lost.  Resend it now
                # (Linux's tcp_check_req, FreeBSD's syncache): one SYN,ACK a
                # SYN, as a listener answers any SYN.  The first check's ACK
                # would be dropped by a peer in SYN-SENT (3.10.7.3).
                self.send_syn = True
                self.total_retransmits += 1  # (Linux's tcp_rtx_synack counts it)
                return "tcp_syn_repeated"
            if f & SYN and not f & RST:
                # RFC 5961 4.2: a challenge ACK "irrespective of the sequence
                # number", counted and rate limited (RFC 5961 7; Linux).
                self._challenge_ack(now)
                return "tcp_syn_challenged"
            if not f & RST:
                self.ack_now = True
            return "tcp_invalid_sequence"
        # RFC 7323 4.3 (2): remember the timestamp of the segment that
        # covers the last ACK we sent, so a delayed ACK echoes the oldest.
        if self.ts_ok and o.ts_val is not None and sq.le(seg.seq, self.last_ack_sent):
            self.ts_recent = o.ts_val
            self.ts_recent_age = now
        # Second, check the RST bit (RFC 5961 3.2): exactly at RCV.NXT resets;
        # elsewhere in the window only earns a challenge ACK.
        if f & RST:
            if seg.seq != self.rcv_nxt:
                self._challenge_ack(now)
                return "tcp_rst_challenged"
            if state is State.TIME_WAIT:
                return "tcp_rst_in_time_wait"  # RFC 1337: ignore RST in TIME-WAIT
            self._reset(errno.ECONNRESET if state is not State.SYN_RECEIVED else errno.ECONNREFUSED)
            return ""
        # Fourth, check the SYN bit (RFC 5961 4.2): any SYN here gets a
        # challenge ACK, never a reset of the connection.
        if f & SYN:
            self._challenge_ack(now)
            return "tcp_syn_challenged"
        # Fifth, check the ACK field.
        if not f & ACK:
            return "tcp_no_ack"
        if state is State.SYN_RECEIVED:
            # If SND.UNA < SEG.ACK =< SND.NXT enter ESTABLISHED, else reset.
            if not (sq.lt(self.snd_una, seg.ack) and sq.le(seg.ack, self.snd_nxt)):
                self.rst = OutSegment(seg.ack, 0, RST, 0, b"", b"")
                return "tcp_unacceptable_ack"
            self.send_syn = False
            self._set_window(seg.seq, seg.ack, seg.window << self.snd_wscale)
            self._synchronized(seg, now)
            self.snd_una = sq.add(self.iss, 1)
            self.retransmits = 0
            # (close() during SYN-RECEIVED already moved us to FIN-WAIT-1.)
            if not self.fin_queued:
                self.move(Ev.RCV_ACK_OF_SYN)
            self.events.append(Event.CONNECTED)
            self._start_keepalive(now)
        dropped = self._process_ack(seg, now)
        if dropped is not None:
            return dropped
        # Seventh, process the segment text.
        # (In CLOSE-WAIT, CLOSING, LAST-ACK and TIME-WAIT the peer already
        # sent its FIN: the text is ignored.)
        if payload:
            if self.state not in RECEIVING:
                trimmed = "tcp_data_after_fin"  # RFC 9293 3.10.7.4 seventh: ignored
            elif self.orphan:
                # Data for an application that closed: RST (RFC 2525 2.17).
                self.rst = OutSegment(self.snd_nxt, 0, RST, 0, b"", b"")
                self.close_now(errno.ECONNRESET, Ev.RCV_DATA_AFTER_CLOSE)
                return "TCPAbortOnData"
            else:
                trimmed = self._accept_data(seg.seq, payload, now) or trimmed
        # Eighth, check the FIN bit.
        if f & FIN:
            fin_seq = sq.add(seg.seq, len(payload))
            if self.state in RECEIVING:  # (SYN-RECEIVED was left at the ACK)
                if fin_seq == self.rcv_nxt:
                    self._consume_fin(now)
                elif sq.gt(fin_seq, self.rcv_nxt):
                    self.peer_fin_seq = fin_seq  # delivered once the gap fills
                    self.ack_now = True
            else:  # (eighth: remain; TIME-WAIT restarts the 2 MSL timeout)
                self.ack_now = True
                if self.state is State.TIME_WAIT:
                    self.timers.timewait = now + 2 * self.cfg.msl
        return trimmed

    def _challenge_ack(self, now: float) -> None:
        # RFC 5961 7: challenge ACKs are rate limited (by the layer, globally).
        if self._challenge_allowed(now):
            self.challenge_due = True

    # -- the ACK field (fifth check) --------------------------------------

    def _process_ack(self, seg: Segment, now: float) -> str | None:
        """RFC 9293 3.10.7.4 fifth check, ESTABLISHED and later; RFC 5961 5.2.

        Returns None to go on with the segment, or why processing stops
        here ("" when that is no drop: the ACK of our FIN in LAST-ACK).
        """
        ack = seg.ack
        una = self.snd_una
        # RFC 5961 5.2: the ACK must be within [SND.UNA - MAX.SND.WND, SND.NXT].
        if sq.gt(ack, self.snd_nxt):
            self._challenge_ack(now)
            return "tcp_ack_unsent_data"
        if sq.lt(ack, sq.add(una, -self.max_sndwnd)):
            self._challenge_ack(now)
            return "tcp_too_old_ack"
        newly_sacked = 0
        sb = self.sb
        sacked_before = sb.sacked_bytes()
        dsack_before = sb.dsack
        if self.sack_ok and seg.opts.sack_blocks:
            newly_sacked = sb.update(ack if sq.gt(ack, una) else una, self.snd_nxt,
                                     seg.opts.sack_blocks)
        rack_due = False
        if self.use_rack:
            if sb.dsack != dsack_before:
                self.counters.TcpExtTCPDSACKRecv += sb.dsack - dsack_before
            if sq.ge(ack, una) and (sb or self.rec.active or self.rack.lost or self.rack.rtx
                                    or self.tlp_end is not None or sb.dsack != dsack_before):
                # RACK (RFC 8985 6.2) and the TLP episode (7.4) after the
                # ACK's effects below, with what it delivered.
                rack_due = True
        if sq.gt(ack, una):
            self._ack_new_data(seg, now)
        elif ack == una:
            # RFC 5681 2: a duplicate ACK carries no data, no SYN/FIN, the same
            # window, and arrives while data is outstanding.  RFC 6675 2: an
            # ACK that SACKs new data counts too, even if the window changed.
            wnd = seg.window << self.snd_wscale
            dup = (not seg.payload and not seg.flags & (SYN | FIN) and self.snd_nxt != una
                   and (wnd == self.snd_wnd or newly_sacked > 0))
            self._update_window(seg.seq, ack, wnd)
            if dup:
                self._dupack(now)
        else:
            return None  # an old duplicate ACK: ignore it, keep processing
        if newly_sacked and self.tracer is not None:
            self.trace("sack")
        if rack_due:
            losses.on_ack(self, una, sacked_before, sb.dsack != dsack_before,
                           seg.opts.ts_ecr or 0, not seg.payload and ack == una and not newly_sacked
                           and not seg.opts.sack_blocks, now)
        state = self.state
        if state is State.TIME_WAIT:
            return None
        if self.fin_queued and not self.fin_acked and self.snd_una == sq.add(self.sendq.end, 1):
            self.fin_acked = True
            if state is State.FIN_WAIT_1:
                self.move(Ev.RCV_ACK_OF_FIN)
                if self.orphan:
                    self.timers.finwait2 = now + self.cfg.fin_timeout
            elif state is State.CLOSING:
                self.move(Ev.RCV_ACK_OF_FIN)
                self._enter_time_wait(now)
            elif state is State.LAST_ACK:
                self.close_now(0, Ev.RCV_ACK_OF_FIN)
                return ""
        return None

    def _ack_new_data(self, seg: Segment, now: float) -> None:
        ack = seg.ack
        acked = sq.sub(ack, self.snd_una)
        rec = self.rec
        resending = rec.rtx_nxt is not None
        # FlightSize before the ACK feeds congestion avoidance only: in fast
        # recovery it is not read (and with SACK it is the pipe, a walk of
        # the scoreboard).
        flight = 0 if rec.active else self.flight()
        # No RTT from timestamps while resending after an RTO: the ACK of
        # resent data may echo the TSval of its first transmission, when the
        # earlier ACK was lost, and the sample would include the whole
        # timeout; each inflated RTO then inflates the next sample (Karn's
        # rule, applied to timestamps).  The timed segment still counts.
        self._take_ack(ack, acked, 0 if resending else seg.opts.ts_ecr or 0, now)
        if resending:
            rec.advance_cursor(ack)
        if rec.active:
            self._recovery_ack(ack, acked, now)
        else:
            self.cc.on_ack(acked, flight, now, self.rtt.srtt)
        self._update_window(seg.seq, ack, seg.window << self.snd_wscale)
        if self.tracer is not None:
            self.trace("ack")

    def _recovery_ack(self, ack: int, acked: int, now: float) -> None:
        """New data acknowledged during fast recovery (RFC 6582 / RFC 6675;
        with RACK, PRR's share of the ACK is ``_rack_ack``'s)."""
        rec = self.rec
        if rec.covers(ack):
            rec.finish()
            self.cc.on_recovery_end(now)
            if self.tracer is not None:
                self.trace("recovery-end")
            if self.use_rack:
                self.rack.on_recovery_exit()
        elif not self.sack_ok:
            # RFC 6582 3.2 step 5: a partial ACK retransmits the next hole
            # and deflates the window by the amount acknowledged.
            rec.inflate = max(0, rec.inflate - acked) + self.mss
            output.retransmit_at(self, self.snd_una, now)

    def _dupack(self, now: float) -> None:
        rec = self.rec
        rec.on_dupack()
        if rec.active:
            if not self.sack_ok:
                rec.inflate += self.mss  # RFC 5681 3.2 step 4
            return
        if self.use_rack:
            return  # RACK decides (RFC 8985 6.2 step 5), in _rack_ack
        lost = self.sack_ok and self.sb.is_lost(self.snd_una, self.mss)
        if (rec.dupacks >= 3 or lost) and rec.may_start(self.snd_una, self.iss):
            losses.fast_retransmit(self, now)

    def _update_window(self, seq: int, ack: int, wnd: int) -> None:
        # RFC 9293 3.10.7.4: update the send window only from a segment that
        # is newer than the one it was last taken from (SND.WL1/WL2).
        if sq.pair_le(self.snd_wl1, self.snd_wl2, seq, ack):
            self._set_window(seq, ack, wnd)

    # -- the effects every path shares ------------------------------------

    def _arrived(self, now: float) -> None:
        """A segment arrived: counted, and the connection is not idle
        (the keepalive timer starts again, RFC 1122 4.2.3.6)."""
        self.segs_in += 1
        self.last_activity = now
        cfg = self.cfg
        if cfg.keepalive:
            self.timers.keepalive_activity(now, cfg.keepalive_idle)

    def _take_ack(self, ack: int, acked: int, ts_ecr: int, now: float) -> None:
        """SND.UNA < SEG.ACK =< SND.NXT, ``acked`` bytes of sequence space:
        what every ACK of new data does, in recovery or not.

        The bytes leave the send queue; the RTT is sampled (from the echoed
        timestamp ``ts_ecr``, 0 for none, RFC 7323 4.1; or from the one timed
        segment, Karn); the backoff ends; the retransmission timer stops
        when all is acknowledged, else restarts (RFC 6298 5.2/5.3).  What
        the congestion window does (RFC 5681, RFC 9438) or fast recovery
        (RFC 6582, RFC 6675) is the caller's, which knows which applies:
        header prediction proved there is no recovery of either kind.
        """
        q = self.sendq
        data = q.ack(self.snd_una, ack, acked)
        if data:
            self.bytes_out += data
            if now >= self.rate_due:
                self.sample_rate(now)
            cfg = self.cfg
            if cfg.sndbuf < cfg.sndbuf_max and cfg.sndbuf < 2 * self.cc.cwnd:
                # Autotuning (TcpConfig.sndbuf_max): room for twice the window.
                want = 2 * self.cc.cwnd
                cfg.sndbuf = want if want < cfg.sndbuf_max else cfg.sndbuf_max
            if q.free(cfg.sndbuf) and Event.WRITABLE not in self.events:
                self.events.append(Event.WRITABLE)  # (one waiting at most: Tcb.events)
        self.snd_una = ack
        self.retransmits = 0
        self.timers.probes = 0
        rtt = self.rtt
        r = 0.0
        if ts_ecr and self.ts_ok:
            r = sq.ahead(self.ts_now(now), ts_ecr) / 1000.0
            if r < 60.0:
                rtt.sample(r)
        elif self.rtt_seq is not None and sq.gt(ack, self.rtt_seq):
            r = now - self.rtt_time
            rtt.sample(r)
            self.rtt_seq = None
        if self.cc.hystart:  # RFC 9406: its rounds and RTT samples
            self.cc.hystart_ack(ack, self.snd_nxt, r if r < 60.0 else 0.0)
        rtt.reset_backoff()
        self.rec.dupacks = 0
        t = self.timers
        if ack == self.snd_nxt:
            t.rtx = None
            if not t.probe_reo:
                t.probe = None
        else:
            t.rtx = now + rtt.rto
            if self.use_tlp:
                self.arm_probe(now)  # RFC 8985 7.2: on an ACK of new data
        if self.use_rack:
            self.rack.trim(ack, ack == self.snd_nxt)
            if self.sb:
                self.sb.trim(ack)  # (an ACK without blocks: the pipe must not count them)

    def _set_window(self, seq: int, ack: int, wnd: int) -> None:
        """SND.WND from a segment newer than the last (its SEQ and ACK become
        SND.WL1 and SND.WL2); an open window ends zero-window probing."""
        self.snd_wnd = wnd
        self.snd_wl1 = seq
        self.snd_wl2 = ack
        if wnd > self.max_sndwnd:
            self.max_sndwnd = wnd
        if wnd:
            t = self.timers
            t.persist = None
            t.persist_backoff = 0

    def _deliver(self, payload: bytes | memoryview, now: float) -> None:
        """Text at RCV.NXT: the application's to read.  ACK at least every
        second full-sized segment, otherwise within the delayed-ACK time
        (RFC 1122 4.2.3.2, RFC 5681 4.2), counted in bytes as Linux does (more
        than one MSS waiting), so a coalesced super-frame is ACKed at once."""
        n = len(payload)
        q = self.rcvq
        q.buf += payload
        self.rcv_nxt = rcv_nxt = sq.add(self.rcv_nxt, n)
        if now >= q.space_due:  # once per round trip
            q.autotune(sq.add(rcv_nxt, -len(q.buf)), now, self.rtt.srtt, self.mss)
        self.bytes_in += n
        events = self.events
        if Event.READABLE not in events:  # one READABLE covers them all (Tcb.events)
            events.append(Event.READABLE)
        pending = self.acks_pending + n
        self.acks_pending = pending
        if pending > self.mss:
            self.ack_now = True
        elif self.timers.delack is None:
            self.timers.delack = now + self.cfg.delack

    # -- the segment text (seventh check) and the FIN (eighth) -----------

    def _accept_data(self, seg_seq: int, payload: bytes, now: float) -> str:
        """Take text at ``seg_seq``: trimmed to the window, in order or queued
        beyond a gap.  Returns "" or why some of it was dropped."""
        rcv_nxt = self.rcv_nxt
        if self.sack_ok and sq.lt(seg_seq, rcv_nxt):
            # Its head we have: reported as a D-SACK (RFC 2883 4.1.1).
            self.dsack = (seg_seq, rcv_nxt)
        seg_seq, payload, beyond = self.rcvq.clip(seg_seq, payload, rcv_nxt, self.rcv_adv)
        if not payload:  # (all of it past the window: the first check lets none through)
            self.ack_now = True
            return "tcp_overwindow"
        ooo = self.rcvq.ooo
        if seg_seq != rcv_nxt:
            # Out of order: queue it and ACK at once (RFC 5681 4.2), with SACK
            # (a batch's train of them: one ACK, ``output.ack_out_of_order``).
            before = ooo.dropped
            ooo.add(seg_seq, payload, rcv_nxt)
            if self.sack_ok and ooo.dup is not None and self.dsack is None:
                self.dsack = ooo.dup  # queued already: a D-SACK (RFC 2883 4.1.2)
            output.ack_out_of_order(self)
            if self.tracer is not None:
                self.trace("recv", seg_seq, len(payload))
            if ooo.dropped != before:
                return "TCPOFODrop"
            return "tcp_overwindow" if beyond else ""
        if ooo.nbytes and self.sack_ok and self.dsack is None:
            # In order, but some of it was queued beyond a gap: D-SACK it (RFC 2883 4.1.2).
            self.dsack = ooo.first_overlap(seg_seq, sq.add(seg_seq, len(payload)))
        self._deliver(payload, now)
        if ooo.nbytes:
            # A hole was (partly) filled: what it releases, and an ACK at once.
            more = ooo.pop_ready(self.rcv_nxt)
            if more:
                self._deliver(more, now)
            self.ack_now = True
        if self.tracer is not None:
            self.trace("recv", seg_seq, len(payload))
        if self.peer_fin_seq is not None and self.peer_fin_seq == self.rcv_nxt:
            self._consume_fin(now)
        return "tcp_overwindow" if beyond else ""

    def _consume_fin(self, now: float) -> None:
        self.rcv_nxt = sq.add(self.rcv_nxt, 1)
        self.peer_fin_seq = None
        self.peer_fin = True
        self.ack_now = True
        if Event.READABLE not in self.events:  # EOF is readable (Tcb.events)
            self.events.append(Event.READABLE)
        # (A FIN that also acknowledges ours found FIN_WAIT_2 already: the
        # ACK field is processed first.)
        self.move(Ev.RCV_FIN)
        if self.state is State.TIME_WAIT:
            self._enter_time_wait(now)

    def _enter_time_wait(self, now: float) -> None:
        # Only the 2*MSL timer runs in TIME-WAIT (a delayed ACK still goes).
        t = self.timers
        t.rtx = t.finwait2 = t.keepalive = t.persist = t.probe = None
        t.timewait = now + 2 * self.cfg.msl

    # ==================================================================
    # Output (output.py)
    # ==================================================================

    def segments_to_send(self, now: float) -> list[OutSegment]:
        """Everything the connection wants on the wire now, in order."""
        return output.segments_to_send(self, now)

    # ==================================================================
    # Timeouts (RFC 9293 3.10.8: timeouts.py)
    # ==================================================================

    def next_timer(self) -> float | None:
        return self.timers.next()

    def handle_timer(self, now: float) -> None:
        """Handle every timer whose deadline has passed."""
        timeouts.expire(self, now)

    def _start_keepalive(self, now: float) -> None:
        if self.cfg.keepalive:
            self.timers.keepalive = now + self.cfg.keepalive_idle

    # ==================================================================
    # Errors and closing
    # ==================================================================

    def _reset(self, errno_: int) -> None:
        self.events.append(Event.RESET)
        self.close_now(errno_, Ev.RCV_RST)

    def icmp_error(self, type_: int, code: int, mtu: int, now: float) -> None:
        """An ICMP error about one of our segments: ``icmperrors.icmp_error``."""
        icmperrors.icmp_error(self, type_, code, mtu, now)
