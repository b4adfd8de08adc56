"""The bottleneck shaper: spec parsing, serialisation, delay, drop-tail queue."""

from __future__ import annotations

import math

import pytest

from ustack.link import LinkError
from ustack.link.base import Capabilities, Device
from ustack.link.fault import FaultInjector, FaultSpec
from ustack.link.pipe import PipeDevice, pipe_pair
from ustack.link.shaper import ETHERNET_OVERHEAD, Shaper, ShaperSpec
from ustack.stack import Stack
from ustack.tcp.states import State


def frame(i: int, size: int = 1000) -> bytes:
    # 14-byte "Ethernet header", then the frame's number, padded to ``size``.
    return (b"\x02" * 12 + b"\x88\xb5" + i.to_bytes(4, "big")).ljust(size, b"\x00")


def number(f: bytes) -> int:
    return int.from_bytes(f[14:18], "big")


def setup(spec: ShaperSpec | str) -> tuple[Shaper, PipeDevice]:
    """A shaper on one end of a pipe; frames come out of the other end."""
    a, b = pipe_pair(queue_len=100_000)
    return Shaper(a, spec), b


def drain(shaper: Shaper, out: PipeDevice, now: float) -> list[bytes]:
    """What has arrived at the far end by ``now``."""
    shaper.recv_batch(64, now)  # any call releases frames that are due
    return out.recv_batch(100_000, now)


# -- spec ---------------------------------------------------------------------


@pytest.mark.parametrize(("text", "rate"), [
    ("rate=100mbit", 12.5e6),
    ("rate=12.5mbps", 12.5e6),
    ("rate=1gbit", 125e6),
    ("rate=8kbit", 1000.0),
    ("rate=800bit", 100.0),
    ("rate=2kbps", 2000.0),
    ("rate=1500", 1500.0),
    ("rate=1e3bps", 1000.0),
    (" RATE = 100MBit ", 12.5e6),
])
def test_parse_rates_in_tc_units(text: str, rate: float) -> None:
    assert ShaperSpec.parse(text).rate == pytest.approx(rate)


def test_parse_full_spec() -> None:
    s = ShaperSpec.parse("rate=100mbit, delay=5ms, queue=128k, overhead=24")
    assert s == ShaperSpec(rate=12.5e6, delay=0.005, queue=131072, overhead=24)
    assert ShaperSpec.parse("rate=1,queue=1m").queue == 1 << 20
    assert ShaperSpec.parse("rate=1,queue=1500,delay=200us").delay == pytest.approx(200e-6)
    assert ShaperSpec.parse("rate=1,delay=0.1").delay == 0.1


@pytest.mark.parametrize("spec", [
    ShaperSpec(rate=12.5e6, delay=0.005, queue=131072, overhead=24),
    ShaperSpec(rate=1 / 3, delay=1 / 7, queue=1, overhead=0),
])
def test_str_parses_back_to_the_same_spec(spec: ShaperSpec) -> None:
    assert ShaperSpec.parse(str(spec)) == spec


@pytest.mark.parametrize("text", [
    "",  # rate is required
    "delay=5ms",
    "rate=0",
    "rate=-1mbit",
    "rate=fast",
    "rate=100mbit/s",
    "rate=100 furlongs",
    "rate=nan",
    "rate=inf",
    "rate=1,delay=5 parsecs",
    "rate=1,delay=-1ms",
    "rate=1,queue=0",
    "rate=1,queue=1.5",
    "rate=1,queue=12q",
    "rate=1,overhead=-4",
    "rate=1,rate=2",
    "rate=1,color=red",
    "rate",
    "=5",
])
def test_bad_specs_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="shaper spec"):
        ShaperSpec.parse(text)


@pytest.mark.parametrize("kwargs", [
    {"rate": 0.0},
    {"rate": math.inf},
    {"rate": math.nan},
    {"rate": 1.0, "delay": math.nan},
    {"rate": 1.0, "delay": math.inf},
    {"rate": 1.0, "queue": 0},
    {"rate": 1.0, "overhead": -1},
])
def test_bad_spec_values_raise_value_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="shaper spec"):
        ShaperSpec(**kwargs)  # type: ignore[arg-type]


# -- timing ---------------------------------------------------------------------


def test_a_frame_arrives_after_serialisation_plus_delay() -> None:
    shaper, out = setup(ShaperSpec(rate=1e6, delay=0.01))
    assert shaper.send_batch([frame(1)], 0.0) == 1
    # 1000 bytes at 1 MB/s take 1 ms on the line, then 10 ms of delay.
    assert shaper.next_deadline() == pytest.approx(0.011)
    assert drain(shaper, out, 0.0109) == []
    assert drain(shaper, out, 0.011) == [frame(1)]
    assert shaper.next_deadline() is None


