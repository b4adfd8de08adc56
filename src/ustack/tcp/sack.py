"""The sender's SACK scoreboard and loss recovery rules (RFC 6675, RFC 2018).

The scoreboard is the set of bytes above SND.UNA that the peer has reported
in SACK blocks (RFC 2018), kept as a short sorted list of disjoint,
non-adjacent ``[start, end)`` ranges.  On it this module implements the RFC
6675 routines the connection needs during loss recovery:

* ``update()``  -- RFC 6675 section 4 Update(), with RFC 2018 and RFC 2883
  validity checks;
* ``is_lost()`` -- IsLost(SeqNum);
* ``pipe()``    -- SetPipe(), in bytes;
* ``next_seg()`` -- NextSeg() rules (1)-(4), including the rescue
  retransmission;
* ``enter_recovery()`` / ``exit_recovery()`` / ``on_rto()`` -- the variables
  RecoveryPoint, HighRxt and RescueRxt of sections 5 and 5.1.

Naming: the RFC's variables are inclusive (HighACK is the highest byte
acknowledged, HighData the highest byte sent).  Here every bound is the
sequence number *after* the range, as in SND.UNA and SND.NXT:

* ``snd_una`` = HighACK + 1, ``snd_nxt`` = HighData + 1 (pass SND.MAX, the
  highest sequence number ever sent, if the connection rewinds SND.NXT);
* ``high_rxt`` = HighRxt + 1, or None while nothing above SND.UNA has been
  retransmitted;
* ``recovery_point`` = RecoveryPoint + 1 = SND.NXT when recovery began.

Sequence numbers wrap at 2**32.  Every range here lies in the send window,
less than 2**31 wide, so the loops work on distances from SND.UNA
(``(x - snd_una) & MASK``, the arithmetic of ``ustack.tcp.seq``), which
compare as plain integers; single comparisons use ``ustack.tcp.seq``.

Protection against a hostile peer: blocks outside the window are ignored
(RFC 2018 section 3, RFC 5961's spirit), and the scoreboard keeps at most
``MAX_BLOCKS`` ranges, dropping the highest beyond that (cf. the Linux "SACK
slowness" fix for CVE-2019-11478).  Dropping SACK information is always
safe: it only makes the sender retransmit more.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import Final

from ustack.tcp.seq import HALF, MASK, add, ge, gt, le, lt

# A Scoreboard's blocks before the first SACK block (never changed: see __init__).
_NO_BLOCKS: Final[list[list[int]]] = []


class Scoreboard:
    MAX_BLOCKS: Final = 256

    __slots__ = (
        "_blocks",
        "_guard",
        "_high_rxt",
        "_in_recovery",
        "_lost_until",
        "_recovery_point",
        "_rescue",
        "_rescue_rxt",
        "_sacked",
        "dsack",
        "dsack_block",
        "dupthresh",
        "invalid",
        "overflow",
        "reneged",
    )

    def __init__(self, dupthresh: int = 3) -> None:
        self.dupthresh = dupthresh
        # [start, end) sorted, disjoint, not adjacent.  The shared empty list
        # until the first SACK block (``_insert`` makes one: issue 12).
        self._blocks = _NO_BLOCKS
        self._sacked = 0  # bytes in _blocks
        self._high_rxt: int | None = None
        self._rescue_rxt: int | None = None
        self._rescue: tuple[int, int] | None = None  # the rescue NextSeg() last proposed
        self._in_recovery = False
        self._recovery_point: int | None = None
        # A recovery point set by an RTO that still forbids a new recovery.
        self._guard = False
        # UnSACKed bytes below this are lost whatever IsLost() says: all that
        # was outstanding at an RTO, or the head segment at recovery entry.
        self._lost_until: int | None = None
        self.dsack = 0  # D-SACK blocks seen (RFC 2883)
        self.dsack_block: tuple[int, int] | None = None  # the last one's range
        self.invalid = 0  # SACK blocks ignored as outside the window or malformed
        self.reneged = 0  # times the peer dropped data it had SACKed (RFC 2018 section 8)
        self.overflow = 0  # ranges dropped because of MAX_BLOCKS

    # -- state ---------------------------------------------------------------

    def sacked_bytes(self) -> int:
        return self._sacked

    def blocks(self) -> list[tuple[int, int]]:
        """The SACKed ranges above SND.UNA, lowest first."""
        return [(b[0], b[1]) for b in self._blocks]

    def __len__(self) -> int:
        return len(self._blocks)

    def __bool__(self) -> bool:
        return bool(self._blocks)

    @property
    def in_recovery(self) -> bool:
        return self._in_recovery

    @property
    def recovery_point(self) -> int | None:
        """SND.NXT when the last recovery (or RTO) began; None before any."""
        return self._recovery_point

    @property
    def high_rxt(self) -> int | None:
        return self._high_rxt

    @property
    def rescue_rxt(self) -> int | None:
        return self._rescue_rxt

    def clear(self) -> None:
        """Forget everything (a new connection, or a policy that distrusts SACKs)."""
        self._blocks.clear()
        self._sacked = 0
        self._high_rxt = None
        self._rescue_rxt = None
        self._rescue = None
        self._in_recovery = False
        self._recovery_point = None
        self._guard = False
        self._lost_until = None

    # -- Update() --------------------------------------------------------------

    def update(self, snd_una: int, snd_nxt: int, blocks: Sequence[tuple[int, int]]) -> int:
        """Take an ACK's SACK blocks, after the caller advanced ``snd_una``.

        Call it for every ACK that advances SND.UNA or carries SACK blocks:
        it also drops the state below SND.UNA.  Returns the number of bytes
        SACKed for the first time (RFC 6675 section 2: an ACK that SACKs new
        data counts as a duplicate ACK).

        A block is used only if ``snd_una < left < right <= snd_nxt`` (RFC 2018
        section 3; a block starting at SND.UNA would contradict the ACK).  A
        first block at or below SND.UNA, or inside the second block, is a
        D-SACK (RFC 2883 section 4) and counted in ``dsack``; other bad blocks
        are counted in ``invalid``.
        """
        self._trim(snd_una)
        new = 0
        win = (snd_nxt - snd_una) & MASK
        nblocks = len(blocks)
        if win >= HALF:  # SND.NXT before SND.UNA: no block can be valid
            self.invalid += nblocks
            return 0
        for idx in range(nblocks):
            s, e = blocks[idx]
            s &= MASK
            e &= MASK
            if not lt(s, e):
                self.invalid += 1
                continue
            if idx == 0 and (le(e, snd_una) or (
                    nblocks > 1 and le(blocks[1][0] & MASK, s) and le(e, blocks[1][1] & MASK)
                    and lt(blocks[1][0] & MASK, blocks[1][1] & MASK))):
                # RFC 2883 section 4: a duplicate was received.  Below SND.UNA
                # it carries nothing for the scoreboard; inside the second
                # block it is covered by that block anyway.
                self.dsack += 1
                self.dsack_block = (s, e)
                continue
            so = (s - snd_una) & MASK
            eo = (e - snd_una) & MASK
            if not (0 < so < eo <= win):
                self.invalid += 1
                continue
            new += self._insert(s, e, so, eo, snd_una)
        return new

    def trim(self, snd_una: int) -> None:
        """SND.UNA advanced (an ACK without SACK blocks): drop what it passed."""
        self._trim(snd_una)

    def _trim(self, snd_una: int) -> None:
        """Drop the state SND.UNA has passed."""
        bl = self._blocks
        while bl and le(bl[0][1], snd_una):
            b = bl.pop(0)
            self._sacked -= (b[1] - b[0]) & MASK
        if bl and le(bl[0][0], snd_una):
            # The ACK stops at or inside SACKed data: the receiver discarded
            # what it had SACKed (reneging, RFC 2018 section 8).  The data must
            # be sent again, so it may no longer count as SACKed.
            b = bl.pop(0)
            self._sacked -= (b[1] - b[0]) & MASK
            self.reneged += 1
        if self._high_rxt is not None and le(self._high_rxt, snd_una):
            self._high_rxt = None
        if self._lost_until is not None and le(self._lost_until, snd_una):
            self._lost_until = None
        if self._guard and self._recovery_point is not None \
                and ge(snd_una, self._recovery_point):
            self._guard = False

    def _insert(self, s: int, e: int, so: int, eo: int, snd_una: int) -> int:
        """Merge ``[s, e)`` (distances ``so``/``eo`` from SND.UNA) into the list;
        returns the bytes it added."""
        bl = self._blocks
        n = len(bl)
        # j: the last range starting at or before e; i: the first one of those
        # reaching s.  The top range first, where new SACK information
        # usually is; otherwise a binary search (a hostile peer's scattered
        # blocks cost O(log n) Python steps each, not O(n)).
        if n == 0 or ((bl[-1][0] - snd_una) & MASK) <= eo:
            j = n - 1
        else:
            j = bisect_right(bl, eo, key=lambda b: (b[0] - snd_una) & MASK) - 1
        if j < 0 or ((bl[j][1] - snd_una) & MASK) < so:
            i = j + 1
        elif j == 0 or ((bl[j - 1][1] - snd_una) & MASK) < so:
            i = j
        else:
            i = bisect_left(bl, so, 0, j, key=lambda b: (b[1] - snd_una) & MASK)
        if i > j:
            if bl is _NO_BLOCKS:
                self._blocks = bl = []
            bl.insert(i, [s, e])
            new = eo - so
        else:
            first = bl[i]
            last = bl[j]
            old = 0
            for k in range(i, j + 1):
                old += (bl[k][1] - bl[k][0]) & MASK
            lo = first[0] if ((first[0] - snd_una) & MASK) < so else s
            hi = last[1] if ((last[1] - snd_una) & MASK) > eo else e
            bl[i:j + 1] = [[lo, hi]]
            new = ((hi - lo) & MASK) - old
        self._sacked += new
        if len(bl) > self.MAX_BLOCKS:
            b = bl.pop()
            self._sacked -= (b[1] - b[0]) & MASK
            self.overflow += 1
        return new

    # -- IsLost() and SetPipe() -------------------------------------------------

    def is_lost(self, seq: int, mss: int) -> bool:
        """RFC 6675 IsLost(SeqNum) for the unSACKed byte ``seq``.

        True when DupThresh discontiguous SACKed ranges lie above ``seq``, or
        more than (DupThresh - 1) * SMSS SACKed bytes do.  After an RTO every
        unSACKed byte that was outstanding then is lost as well (``on_rto``).
        """
        seq &= MASK
        if self._lost_until is not None and lt(seq, self._lost_until):
            return True
        dup = self.dupthresh
        limit = (dup - 1) * mss
        nbytes = 0
        for count, b in enumerate(reversed(self._blocks), 1):
            if not gt(b[0], seq):
                break
            nbytes += (b[1] - b[0]) & MASK
            if count >= dup or nbytes > limit:
                return True
        return False

    def pipe(self, snd_una: int, snd_nxt: int, mss: int) -> int:
        """RFC 6675 SetPipe(): the sender's estimate of bytes in flight.

        Every unSACKed byte between SND.UNA and SND.NXT counts once if it is
        not lost (a), and once more if it was retransmitted (b).  Drops the
        state below ``snd_una`` first, like ``update()``.
        """
        self._trim(snd_una)
        dup = self.dupthresh
        limit = (dup - 1) * mss
        win = (snd_nxt - snd_una) & MASK
        hr = 0 if self._high_rxt is None else min((self._high_rxt - snd_una) & MASK, win)
        lu = 0 if self._lost_until is None else min((self._lost_until - snd_una) & MASK, win)
        bl = self._blocks
        pipe = 0
        count = 0  # SACKed ranges above the current hole
        nbytes = 0  # SACKed bytes above the current hole
        top = win  # the current hole is [a, top)
        for k in range(len(bl) - 1, -2, -1):
            a = 0 if k < 0 else (bl[k][1] - snd_una) & MASK
            if a < top:
                if count >= dup or nbytes > limit:
                    pass  # (a): the whole hole is lost
                elif lu > a:
                    pipe += top - min(lu, top)  # lost only below lost_until
                else:
                    pipe += top - a
                if hr > a:
                    pipe += min(hr, top) - a  # (b): retransmitted
            if k >= 0:
                b = bl[k]
                top = (b[0] - snd_una) & MASK
                count += 1
                nbytes += (b[1] - b[0]) & MASK
        return pipe

    # -- NextSeg() ---------------------------------------------------------------

    def next_seg(self, snd_una: int, snd_nxt: int, mss: int,
                 snd_max_data: int) -> tuple[int, int] | None:
        """RFC 6675 NextSeg(): ``(seq, length)`` to send next, or None.

        ``snd_max_data`` is where sendable data ends: the end of the data in
        the send buffer, limited by the peer's window (rule 2's "receiver's
        advertised window allows").  The caller checks cwnd - pipe >= SMSS
        first (RFC 6675 section 5 step C) and, after sending a retransmission
        (rules 1, 3, 4), calls ``on_retransmit()``; after new data (rule 2) it
        advances SND.NXT.  Segments never cover SACKed bytes.
        """
        self._trim(snd_una)
        dup = self.dupthresh
        limit = (dup - 1) * mss
        win = (snd_nxt - snd_una) & MASK
        hr = 0 if self._high_rxt is None else min((self._high_rxt - snd_una) & MASK, win)
        lu = 0 if self._lost_until is None else min((self._lost_until - snd_una) & MASK, win)
        bl = self._blocks
        nblocks = len(bl)
        count = nblocks
        nbytes = self._sacked
        rule3: tuple[int, int] | None = None
        self._rescue = None
        # The holes bottom-up; the smallest unSACKed byte at or above HighRxt
        # (rule (1.a)) is the only candidate: IsLost() can only turn from true
        # to false going up, so if it is not lost, no higher byte is.
        a = 0
        for k in range(nblocks + 1):
            top = (bl[k][0] - snd_una) & MASK if k < nblocks else win
            if top > hr and top > a:
                s = a if a > hr else hr
                if s < lu:
                    # Lost by the RTO rule (on_rto), SACKs above or not.
                    return add(snd_una, s), min(mss, top - s, lu - s)
                if k < nblocks:  # (1.b): below the highest SACKed byte
                    if count >= dup or nbytes > limit:
                        return add(snd_una, s), min(mss, top - s)  # rule (1)
                    rule3 = (add(snd_una, s), min(mss, top - s))
                break
            if k < nblocks:
                b = bl[k]
                a = (b[1] - snd_una) & MASK
                count -= 1
                nbytes -= (b[1] - b[0]) & MASK
        # Rule (2): new data, if there is any and the window allows it.
        if gt(snd_max_data, snd_nxt):
            return snd_nxt, min(mss, (snd_max_data - snd_nxt) & MASK)
        if rule3 is not None:
            return rule3  # rule (3)
        # Rule (4): one rescue retransmission per recovery, of the highest
        # outstanding unSACKed byte, while HighACK > RescueRxt.
        if not self._in_recovery:
            return None
        if self._rescue_rxt is not None and not gt(snd_una, self._rescue_rxt):
            return None
        if nblocks:
            hi = (bl[-1][1] - snd_una) & MASK
            if hi < win:
                lo = hi  # unSACKed data above the highest SACK block
                hi = win
            else:
                hi = (bl[-1][0] - snd_una) & MASK
                lo = 0 if nblocks == 1 else (bl[-2][1] - snd_una) & MASK
        else:
            lo, hi = 0, win
        if hi <= lo:
            return None
        s = hi - mss if hi - mss > lo else lo
        self._rescue = (add(snd_una, s), hi - s)
        return self._rescue

    def on_retransmit(self, seq: int, length: int) -> None:
        """Record a retransmission of ``[seq, seq + length)``.

        Advances HighRxt, except for the rescue retransmission NextSeg() rule
        (4) just proposed, which sets RescueRxt = RecoveryPoint and MUST NOT
        move HighRxt (RFC 6675 section 4).  The first retransmission of a
        recovery also sets RescueRxt, so no rescue goes out before it is
        acknowledged (section 5 step 4.3).
        """
        seq &= MASK
        if self._rescue is not None and self._rescue == (seq, length):
            self._rescue = None
            self._rescue_rxt = self._recovery_point
            return
        self._rescue = None
        end = add(seq, length)
        if self._high_rxt is None or gt(end, self._high_rxt):
            self._high_rxt = end
        if self._in_recovery and self._rescue_rxt is None:
            # RFC 6675 4.3 sets RescueRxt to the highest byte of this segment;
            # the rescue waits until HighACK passes it (HighACK > RescueRxt,
            # i.e. snd_una > end here).
            self._rescue_rxt = end

    # -- recovery phases -----------------------------------------------------------

    def may_enter_recovery(self, snd_una: int) -> bool:
        """False while in recovery, or until SND.UNA reaches the recovery point
        an RTO set (RFC 6675 section 5.1)."""
        if self._in_recovery:
            return False
        if self._guard and self._recovery_point is not None \
                and ge(snd_una, self._recovery_point):
            self._guard = False
        return not self._guard

    def enter_recovery(self, snd_una: int, snd_nxt: int, mss: int | None = None) -> None:
        """RFC 6675 section 5 step 4: RecoveryPoint = HighData; HighRxt and
        RescueRxt start afresh.

        Step 4.3 retransmits the segment at SND.UNA, "presumed dropped", even
        when IsLost() does not say so yet (recovery entered on DupThresh
        duplicate ACKs for small segments).  With ``mss`` the first ``mss``
        bytes from SND.UNA count as lost here, so NextSeg() rule 1 returns
        that segment first and pipe() leaves it out; without it the caller
        retransmits it itself and reports it with ``on_retransmit()``.
        """
        self._trim(snd_una)
        self._in_recovery = True
        self._recovery_point = snd_nxt & MASK
        self._guard = False
        self._high_rxt = None
        self._rescue_rxt = None
        self._rescue = None
        self._lost_until = None
        if mss and gt(snd_nxt, snd_una):
            head = add(snd_una, mss)
            self._lost_until = head if lt(head, snd_nxt) else snd_nxt & MASK

    def recovery_complete(self, snd_una: int) -> bool:
        """True in recovery once the ACK covers RecoveryPoint (RFC 6675 section 5:
        "HighACK >= RecoveryPoint" ends the loss recovery phase)."""
        return (self._in_recovery and self._recovery_point is not None
                and ge(snd_una, self._recovery_point))

    def exit_recovery(self) -> None:
        self._in_recovery = False
        self._rescue = None

    def on_rto(self, snd_una: int, snd_nxt: int) -> None:
        """A retransmission timeout (RFC 6675 section 5.1).

        Ends recovery; RecoveryPoint = HighData, and no new recovery starts
        until SND.UNA reaches it.  The scoreboard is kept, so the RTO recovery
        skips SACKed data (section 5.1: "this will allow the RTO recovery to
        benefit from the information contained in the scoreboard"), and every
        unSACKed byte outstanding now is lost: NextSeg() rule 1 then walks the
        holes from SND.UNA and pipe() counts them out of flight.  A peer that
        reneged shows itself when SND.UNA stops at SACKed data, and ``update()``
        forgets that block.
        """
        self._trim(snd_una)
        self._in_recovery = False
        self._recovery_point = snd_nxt & MASK
        self._guard = True
        self._high_rxt = None
        self._rescue_rxt = None
        self._rescue = None
        self._lost_until = snd_nxt & MASK if gt(snd_nxt, snd_una) else None
