"""The TCP out-of-order queue (RFC 9293 3.10.7.4, RFC 2018 section 4)."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.tcp.reassembly import ReassemblyQueue

MASK = 0xFFFFFFFF
SETTINGS = settings(max_examples=300, deadline=None)


def test_out_of_order_then_fill() -> None:
    q = ReassemblyQueue(1 << 16)
    assert q.add(110, b"B" * 10, 100) == 10
    assert q.add(130, b"D" * 10, 100) == 10
    assert len(q) == 2 and q.nbytes == 20
    assert q.pop_ready(100) == b""  # the gap at 100 is still open
    # The caller delivers [100, 110) in order, then takes what became contiguous.
    assert q.pop_ready(110) == b"B" * 10
    assert len(q) == 1 and q.nbytes == 10
    assert q.add(120, b"C" * 10, 120) == 10  # seq == rcv_nxt is accepted
    assert q.pop_ready(120) == b"C" * 10 + b"D" * 10
    assert len(q) == 0 and q.nbytes == 0 and not q


def test_duplicate_stores_nothing() -> None:
    q = ReassemblyQueue(1 << 16)
    assert q.add(200, b"x" * 50, 100) == 50
    assert q.add(200, b"y" * 50, 100) == 0
    assert q.add(210, b"y" * 10, 100) == 0
    assert q.nbytes == 50
    assert q.add(50, b"z" * 50, 100) == 0  # entirely before rcv_nxt
    assert q.add(300, b"", 100) == 0
    assert q.blocks() == [(200, 250)]


def test_overlap_first_wins() -> None:
    """A later overlapping segment fills only the missing bytes."""
    q = ReassemblyQueue(1 << 16)
    q.add(110, b"a" * 10, 100)  # [110, 120)
    q.add(130, b"b" * 10, 100)  # [130, 140)
    # [105, 145) overlaps both blocks and both gaps.
    assert q.add(105, b"X" * 40, 100) == 5 + 10 + 5
    assert q.blocks() == [(105, 145)]
    assert q.pop_ready(105) == b"X" * 5 + b"a" * 10 + b"X" * 10 + b"b" * 10 + b"X" * 5


def test_trim_before_rcv_nxt() -> None:
    q = ReassemblyQueue(1 << 16)
    assert q.add(90, bytes(range(30)), 100) == 20  # [90, 100) already delivered
    assert q.blocks() == [(100, 120)]
    assert q.pop_ready(100) == bytes(range(10, 30))


def test_adjacent_segments_merge() -> None:
    q = ReassemblyQueue(1 << 16)
    q.add(200, b"b" * 10, 100)
    q.add(190, b"a" * 10, 100)  # just below
    q.add(210, b"c" * 10, 100)  # just above
    assert q.blocks() == [(190, 220)]
    q.add(230, b"e" * 10, 100)
    q.add(220, b"d" * 10, 100)  # closes the gap between two blocks exactly
    assert q.blocks() == [(190, 240)]
    assert len(q) == 1 and q.nbytes == 50
    assert q.pop_ready(190) == b"a" * 10 + b"b" * 10 + b"c" * 10 + b"d" * 10 + b"e" * 10


def test_pop_when_rcv_nxt_passed_into_a_block() -> None:
    """In-order data that overlapped queued bytes moved rcv_nxt into a block."""
    q = ReassemblyQueue(1 << 16)
    q.add(110, bytes(range(20)), 100)  # [110, 130)
    q.add(140, b"z" * 5, 100)
    assert q.pop_ready(115) == bytes(range(5, 20))
    assert q.blocks() == [(140, 145)]
    assert q.pop_ready(150) == b""  # rcv_nxt passed the whole block: dropped
    assert len(q) == 0 and q.nbytes == 0


def test_add_after_rcv_nxt_entered_a_block_without_pop() -> None:
    """The caller advanced rcv_nxt into the first block and adds before it
    pops: the search must still order that block first."""
    q = ReassemblyQueue(1 << 16)
    q.add(110, b"a" * 20, 100)  # [110, 130)
    for start in (140, 160, 180):
        q.add(start, b"c" * 10, 100)
    assert q.add(135, b"b" * 3, 120) == 3
    assert q.blocks() == [(110, 130), (135, 138), (140, 150), (160, 170), (180, 190)]
    assert q.pop_ready(120) == b"a" * 10


def test_bound_refuses_and_counts() -> None:
    q = ReassemblyQueue(100)
    assert q.add(200, b"a" * 60, 100) == 60
    assert q.add(300, b"b" * 50, 100) == 0
    assert q.dropped == 50
    assert q.add(260, b"c" * 41, 100) == 0  # extending a block is bounded too
    assert q.dropped == 91
    assert q.add(150, b"d" * 60, 100) == 0  # filling a gap + merging too
    assert q.dropped == 91 + 50
    assert q.add(260, b"c" * 40, 100) == 40  # exactly at the bound
    assert q.nbytes == 100
    # A segment at rcv_nxt is exempt: it leaves with pop_ready() at once.
    assert q.add(100, b"e" * 100, 100) == 100
    assert q.pop_ready(100) == b"e" * 100 + b"a" * 60 + b"c" * 40
    assert q.nbytes == 0


def test_block_count_bound_against_scattered_bytes() -> None:
    """1-byte segments at every other sequence number, in random order: the
    queue stops at MAX_BLOCKS blocks, still merges, and stays correct."""
    rnd = random.Random(1)
    rcv_nxt = MASK - 1000
    n = ReassemblyQueue.MAX_BLOCKS + 100
    offs = list(range(1, 2 * n, 2))
    rnd.shuffle(offs)
    q = ReassemblyQueue(1 << 20)
    for off in offs:
        q.add((rcv_nxt + off) & MASK, bytes([off & 0xFF]), rcv_nxt)
    assert len(q) == ReassemblyQueue.MAX_BLOCKS == q.nbytes
    assert q.dropped == 100
    held = [(s - rcv_nxt) & MASK for s, _ in q.blocks()]
    assert held == sorted(held)
    # Filling a gap between two held bytes merges them (no new block).
    a = next(h for h, h2 in pairwise(held) if h2 == h + 2)
    assert q.add((rcv_nxt + a + 1) & MASK, b"x", rcv_nxt) == 1
    assert len(q) == ReassemblyQueue.MAX_BLOCKS - 1
    # In-order data is never refused by the bound.
    assert q.add(rcv_nxt, b"y" * (2 * n + 1), rcv_nxt) > 0
    out = q.pop_ready(rcv_nxt)
    assert len(out) == 2 * n + 1 and q.nbytes == 0
    for off in held:
        assert out[off] == off & 0xFF  # the first copy won


def test_sack_blocks_most_recent_first() -> None:
    """RFC 2018 section 4 and the example of its section 5."""
    q = ReassemblyQueue(1 << 16)
    rcv_nxt = 5000
    q.add(5500, b"x" * 500, rcv_nxt)  # [5500, 6000)
    assert q.sack_blocks(4) == [(5500, 6000)]
    q.add(6500, b"x" * 500, rcv_nxt)  # [6500, 7000)
    q.add(7500, b"x" * 500, rcv_nxt)  # [7500, 8000)
    assert q.sack_blocks(4) == [(7500, 8000), (6500, 7000), (5500, 6000)]
    assert q.sack_blocks(2) == [(7500, 8000), (6500, 7000)]
    # A segment into the oldest block makes that block first, the rest keep
    # their order of most recent report.
    q.add(6000, b"x" * 100, rcv_nxt)  # extends [5500, 6000) to 6100
    assert q.sack_blocks(4) == [(5500, 6100), (7500, 8000), (6500, 7000)]
    # A duplicate still names its block first (it triggered this ACK).
    q.add(6600, b"y" * 10, rcv_nxt)
    assert q.sack_blocks(1) == [(6500, 7000)]
    # Merging two blocks: the merged one is first, the absorbed ones are gone.
    q.add(6100, b"x" * 400, rcv_nxt)
    assert q.sack_blocks(4) == [(5500, 7000), (7500, 8000)]


def test_sack_blocks_above_rcv_nxt_after_pop() -> None:
    q = ReassemblyQueue(1 << 16)
    q.add(200, b"a" * 10, 100)
    q.add(300, b"b" * 10, 100)
    q.pop_ready(210)
    assert q.sack_blocks(4) == [(300, 310)]


def test_wraparound() -> None:
    q = ReassemblyQueue(1 << 16)
    rcv_nxt = MASK - 99  # 100 bytes before the wrap
    assert q.add((rcv_nxt + 50) & MASK, b"a" * 100, rcv_nxt) == 100  # crosses 0
    assert q.blocks() == [((rcv_nxt + 50) & MASK, 50)]
    assert q.add(60, b"b" * 10, rcv_nxt) == 10
    assert q.add(50, b"c" * 10, rcv_nxt) == 10  # adjacent, merges across
    assert q.blocks() == [((rcv_nxt + 50) & MASK, 70)]
    assert q.pop_ready(rcv_nxt) == b""
    assert q.pop_ready((rcv_nxt + 50) & MASK) == b"a" * 100 + b"c" * 10 + b"b" * 10
    # A segment that started before rcv_nxt just below the wrap is trimmed.
    assert q.add(MASK - 9, b"d" * 30, 5) == 15
    assert q.pop_ready(5) == b"d" * 15


def test_clear() -> None:
    q = ReassemblyQueue(1 << 16)
    q.add(200, b"a" * 10, 100)
    q.clear()
    assert len(q) == 0 and q.nbytes == 0 and q.sack_blocks(4) == []
    assert q.pop_ready(200) == b""


@pytest.mark.parametrize("seed", range(3))
def test_many_blocks_long_random_stream(seed: int) -> None:
    """A long transfer with loss and reordering, checked against the source."""
    rnd = random.Random(seed)
    data = rnd.randbytes(200_000)
    isn = rnd.randrange(1 << 32)
    segs = [(off, data[off:off + 1000]) for off in range(0, len(data), 1000)]
    q = ReassemblyQueue(1 << 20)
    out = bytearray()
    pending = list(segs)
    while pending:
        rnd.shuffle(pending)
        keep = []
        for off, chunk in pending:
            if rnd.random() < 0.1:
                keep.append((off, chunk))  # lost this round
                continue
            seq = (isn + off) & MASK
            rcv_nxt = (isn + len(out)) & MASK
            if off <= len(out) < off + len(chunk) and not q:
                out += chunk[len(out) - off:]
            else:
                q.add(seq, chunk, rcv_nxt)
                out += q.pop_ready(rcv_nxt)
            assert len(q.sack_blocks(4)) <= 4
        pending = keep
    assert bytes(out) == data
    assert q.nbytes == 0 and len(q) == 0


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[int, int, list[tuple[int, bytes]]]:
    """A stream length, an initial sequence number (often near the wrap) and
    segments with random content that overlap, repeat and reorder."""
    n = draw(st.integers(1, 300))
    isn = draw(st.one_of(st.integers(0, MASK), st.integers(MASK - 400, MASK)))
    segs = draw(st.lists(
        st.tuples(st.integers(0, n - 1), st.integers(1, 60), st.integers(0, 255)),
        max_size=40))
    out = [(off, bytes([(fill + i) & 0xFF for i in range(min(ln, n - off))]))
           for off, ln, fill in segs]
    # Finally the whole stream once more, so it always completes.
    out.append((0, bytes([0xEE]) * n))
    return n, isn, out


@SETTINGS
@given(arrivals(), st.integers(0, 400))
def test_model_first_wins_any_order(case: tuple[int, int, list[tuple[int, bytes]]],
                                    bound: int) -> None:
    """pop returns exactly the bytes added, in order, whatever the arrival
    order; overlaps keep the first copy; the bound is never exceeded."""
    n, isn, segs = case
    q = ReassemblyQueue(bound)
    ref: list[int | None] = [None] * n  # first write wins, per byte
    out = bytearray()
    for off, chunk in segs:
        rcv = len(out)
        rcv_nxt = (isn + rcv) & MASK
        seq = (isn + off) & MASK
        end = off + len(chunk)
        if q or off > rcv:
            before = q.nbytes
            got = q.add(seq, chunk, rcv_nxt)
            missing = [i for i in range(max(off, rcv), end) if ref[i] is None]
            if got:
                assert got == len(missing)
                for i in missing:
                    ref[i] = chunk[i - off]
            elif missing:
                # Refused whole by the bound; only out-of-order data is bounded.
                assert off > rcv and before + len(missing) > bound
                assert q.dropped >= len(missing)
            out += q.pop_ready(rcv_nxt)
        elif end > rcv:
            # In order with an empty queue: delivered directly.
            for i in range(rcv, end):
                assert ref[i] is None
                ref[i] = chunk[i - off]
            out += chunk[rcv - off:]
        assert q.nbytes <= bound
        # The blocks are disjoint, not adjacent, sorted, above rcv_nxt.
        rel = [((s - isn) & MASK, (e - isn) & MASK) for s, e in q.blocks()]
        assert all(len(out) < s < e <= n for s, e in rel)
        assert all(a[1] < b[0] for a, b in pairwise(rel))
        assert q.nbytes == sum(e - s for s, e in rel)
        assert sorted(q.sack_blocks(len(q))) == sorted(q.blocks())
    # The final full segment is in order once the queue empties; if a
    # refused segment left a gap, the queue may still hold data: feed again.
    while len(out) < n:
        rcv = len(out)
        if q:
            q.add((isn + rcv) & MASK, bytes([0xEE]) * (n - rcv), (isn + rcv) & MASK)
            out += q.pop_ready((isn + rcv) & MASK)
        else:
            out += bytes([0xEE]) * (n - rcv)
        for i in range(rcv, n):
            if ref[i] is None:
                ref[i] = 0xEE
    assert bytes(out) == bytes(ref)  # type: ignore[arg-type]
    assert q.nbytes == 0 and len(q) == 0


@SETTINGS
@given(st.integers(0, MASK),
       st.lists(st.tuples(st.one_of(st.integers(0, MASK), st.integers(-100, 3000)),
                          st.binary(max_size=50), st.integers(0, 1500), st.booleans()),
                max_size=30))
def test_arbitrary_segments_never_raise(
        isn: int, ops: list[tuple[int, bytes, int, bool]]) -> None:
    """Segments anywhere in sequence space (the peer chooses them), with
    RCV.NXT advancing as the caller's would, neither raise nor break the
    byte accounting; nothing lands beyond 2**30 from RCV.NXT."""
    q = ReassemblyQueue(500)
    rcv = 0
    for seq, data, adv, pop in ops:
        rcv_nxt = (isn + rcv) & MASK
        assert 0 <= q.add((isn + rcv + seq) & MASK if -100 <= seq <= 3000 else seq,
                          data, rcv_nxt) <= len(data)
        if pop:
            rcv += adv
            out = q.pop_ready((isn + rcv) & MASK)
            rcv += len(out)
        assert q.nbytes == sum((e - s) & MASK for s, e in q.blocks())
        assert all(((e - rcv_nxt) & MASK) <= 1 << 30 for _, e in q.blocks())
        assert len(q.sack_blocks(4)) == min(4, len(q))
