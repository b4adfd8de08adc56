"""The fault injector: spec parsing, determinism, rates, delay, reordering."""

from __future__ import annotations

import math

import pytest

from ustack.link import LinkError
from ustack.link.base import Device
from ustack.link.fault import FaultInjector, FaultSpec
from ustack.link.pipe import PipeDevice, pipe_pair

N = 20_000


def frame(i: int) -> bytes:
    # 14-byte "Ethernet header" then a numbered body, so order and content
    # can be checked after the faults.
    return b"\x02" * 12 + b"\x88\xb5" + i.to_bytes(4, "big") * 12


def number(f: bytes) -> int:
    return int.from_bytes(f[14:18], "big")


def rx_setup(spec: str | FaultSpec, queue_len: int = 100_000) -> tuple[PipeDevice, FaultInjector]:
    """A pipe whose receiving end is wrapped: the test sends on ``src``."""
    src, dst = pipe_pair(queue_len=queue_len)
    return src, FaultInjector(dst, spec)


def run_rx(spec: str | FaultSpec, n: int = N, batch: int = 64) -> list[bytes]:
    src, inj = rx_setup(spec)
    out: list[bytes] = []
    now = 0.0
    for start in range(0, n, batch):
        src.send_batch([frame(i) for i in range(start, min(n, start + batch))], now)
        out += inj.recv_batch(1000, now)
        now += 0.001
    out += inj.recv_batch(100_000, now + 10.0)  # release anything held or delayed
    return out