def test_back_to_back_frames_are_spaced_by_their_size() -> None:
    shaper, out = setup(ShaperSpec(rate=1e6, delay=0.0, queue=1 << 20))
    shaper.send_batch([frame(i, 500 + 100 * i) for i in range(5)], 0.0)
    arrivals: list[float] = []
    t = shaper.next_deadline()
    while t is not None:
        got = drain(shaper, out, t)
        arrivals += [t] * len(got)
        t = shaper.next_deadline()
    expected = [sum(500 + 100 * k for k in range(i + 1)) / 1e6 for i in range(5)]
    assert arrivals == pytest.approx(expected)


def test_overhead_is_charged_per_frame() -> None:
    shaper, out = setup(ShaperSpec(rate=1024.0, overhead=ETHERNET_OVERHEAD))
    shaper.send_batch([frame(0, 1000), frame(1, 1000)], 0.0)
    assert drain(shaper, out, 0.999) == []
    assert [number(f) for f in drain(shaper, out, 1.0)] == [0]
    assert [number(f) for f in drain(shaper, out, 2.0)] == [1]


def test_an_idle_line_starts_serialising_at_once() -> None:
    """Idle time is not credit: a frame after a pause still takes its full time."""
    shaper, out = setup(ShaperSpec(rate=1e6, delay=0.002))
    shaper.send_batch([frame(1)], 0.0)
    assert len(drain(shaper, out, 1.0)) == 1
    shaper.send_batch([frame(2)], 5.0)
    assert shaper.next_deadline() == pytest.approx(5.003)


def test_long_run_rate_is_the_configured_rate() -> None:
    """Offer twice the rate for one second: the line carries the rate, no more."""
    rate = 1.25e6
    spec = ShaperSpec(rate=rate, delay=0.005, queue=20_000)
    shaper, out = setup(spec)
    delivered = 0
    now = 0.0
    i = 0
    while now < 1.0:
        shaper.send_batch([frame(i, 1250), frame(i + 1, 1250)], now)  # 2.5 MB/s offered
        i += 2
        delivered += sum(map(len, drain(shaper, out, now)))
        now += 0.001
        assert shaper.backlog(now) <= spec.queue
    # In 1 s the line serialised rate bytes; those sent before 1 s - delay arrived.
    assert rate * (1.0 - spec.delay) - 1250 <= delivered <= rate * 1.0
    assert shaper.dropped > 0
    assert shaper.queue_peak <= spec.queue
    st = shaper.stats()
    assert st["shaper_passed"] + st["shaper_dropped"] == i
    assert st["shaper_passed_bytes"] + st["shaper_dropped_bytes"] == i * 1250


# -- the queue ------------------------------------------------------------------


def test_tail_drop_when_the_queue_is_full() -> None:
    shaper, out = setup(ShaperSpec(rate=1000.0, queue=3000))
    # Takes every frame (the drop happens beyond the host, as on a router).
    assert shaper.send_batch([frame(i) for i in range(5)], 0.0) == 5
    assert (shaper.passed, shaper.dropped) == (3, 2)
    assert shaper.backlog(0.0) == 3000
    # Once the line has sent one frame there is room for one more.
    assert shaper.send_batch([frame(5)], 1.0) == 1
    assert shaper.dropped == 2
    assert shaper.send_batch([frame(6)], 1.0) == 1
    assert shaper.dropped == 3
    got = [number(f) for f in drain(shaper, out, 10.0)]
    assert got == [0, 1, 2, 5]  # FIFO, the tail lost


def test_queue_counts_overhead_and_a_smaller_frame_can_still_fit() -> None:
    shaper, _ = setup(ShaperSpec(rate=1000.0, queue=2500, overhead=24))
    shaper.send_batch([frame(0, 1000), frame(1, 1000), frame(2, 400)], 0.0)
    # 1024 + 1024 = 2048 queued; a third 1024 would pass 2500, a 424 does not.
    assert shaper.passed == 3 and shaper.dropped == 0
    shaper.send_batch([frame(3, 100)], 0.0)
    assert shaper.dropped == 1  # 2472 + 124 > 2500
    assert shaper.stats()["shaper_queue_peak_bytes"] == 2472


