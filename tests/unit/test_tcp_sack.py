"""The SACK scoreboard and RFC 6675 loss recovery rules (RFC 2018, 2883, 6675).

Most situations use segments of MSS = 1000 bytes starting at ISN + 1000 and
name them by number: segment k covers [ISN + 1000 k, ISN + 1000 (k + 1)).
The property tests check the scoreboard against a literal, per-octet reading
of the RFC 6675 definitions.
"""

from __future__ import annotations

import random
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.tcp.sack import Scoreboard

MASK = 0xFFFFFFFF
MSS = 1000
SETTINGS = settings(max_examples=300, deadline=None)


def at(isn: int, k: float) -> int:
    """Sequence number of the start of segment ``k`` (fractions allowed)."""
    return (isn + int(k * MSS)) & MASK


def seg(isn: int, k: int, n: int = 1) -> tuple[int, int]:
    """The SACK block for segments k .. k + n - 1."""
    return at(isn, k), at(isn, k + n)


ISNS = [0, 1_000_000, MASK - 3500]  # the last wraps in the middle of the window


def sb_with(isn: int, blocks: list[tuple[int, int]], nxt: int = 10) -> Scoreboard:
    sb = Scoreboard()
    sb.update(at(isn, 0), at(isn, nxt), blocks)
    return sb


# -- IsLost --------------------------------------------------------------------


def test_is_lost_needs_dupthresh_segments_sacked_above() -> None:
    for isn in ISNS:
        una, nxt = at(isn, 0), at(isn, 10)
        sb = Scoreboard()
        sb.update(una, nxt, [seg(isn, 1)])
        assert not sb.is_lost(una, MSS)
        sb.update(una, nxt, [seg(isn, 2)])  # merges: 2000 bytes above
        assert not sb.is_lost(una, MSS)  # not MORE than (3 - 1) * SMSS
        sb.update(una, nxt, [seg(isn, 3)])
        assert sb.blocks() == [seg(isn, 1, 3)]
        assert sb.is_lost(una, MSS)  # 3000 > 2000 bytes above
        assert not sb.is_lost(at(isn, 4), MSS)  # nothing SACKed above segment 4


def test_is_lost_more_than_dupthresh_minus_one_smss() -> None:
    sb = Scoreboard()
    sb.update(0, 10_000, [(1000, 3001)])  # 2001 bytes above
    assert sb.is_lost(0, MSS)
    assert sb.is_lost(999, MSS)
    sb2 = Scoreboard()
    sb2.update(0, 10_000, [(1000, 3000)])
    assert not sb2.is_lost(0, MSS)


def test_is_lost_dupthresh_discontiguous_ranges() -> None:
    """Three small SACKed segments, each alone: lost by the count rule."""
    sb = Scoreboard()
    sb.update(0, 10_000, [(1000, 1100), (2000, 2100), (3000, 3100)])
    assert sb.sacked_bytes() == 300
    assert sb.is_lost(0, MSS)
    # The hole [1100, 2000): two ranges, 200 bytes above.
    assert not sb.is_lost(1500, MSS)
    assert not sb.is_lost(1500, 100)  # 200 bytes is not MORE than 2 * 100
    assert sb.is_lost(1500, 99)
    assert not sb.is_lost(2500, MSS)


def test_is_lost_dupthresh_parameter() -> None:
    sb = Scoreboard(dupthresh=1)
    sb.update(0, 10_000, [(1000, 1001)])
    assert sb.is_lost(0, MSS)  # one range above (and 1 byte > 0 * SMSS)
    assert not sb.is_lost(1001, MSS)


# -- SetPipe -----------------------------------------------------------------------


def test_pipe_without_retransmissions() -> None:
    """Segment 0 lost (segments 1-3 SACKed above it), 4-9 in flight."""
    for isn in ISNS:
        sb = sb_with(isn, [seg(isn, 1, 3)])
        assert sb.pipe(at(isn, 0), at(isn, 10), MSS) == 6 * MSS
        # With nothing SACKed everything outstanding is in flight.
        assert Scoreboard().pipe(at(isn, 0), at(isn, 10), MSS) == 10 * MSS


def test_pipe_counts_a_retransmission() -> None:
    for isn in ISNS:
        sb = sb_with(isn, [seg(isn, 1, 3)])
        sb.enter_recovery(at(isn, 0), at(isn, 10))
        sb.on_retransmit(at(isn, 0), MSS)
        assert sb.high_rxt == at(isn, 1)
        # The lost original is out of the pipe, its retransmission in it.
        assert sb.pipe(at(isn, 0), at(isn, 10), MSS) == 7 * MSS


