"""A latency histogram with HdrHistogram's precision: integer microseconds
from 1 µs to 60 s, three significant digits, in a fixed array.

The layout is HdrHistogram's log-linear one (Gil Tene, "HdrHistogram: a
High Dynamic Range Histogram"): values below ``SUB_BUCKETS`` (2048, the
smallest power of two above 2 * 10**3) are counted exactly; above that each
power-of-two range [2**k * 1024, 2**k * 2048) is split into 1024 equal
sub-buckets of width 2**k, so a value and the highest value that shares its
sub-bucket differ by less than 1/1024 of it: under 0.1 %, three significant
digits, whatever the magnitude.  The counts for the whole range fit in
17,408 slots, allocated once; recording is a shift and an increment.

What is reported for a percentile is the highest value of the sub-bucket
holding that rank (as HdrHistogram reports), capped at the exact maximum
recorded: the last row of a distribution is then the maximum itself, not a
value up to 0.1 % above anything seen.  Count, minimum, maximum, sum and
sum of squares are kept exactly, so the mean and standard deviation are
those of the values recorded, not of their buckets.

``to_hgrm`` writes the percentile distribution text that HdrHistogram's
``outputPercentileDistribution`` writes and its plotter
(hdrhistogram.github.io/HdrHistogram/plotFiles.html) reads.
"""

from __future__ import annotations

import math
from typing import Final

# The range and the precision (issue 13): 1 µs to 60 s, 3 significant digits.
LOWEST: Final = 1
HIGHEST: Final = 60_000_000
SIGNIFICANT_DIGITS: Final = 3

# Sub-buckets per bucket: the smallest power of two holding 2 * 10**digits
# distinct values, so that the upper half (where every bucket but the first
# starts) still has 10**digits of them: 2048.
SUB_BUCKET_BITS: Final = (2 * 10 ** SIGNIFICANT_DIGITS - 1).bit_length()
SUB_BUCKETS: Final = 1 << SUB_BUCKET_BITS
HALF_BITS: Final = SUB_BUCKET_BITS - 1
HALF: Final = 1 << HALF_BITS
_LOW_MASK: Final = SUB_BUCKETS - 1


def _buckets_needed(highest: int) -> int:
    """Buckets (powers of two, the first one 2048 values wide) to reach
    ``highest``: 16 for 60 s."""
    buckets = 1
    top = SUB_BUCKETS
    while top <= highest:
        top <<= 1
        buckets += 1
    return buckets


BUCKETS: Final = _buckets_needed(HIGHEST)
# The first bucket uses all its sub-buckets, every later one only its upper
# half (its lower half is the previous bucket's range at twice the width).
SLOTS: Final = (BUCKETS + 1) * HALF

