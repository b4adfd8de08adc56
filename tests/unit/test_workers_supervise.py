"""The parent of ``--workers N`` (ustack/cli/supervise.py, cli/workers.py),
with real forked workers and real signals; no link, no root."""

from __future__ import annotations

import io
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from ustack.cli.common import UsageError
from ustack.cli.supervise import Channel, Supervisor, describe, merge
from ustack.cli.workers import indexed_path, worker_count


def _wait_for_sigterm() -> None:
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    deadline = time.monotonic() + 20  # never outlive a broken test
    while not stop and time.monotonic() < deadline:
        time.sleep(0.01)


def _stop_after(seconds: float) -> None:
    """SIGTERM to this (the supervising) process in ``seconds``."""
    threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGTERM)).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_merge_adds_up_each_list_position() -> None:
    a = [{"HttpRequests": 3, "HttpConnsOpen": 1}, {"TcpInSegs": 10}]
    b = [{"HttpRequests": 4}, {"TcpInSegs": 5, "TcpOutSegs": 2}]
    assert merge([a, b]) == [{"HttpRequests": 7, "HttpConnsOpen": 1},
                             {"TcpInSegs": 15, "TcpOutSegs": 2}]
    assert merge([]) == []


def test_describe_names_the_signal_or_the_status() -> None:
    assert describe(9) == "killed by signal 9 (SIGKILL)"
    assert describe(3 << 8) == "exited with status 3"


def test_worker_count() -> None:
    assert worker_count("3", "ustack up") == 3
    assert worker_count("auto", "ustack up") == len(os.sched_getaffinity(0))
    for bad in ("0", "-1", "x", "257"):
        with pytest.raises(UsageError, match=r"^ustack up: --workers .*1 to 256, or auto$"):
            worker_count(bad, "ustack up")


def test_indexed_path() -> None:
    assert indexed_path("/tmp/x.pcap", 1) == "/tmp/x@1.pcap"
    assert indexed_path("cap", 0) == "cap@0"
    # A restarted worker's files do not overwrite its earlier life's.
    assert indexed_path("/tmp/t.jsonl", 1, 2) == "/tmp/t@1-r2.jsonl"


def test_sigterm_stops_all_and_merges_their_counters() -> None:
    pids: list[int] = []

    def work(index: int, ch: Channel) -> int:
        ch.ready(f"ready: worker={index}")
        _wait_for_sigterm()
        ch.counters([{"A": index + 1, "B": 1}, {"C": 10}])
        return 0

    ready: list[str] = []

    def on_ready(text: str) -> None:
        ready.append(text)
        pids.extend(w.pid for w in sup.workers)
        _stop_after(0.3)

    sup = Supervisor("ustack test", 2, work, on_ready=on_ready, log=io.StringIO())
    assert sup.run() == 0
    assert ready == ["ready: worker=0"] or ready == ["ready: worker=1"]
    assert sup.counters == [{"A": 3, "B": 2}, {"C": 20}]
    assert len(pids) == 2 and not any(_alive(p) for p in pids)


def test_a_dead_worker_is_logged_and_restarted(tmp_path: Path) -> None:
    marker = tmp_path / "crashed"

    def work(index: int, ch: Channel) -> int:
        ch.ready("ready")
        if index == 1 and not marker.exists():
            marker.write_text("x")
            time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGKILL)
        _wait_for_sigterm()
        # Each life knows which it is (its files are named after it).
        ch.counters([{"Lives": 1, f"Worker{index}Life{ch.life}": 1}])
        return 0

    log = io.StringIO()
    sup = Supervisor("ustack test", 2, work, on_ready=lambda _: _stop_after(1.5),
                     restart_delay=0.1, log=log)
    assert sup.run() == 0
    assert sup.restarts == 1
    lines = log.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert re.fullmatch(r"ustack test: worker 1 \(pid \d+\) killed by signal 9 \(SIGKILL\); "
                        r"restarting it in 0\.2 s", lines[0]), lines
    # The killed life handed over nothing; the two that were stopped did.
    assert sup.counters == [{"Lives": 2, "Worker0Life0": 1, "Worker1Life1": 1}]