def test_pipe_counts_a_not_lost_retransmitted_byte_twice() -> None:
    """RFC 6675 SetPipe (a) and (b) both apply to a byte that is neither lost
    nor SACKed but was retransmitted (rule 3 sends such bytes)."""
    sb = Scoreboard()
    sb.update(0, 10_000, [(1000, 2000)])  # segment 0 not lost: one SACK above
    sb.on_retransmit(0, 1000)
    assert sb.pipe(0, 10_000, MSS) == 9000 + 1000


def test_pipe_after_snd_una_advances() -> None:
    sb = Scoreboard()
    sb.update(0, 10_000, [(1000, 4000), (5000, 6000)])
    sb.on_retransmit(0, 1000)
    # The retransmission is acknowledged: SND.UNA jumps over segments 0-3.
    sb.update(4000, 10_000, [(5000, 6000)])
    assert sb.blocks() == [(5000, 6000)]
    assert sb.high_rxt is None  # everything retransmitted is acknowledged
    assert sb.pipe(4000, 10_000, MSS) == 5000


def test_pipe_counts_discontiguous_ranges_rule() -> None:
    """Three small SACKed ranges above a hole make it lost for SetPipe too."""
    sb = Scoreboard()
    sb.update(0, 5000, [(1000, 1100), (2000, 2100), (3000, 3100)])
    # [0, 1000) is lost (3 ranges above); [1100, 2000) and [2100, 3000) are not
    # (2 and 1 ranges, 200 and 100 bytes); [3100, 5000) is not.
    assert sb.pipe(0, 5000, MSS) == 900 + 900 + 1900


# -- NextSeg ---------------------------------------------------------------------


def test_next_seg_rule_order() -> None:
    for isn in ISNS:
        una, nxt = at(isn, 0), at(isn, 10)
        more_data = at(isn, 20)
        sb = sb_with(isn, [seg(isn, 1, 3), seg(isn, 6)])
        sb.enter_recovery(una, nxt)
        # Rule 1: segment 0 is lost, before any new data.
        assert sb.next_seg(una, nxt, MSS, more_data) == (una, MSS)
        sb.on_retransmit(una, MSS)
        # Segments 4-5 are unSACKed but not lost (one range, 1000 bytes above):
        # rule 2 sends new data first ...
        assert sb.next_seg(una, nxt, MSS, more_data) == (nxt, MSS)
        assert sb.next_seg(una, nxt, MSS, at(isn, 10.3)) == (nxt, 300)
        # ... and without new data rule 3 retransmits the hole anyway.
        assert sb.next_seg(una, nxt, MSS, nxt) == (at(isn, 4), MSS)
        sb.on_retransmit(at(isn, 4), MSS)
        assert sb.next_seg(una, nxt, MSS, nxt) == (at(isn, 5), MSS)
        sb.on_retransmit(at(isn, 5), MSS)
        # Rules 1-3 have nothing left; rule 4 waits for HighACK > RescueRxt
        # (the first retransmission set RescueRxt, RFC 6675 step 4.3).
        assert sb.rescue_rxt == at(isn, 1)
        assert sb.next_seg(una, nxt, MSS, nxt) is None
        una = at(isn, 4)  # the partial ACK for segment 0, beyond RescueRxt
        sb.update(una, nxt, [seg(isn, 6)])
        # The rescue: one segment ending at the highest unSACKed byte.
        assert sb.next_seg(una, nxt, MSS, nxt) == (at(isn, 9), MSS)
        sb.on_retransmit(at(isn, 9), MSS)
        assert sb.high_rxt == at(isn, 6)  # the rescue did not move HighRxt
        assert sb.rescue_rxt == nxt  # = RecoveryPoint
        assert sb.next_seg(una, nxt, MSS, nxt) is None  # once per recovery