# The percentiles a summary shows (and ``percentiles`` returns).
SUMMARY: Final[tuple[tuple[str, float], ...]] = (
    ("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9), ("p99.99", 99.99),
)
# Percentiles are taken to this many decimal places: the rank is computed in
# integers, so that 99.9 % of 1000 values is rank 999, not 1000 as the
# float 99.9 / 100 * 1000 = 999.0000000000001 would make it.
_PCT_SCALE: Final = 10 ** 9
# Rows of the distribution per halving of the distance to 100 %
# (outputPercentileDistribution's percentileTicksPerHalfDistance).
TICKS_PER_HALF: Final = 5


def slot_of(value: int) -> int:
    """The counts index of ``value`` (LOWEST <= value <= HIGHEST)."""
    # Bucket: how many doublings above the first bucket's 2048 values
    # (``| _LOW_MASK`` puts every value below 2048 in bucket 0).
    bucket = (value | _LOW_MASK).bit_length() - SUB_BUCKET_BITS
    sub = value >> bucket
    # Bucket 0 takes slots 0..2047; bucket b > 0 its sub-buckets 1024..2047
    # at slots (b + 1) * 1024 + (sub - 1024).
    return (bucket << HALF_BITS) + sub


def lowest_of(slot: int) -> int:
    """The smallest value counted in ``slot``."""
    bucket = (slot >> HALF_BITS) - 1
    if bucket <= 0:
        return slot
    return ((slot & (HALF - 1)) + HALF) << bucket


def highest_of(slot: int) -> int:
    """The largest value counted in ``slot`` (its highest equivalent value)."""
    bucket = (slot >> HALF_BITS) - 1
    if bucket <= 0:
        return slot
    return (((slot & (HALF - 1)) + HALF + 1) << bucket) - 1


def _rank(percentile: float, total: int) -> int:
    """The 1-based rank of ``percentile`` (0..100) among ``total`` values:
    the smallest rank r with r >= p/100 * total (nearest rank), at least 1."""
    p = min(max(percentile, 0.0), 100.0)
    scaled = round(p * _PCT_SCALE)
    rank = -((-scaled * total) // (100 * _PCT_SCALE))
    return max(rank, 1)


class Histogram:
    """Counts of integer microseconds, 1 µs to 60 s at 3 significant digits.

    Values below 1 are recorded as 1; values above 60 s as 60 s, and counted
    in ``clamped`` (a run whose latencies reach that far has worse problems
    than the precision of its tail, but the count must still add up).
    """

    __slots__ = ("clamped", "count", "counts", "max", "min", "sum", "sum_sq")

    def __init__(self) -> None:
        self.counts: list[int] = [0] * SLOTS
        self.count = 0
        self.min = 0
        self.max = 0
        self.sum = 0
        self.sum_sq = 0
        self.clamped = 0

    def record(self, value_us: int, count: int = 1) -> None:
        """Count ``value_us`` ``count`` times."""
        if count <= 0:
            if count < 0:
                raise ValueError(f"negative count {count}")
            return
        v = value_us
        if v < LOWEST:
            v = LOWEST
        elif v > HIGHEST:
            v = HIGHEST
            self.clamped += count
        self.counts[slot_of(v)] += count
        if self.count == 0:
            self.min = v
            self.max = v
        elif v < self.min:
            self.min = v
        elif v > self.max:
            self.max = v
        self.count += count
        self.sum += v * count
        self.sum_sq += v * v * count

    def record_corrected(self, value_us: int, expected_interval_us: int) -> None:
        """Record ``value_us`` and back-fill what coordinated omission hid.

        A closed-loop sender expected to send every ``expected_interval_us``
        that waited ``value_us`` for one answer did not send the requests due
        meanwhile; had they been sent, they would have waited value - i,
        value - 2i, ... (HdrHistogram's recordValueWithExpectedInterval:
        every value - k * i >= i, k >= 1).  The back-fill is counted a
        sub-bucket at a time, so a 60 s stall at a 1 µs interval costs a few
        thousand steps, not 60 million.
        """
        self.record(value_us)
        step = expected_interval_us
        if step <= 0:
            return
        top = value_us - step  # the largest missing value
        if top < step:
            return
        if top > HIGHEST:
            # The terms above the range all count as HIGHEST, clamped.
            above = (top - HIGHEST - 1) // step + 1
            self.record(HIGHEST + 1, above)
            top -= above * step
        while top >= step:
            slot = slot_of(top)
            floor = max(lowest_of(slot), step)
            n = (top - floor) // step + 1  # terms top, top - step, ... >= floor
            last = top - (n - 1) * step
            self.counts[slot] += n
            self.count += n
            # Sum of the arithmetic run top, ..., last and of its squares.
            self.sum += n * (top + last) // 2
            k = n - 1
            self.sum_sq += (n * top * top - top * step * k * n
                            + step * step * k * n * (2 * k + 1) // 6)
            if top > self.max:
                self.max = top
            if last < self.min:
                self.min = last
            top = last - step

    def add(self, other: Histogram) -> None:
        """Merge ``other``'s counts into this histogram."""
        if other.count == 0:
            return
        counts = self.counts
        theirs = other.counts
        for i in range(SLOTS):
            c = theirs[i]
            if c:
                counts[i] += c
        if self.count == 0 or other.min < self.min:
            self.min = other.min
        if self.count == 0 or other.max > self.max:
            self.max = other.max
        self.count += other.count
        self.sum += other.sum
        self.sum_sq += other.sum_sq
        self.clamped += other.clamped

    def mean(self) -> float:
        """The mean of the values recorded (after clamping); 0.0 if none."""
        if self.count == 0:
            return 0.0
        return self.sum / self.count

    def stdev(self) -> float:
        """The population standard deviation of the values recorded."""
        n = self.count
        if n == 0:
            return 0.0
        # n^2 * variance = n * sum(x^2) - sum(x)^2, exact in integers.
        return math.sqrt(n * self.sum_sq - self.sum * self.sum) / n

    def _reported(self, slot: int) -> int:
        return min(highest_of(slot), self.max)

    def value_at_percentile(self, p: float) -> int:
        """The value at percentile ``p`` (0..100): the highest value of the
        sub-bucket holding the nearest rank, at most the maximum; 0 if empty."""
        total = self.count
        if total == 0:
            return 0
        rank = _rank(p, total)
        seen = 0
        counts = self.counts
        for i in range(SLOTS):
            seen += counts[i]
            if seen >= rank:
                return self._reported(i)
        return self.max

    def percentiles(self) -> dict[str, int]:
        """p50, p90, p99, p99.9, p99.99 and max, in microseconds."""
        out = {name: self.value_at_percentile(p) for name, p in SUMMARY}
        out["max"] = self.max
        return out

    def to_hgrm(self, unit_divisor: float = 1000.0) -> str:
        """The percentile distribution in HdrHistogram's text format, values
        divided by ``unit_divisor`` (1000: milliseconds).

        A row is written each time the cumulative count reaches the next
        percentile level; the levels start at 0 and step by
        100 / (TICKS_PER_HALF * 2**(h + 1)) %, h the number of halvings of
        the distance to 100 % already made (10 % steps to 50 %, 5 % to 75 %,
        2.5 % to 87.5 %, ...), and a last row is written at 100 %.
        """
        lines = [f"{'Value':>12} {'Percentile':>14} {'TotalCount':>10} {'1/(1-Percentile)':>14}",
                 ""]
        total = self.count
        if total:
            level = 0.0
            seen = 0
            counts = self.counts
            for i in range(SLOTS):
                c = counts[i]
                if c == 0:
                    continue
                seen += c
                value = self._reported(i) / unit_divisor
                reached = 100.0 * seen / total
                while reached >= level:
                    lines.append(f"{value:12.3f} {level / 100.0:2.12f} {seen:10d} "
                                 f"{1.0 / (1.0 - level / 100.0):14.2f}")
                    if seen == total or level >= 100.0:
                        break
                    halvings = int(math.log2(100.0 / (100.0 - level)))
                    level += 100.0 / (TICKS_PER_HALF * (1 << (halvings + 1)))
                if seen == total:
                    lines.append(f"{value:12.3f} {1.0:2.12f} {seen:10d}")
                    break
        lines.append(f"#[Mean    = {self.mean() / unit_divisor:12.3f}, "
                     f"StdDeviation   = {self.stdev() / unit_divisor:12.3f}]")
        lines.append(f"#[Max     = {self.max / unit_divisor:12.3f}, "
                     f"Total count    = {total:12d}]")
        lines.append(f"#[Buckets = {BUCKETS:12d}, SubBuckets     = {SUB_BUCKETS:12d}]")
        return "\n".join(lines) + "\n"
