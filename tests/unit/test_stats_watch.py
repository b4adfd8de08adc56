"""``ustack stats --watch`` over a stack run as workers, from the members'
reports as the control socket gives them: a worker restarted (a new pid,
counters from 0 again) or missing for an interval (being restarted) never
makes a counter move backwards."""

from __future__ import annotations

from typing import Any

from ustack.cli import stats


def rep(pid: int, **counters: int) -> dict[str, Any]:
    return {"pid": pid, "counters": counters,
            "interfaces": [{"device": {"rx_frames": counters.get("TcpInSegs", 0)}}]}


def step(before: stats.Snapshot, answers: list[tuple[str, dict[str, Any]]]
         ) -> tuple[stats.Snapshot, dict[str, int], dict[str, dict[str, int]]]:
    after = stats.snapshot(answers, before)
    per = stats.member_deltas(before, after)
    return after, stats.summed(per), per


def test_steady_workers_sum_their_deltas() -> None:
    s0 = stats.snapshot([("X@0", rep(10, TcpInSegs=100)), ("X@1", rep(11, TcpInSegs=50))])
    _, total, per = step(s0, [("X@0", rep(10, TcpInSegs=130)), ("X@1", rep(11, TcpInSegs=55))])
    assert total == {"TcpInSegs": 35, "LinkRxFrames": 35}
    assert per["X@1"] == {"TcpInSegs": 5, "LinkRxFrames": 5}


def test_a_restarted_worker_counts_from_zero_not_backwards() -> None:
    s0 = stats.snapshot([("X@0", rep(10, TcpInSegs=1000)), ("X@1", rep(11, TcpInSegs=50))])
    # X@0 crashed and was restarted (pid 12): 7 segments since.
    s1, total, per = step(s0, [("X@0", rep(12, TcpInSegs=7)), ("X@1", rep(11, TcpInSegs=60))])
    assert per["X@0"]["TcpInSegs"] == 7
    assert total["TcpInSegs"] == 17
    _, total, _ = step(s1, [("X@0", rep(12, TcpInSegs=9)), ("X@1", rep(11, TcpInSegs=60))])
    assert total["TcpInSegs"] == 2


def test_a_missing_worker_is_carried_forward() -> None:
    s0 = stats.snapshot([("X@0", rep(10, TcpInSegs=1000)), ("X@1", rep(11, TcpInSegs=50))])
    # X@0 does not answer this interval (mid-restart, or slow).
    s1, total, per = step(s0, [("X@1", rep(11, TcpInSegs=60))])
    assert total["TcpInSegs"] == 10 and per["X@0"]["TcpInSegs"] == 0
    assert s1["X@0"] == s0["X@0"]
    # Back, the same process: its movement over both intervals.
    _, total, _ = step(s1, [("X@0", rep(10, TcpInSegs=1004)), ("X@1", rep(11, TcpInSegs=60))])
    assert total["TcpInSegs"] == 4
    # Back, restarted: from 0.
    _, total, _ = step(s1, [("X@0", rep(13, TcpInSegs=3)), ("X@1", rep(11, TcpInSegs=61))])
    assert total["TcpInSegs"] == 4


def test_no_delta_is_ever_negative_through_restarts() -> None:
    snap = stats.snapshot([(f"X@{k}", rep(100 + k, TcpInSegs=0)) for k in range(3)])
    count = {k: 0 for k in range(3)}
    pid = {k: 100 + k for k in range(3)}
    for i in range(1, 60):
        answers = []
        for k in range(3):
            if (i + k) % 7 == 0:
                continue  # missing this time
            if (i * (k + 1)) % 11 == 0:
                pid[k] += 10  # restarted
                count[k] = 0
            count[k] += i % 5
            answers.append((f"X@{k}", rep(pid[k], TcpInSegs=count[k])))
        snap, total, _ = step(snap, answers)
        assert all(v >= 0 for v in total.values()), (i, total)