def test_next_seg_rule1_skips_sacked_and_stops_at_holes() -> None:
    sb = Scoreboard()
    # Holes: [0, 500), [1000, 1200), [2000, 2700); lots SACKed above.
    sb.update(0, 10_000, [(500, 1000), (1200, 2000), (2700, 9000)])
    sb.enter_recovery(0, 10_000)
    assert sb.next_seg(0, 10_000, MSS, 10_000) == (0, 500)
    sb.on_retransmit(0, 500)
    assert sb.next_seg(0, 10_000, MSS, 10_000) == (1000, 200)
    sb.on_retransmit(1000, 200)
    assert sb.next_seg(0, 10_000, MSS, 10_000) == (2000, 700)
    sb.on_retransmit(2000, 700)
    # Above the highest SACK block nothing is lost: rule 3 does not apply
    # (1.b), and the rescue waits for HighACK > RescueRxt.
    assert sb.next_seg(0, 10_000, MSS, 10_000) is None
    assert sb.next_seg(0, 10_000, MSS, 12_000) == (10_000, MSS)


def test_next_seg_rule1_by_the_range_count() -> None:
    sb = Scoreboard()
    sb.update(0, 5000, [(1000, 1100), (2000, 2100), (3000, 3100)])
    sb.enter_recovery(0, 5000)
    assert sb.next_seg(0, 5000, MSS, 6000) == (0, MSS)  # rule 1, before new data
    sb.on_retransmit(0, MSS)
    assert sb.next_seg(0, 5000, MSS, 6000) == (5000, MSS)  # rule 2
    assert sb.next_seg(0, 5000, MSS, 5000) == (1100, 900)  # rule 3


def test_next_seg_not_in_recovery_has_no_rescue() -> None:
    sb = Scoreboard()
    sb.update(0, 5000, [(1000, 2000)])
    sb.on_retransmit(0, 1000)
    assert sb.next_seg(0, 5000, MSS, 5000) is None
    assert not sb.in_recovery


def test_rescue_without_sack_blocks() -> None:
    """Recovery on DupThresh duplicate ACKs with nothing SACKed (RFC 6675
    rule 4 still offers the last segment once)."""
    sb = Scoreboard()
    sb.enter_recovery(0, 3500)
    assert sb.next_seg(0, 3500, MSS, 3500) == (2500, 1000)
    sb.on_retransmit(2500, 1000)
    assert sb.high_rxt is None
    assert sb.next_seg(0, 3500, MSS, 3500) is None


def test_rescue_in_the_hole_below_the_highest_block() -> None:
    sb = Scoreboard()
    sb.update(0, 5000, [(1000, 2000), (3500, 5000)])
    sb.enter_recovery(0, 5000)
    sb.on_retransmit(0, 1000)
    sb.on_retransmit(2000, 1500)
    sb.update(2000, 5000, [(3500, 5000)])  # the partial ACK for segment 0
    # Rules 1 and 3 have nothing at or above HighRxt = 3500 below the highest
    # SACK; the highest unSACKed byte is 3499: the rescue is [2500, 3500).
    assert sb.next_seg(2000, 5000, MSS, 5000) == (2500, 1000)
    sb.on_retransmit(2500, 1000)
    assert sb.high_rxt == 3500 and sb.rescue_rxt == 5000


def test_enter_recovery_with_mss_presumes_the_head_lost() -> None:
    """RFC 6675 step 4.3: the segment at SND.UNA goes first even when IsLost()
    is false (recovery entered on duplicate ACKs)."""
    sb = Scoreboard()
    sb.update(0, 10_000, [(1000, 1100)])
    assert not sb.is_lost(0, MSS)
    sb.enter_recovery(0, 10_000, mss=MSS)
    assert sb.next_seg(0, 10_000, MSS, 20_000) == (0, MSS)
    assert sb.pipe(0, 10_000, MSS) == 10_000 - 100 - 1000
    sb.on_retransmit(0, MSS)
    assert sb.pipe(0, 10_000, MSS) == 10_000 - 100
    assert sb.next_seg(0, 10_000, MSS, 20_000) == (10_000, MSS)
    # A hole longer than the head: its rest is not lost (one range above).
    sb2 = Scoreboard()
    sb2.update(0, 10_000, [(2500, 2600)])
    sb2.enter_recovery(0, 10_000, mss=MSS)
    assert sb2.next_seg(0, 10_000, MSS, 10_000) == (0, MSS)
    sb2.on_retransmit(0, MSS)
    assert sb2.next_seg(0, 10_000, MSS, 20_000) == (10_000, MSS)
    assert sb2.next_seg(0, 10_000, MSS, 10_000) == (1000, MSS)  # rule 3
    sb2.on_retransmit(1000, MSS)
    assert sb2.next_seg(0, 10_000, MSS, 10_000) == (2000, 500)


