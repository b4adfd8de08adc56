"""RACK: time-based loss detection for a SACK sender (RFC 8985 6).

A segment is lost when a segment sent sufficiently later was delivered
(cumulatively acknowledged or SACKed): "sufficiently" is RACK.rtt plus a
reordering window, measured in time, not in the number of duplicate ACKs.
That detects what the RFC 6675 rules cannot: a lost retransmission (only a
timeout recovered one) and a loss with few segments after it.

What it remembers, bounded by what is in flight and cheap on the bulk path:

- the transmit times of original transmissions, as runs: new data goes out
  in sequence order at non-decreasing times, so one ``(start, time, order)``
  triple per burst sent at one instant says when every byte of it left; a
  run covers its bytes up to the next run's start (or SND.NXT).  Runs
  entirely below SND.UNA are dropped as ACKs arrive;
- the order of transmissions: every run and every retransmission takes the
  next number of a counter, so "sent after" (RACK_sent_after(), RFC 8985
  6.2) is decided by the order things went out, not by their time, which
  is the same for a retransmission and the new data sent in the same poll
  (the RFC breaks ties of RACK.xmit_ts by RACK.end_seq; this counter is
  the transmission order that tie-break stands for);
- the retransmissions still in flight (``Sent``), in transmission order, few:
  only loss recovery and loss probes make them;
- the bytes marked lost and not yet retransmitted (``lost``: sorted,
  disjoint ranges), which the sender resends first in recovery.  They leave
  the pipe at once: pipe = SND.NXT - SND.UNA - SACKed - lost (RFC 6675 4's
  SetPipe with RACK's marks, as Linux's packets_out - left_out + retrans_out);
- a cursor (``scan``): every unSACKed original byte below it was marked lost.
  Original transmit times grow with the sequence number, so what RACK finds
  lost among them is always a prefix of the holes, and each ACK resumes the
  walk where the last stopped instead of rescanning the window.

Sequence numbers wrap at 2**32; every range lies in the send window (less
than 2**31 wide) and compares with ``ustack.tcp.seq``.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Final

from ustack.tcp.sack import Scoreboard
from ustack.tcp.seq import MASK, add, ge, gt, le, lt

#: RFC 8985 6.2 step 4: the reordering window grows per round with D-SACK and
#: returns to one unit after this many recoveries without one.
REO_WND_PERSIST: Final = 16

#: Once reordering was seen, the reordering timer fires this long after the
#: window has passed (as Linux's TCP_TIMEOUT_MIN on tcp_rack_reo_timeout): a
#: segment reordered by less than a millisecond on a sub-millisecond path is
#: judged by its own late ACK, not by the timer racing it.
REO_TIMER_SLACK: Final = 0.002

INF: Final = float("inf")


class Sent:
    """One retransmission in flight: ``[start, end)`` sent at ``xmit``, the
    ``order``-th transmission (``tsval``: our TSval then, to tell which copy
    an ACK answers)."""

    __slots__ = ("end", "order", "start", "tsval", "xmit")

    def __init__(self, start: int, end: int, xmit: float, tsval: int, order: int) -> None:
        self.start = start
        self.end = end
        self.xmit = xmit
        self.tsval = tsval
        self.order = order


# What a Rack holds before its first retransmission or loss, and its runs
# while nothing is outstanding (never changed: see __init__ and trim).
_NO_RTX: Final[list[Sent]] = []
_NO_SEQS: Final[list[int]] = []  # (also the transmission orders)
_NO_TIMES: Final[list[float]] = []
_NO_LOST: Final[list[list[int]]] = []


class Rack:
    __slots__ = (
        "_head",
        "_order",
        "_ords",
        "_seqs",
        "_tail_ord",
        "_tail_time",
        "_times",
        "dsack_round",
        "end_seq",
        "fack",
        "lost",
        "lost_bytes",
        "lost_retransmits",
        "min_rtt",
        "reo_wnd_mult",
        "reo_wnd_persist",
        "reordering_seen",
        "reorders",
        "rtt",
        "rtx",
        "scan",
        "xmit_order",
        "xmit_ts",
    )

    def __init__(self, iss: int) -> None:
        # Original transmissions: run k starts at _seqs[k], sent at _times[k];
        # runs before _head are gone (compacted now and then).  The shared
        # empty lists while nothing is outstanding (``trim``).
        self._seqs = _NO_SEQS
        self._times = _NO_TIMES
        self._ords = _NO_SEQS  # ... as the _ords[k]-th transmission
        self._order = 0  # transmissions so far (runs and retransmissions)
        self._head = 0
        # The last run's, once the runs are forgotten (``trim``).
        self._tail_time = 0.0
        self._tail_ord = 0
        # Retransmissions in flight, oldest first; and [start, end) lost, not
        # resent, sorted.  Both start as shared empty lists, never appended
        # to (a connection without loss never needs its own: issue 12);
        # ``on_retransmit`` and ``_add_lost`` make them.
        self.rtx = _NO_RTX
        self.lost = _NO_LOST
        self.lost_bytes = 0
        self.scan = iss  # unSACKed original bytes below it are marked lost
        # RFC 8985 6.1 variables.
        self.xmit_ts = -1.0  # RACK.xmit_ts: of the most recently sent segment delivered
        self.xmit_order = -1  # ... and its place in the transmission order
        self.end_seq = iss  # RACK.end_seq
        self.rtt = 0.0  # RACK.rtt
        # The smallest RACK.rtt: min_RTT at the clock's resolution, where
        # the timestamps' 1 ms ticks give 0 on a LAN (and a zero window).
        self.min_rtt = INF
        self.fack = iss  # RACK.fack: the highest sequence SACKed or acknowledged
        self.reordering_seen = False
        self.reo_wnd_mult = 1
        self.reo_wnd_persist = REO_WND_PERSIST
        self.dsack_round: int | None = None
        self.lost_retransmits = 0  # TcpExtTCPLostRetransmit
        self.reorders = 0  # holes filled without a retransmission (TcpExtTCPSACKReorder)

    # -- transmissions -------------------------------------------------------

    def on_send(self, seq: int, now: float) -> None:
        """New data from ``seq`` left at ``now`` (after every earlier byte)."""
        times = self._times
        if times is _NO_TIMES:
            self._seqs = []
            self._times = times = []
            self._ords = []
        ords = self._ords
        # A new run when the time moved, or a retransmission went since the
        # run began (what follows it was sent after it).
        if not times or times[-1] != now or ords[-1] != self._order:
            self._order += 1
            self._seqs.append(seq)
            times.append(now)
            ords.append(self._order)

    def on_retransmit(self, start: int, end: int, now: float, tsval: int) -> None:
        """``[start, end)`` was sent again: it is no longer lost-and-waiting."""
        if self.lost:
            self._unmark(start, end)
        self._order += 1
        rtx = self.rtx
        if rtx is _NO_RTX:
            self.rtx = rtx = []
        rtx.append(Sent(start, end, now, tsval, self._order))

    def _run(self, seq: int, una: int) -> int:
        """The run holding the byte ``seq`` (at or above ``una``)."""
        seqs = self._seqs
        h = self._head
        n = len(seqs)
        off = (seq - una) & MASK
        # The last run starting at or before seq (distances from SND.UNA;
        # the head run may start below it, at a negative distance).
        k = bisect_right(seqs, off, h, n, key=lambda s: (s - una) & MASK
                         if ge(s, una) else -1) - 1
        return k if k >= h else h

    def sent_time(self, seq: int, una: int) -> float:
        """When the byte ``seq`` (at or above ``una``) was first sent."""
        return self._times[self._run(seq, una)]

    def trim(self, una: int, all_acked: bool) -> None:
        """Forget the runs that lie entirely below SND.UNA (the run holding
        SND.UNA - 1 stays: it dates the last byte acknowledged).  With
        nothing outstanding (``all_acked``: SND.UNA = SND.NXT), every run:
        the next byte an ACK dates is sent after now, in a run ``on_send``
        makes (as before the first send), and an idle connection keeps no
        lists (issue 12)."""
        if all_acked:
            times = self._times
            if times:
                # The last run dates SND.NXT - 1, the byte ``update`` may
                # still date for this ACK (it runs after, with SACK work).
                self._tail_time = times[-1]
                self._tail_ord = self._ords[-1]
            self._seqs = _NO_SEQS
            self._times = _NO_TIMES
            self._ords = _NO_SEQS
            self._head = 0
            return
        seqs = self._seqs
        h = self._head
        n = len(seqs)
        while h + 1 < n and lt(seqs[h + 1], una):
            h += 1
        if h > 64 and h * 2 > n:
            del seqs[:h]
            del self._times[:h]
            del self._ords[:h]
            h = 0
        self._head = h

    def forget_all(self, nxt: int) -> None:
        """An RTO resends everything: nothing is lost-and-waiting any more and
        no retransmission is tracked (the timeout's resend covers them)."""
        self.rtx.clear()
        self.lost.clear()
        self.lost_bytes = 0
        self.scan = nxt

    # -- ACK processing (RFC 8985 6.2) ------------------------------------------

    def _advance(self, xmit: float, order: int, end: int, now: float, orig: bool) -> None:
        # Step 2: RACK_sent_after(xmit, end, RACK.xmit_ts, RACK.end_seq),
        # by transmission order (within one run, by sequence).
        if order > self.xmit_order or (order == self.xmit_order and gt(end, self.end_seq)):
            self.xmit_ts = xmit
            self.xmit_order = order
            self.end_seq = end
            r = now - xmit
            self.rtt = r
            if orig and r < self.min_rtt:
                # (From original transmissions only, as Linux's tcp_min_rtt:
                # a retransmission "delivered" by its original's SACK would
                # say a few microseconds.)
                self.min_rtt = r

    def update(self, una: int, old_una: int, sb: Scoreboard, now: float, ts_ecr: int,
               min_rtt: float, dsack: bool, in_recovery: bool) -> None:
        """Steps 1-4 for an ACK that moved SND.UNA to ``una`` (from ``old_una``)
        and updated the scoreboard ``sb``."""
        blocks = sb.blocks()
        top = blocks[-1][1] if blocks else una
        old_fack = self.fack
        if gt(top, self.fack):
            self.fack = top
        if lt(self.fack, una):
            self.fack = una
        # Step 3: a hole closed by the cumulative ACK that was never marked
        # lost (below ``scan``) nor probed (``rtx``) was reordered, not lost.
        if (gt(una, old_una) and gt(old_fack, old_una) and ge(old_una, self.scan)
                and not self.rtx):
            self.reordering_seen = True
            self.reorders += 1
        # Step 2, originals: the newest original delivered is the byte just
        # below max(SND.UNA, highest SACKed), whose run dates it (transmit
        # times grow with the sequence number).
        if gt(top, old_una) or gt(una, old_una):
            last = top if gt(top, una) else una
            if self._times is _NO_TIMES:
                # All acknowledged (``trim`` forgot the runs): the byte
                # below SND.NXT, in the last run.
                self._advance(self._tail_time, self._tail_ord, last, now, True)
            else:
                k = self._run(add(last, -1), old_una)
                self._advance(self._times[k], self._ords[k], last, now, True)
        # Step 2, retransmissions delivered: by the ACK or by a SACK block.
        rtx = self.rtx
        if rtx:
            keep: list[Sent] = []
            for s in rtx:
                if le(s.end, una) or _covered(blocks, s.start, s.end):
                    # An ACK echoing an older TSval answers the first copy
                    # (RFC 8985 6.2 step 2, as Eifel, RFC 3522): it says
                    # nothing of when this one arrived.  So does an RTT
                    # below the minimum.
                    if ts_ecr and lt(ts_ecr, s.tsval):
                        if s.start == old_una and gt(una, old_una):
                            # The hole at SND.UNA was filled by the first
                            # copy, after RACK had marked it lost: that was
                            # reordering (step 4; Linux's TCPSACKReorder).
                            self.reordering_seen = True
                            self.reorders += 1
                        continue
                    if now - s.xmit < min_rtt or now - s.xmit < self.min_rtt:
                        continue
                    self._advance(s.xmit, s.order, s.end, now, False)
                else:
                    keep.append(s)
            self.rtx = keep
        # Step 4 (its D-SACK half): one more quarter min_RTT of reordering
        # window per round that saw a D-SACK.
        if self.dsack_round is not None and ge(una, self.dsack_round):
            self.dsack_round = None
        if dsack:
            self.reordering_seen = True
            if self.dsack_round is None:
                self.dsack_round = sb.recovery_point if sb.recovery_point is not None else una
                self.reo_wnd_mult += 1
                self.reo_wnd_persist = REO_WND_PERSIST
        # The lost ranges lose what was acknowledged or SACKed since.
        if self.lost:
            self._clean(una, blocks)

    def on_recovery_exit(self) -> None:
        """Step 4: sixteen recoveries without a D-SACK reset the window."""
        self.reo_wnd_persist -= 1
        if self.reo_wnd_persist <= 0:
            self.reo_wnd_mult = 1
            self.reo_wnd_persist = REO_WND_PERSIST

    def reo_wnd(self, min_rtt: float, srtt: float, in_recovery: bool, sacked_segs: int,
                dupthresh: int) -> float:
        """RFC 8985 6.2 step 4, RACK_update_reo_wnd()."""
        if not self.reordering_seen and (in_recovery or sacked_segs >= dupthresh):
            return 0.0
        w = self.reo_wnd_mult * min_rtt / 4.0
        return w if w < srtt else srtt

    def detect(self, una: int, nxt: int, sb: Scoreboard, now: float, reo_wnd: float) -> float:
        """Step 5, RACK_detect_loss(): mark what is lost; returns the time
        until the next segment would be (0: none is waiting), for the
        reordering timer (RFC 8985 6.3)."""
        if self.xmit_ts < 0.0:
            return 0.0
        xmit_order = self.xmit_order
        end_seq = self.end_seq
        horizon = self.rtt + reo_wnd
        timeout = 0.0
        blocks = sb.blocks()
        # Retransmissions first, oldest first: a lost one is lost again.
        rtx = self.rtx
        if rtx:
            keep: list[Sent] = []
            gone: list[Sent] = []
            for i in range(len(rtx)):
                s = rtx[i]
                if s.order >= xmit_order:
                    # Sent after the newest delivered segment: no verdict.
                    keep.extend(rtx[i:])
                    break
                left = s.xmit + horizon - now
                if left <= 0.0:
                    gone.append(s)
                else:
                    keep.append(s)
                    if left > timeout:
                        timeout = left
            self.rtx = keep
            for s in gone:
                self.lost_retransmits += 1
                self._mark(s.start, s.end, una, blocks)
        # Original transmissions, from the cursor up through the holes.
        scan = self.scan if gt(self.scan, una) else una
        top = self.fack
        if not lt(scan, top):
            self.scan = scan
            return timeout
        seqs = self._seqs
        times = self._times
        ords = self._ords
        n = len(seqs)
        lo = (scan - una) & MASK
        k = bisect_right(seqs, lo, self._head, n, key=lambda s: (s - una) & MASK
                         if ge(s, una) else -1) - 1
        if k < self._head:
            k = self._head
        while lt(scan, top):
            t = times[k]
            o = ords[k]
            run_end = seqs[k + 1] if k + 1 < n else nxt
            if o > xmit_order:
                break  # sent after the newest delivered segment
            stop = run_end
            if o == xmit_order and gt(stop, end_seq):
                stop = end_seq  # the same burst: only what came before it
            if gt(stop, top):
                stop = top
            if not lt(scan, stop):
                break
            left = t + horizon - now
            if left > 0.0:
                if left > timeout:
                    timeout = left
                break
            self._mark_unsacked(scan, stop, blocks)
            scan = stop
            if stop != run_end:
                break
            k += 1
            if k >= n:
                break
        self.scan = scan
        return timeout

    # -- the lost ranges ---------------------------------------------------------

    def next_lost(self, mss: int) -> tuple[int, int] | None:
        """The first lost byte range to resend, at most ``mss`` long."""
        lost = self.lost
        if not lost:
            return None
        r = lost[0]
        n = (r[1] - r[0]) & MASK
        return r[0], n if n < mss else mss

    def _mark_unsacked(self, start: int, end: int, blocks: list[tuple[int, int]]) -> None:
        """Mark the parts of ``[start, end)`` no SACK block covers, less any
        retransmission in flight there (a loss probe's)."""
        pos = start
        for bs, be in blocks:
            if le(be, pos):
                continue
            if ge(bs, end):
                break
            if lt(pos, bs):
                self._add_lost(pos, bs)
            pos = be
            if ge(pos, end):
                return
        if lt(pos, end):
            self._add_lost(pos, end)

    def _mark(self, start: int, end: int, una: int, blocks: list[tuple[int, int]]) -> None:
        if lt(start, una):
            start = una
        if lt(start, end):
            self._mark_unsacked(start, end, blocks)

    def _add_lost(self, s: int, e: int) -> None:
        for sent in self.rtx:  # a retransmission in flight covers its bytes
            if le(sent.start, s) and ge(sent.end, e):
                return
        lost = self.lost
        if lost is _NO_LOST:
            self.lost = lost = []
        if not lost or gt(s, lost[-1][1]):
            lost.append([s, e])
            self.lost_bytes += (e - s) & MASK
            return
        # Merge (rare: a lost retransmission below ranges already marked).
        out: list[list[int]] = []
        ns, ne = s, e
        placed = False
        total = 0
        for r in lost:
            if lt(r[1], ns):
                out.append(r)
            elif gt(r[0], ne):
                if not placed:
                    out.append([ns, ne])
                    placed = True
                out.append(r)
            else:
                if lt(r[0], ns):
                    ns = r[0]
                if gt(r[1], ne):
                    ne = r[1]
        if not placed:
            out.append([ns, ne])
        for r in out:
            total += (r[1] - r[0]) & MASK
        self.lost = out
        self.lost_bytes = total

    def _unmark(self, s: int, e: int) -> None:
        """Take ``[s, e)`` out of the lost ranges."""
        out: list[list[int]] = []
        total = 0
        for r in self.lost:
            if le(r[1], s) or ge(r[0], e):
                out.append(r)
            else:
                if lt(r[0], s):
                    out.append([r[0], s])
                if gt(r[1], e):
                    out.append([e, r[1]])
        for r in out:
            total += (r[1] - r[0]) & MASK
        self.lost = out
        self.lost_bytes = total

    def _clean(self, una: int, blocks: list[tuple[int, int]]) -> None:
        """Drop from the lost ranges what is below SND.UNA or SACKed."""
        lost = self.lost
        while lost and le(lost[0][1], una):
            lost.pop(0)
        if lost and lt(lost[0][0], una):
            lost[0][0] = una
        for bs, be in blocks:
            if lost and lt(bs, lost[-1][1]) and gt(be, lost[0][0]):
                self.lost = lost
                self._unmark(bs, be)
                lost = self.lost
        self.lost = lost
        total = 0
        for r in lost:
            total += (r[1] - r[0]) & MASK
        self.lost_bytes = total


def _covered(blocks: list[tuple[int, int]], s: int, e: int) -> bool:
    return any(le(bs, s) and ge(be, e) for bs, be in blocks)