def test_a_frame_larger_than_the_queue_is_always_dropped() -> None:
    shaper, out = setup(ShaperSpec(rate=1e6, queue=999))
    shaper.send_batch([frame(0, 1000)], 0.0)
    assert shaper.dropped == 1 and shaper.next_deadline() is None
    assert drain(shaper, out, 1.0) == []


# -- the device contract ----------------------------------------------------------


def test_it_is_a_device_and_passes_receive_through() -> None:
    a, b = pipe_pair()
    shaper = Shaper(b, "rate=1mbit")
    assert isinstance(shaper, Device)
    assert shaper.name == b.name and shaper.hwaddr is None
    assert shaper.fileno() == b.fileno()
    a.send_batch([frame(7)], 0.0)
    assert shaper.recv_batch(10, 0.0) == [frame(7)]  # receive is not shaped
    queued = shaper.queued  # the inner device's own methods show through
    assert callable(queued) and queued() == 0
    shaper.close()
    with pytest.raises(LinkError):
        shaper.fileno()


def test_mutable_buffers_are_copied() -> None:
    shaper, out = setup("rate=1e6,delay=1ms")
    buf = bytearray(frame(3))
    shaper.send_batch([buf, memoryview(bytes(frame(4)))], 0.0)
    buf[14:18] = b"\xff" * 4  # the stack reuses its buffer
    got = drain(shaper, out, 1.0)
    assert [number(f) for f in got] == [3, 4]
    assert all(type(f) is bytes for f in got)


class _Offloading(PipeDevice):
    """A pipe end that claims TSO, like a TAP with a virtio-net header."""

    @property
    def caps(self) -> Capabilities:
        return Capabilities(mtu=1500, max_frame=65535, vnet_hdr=True, csum_tx=True, tso=True)

    def send_gso(self, items: object, now: float) -> int:
        return 0


def test_super_frames_are_refused() -> None:
    shaper = Shaper(_Offloading("gso", 1500, 16), "rate=1gbit")
    assert not shaper.caps.tso
    assert shaper.caps.csum_tx and shaper.caps.vnet_hdr  # the rest is untouched
    with pytest.raises(LinkError, match="bypass"):
        shaper.send_gso([], 0.0)


def test_composes_with_the_fault_injector() -> None:
    """Shaper outside, faults inside: lost frames still used the line."""
    a, b = pipe_pair(queue_len=100_000)
    inj = FaultInjector(a, FaultSpec(loss=0.5, seed=3, direction="tx"))
    shaper = Shaper(inj, ShaperSpec(rate=1e6, delay=0.001, queue=1 << 20))
    shaper.send_batch([frame(i) for i in range(1000)], 0.0)
    assert shaper.next_deadline() == pytest.approx(0.002)
    shaper.recv_batch(64, 2.0)
    got = b.recv_batch(100_000, 2.0)
    st = shaper.stats()
    assert st["shaper_passed"] == 1000
    assert len(got) + st["fault_tx_lost"] == 1000
    assert 400 < len(got) < 600
    assert [number(f) for f in got] == sorted(number(f) for f in got)


# -- with two stacks ----------------------------------------------------------------


def test_tcp_round_trip_time_is_twice_the_delay() -> None:
    """Two Stacks polled at the shapers' deadlines see RTT = 2 x delay."""
    pa, pb = pipe_pair()
    spec = ShaperSpec(rate=12.5e6, delay=0.005, overhead=ETHERNET_OVERHEAD)
    a, b = Stack(), Stack()
    a.add_interface(Shaper(pa, spec), "198.18.0.1/24")
    b.add_interface(Shaper(pb, spec), "198.18.0.2/24")
    listener = b.tcp_listen(("0.0.0.0", 80))
    client = a.tcp_connect(("198.18.0.2", 80))
    now = 0.0
    for _ in range(1000):
        a.poll(now)
        b.poll(now)
        if client.state is State.ESTABLISHED and listener.accept_queue:
            break
        if pa.queued() or pb.queued():
            continue
        deadlines = [t for t in (a.next_deadline(), b.next_deadline()) if t is not None]
        now = max(now, min(deadlines))
    assert client.state is State.ESTABLISHED
    # B's gratuitous ARP reaches A after one delay (5 ms); then SYN, SYN-ACK
    # and ACK: the server has the final ACK 2 round trips after the start
    # (plus microseconds on the line).
    assert 0.020 <= now < 0.021
    # The server timed its SYN-ACK (the client's SYN also waited for ARP).
    srtt = listener.accept().stats()["srtt"]
    assert isinstance(srtt, float)
    assert 0.009 <= srtt <= 0.011  # TCP timestamps tick in milliseconds