# -- Update: validity, D-SACK, merging, trimming -------------------------------


def test_blocks_outside_the_window_are_ignored() -> None:
    for isn in ISNS:
        una, nxt = at(isn, 0), at(isn, 10)
        sb = Scoreboard()
        bad = [
            (at(isn, 9), at(isn, 11)),  # beyond SND.NXT
            (at(isn, 12), at(isn, 13)),  # wholly beyond
            (una, at(isn, 2)),  # starts at SND.UNA: contradicts the ACK
            (at(isn, 3), at(isn, 2)),  # reversed
            (at(isn, 3), at(isn, 3)),  # empty
            (at(isn, -2), at(isn, 1)),  # straddles SND.UNA
            (at(isn, 5) ^ 0x80000000, at(isn, 6) ^ 0x80000000),  # half the space away
        ]
        assert sb.update(una, nxt, [seg(isn, 1), *bad]) == MSS
        assert sb.blocks() == [seg(isn, 1)]
        assert sb.invalid == len(bad)
        assert sb.dsack == 0
        # A block ending exactly at SND.NXT is fine.
        assert sb.update(una, nxt, [seg(isn, 9)]) == MSS


def test_dsack_is_counted_not_used() -> None:
    sb = Scoreboard()
    # RFC 2883 4.1.1: the first block below the cumulative ACK.
    assert sb.update(5000, 10_000, [(3000, 4000)]) == 0
    assert sb.dsack == 1 and sb.invalid == 0
    # A later block below SND.UNA is just invalid (not a D-SACK position).
    sb.update(5000, 10_000, [(6000, 7000), (3000, 4000)])
    assert sb.dsack == 1 and sb.invalid == 1
    # RFC 2883 4.1.2: the first block inside the second one.
    assert sb.update(5000, 10_000, [(6000, 6500), (6000, 8000)]) == 1000
    assert sb.dsack == 2
    assert sb.blocks() == [(6000, 8000)]


def test_merge_of_overlapping_and_adjacent_blocks() -> None:
    for isn in ISNS:
        una, nxt = at(isn, 0), at(isn, 20)
        sb = Scoreboard()
        assert sb.update(una, nxt, [seg(isn, 2), seg(isn, 6), seg(isn, 10)]) == 3 * MSS
        assert len(sb) == 3
        assert sb.update(una, nxt, [seg(isn, 3)]) == MSS  # adjacent above 2
        assert sb.update(una, nxt, [seg(isn, 1)]) == MSS  # adjacent below 2
        assert sb.blocks() == [seg(isn, 1, 3), seg(isn, 6), seg(isn, 10)]
        # Overlapping two blocks and the gaps between: only new bytes count.
        assert sb.update(una, nxt, [(at(isn, 3.5), at(isn, 10.5))]) == 5 * MSS
        assert sb.blocks() == [seg(isn, 1, 10)]
        assert sb.update(una, nxt, [seg(isn, 4, 3)]) == 0  # all known
        assert sb.sacked_bytes() == 10 * MSS


def test_state_trimmed_when_snd_una_advances() -> None:
    for isn in ISNS:
        nxt = at(isn, 10)
        sb = Scoreboard()
        sb.update(at(isn, 0), nxt, [seg(isn, 2), seg(isn, 5, 2), seg(isn, 8)])
        sb.update(at(isn, 1), nxt, [])  # an ACK inside a hole: nothing to drop
        assert sb.sacked_bytes() == 4 * MSS
        sb.update(at(isn, 4.5), nxt, [])  # passes [2, 3)
        assert sb.blocks() == [seg(isn, 5, 2), seg(isn, 8)]
        assert sb.sacked_bytes() == 3 * MSS
        sb.update(at(isn, 10), nxt, [])  # everything acknowledged
        assert sb.blocks() == [] and sb.sacked_bytes() == 0
        assert sb.reneged == 0


def test_pipe_and_next_seg_trim_too() -> None:
    """The caller may skip update() on ACKs without SACK blocks."""
    sb = Scoreboard()
    sb.update(0, 10_000, [(2000, 3000), (5000, 6000)])
    assert sb.pipe(4000, 10_000, MSS) == 5000
    assert sb.blocks() == [(5000, 6000)]
    sb2 = Scoreboard()
    sb2.update(0, 10_000, [(2000, 3000), (5000, 6000)])
    assert sb2.next_seg(4000, 10_000, MSS, 10_000) == (4000, 1000)  # rule 3
    assert sb2.sacked_bytes() == 1000


