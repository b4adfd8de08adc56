"""Undoing a congestion window reduction that a spurious retransmission caused.

A fast recovery or a timeout cuts cwnd because data looked lost; when the
data was only late (reordered, or delayed past the RTO), the original
arrived and the cut bought nothing.  Two ways to tell, after the fact:

- D-SACK (RFC 2883; RFC 3708 for detection): the receiver reports every
  duplicate it got.  When each retransmission of the episode has come back
  as a duplicate, none of them was needed (Linux's undo_retrans, counted
  as TcpExtTCPDSACKUndo);
- Eifel detection (RFC 3522, with timestamps): the ACK that first covers
  the retransmitted segment echoes the TSval of the segment that filled the
  hole (RFC 7323 4.3).  A TSval older than the first retransmission's says
  the original filled it (Linux's tcp_packet_delayed: TcpExtTCPFullUndo or
  TcpExtTCPPartialUndo in fast recovery, TcpExtTCPLossUndo after an RTO).

The response (RFC 4015 for Eifel, as Linux's tcp_undo_cwnd_reduction):
cwnd and ssthresh go back to what they were before the episode (the
controller's ``undo``), the recovery ends, what RACK marked lost is
unmarked and judged again with a reordering window (RFC 8985 6.2 step 4:
reordering was seen).  This module keeps the episode's record; the
connection's rules that use it are ``losses.py``'s.
"""

from __future__ import annotations

from typing import Final

from ustack.tcp.seq import gt, le, lt

# What an Undo with no episode yet holds (never appended to: see __init__).
_NO_SENT: Final[list[tuple[int, int]]] = []


class Undo:
    """The record of one reduction (Linux's undo_marker, undo_retrans,
    retrans_stamp, prior_cwnd, prior_ssthresh)."""

    __slots__ = ("high", "marker", "prior_cwnd", "prior_ssthresh", "rto", "sent", "stamp")

    def __init__(self) -> None:
        self.marker: int | None = None  # SND.UNA when it began; None: nothing to undo
        self.high = 0  # SND.NXT then: retransmissions of the episode lie below
        # Its retransmissions not yet reported duplicate, as [start, end).
        # (The shared empty list until ``start`` gives an episode its own:
        # ``on_retransmit`` appends only within one.)
        self.sent = _NO_SENT
        self.stamp: int | None = None  # our TSval at its first retransmission
        self.prior_cwnd = 0
        self.prior_ssthresh = 0
        self.rto = False  # a timeout's reduction (else a fast recovery's)

    def start(self, una: int, nxt: int, cwnd: int, ssthresh: int, rto: bool) -> None:
        """A reduction begins: remember what it reduces."""
        self.marker = una
        self.high = nxt
        self.sent = []
        self.stamp = None
        self.prior_cwnd = cwnd
        self.prior_ssthresh = ssthresh
        self.rto = rto

    def on_retransmit(self, start: int, end: int, tsval: int) -> None:
        """``[start, end)`` went again (remembered if the episode's)."""
        m = self.marker
        if m is not None and le(m, start) and lt(start, self.high):
            if self.stamp is None:
                self.stamp = tsval
            self.sent.append((start, end))

    def on_dsack(self, start: int, end: int) -> None:
        """A D-SACK for ``[start, end)``: the retransmissions of the episode
        it covers whole were not needed (one covered in part was: some of
        its bytes had not arrived, as when a loss probe cut the stream at
        another place than the original segments)."""
        sent = self.sent
        for i in range(len(sent)):
            s, e = sent[i]
            if le(start, s) and le(e, end):
                del sent[i]
                return

    def all_dsacked(self) -> bool:
        """Every retransmission of the episode came back as a duplicate."""
        return self.marker is not None and self.stamp is not None and not self.sent

    def delayed(self, old_una: int, ack: int, ts_ecr: int) -> bool:
        """Eifel (RFC 3522 2): the ACK that first passes the marker echoes
        a TSval older than the first retransmission, or nothing was
        retransmitted before the data the reduction was about arrived."""
        m = self.marker
        if m is None or not le(old_una, m) or not gt(ack, m):
            return False
        stamp = self.stamp
        if stamp is None:
            return True
        return ts_ecr != 0 and lt(ts_ecr, stamp)
