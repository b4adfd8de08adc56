"""ustack.tcp.rto: the RFC 6298 estimator on hand-computed sequences."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.tcp.rto import RttEstimator


def test_initial_rto_is_one_second() -> None:
    """RFC 6298 2.1: before any measurement RTO = 1 s; nothing is known yet."""
    est = RttEstimator()
    assert est.rto == 1.0
    assert est.srtt is None
    assert est.samples == 0


def test_first_sample() -> None:
    """RFC 6298 2.2: SRTT = R, RTTVAR = R/2, RTO = SRTT + max(G, 4*RTTVAR)."""
    est = RttEstimator()
    est.sample(0.5)
    assert est.srtt == 0.5
    assert est.rttvar == 0.25
    assert est.rto == pytest.approx(1.5)
    assert est.samples == 1


def test_later_samples_follow_the_rfc_formulas() -> None:
    """RFC 6298 2.3, alpha = 1/8, beta = 1/4, RTTVAR updated with the old SRTT.

    By hand:
      R=0.5: SRTT 0.5,      RTTVAR 0.25,                         RTO 1.5
      R=0.3: RTTVAR 3/4*0.25 + 1/4*|0.5-0.3| = 0.2375;  SRTT 7/8*0.5 + 1/8*0.3 = 0.475
             RTO 0.475 + 4*0.2375 = 1.425
      R=0.9: RTTVAR 3/4*0.2375 + 1/4*|0.475-0.9| = 0.284375
             SRTT 7/8*0.475 + 1/8*0.9 = 0.528125;  RTO 0.528125 + 1.1375 = 1.665625
    """
    est = RttEstimator()
    est.sample(0.5)
    est.sample(0.3)
    assert est.rttvar == pytest.approx(0.2375)
    assert est.srtt == pytest.approx(0.475)
    assert est.rto == pytest.approx(1.425)
    est.sample(0.9)
    assert est.rttvar == pytest.approx(0.284375)
    assert est.srtt == pytest.approx(0.528125)
    assert est.rto == pytest.approx(1.665625)
    assert est.samples == 3


def test_granularity_term_when_variance_vanishes() -> None:
    """RFC 6298 2.3: RTO = SRTT + max(G, K*RTTVAR); a steady RTT leaves only G."""
    est = RttEstimator(min_rto=0.001, granularity=0.01)
    for _ in range(200):
        est.sample(0.05)
    assert est.srtt == pytest.approx(0.05)
    assert est.rttvar < 1e-9
    assert est.rto == pytest.approx(0.06)


def test_minimum_rto_is_200ms() -> None:
    """A LAN RTT of 100 us still gives the 200 ms floor (Linux, the issue)."""
    est = RttEstimator()
    for _ in range(50):
        est.sample(0.0001)
    assert est.rto == 0.2
    assert est.base_rto == 0.2


def test_maximum_rto_caps_the_computed_value() -> None:
    """RFC 6298 2.5: a maximum of at least 60 s; here 120 s."""
    est = RttEstimator()
    est.sample(100.0)  # 100 + 4*50 = 300 s computed
    assert est.rto == 120.0


def test_backoff_doubles_and_caps() -> None:
    """RFC 6298 5.5: each expiry doubles the RTO, up to the maximum."""
    est = RttEstimator()
    seen = []
    for _ in range(10):
        seen.append(est.rto)
        est.backoff()
    assert seen == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 120.0, 120.0, 120.0]
    # The exponent stops once the cap is reached, so it stays a small int.
    assert est.backoffs == 7
    for _ in range(1000):
        est.backoff()
    assert est.backoffs == 7
    assert est.rto == 120.0


def test_backoff_from_the_clamped_base() -> None:
    """With a 1 ms RTT the base is 200 ms, and backoff doubles 200 ms."""
    est = RttEstimator()
    est.sample(0.001)
    est.backoff()
    est.backoff()
    assert est.rto == pytest.approx(0.8)


def test_reset_backoff_returns_to_computed_rto() -> None:
    """RFC 6298 5.7 note: new data acknowledged -> the computed RTO again."""
    est = RttEstimator()
    est.sample(0.1)  # 0.1 + 0.2 = 0.3
    est.backoff()
    est.backoff()
    assert est.rto == pytest.approx(1.2)
    est.sample(0.1)  # a sample alone does not undo the backoff
    assert est.backoffs == 2
    est.reset_backoff()
    assert est.backoffs == 0
    assert est.rto == pytest.approx(est.base_rto)
    assert est.rto < 0.3


def test_fallback_after_syn_timeout() -> None:
    """RFC 6298 5.7: a timed-out SYN without a sample -> 3 s for data; no-op after."""
    est = RttEstimator()
    est.fallback()
    assert est.rto == 3.0
    est.sample(0.1)
    assert est.rto == pytest.approx(0.3)
    est.fallback()
    assert est.rto == pytest.approx(0.3)


@pytest.mark.parametrize("bad", [-0.001, math.nan, math.inf, -math.inf])
def test_invalid_samples_are_ignored(bad: float) -> None:
    """A forged timestamp echo must not poison SRTT or raise."""
    est = RttEstimator()
    est.sample(0.2)
    before = (est.srtt, est.rttvar, est.rto)
    est.sample(bad)
    assert (est.srtt, est.rttvar, est.rto) == before
    assert est.rejected == 1
    assert est.samples == 1


def test_zero_rtt_is_a_valid_sample() -> None:
    est = RttEstimator()
    est.sample(0.0)
    assert est.srtt == 0.0
    assert est.rto == 0.2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_rto": 0.0},
        {"min_rto": 5.0, "max_rto": 1.0},
        {"max_rto": math.inf},
        {"initial_rto": 0.0},
        {"initial_rto": math.nan},
        {"granularity": -1.0},
    ],
)
def test_bad_configuration_raises_value_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RttEstimator(**kwargs)


events = st.lists(
    st.one_of(
        st.floats(min_value=-1.0, max_value=500.0),
        st.sampled_from([math.nan, math.inf]),
        st.just("backoff"),
        st.just("reset"),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(events)
def test_rto_always_within_bounds(seq: list[float | str]) -> None:
    """Whatever happens, min_rto <= RTO <= max_rto and SRTT stays finite."""
    est = RttEstimator()
    for ev in seq:
        if ev == "backoff":
            est.backoff()
        elif ev == "reset":
            est.reset_backoff()
        else:
            assert isinstance(ev, float)
            est.sample(ev)
        assert 0.2 <= est.rto <= 120.0
        assert est.srtt is None or math.isfinite(est.srtt)
        assert est.rttvar >= 0.0