def test_reneging_forgets_the_block() -> None:
    """RFC 2018 section 8: an ACK that stops where SACKed data begins means
    the receiver dropped it; it must be sent again."""
    sb = Scoreboard()
    sb.update(0, 10_000, [(2000, 4000), (6000, 7000)])
    sb.update(2000, 10_000, [(6000, 7000)])
    assert sb.reneged == 1
    assert sb.blocks() == [(6000, 7000)]
    sb.update(2000, 10_000, [])
    assert sb.next_seg(2000, 10_000, MSS, 10_000) == (2000, 1000)


def test_max_blocks_bound() -> None:
    """A peer SACKing every other byte cannot grow the scoreboard without end."""
    sb = Scoreboard()
    n = Scoreboard.MAX_BLOCKS + 52
    for i in range(0, n, 4):
        sb.update(0, 10 * n, [(10 * (i + k) + 1, 10 * (i + k) + 2) for k in range(4)])
    assert len(sb) == Scoreboard.MAX_BLOCKS
    assert sb.overflow == n - Scoreboard.MAX_BLOCKS
    assert sb.sacked_bytes() == Scoreboard.MAX_BLOCKS
    last = 10 * (Scoreboard.MAX_BLOCKS - 1)
    assert sb.blocks()[-1] == (last + 1, last + 2)


def test_scattered_blocks_in_random_order() -> None:
    """Blocks arriving in any order merge into the same scoreboard."""
    rnd = random.Random(2)
    una = MASK - 5000
    pieces = [(k * 10, k * 10 + 10) for k in range(0, 200)]
    rnd.shuffle(pieces)
    sb = Scoreboard()
    nxt = (una + 3000) & MASK
    total = 0
    for i in range(0, len(pieces), 3):
        chunk = [((una + 1 + s) & MASK, (una + 1 + e) & MASK) for s, e in pieces[i:i + 3]]
        total += sb.update(una, nxt, chunk)
    assert total == 2000 == sb.sacked_bytes()
    assert sb.blocks() == [((una + 1) & MASK, (una + 2001) & MASK)]


def test_clear() -> None:
    sb = Scoreboard()
    sb.update(0, 10_000, [(2000, 3000)])
    sb.enter_recovery(0, 10_000)
    sb.clear()
    assert not sb and sb.sacked_bytes() == 0 and not sb.in_recovery
    assert sb.recovery_point is None


# -- recovery phases and RTO ---------------------------------------------------------


def test_recovery_point_and_completion() -> None:
    for isn in ISNS:
        sb = Scoreboard()
        assert sb.may_enter_recovery(at(isn, 0))
        sb.enter_recovery(at(isn, 0), at(isn, 10))
        assert sb.in_recovery and sb.recovery_point == at(isn, 10)
        assert not sb.may_enter_recovery(at(isn, 0))
        assert not sb.recovery_complete(at(isn, 9))
        assert sb.recovery_complete(at(isn, 10))
        sb.exit_recovery()
        assert not sb.in_recovery and sb.may_enter_recovery(at(isn, 10))


def test_rto_marks_everything_outstanding_lost_but_keeps_sacks() -> None:
    """RFC 6675 5.1: the RTO recovery uses the scoreboard, and no new
    recovery starts before SND.UNA reaches the RTO's RecoveryPoint."""
    for isn in ISNS:
        una, nxt = at(isn, 0), at(isn, 10)
        sb = sb_with(isn, [seg(isn, 2)])  # one range above: nothing lost by IsLost
        sb.enter_recovery(una, nxt)
        sb.on_rto(una, nxt)
        assert not sb.in_recovery and sb.recovery_point == nxt
        assert sb.is_lost(una, MSS) and sb.is_lost(at(isn, 9), MSS)
        assert sb.pipe(una, nxt, MSS) == 0
        sent = []
        for _ in range(20):
            nx = sb.next_seg(una, nxt, MSS, nxt)
            if nx is None:
                break
            sent.append(nx)
            sb.on_retransmit(*nx)
        # Every unSACKed segment once, the SACKed one skipped, no rescue.
        assert sent == [seg_(isn, k) for k in (0, 1, 3, 4, 5, 6, 7, 8, 9)]
        assert sb.pipe(una, nxt, MSS) == 9 * MSS
        assert not sb.may_enter_recovery(at(isn, 5))
        sb.update(at(isn, 5), nxt, [])
        assert not sb.may_enter_recovery(at(isn, 5))
        assert sb.may_enter_recovery(nxt)


