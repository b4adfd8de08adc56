"""The open-loop schedule (ustack.apps.load.schedule): intended send times,
the due count, late and never-sent requests in scripted runs, the count and
duration bounds, and coordinated omission: a stall shows in the latencies
taken from the intended times, and would not in those from the send times."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.apps.load.histogram import Histogram
from ustack.apps.load.schedule import LATE_FLOOR, OpenLoop


def us(seconds: float) -> int:
    return round(seconds * 1_000_000)


# ------------------------------------------------------ coordinated omission


def test_a_stalled_sender_shows_in_the_latencies_from_the_intended_times() -> None:
    """1000 requests a second for 1 s; the sender takes nothing for the
    whole second, then sends the backlog at 100,000 a second to a server
    that answers each in 100 µs."""
    sched = OpenLoop(1000.0, start=0.0, duration=1.0)
    assert sched.due(1.0) == 1000
    corrected, uncorrected = Histogram(), Histogram()
    now = 1.0
    while (intended := sched.take(now)) is not None:
        done = now + 0.0001
        corrected.record(us(done - intended))
        uncorrected.record(us(done - now))
        now += 0.00001
    assert corrected.count == uncorrected.count == sched.sent == 1000
    assert corrected.value_at_percentile(99) >= 900_000  # the stall, measured
    assert uncorrected.value_at_percentile(99) == 100  # the stall, omitted
    assert uncorrected.max == 100
    assert sched.late == 1000  # each sent >= 10.99 ms after it was due
    assert sched.finish(2.0) == 0


def test_a_server_stall_shows_in_the_corrected_percentiles_only() -> None:
    """One connection, one request at a time (the next is sent when the
    previous answer arrives, or when due if later), 1000 a second for 2 s;
    the server answers in 100 µs, except the request due at 0.5 s, which it
    holds for 1 s.  The ~1000 requests due during the stall wait for it."""
    sched = OpenLoop(1000.0, start=0.0, duration=2.0)
    corrected, uncorrected = Histogram(), Histogram()
    free_at = 0.0
    while (when := sched.next_time()) is not None:
        send = max(when, free_at)
        intended = sched.take(send)
        assert intended == when
        done = send + (1.0 if sched.sent == 501 else 0.0001)
        corrected.record(us(done - intended))
        uncorrected.record(us(done - send))
        free_at = done
    assert corrected.count == uncorrected.count == 2000
    assert corrected.value_at_percentile(99) >= 900_000
    assert corrected.value_at_percentile(50) >= 100_000  # a third is after the stall
    # Measured from the send times, one sample in 2000 shows it: the max.
    assert uncorrected.value_at_percentile(99.9) == 100
    assert uncorrected.max == 1_000_000
    # After the stall the backlog goes out every 100 µs while one more falls
    # due every 1 ms: request 500 + j is sent at 1.5 + (j - 1) * 0.0001,
    # more than 1 ms late while 0.9999 - 0.0009 * j > 0.001: j <= 1109.
    assert sched.late == 1109


# ------------------------------------------------------ late and never sent


def test_late_counts_requests_sent_more_than_the_threshold_after_their_time() -> None:
    sched = OpenLoop(100.0, start=10.0, count=5)
    assert sched.late_threshold == pytest.approx(0.01)  # one interval, over the floor
    assert sched.take(10.0) == 10.0  # on time
    assert sched.take(10.015) == pytest.approx(10.01)  # 5 ms after: not late
    assert sched.take(10.05) == pytest.approx(10.02)  # 30 ms: late
    assert sched.take(10.05) == pytest.approx(10.03)  # 20 ms: late
    assert sched.take(10.0505) == pytest.approx(10.04)  # 10.5 ms: late
    assert sched.take(10.06) is None  # all five taken
    assert (sched.sent, sched.late) == (5, 3)
    assert sched.finish(11.0) == 0


def test_the_late_threshold_is_one_interval_at_least_1ms() -> None:
    assert OpenLoop(10.0, 0.0, count=1).late_threshold == pytest.approx(0.1)
    assert OpenLoop(1000.0, 0.0, count=1).late_threshold == pytest.approx(0.001)
    assert OpenLoop(100_000.0, 0.0, count=1).late_threshold == LATE_FLOOR
    fast = OpenLoop(100_000.0, 0.0, count=3)
    assert fast.take(0.0009) == 0.0  # 90 intervals late, under 1 ms: not late
    assert fast.take(0.00102) == pytest.approx(0.00001)  # 1.01 ms: late
    assert fast.late == 1
    chosen = OpenLoop(100_000.0, 0.0, count=2, late_threshold=0.0)
    chosen.take(0.0)
    chosen.take(0.0000101)
    assert chosen.late == 1


def test_never_sent_counts_the_requests_due_before_the_end_that_never_left() -> None:
    sched = OpenLoop(1000.0, start=0.0, duration=1.0)
    taken = 0
    while sched.take(0.5) is not None:
        taken += 1
    assert taken == 501  # due at 0, 0.001, ..., 0.5
    assert sched.finish(0.8) == 300  # 0.501 .. 0.8
    assert sched.never_sent == 300
    # Finished: nothing more is due or taken, and finishing again changes nothing.
    assert sched.take(0.9) is None
    assert sched.due(0.9) == 0
    assert sched.next_time() is None and sched.done
    assert sched.finish(5.0) == 300


def test_a_run_ended_past_its_duration_never_sent_what_was_not_taken() -> None:
    sched = OpenLoop(200.0, start=3.0, duration=0.5)  # 100 requests
    for _ in range(40):
        assert sched.take(4.0) is not None
    assert sched.finish(60.0) == 60
    assert (sched.sent, sched.late, sched.never_sent) == (40, 40, 60)


def test_a_run_ended_early_does_not_count_requests_whose_time_had_not_come() -> None:
    sched = OpenLoop(10.0, start=0.0, count=100)
    sched.take(0.0)
    assert sched.finish(0.25) == 2  # due at 0.1 and 0.2; 0.3 .. 9.9 were not due


# ---------------------------------------------------------------- due, take


def test_due_and_take_follow_the_intended_times() -> None:
    sched = OpenLoop(1000.0, start=100.0, count=50)
    assert sched.due(99.999) == 0
    assert sched.take(99.999) is None
    assert sched.due(100.0) == 1
    assert sched.due(100.0105) == 11
    for k in range(3):
        assert sched.take(100.0105) == sched.time_of(k)
    assert sched.due(100.0105) == 8
    assert sched.next_time() == sched.time_of(3)
    assert sched.due(1e9) == 47  # capped at the count
    assert sched.late == 3 and not sched.done  # 10.5, 9.5, 8.5 ms after their times


def test_intended_times_do_not_drift() -> None:
    """Times are start + k / rate, not a running sum of intervals."""
    sched = OpenLoop(3.0, start=0.0, count=3_000_001)
    assert sched.time_of(3_000_000) == 1_000_000.0


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0.1, max_value=1e6), st.floats(min_value=-1.0, max_value=100.0),
       st.integers(min_value=0, max_value=1000), st.integers(min_value=1, max_value=2000))
def test_due_counts_exactly_the_untaken_requests_whose_time_has_come(
        rate: float, now: float, taken: int, count: int) -> None:
    sched = OpenLoop(rate, start=0.0, count=count)
    for _ in range(taken):
        if sched.take(math.inf) is None:
            break
    expected = sum(1 for k in range(sched.sent, count) if sched.time_of(k) <= now)
    assert sched.due(now) == expected


# ------------------------------------------------------------------ bounds


def test_the_duration_bounds_the_requests() -> None:
    assert OpenLoop(1000.0, 0.0, duration=1.0).total == 1000  # 0 .. 0.999
    assert OpenLoop(1000.0, 0.0, duration=0.0015).total == 2  # 0, 0.001
    assert OpenLoop(10.0, 0.0, duration=0.3).total == 3  # 0.3 * 10 is 3.0000000000000004
    assert OpenLoop(10.0, 0.0, duration=0.0).total == 0


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0.1, max_value=1e5), st.floats(min_value=0.0, max_value=10.0))
def test_the_duration_bound_agrees_with_the_intended_times(rate: float, duration: float) -> None:
    sched = OpenLoop(rate, start=0.0, duration=duration)
    n = sched.total
    assert n == 0 or (n - 1) / rate < duration
    assert n / rate >= duration


def test_the_count_bounds_the_requests_and_the_smaller_bound_wins() -> None:
    assert OpenLoop(1000.0, 0.0, count=10).total == 10
    assert OpenLoop(1000.0, 0.0, duration=100.0, count=10).total == 10
    assert OpenLoop(1000.0, 0.0, duration=1.0, count=10**9).total == 1000
    sched = OpenLoop(1000.0, 0.0, count=0)
    assert sched.done and sched.take(5.0) is None and sched.due(5.0) == 0
    assert sched.finish(5.0) == 0


def test_taking_stops_at_the_bound() -> None:
    sched = OpenLoop(1000.0, 0.0, duration=0.01)
    times = []
    while (t := sched.take(10.0)) is not None:
        times.append(t)
    assert times == [k / 1000.0 for k in range(10)]
    assert sched.done and sched.next_time() is None


@pytest.mark.parametrize("kwargs", [
    {"rate": 0.0, "count": 1}, {"rate": -5.0, "count": 1}, {"rate": math.inf, "count": 1},
    {"rate": math.nan, "count": 1}, {"rate": 10.0},  # unbounded
    {"rate": 10.0, "duration": -1.0}, {"rate": 10.0, "duration": math.inf},
    {"rate": 10.0, "count": -1},
])
def test_bad_schedules_are_refused(kwargs: dict[str, float]) -> None:
    rate = kwargs.pop("rate")
    with pytest.raises(ValueError):
        OpenLoop(rate, 0.0, **kwargs)  # type: ignore[arg-type]