def within(count: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    """``count`` is a plausible Binomial(n, p) draw (5 sigma, +-3 for tiny p)."""
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 3


# -- spec parsing --------------------------------------------------------


def test_parse_full_spec() -> None:
    s = FaultSpec.parse(
        "loss=0.02, dup=0.01,reorder=0.01,corrupt=0.001,delay=5ms,jitter=1ms,seed=7,dir=both"
    )
    assert s == FaultSpec(
        loss=0.02,
        dup=0.01,
        reorder=0.01,
        corrupt=0.001,
        delay=0.005,
        jitter=0.001,
        seed=7,
        direction="both",
    )
    s = FaultSpec.parse("loss=2%,delay=200us,gap=3,hold=0.5s,dir=RX")
    assert s.loss == pytest.approx(0.02) and s.delay == pytest.approx(0.0002)
    assert (s.reorder_gap, s.reorder_hold, s.direction) == (3, 0.5, "rx")
    assert FaultSpec.parse("delay=0.25") == FaultSpec(delay=0.25)
    assert FaultSpec.parse("") == FaultSpec()
    assert not FaultSpec.parse("seed=3").active
    assert FaultSpec.parse("jitter=1ms").active


def test_spec_round_trips_through_str() -> None:
    s = FaultSpec(loss=0.25, dup=0.5, delay=0.003, jitter=0.0005, seed=9, direction="tx")
    assert FaultSpec.parse(str(s)) == s
    assert str(FaultSpec()) == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lsos=0.1", "fault spec: unknown key 'lsos'"),
        ("loss", "fault spec: expected key=value, got 'loss'"),
        ("=0.1", "fault spec: expected key=value"),
        ("loss=1.5", "fault spec: loss must be a probability in [0, 1]"),
        ("loss=-0.1", "fault spec: loss must be a probability"),
        ("loss=150%", "fault spec: loss must be a probability"),
        ("loss=nan", "fault spec: loss must be a probability"),
        ("dup=abc", "fault spec: dup must be a probability"),
        ("delay=5 parsecs", "fault spec: delay must be a duration"),
        ("jitter=-1ms", "fault spec: jitter must be a duration"),
        ("dir=up", "fault spec: dir must be rx, tx or both, got 'up'"),
        ("seed=x", "fault spec: seed must be an integer, got 'x'"),
        ("gap=0", "fault spec: gap must be >= 1"),
        ("loss=0.1,loss=0.2", "fault spec: key 'loss' given twice"),
    ],
)
def test_bad_specs_say_why(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        FaultSpec.parse(text)
    assert str(info.value).startswith(message)


def test_constructor_validates_too() -> None:
    with pytest.raises(ValueError, match="probability"):
        FaultSpec(loss=2.0)
    with pytest.raises(ValueError, match="finite"):
        FaultSpec(delay=math.inf)


# -- behaviour -----------------------------------------------------------


def test_is_a_device_and_passes_through_when_inactive() -> None:
    src, inj = rx_setup("seed=5")
    assert isinstance(inj, Device)
    src.send_batch([frame(i) for i in range(10)], 0.0)
    assert inj.recv_batch(100, 0.0) == [frame(i) for i in range(10)]
    assert inj.next_deadline() is None
    assert "fault_rx_lost" not in inj.stats()


def test_same_seed_same_faults_other_seed_other_faults() -> None:
    spec = "loss=0.05,dup=0.05,reorder=0.05,corrupt=0.05,seed=11"
    a = run_rx(spec, n=5000)
    b = run_rx(spec, n=5000)
    c = run_rx(spec.replace("seed=11", "seed=12"), n=5000)
    assert a == b
    assert a != c


def test_loss_rate() -> None:
    out = run_rx("loss=0.1,seed=1")
    assert within(N - len(out), N, 0.1)
    assert [number(f) for f in out] == sorted(number(f) for f in out)


def test_dup_rate_and_copies_are_identical() -> None:
    out = run_rx("dup=0.05,seed=2")
    extra = len(out) - N
    assert within(extra, N, 0.05)
    nums = [number(f) for f in out]
    assert sorted(set(nums)) == list(range(N))
    dups = [i for i in range(1, len(nums)) if nums[i] == nums[i - 1]]
    assert len(dups) == extra  # a duplicate follows its original at once
    assert all(out[i] == out[i - 1] for i in dups)


def test_corruption_flips_one_bit_after_the_ethernet_header() -> None:
    out = run_rx("corrupt=0.05,seed=3")
    assert len(out) == N  # nothing lost or moved: out[i] came from frame(i)
    bad = 0
    for i, f in enumerate(out):
        diff = [(x ^ y, k) for k, (x, y) in enumerate(zip(frame(i), f, strict=True)) if x != y]
        if diff:
            bad += 1
            ((xor, pos),) = diff
            assert pos >= 14 and xor.bit_count() == 1
    assert within(bad, N, 0.05)


def test_reorder_never_loses_a_frame() -> None:
    out = run_rx("reorder=0.1,seed=4")
    nums = [number(f) for f in out]
    assert sorted(nums) == list(range(N))
    late = sum(1 for i in range(1, len(nums)) if nums[i] < nums[i - 1])
    assert within(late, N, 0.1 * 0.9, sigmas=6)  # a frame is held only while none is


def test_reorder_gap_moves_a_frame_back_by_gap_places() -> None:
    src, inj = rx_setup("reorder=1,gap=3,seed=1")
    src.send_batch([frame(i) for i in range(7)], 0.0)
    nums = [number(f) for f in inj.recv_batch(100, 0.0)]
    # 0 is held, 1 2 3 pass, 0 is released; then 4 is held, 5 6 pass and
    # 4 waits for a third overtaker or its hold time.
    assert nums == [1, 2, 3, 0, 5, 6]
    assert inj.next_deadline() == pytest.approx(0.01)  # the hold timeout
    assert inj.recv_batch(100, 0.009) == []
    assert [number(f) for f in inj.recv_batch(100, 0.01)] == [4]
    assert inj.stats()["fault_rx_reordered"] == 2


def test_delay_released_only_when_now_passes() -> None:
    src, inj = rx_setup("delay=5ms,seed=1")
    src.send_batch([frame(0), frame(1)], 1.0)
    assert inj.recv_batch(10, 1.0) == []
    assert inj.next_deadline() == pytest.approx(1.005)
    src.send_batch([frame(2)], 1.002)
    assert inj.recv_batch(10, 1.002) == []  # the delay runs from here
    assert inj.recv_batch(10, 1.004) == []
    assert inj.recv_batch(10, 1.005) == [frame(0), frame(1)]
    assert inj.next_deadline() == pytest.approx(1.007)
    assert inj.recv_batch(10, 1.0071) == [frame(2)]
    assert inj.next_deadline() is None
    assert inj.stats()["fault_rx_delayed"] == 3


def test_jitter_stays_in_range_and_keeps_order() -> None:
    src, inj = rx_setup("delay=10ms,jitter=4ms,seed=8")
    arrivals: list[tuple[int, float]] = []
    now = 0.0
    for i in range(2000):
        src.send_batch([frame(i)], now)
        got = inj.recv_batch(100, now)
        arrivals += [(number(f), now) for f in got]
        now = round(now + 0.0005, 6)
    while inj.next_deadline() is not None:
        now = max(now, inj.next_deadline() or now)
        arrivals += [(number(f), now) for f in inj.recv_batch(100, now)]
    assert [n for n, _ in arrivals] == list(range(2000))
    for n, t in arrivals:
        sent = round(n * 0.0005, 6)
        # FIFO may hold a frame behind a slower predecessor, never ahead.
        assert 0.010 - 1e-9 <= t - sent <= 0.0145 + 1e-9


def test_recv_batch_bounded_by_max_frames() -> None:
    src, inj = rx_setup("dup=1,seed=1")
    src.send_batch([frame(i) for i in range(10)], 0.0)
    first = inj.recv_batch(4, 0.0)
    assert len(first) == 4
    assert inj.next_deadline() == 0.0  # more are waiting right now
    rest = inj.recv_batch(100, 0.0)
    assert [number(f) for f in first + rest][:20] == [i for i in range(10) for _ in (0, 1)]


def test_tx_faults_and_release_of_delayed_sends() -> None:
    a, b = pipe_pair()
    inj = FaultInjector(a, FaultSpec(delay=0.002, loss=0.5, seed=5, direction="tx"))
    assert inj.send_batch([frame(i) for i in range(100)], 0.0) == 100
    assert b.recv_batch(1000, 0.0) == []
    assert inj.next_deadline() == pytest.approx(0.002)
    assert inj.recv_batch(10, 0.003) == []  # any call releases due sends
    got = b.recv_batch(1000, 0.003)
    s = inj.stats()
    assert len(got) == 100 - s["fault_tx_lost"] and within(s["fault_tx_lost"], 100, 0.5)
    assert s["fault_tx_delayed"] == len(got)
    assert "fault_rx_lost" not in s
    # Receive direction untouched.
    b.send_batch([frame(1)], 0.0)
    assert inj.recv_batch(10, 0.004) == [frame(1)]


def test_tx_faults_turn_off_offload_caps() -> None:
    a, _ = pipe_pair()
    assert FaultInjector(a, "loss=0.1,dir=rx").caps == a.caps
    caps = FaultInjector(a, "loss=0.1,dir=tx").caps
    assert not caps.tso and not caps.csum_tx
    with pytest.raises(LinkError):
        FaultInjector(a, "loss=0.1").send_gso([], 0.0)


def test_close_closes_inner() -> None:
    a, _ = pipe_pair()
    FaultInjector(a, "loss=0.1").close()
    with pytest.raises(LinkError):
        a.fileno()


def test_delay_queue_is_bounded_by_limit_and_overflow_is_counted() -> None:
    assert FaultSpec.parse("delay=5ms,limit=3").limit == 3
    with pytest.raises(ValueError, match="limit must be >= 1"):
        FaultSpec.parse("limit=0")
    src, inj = rx_setup("delay=5ms,limit=3,seed=1")
    src.send_batch([frame(i) for i in range(10)], 0.0)
    assert inj.recv_batch(100, 0.0) == []
    s = inj.stats()
    assert (s["fault_rx_waiting"], s["fault_rx_overflow"]) == (3, 7)
    assert [number(f) for f in inj.recv_batch(100, 0.005)] == [0, 1, 2]
    # Room again once the queue has drained.
    src.send_batch([frame(10)], 0.006)
    assert inj.recv_batch(100, 0.006) == []
    assert [number(f) for f in inj.recv_batch(100, 0.011)] == [10]
