"""ustack.tcp.cc: NewReno and CUBIC windows with a fake clock.

A "round" below is one RTT of a cwnd-limited sender: the whole window is
acknowledged, ``ack`` bytes per ACK, spread over the RTT.
"""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.tcp.cc import (
    CUBIC_ALPHA,
    CUBIC_C,
    INFINITE_SSTHRESH,
    CongestionControl,
    Cubic,
    NewReno,
    initial_window,
    make_cc,
)

MSS = 1000


def run_round(cc: CongestionControl, now: float, rtt: float, ack: int = MSS) -> float:
    """Acknowledge one window's worth of data, ``ack`` bytes per ACK."""
    flight = cc.cwnd
    n = max(1, -(-flight // ack))
    left = flight
    i = 0
    while left > 0:
        a = ack if ack < left else left
        cc.on_ack(a, cc.cwnd, now + rtt * i / n, rtt)
        left -= a
        i += 1
    return now + rtt


def after_loss(cc: CongestionControl, segs: int, now: float = 0.0) -> None:
    """Put cc in congestion avoidance after a loss at a window of ``segs``."""
    cc.cwnd = segs * MSS
    cc.on_congestion(segs * MSS, now)
    cc.on_recovery_end(now)


# -- construction -------------------------------------------------------------


@pytest.mark.parametrize(
    ("mss", "iw"),
    [(1460, 14600), (536, 5360), (1000, 10000), (9000, 18000), (4000, 14600)],
)
def test_initial_window_rfc6928(mss: int, iw: int) -> None:
    """IW = min(10*SMSS, max(2*SMSS, 14600))."""
    assert initial_window(mss) == iw
    assert make_cc("cubic", mss, 0.0).cwnd == iw
    assert make_cc("newreno", mss, 0.0).cwnd == iw


def test_make_cc_by_name() -> None:
    assert isinstance(make_cc("cubic", MSS, 0.0), Cubic)
    nr = make_cc("newreno", MSS, 0.0)
    assert type(nr) is NewReno
    assert nr.name == "newreno"
    assert make_cc("cubic", MSS, 0.0).name == "cubic"
    assert nr.ssthresh == INFINITE_SSTHRESH == 1 << 30


def test_make_cc_unknown_name() -> None:
    with pytest.raises(ValueError) as err:
        make_cc("vegas", MSS, 0.0)
    assert str(err.value) == "unknown congestion control 'vegas' (known: cubic, newreno)"


@pytest.mark.parametrize(("bad", "error"), [(0, ValueError), (-1, ValueError),
                                            (1.5, TypeError), (None, TypeError)])
def test_bad_mss_raises_what_the_stdlib_would(bad: object, error: type[Exception]) -> None:
    """A bad value is a ValueError, a wrong type a TypeError, in both builds."""
    with pytest.raises(error):
        make_cc("cubic", bad, 0.0)  # type: ignore[arg-type]
    with pytest.raises(error):
        NewReno(MSS).set_mss(bad)  # type: ignore[arg-type]


# -- slow start ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["newreno", "cubic"])
@pytest.mark.parametrize("ack", [MSS, 2 * MSS])
def test_slow_start_doubles_per_rtt(name: str, ack: int) -> None:
    """RFC 5681 3.1 with RFC 3465: per-segment or delayed ACKs both double cwnd."""
    cc = make_cc(name, MSS, 0.0)
    now = 0.0
    for expected in (20, 40, 80, 160):
        now = run_round(cc, now, 0.05, ack)
        assert cc.cwnd == expected * MSS


def test_abc_limits_slow_start_growth_per_ack() -> None:
    """RFC 3465 2.3, L = 2: a stretch ACK of 8 segments adds only 2 SMSS."""
    cc = NewReno(MSS)
    cc.on_ack(8 * MSS, cc.cwnd, 0.0, 0.05)
    assert cc.cwnd == 12 * MSS
    cc.on_ack(500, cc.cwnd, 0.0, 0.05)  # a small ACK adds what it acked
    assert cc.cwnd == 12 * MSS + 500


def test_slow_start_stops_at_ssthresh() -> None:
    """Slow start ends at ssthresh; the rest of the ACK is congestion avoidance."""
    cc = NewReno(MSS)
    cc.ssthresh = 11 * MSS
    cc.on_ack(2 * MSS, cc.cwnd, 0.0, 0.05)
    assert cc.cwnd == 11 * MSS
    for _ in range(20):
        cc.on_ack(MSS, cc.cwnd, 0.0, 0.05)
    assert 11 * MSS < cc.cwnd <= 13 * MSS


# -- congestion avoidance (NewReno) -------------------------------------------


@pytest.mark.parametrize("ack", [MSS, 2 * MSS, 500])
def test_newreno_avoidance_adds_one_smss_per_rtt(ack: int) -> None:
    """RFC 5681 3.1 / RFC 3465 2.1: +1 SMSS per window acknowledged."""
    cc = NewReno(MSS)
    after_loss(cc, 60)
    assert cc.cwnd == 30 * MSS
    now = 0.0
    for i in range(1, 11):
        now = run_round(cc, now, 0.05, ack)
        assert cc.cwnd == (30 + i) * MSS


@pytest.mark.parametrize("name", ["newreno", "cubic"])
def test_no_growth_when_not_cwnd_limited(name: str) -> None:
    """Flight below half of cwnd: the window was not used, so it does not grow."""
    cc = make_cc(name, MSS, 0.0)
    start = cc.cwnd
    cc.on_ack(MSS, start // 2 - 1, 0.0, 0.05)
    assert cc.cwnd == start
    cc.on_ack(MSS, start // 2, 0.0, 0.05)  # exactly half is cwnd-limited enough
    assert cc.cwnd == start + MSS
    # Also in congestion avoidance.
    after_loss(cc, 40)
    avoid = cc.cwnd
    for i in range(200):
        cc.on_ack(MSS, avoid // 3, 0.01 * i, 0.05)
    assert cc.cwnd == avoid


def test_ack_of_nothing_changes_nothing() -> None:
    cc = NewReno(MSS)
    cc.on_ack(0, cc.cwnd, 0.0, None)
    cc.on_ack(-5, cc.cwnd, 0.0, None)
    assert cc.cwnd == initial_window(MSS)


# -- reductions -----------------------------------------------------------------


def test_newreno_congestion_halves_flight() -> None:
    """RFC 5681 eq. (4): ssthresh = max(FlightSize/2, 2*SMSS), cwnd = ssthresh."""
    cc = NewReno(MSS)
    cc.cwnd = 100 * MSS
    cc.on_congestion(100 * MSS, 1.0)
    assert cc.ssthresh == 50 * MSS
    assert cc.cwnd == 50 * MSS
    cc.cwnd = 77 * MSS  # the connection inflates during recovery
    cc.on_recovery_end(1.5)
    assert cc.cwnd == 50 * MSS  # RFC 6582 3.2 step 6


def test_cubic_congestion_multiplies_by_0_7() -> None:
    """RFC 9438 4.6: ssthresh = FlightSize * 0.7, cwnd = ssthresh."""
    cc = Cubic(MSS)
    cc.cwnd = 100 * MSS
    cc.on_congestion(100 * MSS, 1.0)
    assert cc.ssthresh == 70 * MSS
    assert cc.cwnd == 70 * MSS
    assert cc.w_max == pytest.approx(100.0)
    cc.on_recovery_end(1.5)
    assert cc.cwnd == 70 * MSS


@pytest.mark.parametrize("name", ["newreno", "cubic"])
def test_ssthresh_floors_at_two_smss(name: str) -> None:
    cc = make_cc(name, MSS, 0.0)
    cc.on_congestion(MSS, 0.0)
    assert cc.ssthresh == 2 * MSS
    assert cc.cwnd == 2 * MSS
    cc2 = make_cc(name, MSS, 0.0)
    cc2.on_rto(MSS, 0.0)
    assert cc2.ssthresh == 2 * MSS


@pytest.mark.parametrize(("name", "factor"), [("newreno", 0.5), ("cubic", 0.7)])
def test_rto_collapses_to_one_smss(name: str, factor: float) -> None:
    """RFC 5681 3.1: cwnd = LW = 1 SMSS; ssthresh from eq. (4) / RFC 9438 4.8."""
    cc = make_cc(name, MSS, 0.0)
    cc.cwnd = 80 * MSS
    cc.on_rto(80 * MSS, 1.0)
    assert cc.cwnd == MSS
    assert cc.ssthresh == int(80 * MSS * factor)
    # A second expiry for the same loss keeps ssthresh (RFC 5681 3.1).
    cc.on_rto(MSS, 2.0)
    assert cc.ssthresh == int(80 * MSS * factor)
    assert cc.cwnd == MSS
    # New data acknowledged ends that; the next RTO computes ssthresh again.
    cc.on_ack(MSS, MSS, 2.5, 0.05)
    assert cc.cwnd == 2 * MSS
    cc.on_rto(2 * MSS, 3.0)
    assert cc.ssthresh == 2 * MSS


def test_rto_then_slow_start_back_to_ssthresh() -> None:
    cc = NewReno(MSS)
    cc.cwnd = 64 * MSS
    cc.on_rto(64 * MSS, 0.0)
    now = 0.0
    rounds = 0
    while cc.cwnd < cc.ssthresh:
        now = run_round(cc, now, 0.05)
        rounds += 1
    assert rounds == 5  # 1 -> 2 -> 4 -> 8 -> 16 -> 32 segments
    assert cc.cwnd == 32 * MSS


# -- idle restart -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["newreno", "cubic"])
def test_idle_longer_than_rto_restarts_from_iw(name: str) -> None:
    """RFC 5681 4.1: cwnd = min(cwnd, IW) after idle > RTO; ssthresh keeps 3/4."""
    cc = make_cc(name, MSS, 0.0)
    after_loss(cc, 200)  # ssthresh 100 (NewReno) / 140 (CUBIC) segments
    cc.cwnd = 160 * MSS  # as if grown in congestion avoidance
    cc.on_idle(0.5, 1.0, 5.0)  # shorter than the RTO: nothing changes
    assert cc.cwnd == 160 * MSS
    old_ssthresh = cc.ssthresh
    cc.on_idle(2.0, 1.0, 7.0)
    assert cc.cwnd == initial_window(MSS)
    assert cc.ssthresh == max(old_ssthresh, 120 * MSS)
    # A small window is not raised by the restart.
    cc.on_rto(cc.cwnd, 8.0)
    cc.on_idle(5.0, 1.0, 13.0)
    assert cc.cwnd == MSS


# -- CUBIC ------------------------------------------------------------------------


def test_cubic_k_matches_eq2_and_curve_matches_eq1() -> None:
    """K = cbrt((W_max - cwnd_epoch)/C); W_cubic(t) = C*(t-K)**3 + W_max."""
    cc = Cubic(MSS)
    after_loss(cc, 100, now=10.0)
    cc.on_ack(MSS, cc.cwnd, 10.0, 0.1)  # the first CA ACK starts the epoch
    k = math.cbrt((100.0 - 70.0) / 0.4)
    assert cc.k == pytest.approx(k)
    assert cc.stats()["epoch"] == 10.0
    assert cc.w_cubic(0.0) == pytest.approx(70.0)  # starts at cwnd_epoch
    assert cc.w_cubic(k) == pytest.approx(100.0)  # plateau at W_max
    for t in (1.0, 2.5, 6.0, 10.0):
        assert cc.w_cubic(t) == pytest.approx(CUBIC_C * (t - k) ** 3 + 100.0)


def test_cubic_window_follows_the_curve() -> None:
    """Concave up to W_max around t = K, then convex beyond it (RFC 9438 4.4/4.5)."""
    cc = Cubic(MSS)
    after_loss(cc, 100)
    now, rtt = 0.0, 0.1
    k = math.cbrt(30.0 / CUBIC_C)
    while now < 6.0:
        now = run_round(cc, now, rtt)
        t = now  # the epoch started at 0.0
        # cwnd chases W_cubic(t + RTT) and stays near the curve.
        assert cc.cwnd / MSS == pytest.approx(cc.w_cubic(t), rel=0.02)
        if t < k - 0.5:
            assert cc.cwnd < 100 * MSS
    assert cc.cwnd > 100 * MSS  # convex region, past W_max


def test_cubic_growth_capped_at_1_5x_per_rtt() -> None:
    """RFC 9438 4.4: the target is at most 1.5*cwnd, so growth <= 50 % per RTT."""
    cc = Cubic(MSS)
    after_loss(cc, 100)
    cc.on_ack(MSS, cc.cwnd, 0.0, 0.1)  # epoch at 0
    now = 100.0  # far out on the convex branch: W_cubic is enormous
    for _ in range(3):
        start = cc.cwnd
        now = run_round(cc, now, 0.1)
        # (+1: cwnd is the floor of a float window with a fractional byte)
        assert 1.45 * start <= cc.cwnd <= 1.5 * start + 1


def test_cubic_reno_friendly_region_dominates_at_small_rtt() -> None:
    """RFC 9438 4.3: at 1 ms RTT Reno grows faster than the cubic curve.

    W_est grows by alpha_cubic (0.53) segments per RTT until it reaches
    cwnd_prior, then by 1 per RTT like Reno.
    """
    cc = Cubic(MSS)
    after_loss(cc, 100)
    now, rtt = 0.0, 0.001
    for _ in range(10):
        now = run_round(cc, now, rtt)
    # 10 RTTs: the curve has hardly moved, Reno would be at 70 + 10*alpha.
    assert cc.w_cubic(now) < 70.5
    assert cc.cwnd / MSS == pytest.approx(70 + 10 * CUBIC_ALPHA, abs=0.2)
    for _ in range(100):
        now = run_round(cc, now, rtt)
    # Past cwnd_prior (100 segments) alpha is 1: one segment per RTT.
    before = cc.cwnd
    for _ in range(10):
        now = run_round(cc, now, rtt)
    assert cc.cwnd - before == pytest.approx(10 * MSS, abs=0.3 * MSS)
    assert cc.cwnd / MSS > cc.w_cubic(now)
    assert cc.stats()["w_est"] == pytest.approx(cc.cwnd, abs=2)


def test_cubic_fast_convergence_lowers_w_max() -> None:
    """RFC 9438 4.7: a loss below the last W_max remembers cwnd*(1+beta)/2."""
    for fast, expected in ((True, 80 * 1.7 / 2), (False, 80.0)):
        cc = Cubic(MSS, fast_convergence=fast)
        after_loss(cc, 100)
        assert cc.w_max == pytest.approx(100.0)
        cc.cwnd = 80 * MSS
        cc.on_congestion(80 * MSS, 1.0)
        assert cc.w_max == pytest.approx(expected)
        assert cc.cwnd == 56 * MSS
    # A loss above W_max just sets W_max to cwnd.
    cc = Cubic(MSS)
    after_loss(cc, 100)
    cc.cwnd = 120 * MSS
    cc.on_congestion(120 * MSS, 1.0)
    assert cc.w_max == pytest.approx(120.0)


def test_cubic_after_rto_starts_with_k_zero() -> None:
    """RFC 9438 4.8: after a timeout, K = 0 and W_max = cwnd when CA begins."""
    cc = Cubic(MSS)
    after_loss(cc, 100)
    cc.cwnd = 100 * MSS
    cc.on_rto(100 * MSS, 1.0)
    assert cc.cwnd == MSS
    assert cc.ssthresh == 70 * MSS
    now = 1.0
    while cc.cwnd < cc.ssthresh:  # slow start: 1, 2, 4, ... 64, 70 segments
        now = run_round(cc, now, 0.1)
    # The ACK that crossed ssthresh (70 segments) started the epoch.
    assert now - 0.1 < cc.stats()["epoch"] < now
    assert cc.k == 0.0
    assert cc.w_max == pytest.approx(70.0)
    assert cc.stats()["w_est"] >= 70 * MSS


def test_cubic_idle_shifts_the_epoch() -> None:
    """RFC 9438 5.8 / Linux: idle time does not count as curve time."""
    cc = Cubic(MSS)
    after_loss(cc, 100)
    cc.on_ack(MSS, cc.cwnd, 0.0, 0.1)
    assert cc.stats()["epoch"] == 0.0
    cc.on_idle(0.5, 1.0, 3.0)  # shorter than the RTO: window kept
    assert cc.stats()["epoch"] == 0.5
    before = cc.cwnd
    cc.on_ack(MSS, cc.cwnd, 3.0, 0.1)
    # The step is the one of t = 2.5, not t = 3.
    t = 2.5
    cw = before / MSS
    step = (min(cc.w_cubic(t + 0.1), 1.5 * cw) - cw) / cw * MSS
    assert cc.cwnd == int(before + step)


def test_cubic_follows_a_cwnd_written_by_the_connection() -> None:
    """During recovery the connection may set cwnd; growth continues from it."""
    cc = Cubic(MSS)
    after_loss(cc, 100)
    cc.cwnd = 50 * MSS
    cc.on_ack(MSS, cc.cwnd, 0.0, 0.1)
    assert 50 * MSS <= cc.cwnd < 52 * MSS


def test_set_mss_keeps_window_in_segments() -> None:
    for cc in (NewReno(1000), Cubic(1000)):
        cc.cwnd = 40_000
        cc.on_congestion(40_000, 0.0)
        ss = cc.ssthresh
        cc.set_mss(500)
        assert cc.mss == 500
        assert cc.ssthresh == ss // 2
        assert cc.cwnd == ss // 2


@pytest.mark.parametrize("name", ["newreno", "cubic"])
@pytest.mark.parametrize("new", [1448, 8948, 500])
def test_set_mss_before_any_ack_gives_the_new_iw(name: str, new: int) -> None:
    """Created with the default 536, told the real MSS after the handshake."""
    cc = make_cc(name, 536, 0.0)
    cc.set_mss(new)
    assert cc.cwnd == initial_window(new)
    assert cc.ssthresh == INFINITE_SSTHRESH


def test_stats_keys() -> None:
    assert set(NewReno(MSS).stats()) >= {"cwnd", "ssthresh"}
    s = Cubic(MSS).stats()
    assert set(s) >= {"cwnd", "ssthresh", "w_max", "k", "epoch", "w_est"}
    assert all(isinstance(v, int | float) for v in s.values())


# -- robustness -------------------------------------------------------------------

ops = st.lists(
    st.tuples(
        st.sampled_from(["ack", "cong", "end", "rto", "idle", "mss", "write"]),
        st.integers(-10, 3_000_000),
        st.floats(0.0, 50.0),
    ),
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["cubic", "newreno"]), ops)
def test_windows_stay_sane_under_any_sequence(name: str, seq: list[tuple[str, int, float]]) -> None:
    """cwnd >= 1 SMSS and 2 SMSS <= ssthresh <= infinity, whatever happens."""
    cc = make_cc(name, MSS, 0.0)
    now = 0.0
    for op, n, dt in seq:
        now += dt
        if op == "ack":
            cc.on_ack(n, cc.cwnd, now, dt or None)
        elif op == "cong":
            cc.on_congestion(abs(n), now)
        elif op == "end":
            cc.on_recovery_end(now)
        elif op == "rto":
            cc.on_rto(abs(n), now)
        elif op == "idle":
            cc.on_idle(dt, 1.0, now)
        elif op == "mss":
            cc.set_mss(536 + abs(n) % 8000)
        else:
            # What a recovery algorithm may write: never below one segment.
            cc.cwnd = max(abs(n), int(cc.stats()["mss"]))
        mss = cc.stats()["mss"]
        assert isinstance(cc.cwnd, int)
        assert cc.cwnd >= mss
        assert 2 * mss <= cc.ssthresh <= INFINITE_SSTHRESH


# -- HyStart++ (RFC 9406) --------------------------------------------------------


def _hystart_rounds(cc: CongestionControl, rtts: list[float]) -> list[int]:
    """Cwnd-limited rounds with the given RTT each, one ACK per MSS as the
    connection makes them (``hystart_ack`` with the sample, then
    ``on_ack``); cwnd at the end of each round."""
    una = _SEQ.get(id(cc), 1000)  # sequence numbers go on across calls
    now = 0.0
    out = []
    for rtt in rtts:
        nxt = una + cc.cwnd  # the round: one window sent
        while una < nxt:
            una += MSS
            cc.hystart_ack(una, una + cc.cwnd, rtt)  # SND.NXT: the window refilled
            cc.on_ack(MSS, cc.cwnd, now, rtt)  # (ACK-clocked: the window full)
        now += rtt
        out.append(cc.cwnd)
    _SEQ[id(cc)] = una
    return out


_SEQ: dict[int, int] = {}


@pytest.mark.parametrize("name", ["newreno", "cubic"])
def test_hystart_leaves_slow_start_on_an_rtt_rise(name: str) -> None:
    """RFC 9406 4.2: the round's minimum RTT (after 8 samples) up by
    RttThresh = max(4 ms, min(lastRoundMinRTT / 8, 16 ms)) from the last
    round's: Conservative Slow Start, growing a quarter as fast
    (TcpExtTCPHystartDelayDetect, the cwnd in TCPHystartDelayCwnd); after
    CSS_ROUNDS = 5 rounds of it, congestion avoidance (ssthresh = cwnd)."""
    from ustack.counters import Counters

    cc = make_cc(name, MSS, 0.0)
    cc.hystart = True
    cc.counters = c = Counters()
    w = _hystart_rounds(cc, [0.010] * 3)
    assert w[1] == 2 * w[0] and w[2] == 2 * w[1]  # slow start doubles
    assert c.TcpExtTCPHystartDelayDetect == 0
    w2 = _hystart_rounds(cc, [0.0149])  # 10 ms + RttThresh 4 ms passed
    assert c.TcpExtTCPHystartDelayDetect == 1
    assert c.TcpExtTCPHystartDelayCwnd > 0
    assert w2[0] < 2 * w[2]  # CSS for the rest of the round
    css = _hystart_rounds(cc, [0.015] * 4)
    growth = [b / a for a, b in zip([w2[0], *css], css, strict=False)]
    assert all(1.2 < g < 1.3 for g in growth), growth  # 1 + 1/4 per round
    assert cc.ssthresh == INFINITE_SSTHRESH
    _hystart_rounds(cc, [0.015])  # the fifth CSS round ends
    assert cc.ssthresh < INFINITE_SSTHRESH
    assert 0 <= cc.cwnd - cc.ssthresh < 2 * MSS  # (congestion avoidance since)
    assert not cc.hystart


def test_hystart_resumes_slow_start_when_the_rtt_falls_back() -> None:
    """RFC 9406 4.2: in CSS, a round minimum below the baseline that
    started it was a spurious exit: slow start again."""
    cc = NewReno(MSS)
    cc.hystart = True
    _hystart_rounds(cc, [0.010] * 3 + [0.020])
    before = cc.cwnd
    w = _hystart_rounds(cc, [0.010, 0.010])
    assert w[1] == 2 * w[0]  # doubling again
    assert w[0] > before
    assert cc.ssthresh == INFINITE_SSTHRESH


def test_without_hystart_slow_start_ignores_the_rtt() -> None:
    """TcpConfig.hystart off: the same RTT rise changes nothing (standard
    slow start until a loss, RFC 5681 3.1)."""
    cc = NewReno(MSS)
    w = _hystart_rounds(cc, [0.010] * 3 + [0.020] * 3)
    assert all(b == 2 * a for a, b in itertools.pairwise(w))