def seg_(isn: int, k: int) -> tuple[int, int]:
    return at(isn, k), MSS


# -- properties against a literal per-octet reading of RFC 6675 -------------------------


class Reference:
    """RFC 6675 section 4, octet by octet, on offsets from SND.UNA."""

    def __init__(self, win: int, sacked: set[int], hr: int, dup: int = 3) -> None:
        self.win = win
        self.sacked = sacked
        self.hr = hr  # HighRxt + 1 as an offset (0: nothing retransmitted)
        self.dup = dup

    def runs_above(self, o: int) -> int:
        runs = 0
        for x in range(o + 1, self.win):
            if x in self.sacked and (x - 1 not in self.sacked or x - 1 == o):
                runs += 1
        return runs

    def is_lost(self, o: int, mss: int) -> bool:
        above = sum(1 for x in self.sacked if x > o)
        return self.runs_above(o) >= self.dup or above > (self.dup - 1) * mss

    def pipe(self, mss: int) -> int:
        p = 0
        for o in range(self.win):
            if o in self.sacked:
                continue
            if not self.is_lost(o, mss):
                p += 1
            if o < self.hr:
                p += 1
        return p

    def hole_len(self, o: int, mss: int) -> int:
        n = 0
        while o + n < self.win and o + n not in self.sacked and n < mss:
            n += 1
        return n

    def next_seg(self, mss: int, new: int, in_recovery: bool,
                 rescue_ok: bool) -> tuple[int, int] | None:
        high_sacked = max(self.sacked) if self.sacked else -1
        cands = [o for o in range(self.hr, self.win)
                 if o not in self.sacked and o < high_sacked]
        for o in cands:  # rule 1
            if self.is_lost(o, mss):
                return o, self.hole_len(o, mss)
        if new > 0:  # rule 2
            return self.win, min(mss, new)
        if cands:  # rule 3
            return cands[0], self.hole_len(cands[0], mss)
        unsacked = [o for o in range(self.win) if o not in self.sacked]
        if in_recovery and rescue_ok and unsacked:  # rule 4
            h = unsacked[-1]
            s = h
            while s > 0 and h - s + 1 < mss and s - 1 not in self.sacked:
                s -= 1
            return s, h - s + 1
        return None


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, int, int, list[tuple[int, int]], int]:
    isn = draw(st.one_of(st.integers(0, MASK), st.integers(MASK - 300, MASK)))
    win = draw(st.integers(0, 240))
    mss = draw(st.one_of(st.integers(1, 40), st.integers(100, 300)))
    blocks = draw(st.lists(st.tuples(st.integers(-20, 260), st.integers(-20, 260)),
                           max_size=12))
    hr = draw(st.integers(0, win))
    return isn, win, mss, blocks, hr


def valid_set(win: int, blocks: list[tuple[int, int]]) -> set[int]:
    out: set[int] = set()
    for i, (s, e) in enumerate(blocks):
        if i == 0 and len(blocks) > 1:
            s1, e1 = blocks[1]
            if s1 < e1 and s1 <= s and e <= e1 and s < e:
                continue  # D-SACK inside the second block
        if 0 < s < e <= win:
            out.update(range(s, e))
    return out


@SETTINGS
@given(scenarios())
def test_matches_rfc6675_per_octet(sc: tuple[int, int, int, list[tuple[int, int]], int]) -> None:
    isn, win, mss, blocks, hr = sc
    una, nxt = isn, (isn + win) & MASK
    sb = Scoreboard()
    sb.update(una, nxt, [((isn + s) & MASK, (isn + e) & MASK) for s, e in blocks])
    sacked = valid_set(win, blocks)
    assert sb.sacked_bytes() == len(sacked) <= win
    got: set[int] = set()
    for s, e in sb.blocks():
        lo = (s - isn) & MASK
        got.update(range(lo, lo + ((e - s) & MASK)))
    assert got == sacked
    sb.enter_recovery(una, nxt)
    if hr:
        sb.on_retransmit(una, hr)
    ref = Reference(win, sacked, hr)
    for o in range(win):
        if o not in sacked:
            assert sb.is_lost((isn + o) & MASK, mss) == ref.is_lost(o, mss), o
    assert sb.pipe(una, nxt, mss) == ref.pipe(mss)
    for new in (0, 7):
        # RescueRxt is the end of the first retransmission: no rescue until
        # HighACK passes it, so with hr > 0 it is not allowed here.
        exp = ref.next_seg(mss, new, True, rescue_ok=hr == 0)
        got_seg = sb.next_seg(una, nxt, mss, (nxt + new) & MASK)
        assert got_seg == (None if exp is None else ((isn + exp[0]) & MASK, exp[1]))


