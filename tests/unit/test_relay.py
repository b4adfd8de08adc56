"""The impairment relay's forwarding core (ustack_testbed.relay.Relay) over pipes.

The process and its namespaces are tested in tests/interop/test_relay.py;
here the loop's logic with a fake clock: both directions forwarded, faults
per direction from their own seeded stream, delayed frames released when
due, the delay queue bounded.
"""

from __future__ import annotations

from ustack.link.fault import FaultSpec
from ustack.link.pipe import PipeDevice, pipe_pair
from ustack_testbed.relay import Relay, counters_line

N = 2000


def frame(i: int, side: int) -> bytes:
    return b"\x02" * 12 + b"\x88\xb5" + bytes([side]) + i.to_bytes(4, "big") * 10


def number(f: bytes) -> int:
    return int.from_bytes(f[15:19], "big")


class Bench:
    """left peer <-pipe-> relay <-pipe-> right peer."""

    def __init__(self, spec: str, limit: int = 10_000) -> None:
        self.left_peer, relay_left = pipe_pair(queue_len=100_000)
        relay_right, self.right_peer = pipe_pair(queue_len=100_000)
        self.relay = Relay(relay_left, relay_right, FaultSpec.parse(spec), limit=limit)

    def run(self, n: int = N, batch: int = 50) -> tuple[list[bytes], list[bytes]]:
        """Send ``n`` frames each way in batches, 1 ms apart; what each side got."""
        got_right: list[bytes] = []
        got_left: list[bytes] = []
        now = 0.0
        for start in range(0, n, batch):
            idx = range(start, min(n, start + batch))
            self.left_peer.send_batch([frame(i, 1) for i in idx], now)
            self.right_peer.send_batch([frame(i, 2) for i in idx], now)
            while self.relay.step(now):
                pass
            got_right += recv_all(self.right_peer, now)
            got_left += recv_all(self.left_peer, now)
            now += 0.001
        while (due := self.relay.deadline()) is not None:
            now = max(now, due)
            self.relay.step(now)
        got_right += recv_all(self.right_peer, now)
        got_left += recv_all(self.left_peer, now)
        return got_right, got_left


def recv_all(dev: PipeDevice, now: float) -> list[bytes]:
    out: list[bytes] = []
    while batch := dev.recv_batch(1000, now):
        out += batch
    return out


def test_without_faults_every_frame_is_forwarded_both_ways_in_order() -> None:
    b = Bench("")
    right, left = b.run()
    assert right == [frame(i, 1) for i in range(N)]
    assert left == [frame(i, 2) for i in range(N)]
    c = b.relay.counters()
    assert c["l2r_received"] == c["l2r_forwarded"] == N
    assert c["r2l_received"] == c["r2l_forwarded"] == N
    assert c["l2r_lost"] == c["r2l_lost"] == 0


def test_faults_are_counted_per_direction_and_match_what_arrives() -> None:
    b = Bench("loss=5%,dup=3%,corrupt=2%,reorder=2%,seed=4")
    right, left = b.run()
    c = b.relay.counters()
    for d, got in (("l2r", right), ("r2l", left)):
        for name in ("lost", "duplicated", "corrupted", "reordered"):
            assert c[f"{d}_{name}"] > 0, (d, name)
        assert c[f"{d}_forwarded"] == len(got) == N - c[f"{d}_lost"] + c[f"{d}_duplicated"]
    # Two streams: the directions do not make the same decisions.
    assert [number(f) for f in right] != [number(f) for f in left]
    assert "lost" in counters_line(c, "l2r")


def test_same_seed_same_decisions_other_seed_other_decisions() -> None:
    spec = "loss=3%,dup=2%,corrupt=2%,seed=21"
    a = Bench(spec).run()
    assert Bench(spec).run() == a
    assert Bench(spec.replace("seed=21", "seed=22")).run() != a


def test_delay_holds_frames_until_due_and_the_queue_is_bounded() -> None:
    b = Bench("delay=20ms,dir=rx", limit=30)
    b.left_peer.send_batch([frame(i, 1) for i in range(50)], 0.0)
    b.relay.step(0.0)
    assert b.right_peer.recv_batch(100, 0.0) == []
    assert b.relay.deadline() == 0.02
    b.relay.step(0.02)
    assert [number(f) for f in b.right_peer.recv_batch(100, 0.02)] == list(range(30))
    c = b.relay.counters()
    assert (c["l2r_overflow"], c["l2r_delayed"], c["r2l_delayed"]) == (20, 30, 0)