def test_a_worker_dying_at_once_backs_off(tmp_path: Path) -> None:
    def work(index: int, ch: Channel) -> int:
        ch.ready("ready")
        if index == 1:
            return 3
        _wait_for_sigterm()
        return 0

    log = io.StringIO()
    sup = Supervisor("ustack test", 2, work, on_ready=lambda _: _stop_after(1.6),
                     restart_delay=0.05, max_delay=0.4, stable_after=10, log=log)
    assert sup.run() == 0
    delays = [float(m) for m in re.findall(r"restarting it in ([\d.]+) s", log.getvalue())]
    # 0.1, 0.2, 0.4, 0.4 ... : a handful in 1.6 s, not hundreds.
    assert 2 <= len(delays) <= 7, log.getvalue()
    assert delays[:3] == [0.1, 0.2, 0.4]
    assert "worker 1 (pid" in log.getvalue() and "exited with status 3" in log.getvalue()


def test_a_usage_error_in_a_worker_fails_the_start_in_one_line() -> None:
    pids: list[int] = []

    def work(index: int, ch: Channel) -> int:
        if index == 1:
            time.sleep(0.2)
            raise UsageError("ustack test: tap x: device busy")
        ch.ready("ready")
        _wait_for_sigterm()
        return 0

    log = io.StringIO()
    sup = Supervisor("ustack test", 2, work, log=log)
    pids.extend(w.pid for w in sup.workers)
    assert sup.run() == 2
    assert log.getvalue() == "ustack test: tap x: device busy\n"
    assert all(w.pid == 0 for w in sup.workers)


def test_a_worker_exiting_before_ready_fails_the_start() -> None:
    def work(index: int, ch: Channel) -> int:
        if index == 0:
            return 1
        ch.ready("ready")
        _wait_for_sigterm()
        return 0

    log = io.StringIO()
    sup = Supervisor("ustack test", 2, work, log=log)
    assert sup.run() == 1
    assert log.getvalue() == "ustack test: worker 0 exited with status 1 before it was ready\n"


def test_a_bug_in_a_worker_is_one_line() -> None:
    def work(index: int, ch: Channel) -> int:
        raise KeyError("oops")

    log = io.StringIO()
    sup = Supervisor("ustack test", 1, work, log=log)
    assert sup.run() == 1
    assert log.getvalue() == "ustack test: worker 0: KeyError: 'oops'\n"


def _epolls() -> set[int]:
    """This process's descriptors that are epoll instances."""
    out = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[eventpoll]":
                out.add(int(name))
        except OSError:
            continue  # the listing's own descriptor, gone
    return out


def test_a_worker_does_not_keep_the_parents_epoll() -> None:
    baseline = _epolls()
    seen: list[str] = []

    def work(index: int, ch: Channel) -> int:
        ch.ready(" ".join(map(str, sorted(_epolls()))))
        _wait_for_sigterm()
        return 0

    def on_ready(text: str) -> None:
        seen.append(text)
        assert _epolls() - baseline  # the parent's selector, while it runs
        _stop_after(0.1)

    sup = Supervisor("ustack test", 1, work, on_ready=on_ready, log=io.StringIO())
    assert sup.run() == 0
    assert seen == [" ".join(map(str, sorted(baseline)))]


def test_a_second_signal_while_they_stop_kills_the_workers_at_once() -> None:
    pids: list[int] = []

    def work(index: int, ch: Channel) -> int:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a worker slow to stop
        ch.ready("ready")
        time.sleep(20)
        return 0

    def on_ready(text: str) -> None:
        pids.extend(w.pid for w in sup.workers)
        _stop_after(0.1)
        _stop_after(0.5)  # the second Ctrl-C

    log = io.StringIO()
    sup = Supervisor("ustack test", 2, work, on_ready=on_ready, stop_timeout=10, log=log)
    t0 = time.monotonic()
    assert sup.run() == 130
    assert time.monotonic() - t0 < 3
    assert sup.killed
    assert log.getvalue() == ("ustack test: interrupted again: killed 2 workers "
                              "(their counters are lost)\n")
    assert len(pids) == 2 and not any(_alive(p) for p in pids)


def test_a_slow_stop_says_a_second_signal_kills() -> None:
    def work(index: int, ch: Channel) -> int:
        ch.ready("ready")
        _wait_for_sigterm()
        time.sleep(1.5)  # cleaning up
        ch.counters([{"A": 1}])
        return 0

    log = io.StringIO()
    sup = Supervisor("ustack test", 2, work, on_ready=lambda _: _stop_after(0.1), log=log)
    assert sup.run() == 0
    assert log.getvalue() == ("ustack test: waiting for 2 workers to stop (Ctrl-C again to "
                              "kill them at once)\n")
    assert sup.counters == [{"A": 2}]
