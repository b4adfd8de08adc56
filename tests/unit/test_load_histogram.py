"""The latency histogram (ustack.apps.load.histogram) against the exact
statistics of the samples it was given: percentiles within 0.1 % (three
significant digits) of the nearest-rank percentile of the sorted samples,
exact count, min, max and mean; merging, clamping, HdrHistogram's
coordinated-omission back-fill, and the .hgrm text read back."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.apps.load.histogram import (
    BUCKETS,
    HIGHEST,
    SLOTS,
    SUB_BUCKETS,
    Histogram,
    highest_of,
    lowest_of,
    slot_of,
)

PERCENTILES = (0.0, 1.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0)


def exact_percentile(ordered: list[int], p: float) -> int:
    """Nearest rank: the smallest sample with at least p % of the samples at
    or below it (the rank computed in exact decimal arithmetic)."""
    rank = math.ceil(Fraction(str(p)) * len(ordered) / 100)
    return ordered[max(rank, 1) - 1]


def histogram_of(values: list[int]) -> Histogram:
    h = Histogram()
    for v in values:
        h.record(v)
    return h


def check_against(values: list[int]) -> Histogram:
    """Every percentile within 0.1 % of the exact one (and never below it:
    the reported value is its sub-bucket's highest); count, min, max, mean
    and standard deviation those of the samples."""
    h = histogram_of(values)
    ordered = sorted(values)
    for p in PERCENTILES:
        exact = exact_percentile(ordered, p)
        got = h.value_at_percentile(p)
        assert exact <= got <= exact * 1.001, (p, exact, got)
    assert h.count == len(values)
    assert h.min == ordered[0]
    assert h.max == ordered[-1]
    assert h.mean() == pytest.approx(statistics.fmean(values), rel=1e-12)
    assert h.stdev() == pytest.approx(statistics.pstdev(values), rel=1e-9, abs=1e-9)
    return h


# ------------------------------------------------------------------ the layout


def test_the_layout_is_hdrhistograms_for_1us_to_60s_at_3_digits() -> None:
    assert SUB_BUCKETS == 2048
    assert BUCKETS == 16  # 2048 << 15 = 67,108,864 > 60,000,000
    assert SLOTS == 17 * 1024
    assert len(Histogram().counts) == SLOTS


def test_every_value_lands_in_a_slot_that_holds_it_within_a_thousandth() -> None:
    rng = random.Random(7)
    values = [*range(1, 5000), HIGHEST, HIGHEST - 1, 2047, 2048, 2049, 4095, 4096,
              *(rng.randrange(1, HIGHEST + 1) for _ in range(20000))]
    for v in values:
        slot = slot_of(v)
        assert 0 <= slot < SLOTS
        assert lowest_of(slot) <= v <= highest_of(slot)
        assert highest_of(slot) - lowest_of(slot) < max(1.0, lowest_of(slot) / 1024)
    # Exact below 2048: one slot per value.
    assert all(lowest_of(slot_of(v)) == highest_of(slot_of(v)) == v for v in range(1, 2048))


def test_slots_tile_the_range_without_gaps_or_overlaps() -> None:
    previous_high = 0
    for slot in range(1, slot_of(HIGHEST) + 1):
        assert lowest_of(slot) == previous_high + 1, slot
        previous_high = highest_of(slot)
        assert slot_of(lowest_of(slot)) == slot_of(previous_high) == slot


# ----------------------------------------------------- known distributions


def test_uniform_1_to_n() -> None:
    n = 100_000
    h = check_against(list(range(1, n + 1)))
    # The p50 of 1..100000 is 50000, reported as its sub-bucket's top.
    assert h.value_at_percentile(50) == highest_of(slot_of(50_000))
    assert h.value_at_percentile(100) == n


def test_a_constant() -> None:
    h = check_against([12_345] * 1000)
    assert set(h.percentiles().values()) == {12_345}  # capped at the max
    assert h.stdev() == 0.0


def test_two_spikes() -> None:
    values = [100] * 990 + [1_000_000] * 10
    h = check_against(values)
    assert h.value_at_percentile(99) == 100
    assert h.value_at_percentile(99.1) == 1_000_000
    assert h.percentiles()["p99.9"] == 1_000_000


def test_exponential_from_a_seeded_random() -> None:
    rng = random.Random(13)
    values = [max(1, round(rng.expovariate(1 / 2000.0))) for _ in range(50_000)]
    check_against(values)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=HIGHEST), min_size=1, max_size=300))
def test_random_sample_sets(values: list[int]) -> None:
    check_against(values)


def test_an_empty_histogram() -> None:
    h = Histogram()
    assert (h.count, h.min, h.max, h.mean(), h.stdev()) == (0, 0, 0, 0.0, 0.0)
    assert h.value_at_percentile(99) == 0
    assert h.percentiles() == {"p50": 0, "p90": 0, "p99": 0, "p99.9": 0, "p99.99": 0,
                               "max": 0}


def test_percentile_ranks_are_not_moved_by_float_rounding() -> None:
    # 99.9 / 100 * 1000 is 999.0000000000001 in floats: rank 1000 would
    # report the single outlier as the p99.9.
    h = histogram_of([*range(1, 1000), 50_000_000])
    assert h.value_at_percentile(99.9) == 999
    assert h.value_at_percentile(99.91) > 49_000_000


def test_record_with_a_count_is_recording_that_many_times() -> None:
    a = Histogram()
    a.record(777, 5)
    a.record(3, 0)
    b = histogram_of([777] * 5)
    assert a.counts == b.counts
    assert (a.count, a.min, a.max, a.sum, a.sum_sq) == (b.count, b.min, b.max, b.sum, b.sum_sq)
    with pytest.raises(ValueError):
        a.record(1, -1)


# ------------------------------------------------------------------ clamping


def test_values_past_60s_are_clamped_and_counted() -> None:
    h = histogram_of([500, HIGHEST, HIGHEST + 1, 10**12])
    assert h.clamped == 2
    assert h.count == 4
    assert h.max == HIGHEST
    assert h.value_at_percentile(100) == HIGHEST
    assert h.percentiles()["max"] == HIGHEST


def test_values_below_1us_are_recorded_as_1() -> None:
    h = histogram_of([0, -5, 1])
    assert (h.count, h.min, h.max, h.clamped) == (3, 1, 1, 0)
    assert h.value_at_percentile(50) == 1


# ------------------------------------------------------------------- merging


def test_merge_equals_recording_both() -> None:
    rng = random.Random(3)
    xs = [rng.randrange(1, 10**7) for _ in range(3000)]
    ys = [rng.randrange(1, 10**5) for _ in range(2000)] + [HIGHEST * 2]
    a, b, both = histogram_of(xs), histogram_of(ys), histogram_of(xs + ys)
    a.add(b)
    assert a.counts == both.counts
    assert (a.count, a.min, a.max, a.sum, a.sum_sq, a.clamped) == (
        both.count, both.min, both.max, both.sum, both.sum_sq, both.clamped)
    assert a.percentiles() == both.percentiles()
    assert a.to_hgrm() == both.to_hgrm()


def test_merging_into_and_from_an_empty_histogram() -> None:
    full = histogram_of([40, 50, 60])
    empty = Histogram()
    empty.add(full)
    assert (empty.count, empty.min, empty.max) == (3, 40, 60)
    full.add(Histogram())
    assert (full.count, full.min, full.max) == (3, 40, 60)


# ---------------------------------------------- coordinated-omission back-fill


def test_record_corrected_back_fills_the_missed_intervals() -> None:
    # One answer took 10 ms where one was expected every 2 ms: the requests
    # not sent meanwhile would have waited 8, 6, 4 and 2 ms.
    h = Histogram()
    h.record_corrected(10_000, 2_000)
    assert (h.count, h.min, h.max) == (5, 2_000, 10_000)
    assert h.sum == 10_000 + 8_000 + 6_000 + 4_000 + 2_000
    assert h.counts == histogram_of([10_000, 8_000, 6_000, 4_000, 2_000]).counts
    # Not a multiple: 9, then 7, 5, 3 (1 < the interval: not back-filled).
    h = Histogram()
    h.record_corrected(9_000, 2_000)
    assert h.counts == histogram_of([9_000, 7_000, 5_000, 3_000]).counts


def test_record_corrected_adds_nothing_within_one_interval() -> None:
    for value, interval in ((1_000, 2_000), (2_000, 2_000), (3_999, 2_000), (5_000, 0)):
        h = Histogram()
        h.record_corrected(value, interval)
        assert h.count == 1, (value, interval)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=HIGHEST * 2), st.integers(min_value=1, max_value=10**6))
def test_record_corrected_equals_recording_each_missed_value(value: int, interval: int) -> None:
    """The sub-bucket-at-a-time back-fill counts what one record per missed
    request would (kept to at most 5,000 terms so the loop stays quick)."""
    if value // interval > 5_000:
        interval = value // 5_000 + 1
    fast = Histogram()
    fast.record_corrected(value, interval)
    slow = histogram_of([value, *range(value - interval, interval - 1, -interval)])
    assert fast.counts == slow.counts
    assert (fast.count, fast.min, fast.max, fast.sum, fast.sum_sq, fast.clamped) == (
        slow.count, slow.min, slow.max, slow.sum, slow.sum_sq, slow.clamped)


def test_a_60s_stall_at_a_1us_interval_is_back_filled_in_bulk() -> None:
    h = Histogram()
    h.record_corrected(HIGHEST + 5, 1)
    assert h.count == HIGHEST + 5  # the value and HIGHEST + 4 missed ones
    assert h.clamped == 5  # HIGHEST + 5 .. HIGHEST + 1
    assert (h.min, h.max) == (1, HIGHEST)
    assert h.value_at_percentile(50) == pytest.approx(HIGHEST / 2, rel=0.001)


# ------------------------------------------------------------------ .hgrm


def parse_hgrm(text: str) -> tuple[list[tuple[float, float, int]], dict[str, float]]:
    """The rows (value, percentile, total count) and the footer fields."""
    lines = text.splitlines()
    assert lines[0] == "       Value     Percentile TotalCount 1/(1-Percentile)"
    assert lines[1] == ""
    rows: list[tuple[float, float, int]] = []
    footer: dict[str, float] = {}
    for line in lines[2:]:
        if line.startswith("#["):
            for field in line[2:-1].split(","):
                name, value = field.split("=")
                footer[name.strip()] = float(value)
            continue
        cols = line.split()
        assert len(cols) in (3, 4), line
        value, pct, total = float(cols[0]), float(cols[1]), int(cols[2])
        if len(cols) == 4:
            assert float(cols[3]) == pytest.approx(1 / (1 - pct), rel=1e-2)
        rows.append((value, pct, total))
    return rows, footer


def test_hgrm_reads_back_as_a_monotone_table_ending_at_the_max() -> None:
    rng = random.Random(21)
    values = [max(1, round(rng.lognormvariate(7, 1.5))) for _ in range(20_000)]
    h = histogram_of(values)
    rows, footer = parse_hgrm(h.to_hgrm())
    assert rows[0][1] == 0.0 and rows[0][2] >= 1
    for (v0, p0, c0), (v1, p1, c1) in itertools.pairwise(rows):
        assert v0 <= v1 and p0 <= p1 and c0 <= c1
    assert rows[-1] == (round(max(values) / 1000, 3), 1.0, len(values))
    # Each row's value is the histogram's value at that row's percentile.
    for value, pct, _ in rows[:-1]:
        assert value == round(h.value_at_percentile(pct * 100) / 1000, 3)
    # 5 rows per halving of the distance to 100 %: 10 % steps up to 50 %.
    assert [p for _, p, _ in rows[:6]] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert rows[6][1] == pytest.approx(0.55)
    assert footer["Total count"] == len(values)
    assert footer["Max"] == pytest.approx(max(values) / 1000, abs=0.0005)
    assert footer["Mean"] == pytest.approx(statistics.fmean(values) / 1000, abs=0.0005)
    assert footer["StdDeviation"] == pytest.approx(statistics.pstdev(values) / 1000, abs=0.0005)
    assert (footer["Buckets"], footer["SubBuckets"]) == (BUCKETS, SUB_BUCKETS)


def test_hgrm_counts_sum_right() -> None:
    """The count column is cumulative: its steps add up to the total, and
    each equals the number of samples at or below the row's value."""
    values = [10] * 3 + [200] * 5 + [3000] * 2
    rows, footer = parse_hgrm(histogram_of(values).to_hgrm(unit_divisor=1.0))
    assert rows[-1][2] == footer["Total count"] == 10
    for value, _, total in rows:
        assert total == sum(1 for v in values if v <= value)
    assert {v for v, _, _ in rows} == {10.0, 200.0, 3000.0}


def test_hgrm_of_an_empty_histogram_is_the_header_and_footer() -> None:
    rows, footer = parse_hgrm(Histogram().to_hgrm())
    assert rows == []
    assert footer["Total count"] == 0


def test_hgrm_of_one_value() -> None:
    rows, _ = parse_hgrm(histogram_of([1500]).to_hgrm())
    assert rows == [(1.5, 0.0, 1), (1.5, 1.0, 1)]
