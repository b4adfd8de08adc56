"""The control socket under strain: a stack whose backlog is full is alive,
not stale; two stacks cannot share a name (``NAME`` beside ``NAME@K``) or
take each other's socket; accept() failing for want of descriptors does
not spin the loop; and an ``ss`` answer about tens of thousands of
endpoints is built in steps short enough that the stack's loop keeps
turning, held to a bound, and cut visibly rather than silently."""

from __future__ import annotations

import itertools
import json
import os
import resource
import socket
import threading
import time
from pathlib import Path

import pytest
from test_cli_ss import established_net, serving
from test_tcp_stack import Net

from ustack import cli
from ustack.cli import control, reports
from ustack.tcp.timewait import TimeWaitRecord
from ustack.wire import ipv4


@pytest.fixture(autouse=True)
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(control, "RUN_DIR", str(tmp_path))
    return tmp_path


# -- alive or stale --------------------------------------------------------------------


def test_a_full_backlog_is_a_busy_stack_not_a_hang(run_dir: Path) -> None:
    path = str(run_dir / "busy.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(0)  # and never accepts: a stalled stack
    waiting = []
    try:
        for _ in range(64):  # until connect() would block: the backlog is full
            s = socket.socket(socket.AF_UNIX)
            s.setblocking(False)
            waiting.append(s)
            try:
                s.connect(path)
            except BlockingIOError:
                break
        else:
            pytest.fail("the backlog never filled")
        got: list[object] = []
        t = threading.Thread(target=lambda: got.extend([control._alive(path),
                                                        control.running_names()]),
                             daemon=True)
        t.start()
        t.join(3)
        assert not t.is_alive(), "a probe of a full backlog blocked"
        assert got == [True, ["busy"]]
        assert os.path.exists(path)  # not taken for stale
    finally:
        for s in waiting:
            s.close()
        listener.close()


def test_a_socket_nobody_listens_on_is_stale(run_dir: Path) -> None:
    path = str(run_dir / "gone.sock")
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)  # bound, never listening: connect() is refused
    dead.close()
    assert not control._alive(path)
    assert control.running_names() == []
    assert not os.path.exists(path)


# -- one name, one stack -------------------------------------------------------------------


def test_name_and_its_workers_exclude_each_other() -> None:
    n1, n2 = Net(), Net()
    w0 = control.ControlServer(n1.a, "foo@0")
    w1 = control.ControlServer(n1.b, "foo@1")  # workers of one stack: fine
    try:
        with pytest.raises(control.ControlError) as e:
            control.ControlServer(n2.a, "foo")
        assert str(e.value) == (f"--name 'foo': the stack 'foo' is already running as "
                                f"foo@0, foo@1 ({control.RUN_DIR})")
        assert control.members("foo") == ["foo@0", "foo@1"]
        bar = control.ControlServer(n2.a, "bar")
        try:
            with pytest.raises(control.ControlError, match="already running as bar "):
                control.ControlServer(n2.b, "bar@0")
            with pytest.raises(control.ControlError, match="'bar' is already running"):
                control.ControlServer(n2.b, "bar")
        finally:
            bar.close()
        assert control.ControlServer(n2.b, "bar@0").close() is None  # free again
    finally:
        w0.close()
        w1.close()


def test_close_removes_only_its_own_socket() -> None:
    """A's socket file was taken for stale and removed, and B came up under
    the name: A closing must leave B's socket alone."""
    net = Net()
    a = control.ControlServer(net.a, "n")
    os.unlink(a.path)
    b = control.ControlServer(net.b, "n")
    a.close()
    assert os.path.exists(b.path) and control._alive(b.path)
    b.close()
    assert not os.path.exists(b.path)