@SETTINGS
@given(st.one_of(st.integers(0, MASK), st.integers(MASK - 300, MASK)),
       st.lists(st.tuples(st.integers(0, 30),
                          st.lists(st.tuples(st.integers(-10, 200), st.integers(-10, 200)),
                                   max_size=4),
                          st.integers(0, 20)),
                max_size=25))
def test_random_ack_sequences_keep_the_model(
        isn: int, acks: list[tuple[int, list[tuple[int, int]], int]]) -> None:
    """Over a sequence of ACKs (SND.UNA advancing, SND.NXT growing), the
    scoreboard equals the union of the valid blocks above SND.UNA, minus what
    reneging dropped; sacked_bytes never exceeds snd_nxt - snd_una."""
    sb = Scoreboard()
    una = 0
    nxt = 50
    model: set[int] = set()  # offsets from the ISN
    for adv, blocks, grow in acks:
        una += adv
        nxt = max(nxt + grow, una)
        s_una, s_nxt = (isn + una) & MASK, (isn + nxt) & MASK
        # The model: drop below SND.UNA; a run that SND.UNA stops in is reneged.
        model = {o for o in model if o >= una}
        if una in model:
            o = una
            while o in model:
                model.discard(o)
                o += 1
        rel = [(una + s, una + e) for s, e in blocks]
        model |= {una + o for o in valid_set(nxt - una, [(s - una, e - una) for s, e in rel])}
        sb.update(s_una, s_nxt, [((isn + s) & MASK, (isn + e) & MASK) for s, e in rel])
        assert sb.sacked_bytes() == len(model) <= nxt - una
        bl = [((s - isn) & MASK, (e - isn) & MASK) for s, e in sb.blocks()]
        assert all(una < s < e <= nxt for s, e in bl)
        assert all(a[1] < b[0] for a, b in pairwise(bl))
        assert {o for s, e in bl for o in range(s, e)} == model


u32 = st.integers(0, MASK)
ops = st.lists(st.one_of(
    st.tuples(st.just("update"), u32, u32, st.lists(st.tuples(u32, u32), max_size=4)),
    st.tuples(st.just("pipe"), u32, u32, st.integers(1, 9000)),
    st.tuples(st.just("next"), u32, u32, st.integers(1, 9000), u32),
    st.tuples(st.just("rtx"), u32, st.integers(0, 65535)),
    st.tuples(st.just("enter"), u32, u32, st.none() | st.integers(1, 9000)),
    st.tuples(st.just("rto"), u32, u32),
    st.tuples(st.just("lost"), u32, st.integers(1, 9000)),
    st.tuples(st.just("exit"),),
), max_size=30)


@SETTINGS
@given(ops)
def test_arbitrary_input_never_raises(seq_ops: list[tuple[object, ...]]) -> None:
    """Whatever the peer and a confused caller (SND.UNA moving back and
    forth) pass, nothing raises and the accounting stays consistent."""
    sb = Scoreboard()
    for op in seq_ops:
        name, *args = op
        if name == "update":
            una, nxt, blocks = args
            assert sb.update(una, nxt, blocks) >= 0  # type: ignore[arg-type]
        elif name == "pipe":
            assert sb.pipe(*args) >= 0  # type: ignore[arg-type]
        elif name == "next":
            r = sb.next_seg(*args)  # type: ignore[arg-type]
            assert r is None or r[1] > 0
        elif name == "rtx":
            sb.on_retransmit(*args)  # type: ignore[arg-type]
        elif name == "enter":
            sb.enter_recovery(*args)  # type: ignore[arg-type]
        elif name == "rto":
            sb.on_rto(*args)  # type: ignore[arg-type]
        elif name == "lost":
            sb.is_lost(*args)  # type: ignore[arg-type]
        else:
            sb.exit_recovery()
        assert len(sb) <= Scoreboard.MAX_BLOCKS
        assert sb.sacked_bytes() == sum((e - s) & MASK for s, e in sb.blocks())
