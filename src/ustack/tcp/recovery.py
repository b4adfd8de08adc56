"""Loss recovery of the sender: duplicate ACKs, fast recovery, the RTO cursor.

The state the sender keeps between a loss and its repair:

- ``dupacks`` (reset by every ACK of new data) and the limited-transmit
  budget (RFC 5681 3.2, RFC 3042);
- ``active`` and ``recover``, the recovery point: fast recovery lasts until
  an ACK covers what was outstanding when it began (RFC 6582 3.2; with
  SACK, RFC 6675 5), and a new one cannot start before the last one's
  point was passed, so one window of losses cuts cwnd once;
- ``inflate``: NewReno's inflation of the window during recovery without
  SACK (RFC 5681 3.2 steps 3-5, RFC 6582 3.2);
- the retransmission cursor after a timeout (RFC 6298 5.4, RFC 5681 3.1):
  everything outstanding at the RTO (``rtx_nxt`` .. ``rtx_end``) is sent
  again from SND.UNA, as the congestion window opens.

With SACK, how much to send during recovery is Proportional Rate
Reduction's (RFC 6937, PRR-SSRB): ``prr_start`` and ``prr_ack`` keep its
variables and say, per ACK, how many bytes may go (``sndcnt``); the sender
takes what it sends from it (``prr_sent``).

Which segments SACK shows missing is the scoreboard's (``sack.py``), whose
recovery phases (RFC 6675 5 and 5.1: RecoveryPoint, HighRxt, RescueRxt)
this drives: ``start``, ``finish`` and ``on_rto`` move both, so the two
never disagree about being in recovery.  What to send is the output's
(``output.py``); the connection applies these rules as ACKs and timeouts
arrive.
"""

from __future__ import annotations

from ustack.tcp import seq as sq
from ustack.tcp.sack import Scoreboard


class Recovery:
    __slots__ = ("active", "dupacks", "inflate", "lt_budget", "prr_delivered", "prr_out",
                 "recover", "recover_fs", "rtx_end", "rtx_nxt", "sb", "sndcnt")

    def __init__(self, iss: int, sb: Scoreboard) -> None:
        self.sb = sb
        self.dupacks = 0
        self.lt_budget = 0  # segments limited transmit may still send
        self.active = False  # in fast recovery
        self.recover = iss  # RFC 6582 "recover"; ISS: no recovery yet
        self.inflate = 0  # NewReno cwnd inflation during fast recovery
        self.rtx_nxt: int | None = None  # after an RTO: next sequence to resend
        self.rtx_end = 0  # ... up to here (SND.NXT at the timeout)
        # RFC 6937 3: PRR's state for the recovery in progress (bytes).
        self.prr_delivered = 0  # delivered to the receiver since recovery began
        self.prr_out = 0  # sent since recovery began
        self.recover_fs = 0  # RecoverFS: the pipe when recovery began
        self.sndcnt = 0  # bytes the last ACK allows to send

    def prr_start(self, pipe: int, mss: int) -> None:
        """RFC 6937 3, at the start of recovery: prr_delivered = prr_out = 0,
        RecoverFS = the pipe before the first retransmission (RFC 9937
        takes the pipe, not SND.NXT - SND.UNA: SACKed bytes are not in
        flight and will not be delivered again).  The fast retransmit itself
        always goes (one SMSS)."""
        self.prr_delivered = 0
        self.prr_out = 0
        self.recover_fs = pipe if pipe > mss else mss
        self.sndcnt = mss

    def prr_ack(self, delivered: int, pipe: int, ssthresh: int, mss: int) -> None:
        """RFC 6937 3, on every ACK in recovery: ``delivered`` is DeliveredData
        (SND.UNA's advance plus the change in SACKed bytes), ``pipe`` the
        flight after the ACK.  Above ssthresh the sending follows the
        deliveries in proportion ssthresh/RecoverFS; at or below it, PRR-SSRB
        (slow start reduction bound) grows back to ssthresh at most one MSS
        beyond what was delivered."""
        if delivered < 0:
            delivered = 0
        self.prr_delivered += delivered
        if pipe > ssthresh:
            # sndcnt = CEIL(prr_delivered * ssthresh / RecoverFS) - prr_out
            rfs = self.recover_fs
            sndcnt = -(-(self.prr_delivered * ssthresh) // rfs) - self.prr_out
        else:
            limit = self.prr_delivered - self.prr_out
            if delivered > limit:
                limit = delivered
            limit += mss
            sndcnt = ssthresh - pipe
            if limit < sndcnt:
                sndcnt = limit
        self.sndcnt = sndcnt if sndcnt > 0 else 0

    def prr_sent(self, n: int) -> None:
        self.prr_out += n
        self.sndcnt -= n

    def flight(self, una: int, nxt: int, mss: int, sack_ok: bool) -> int:
        """Bytes (and SYN/FIN) in flight as the sender counts them: after an
        RTO only what was resent; in SACK recovery the pipe (RFC 6675 4);
        otherwise SND.NXT - SND.UNA."""
        if self.rtx_nxt is not None:
            return sq.sub(self.rtx_nxt, una)
        if self.active and sack_ok:
            return self.sb.pipe(una, nxt, mss)
        return sq.sub(nxt, una)

    def on_dupack(self) -> None:
        self.dupacks += 1
        if self.dupacks <= 2:
            self.lt_budget = 1  # RFC 3042: the first two dupACKs each allow one

    def may_start(self, una: int, iss: int) -> bool:
        """RFC 6582 3.2 step 2: a new recovery only once the ACKs have passed
        the last one's recovery point (one reduction per window of losses)."""
        return sq.gt(una, self.recover) or self.recover == iss

    def start(self, una: int, nxt: int, mss: int, sack_ok: bool) -> None:
        """Fast recovery begins (RFC 6582 3.2 step 2: recover = the highest
        sequence number sent); with SACK the scoreboard's too (RFC 6675 5
        step 4), the segment at SND.UNA presumed lost."""
        self.active = True
        self.recover = nxt
        if sack_ok:
            self.sb.enter_recovery(una, nxt, mss)

    def covers(self, ack: int) -> bool:
        """Does ``ack`` end the fast recovery in progress (a full ACK)?"""
        return sq.ge(ack, self.recover)

    def finish(self) -> None:
        self.active = False
        self.inflate = 0
        self.sb.exit_recovery()

    def advance_cursor(self, ack: int) -> None:
        """New data acknowledged while resending after an RTO: the cursor
        skips what the ACK covers, and stops past ``rtx_end``."""
        nxt = self.rtx_nxt
        if nxt is not None:
            if sq.ge(ack, self.rtx_end):
                self.rtx_nxt = None
            elif sq.lt(nxt, ack):
                self.rtx_nxt = ack

    def on_rto(self, una: int, nxt: int) -> None:
        """The retransmission timer fired: leave fast recovery, resend from
        SND.UNA everything that was outstanding (RFC 5681 3.1), and let no
        new recovery start inside that window."""
        self.active = False
        self.inflate = 0
        self.dupacks = 0
        self.recover = nxt
        self.rtx_nxt = una
        self.rtx_end = nxt
        # RFC 6675 5.1: the SACK information is kept; what it covers is not resent.
        self.sb.on_rto(una, nxt)

    def resending(self) -> bool:
        """Is the RTO cursor still short of ``rtx_end``?"""
        nxt = self.rtx_nxt
        return nxt is not None and sq.lt(nxt, self.rtx_end)