def test_a_new_socket_is_never_seen_before_it_listens() -> None:
    """Clients probing (and removing what they find stale) while stacks come
    and go: a socket file is never found unable to listen, so none is
    removed from under its stack."""
    net = Net()
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            control._socket_names()

    threads = [threading.Thread(target=probe) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(300):
            server = control.ControlServer(net.a, "r")
            assert os.path.exists(server.path)
            server.close()
    finally:
        stop.set()
        for t in threads:
            t.join(10)


# -- accept() failing -------------------------------------------------------------------


def test_emfile_on_accept_backs_off_and_recovers(run_dir: Path) -> None:
    net, _, _ = established_net()
    ticks: list[float] = []
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with serving(net, "t0", hook=lambda: ticks.append(time.monotonic())):
        client = socket.socket(socket.AF_UNIX)
        top = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        held: list[int] = []
        resource.setrlimit(resource.RLIMIT_NOFILE, (top + 8, hard))
        try:
            try:
                while True:
                    held.append(os.dup(0))
            except OSError:
                pass
            client.connect(str(run_dir / "t0.sock"))  # the stack cannot accept it
            start = time.monotonic()
            time.sleep(0.3)
            spins = sum(1 for t in ticks if t >= start)
        finally:
            for fd in held:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        # max_wait 5 ms: about 60 turns of the loop in 0.3 s, not thousands.
        assert spins < 300, spins
        client.sendall(b"stats\n")  # accepted once descriptors are free again
        client.settimeout(5)
        assert b"counters" in client.recv(1 << 20)
        client.close()


# -- big answers --------------------------------------------------------------------


def _time_wait_records(net: Net, n: int) -> None:
    """``n`` TIME-WAIT records on net.a, made directly in its table."""
    now = net.now
    lip = ipv4.addr_from_str("198.18.0.1")
    for i in range(n):
        rip = ipv4.addr_from_str(f"198.18.{1 + i // 60000}.{1 + (i // 250) % 250}")
        key = (lip, 10000 + i % 50000, rip, 80)
        net.a.tcp.tw.add(TimeWaitRecord(key, 1, 1, 1, 1000, 1, 1000, False, 0, now, 0, False,
                                        64, 0, 60.0, now + 60.0))


N = 20_000
TW_REQUEST = {"cmd": "ss", "states": ["TIME-WAIT"], "info": False, "filter": []}


def test_an_answer_about_20k_endpoints_does_not_stall_the_loop() -> None:
    net, _, _ = established_net()
    _time_wait_records(net, N)
    assert len(net.a.tcp.tw) == N
    ticks: list[float] = []
    with serving(net, "t0", hook=lambda: ticks.append(time.monotonic())):
        time.sleep(0.05)
        # The answer read here, in the stack's own process, and parsed only
        # once the stack has sent it all: parsing 13 MB of JSON holds the
        # GIL, and would stall the stack's thread in the test's name.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(control.socket_path("t0"))
            start = time.monotonic()
            s.sendall(json.dumps(TW_REQUEST).encode() + b"\n")
            chunks = []
            while chunk := s.recv(1 << 20):
                chunks.append(chunk)
            end = time.monotonic()
        time.sleep(0.02)
    doc = json.loads(b"".join(chunks))
    rows = doc["connections"]
    assert len(rows) == N and not doc["truncated"] and doc["left_out"] == 0
    assert len({r["local"] + r["peer"] for r in rows}) == N
    during = [t for t in ticks if start <= t <= end + 0.02]
    gap = max(b - a for a, b in itertools.pairwise(during))
    # Each step takes STEP_TIME (2 ms) of the loop; all at once, the
    # longest gap was the whole answer's time (a few hundred ms compiled,
    # seconds pure).  Bounded as a share of that time, so that a busy
    # machine or a garbage collection (pure build) does not fail it.
    assert gap < max(0.1, (end - start) / 4), (gap, end - start)


def test_an_answer_past_the_bound_is_cut_and_says_so(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    net, _, _ = established_net()
    _time_wait_records(net, N)
    monkeypatch.setattr(control, "MAX_HELD_BYTES", 300_000)
    with serving(net, "t0"):
        doc = control.ask("t0", TW_REQUEST, timeout=30)
        status = cli.main(["ss", "state", "time-wait"])
        out, err = capsys.readouterr()
        status_json = cli.main(["ss", "--json", "state", "time-wait"])
        out_json, _ = capsys.readouterr()
    rows = doc["connections"]
    assert doc["truncated"] is True
    assert 0 < len(rows) < N and len(rows) + doc["left_out"] == N
    assert sum(len(str(r)) for r in rows) < 300_000
    # (the rows' timers differ in length from one answer to the next, and so
    # where each is cut: the message counts what was printed)
    shown = len(out.splitlines()) - 1
    assert status == 0 and 0 < shown < N
    assert err == (f"ustack ss: t0: the answer was cut after {shown} rows, "
                   f"{N - shown} more endpoints not listed (more than the stack holds "
                   "of answers at once: narrow it with a FILTER)\n")
    assert status_json == 0 and '"truncated": true' in out_json


def test_a_whole_answer_in_one_call_still_works() -> None:
    net, _, _ = established_net()
    _time_wait_records(net, 500)
    doc = reports.answer(net.a, b"ss state time-wait", None)
    assert len(doc["connections"]) == 500 and doc["truncated"] is False
