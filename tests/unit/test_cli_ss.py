"""``ustack ss`` and ``ustack stats`` against real Stacks with real TCP
connections (two Stacks over the in-memory link), read through the real
control socket: the rows and -i lines printed, the filter, workers merged,
and a control socket that no client can hold up."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from test_tcp_stack import A_IP, B_IP, Net, transfer

from ustack import cli
from ustack.cli import control, reports, ssfilter
from ustack.cli import ss as ss_cli
from ustack.stack import Stack
from ustack.tcp import info as tcp_info
from ustack.tcp.socket import TcpSocket
from ustack.tcp.states import State


@pytest.fixture(autouse=True)
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(control, "RUN_DIR", str(tmp_path))
    return tmp_path


@contextmanager
def serving(net: Net, name: str, hook: Callable[[], None] | None = None,
            stack: Stack | None = None, poll_other: bool = True
            ) -> Iterator[control.ControlServer]:
    """``stack`` (net.a by default) runs its own loop in a thread, with a
    control socket named ``name``, the other Stack of ``net`` polled
    alongside unless ``poll_other`` is False (so TCP keeps working); the
    clock goes on from the net's."""
    stack = stack or net.a
    other = net.b if stack is net.a else net.a
    server = control.ControlServer(stack, name)
    stop = threading.Event()
    t0 = time.monotonic()
    base = net.now

    def clock() -> float:
        return base + (time.monotonic() - t0)

    def until() -> bool:
        if poll_other:
            other.poll(clock())
        if hook is not None:
            hook()
        return stop.is_set()

    thread = threading.Thread(target=stack.run, kwargs={"clock": clock, "until": until,
                                                        "max_wait": 0.005})
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(10)
        server.close()
        assert not thread.is_alive()


def established_net() -> tuple[Net, TcpSocket, TcpSocket]:
    """A (198.18.0.1) connected to B's listener on port 80, 100 kB moved
    from A to B; A also has a listener on port 8080."""
    net = Net()
    net.a.tcp_listen(("0.0.0.0", 8080), backlog=17)
    listener = net.b.tcp_listen(("0.0.0.0", 80))
    client = net.a.tcp_connect((B_IP, 80))
    server = net.accept(listener)
    net.run_until(lambda: client.state is State.ESTABLISHED, 5)
    data = bytes(range(256)) * 400
    off = 0
    got = bytearray()
    while len(got) < len(data):
        if off < len(data):
            with suppress(BlockingIOError):
                off += client.send(data[off:off + 65536])
        with suppress(BlockingIOError):
            got += server.recv(1 << 20)
        net.step()
    net.run_until(lambda: client.conn.snd_una == client.conn.snd_nxt, 5)
    return net, client, server


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# -- the filter -----------------------------------------------------------------

ROWS = [
    ("ESTAB", "198.18.0.1:40000", "198.18.0.2:80"),
    ("LISTEN", "0.0.0.0:8080", "0.0.0.0:*"),
    ("TIME-WAIT", "198.18.0.1:40001", "198.18.0.2:80"),
    ("SYN-SENT", "198.18.0.1:40002", "198.18.1.9:443"),
]


@pytest.mark.parametrize(("words", "expected"), [
    ("", [0, 1, 2, 3]),
    ("sport = :8080", [1]),
    ("dport = :80", [0, 2]),
    ("dport == :80 and sport > :40000", [2]),
    ("dport eq :80 and not sport = :40000", [2]),
    ("dst 198.18.0.2:80", [0, 2]),
    ("dst 198.18.1.0/24", [3]),
    ("src 198.18.0.1", [0, 2, 3]),
    ("src 198.18.0.1:40002 or sport = :8080", [1, 3]),
    ("( sport = :8080 or dport = :443 )", [1, 3]),
    ("state established", [0]),
    ("state connected and dport = :80", [0, 2]),
    ("state time-wait or state listening", [1, 2]),
    ("!dport = :80", [1, 3]),
])
def test_filter_matches_like_ss(words: str, expected: list[int]) -> None:
    f = ssfilter.parse(words.split())
    shown = f.shown(ssfilter.ALL_STATES)
    got = [i for i, (s, lo, pe) in enumerate(ROWS) if s in shown and f.match(s, lo, pe)]
    assert got == expected


def test_filter_states_choose_what_is_listed() -> None:
    assert ssfilter.parse([]).shown(ssfilter.DEFAULT_STATES) == ssfilter.DEFAULT_STATES
    assert ssfilter.parse(["state", "time-wait"]).shown(ssfilter.DEFAULT_STATES) == {"TIME-WAIT"}
    assert "LISTEN" not in ssfilter.parse(["exclude", "listening"]).shown(frozenset())
    connected = ssfilter.parse(["state", "connected"]).shown(frozenset())
    assert "LISTEN" not in connected and "TIME-WAIT" in connected


@pytest.mark.parametrize(("words", "says"), [
    ("state bogus", "unknown state 'bogus'"),
    ("sport = 80x", "bad port '80x'"),
    ("dst 300.1.1.1", "bad address '300.1.1.1'"),
    ("sport =", "filter ends where a port (:N) should follow"),
    ("frobnicate", "cannot take 'frobnicate'"),
    ("( sport = :1", "filter ends where ')' should follow"),
    ("sport = :1 )", "unexpected ')'"),
])
def test_bad_filter_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str],
                                           words: str, says: str) -> None:
    status, out, err = run_cli(capsys, "ss", *words.split())
    assert status == cli.EXIT_USAGE
    assert err.startswith("ustack ss: ") and err.count("\n") == 1, err
    assert says in err
    assert out == ""


def test_ss_without_a_stack_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run_cli(capsys, "ss", "--name", "nosuch")
    assert status == cli.EXIT_USAGE
    assert err == (f"ustack ss: no running stack named 'nosuch' "
                   f"({control.RUN_DIR}/nosuch.sock not found)\n")
    status, _, err = run_cli(capsys, "ss")
    assert status == cli.EXIT_USAGE and "no running stack found" in err


# -- the rows of a live stack -------------------------------------------------------


def _table(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines() if not line.startswith("\t")]


def test_ss_lists_connections_and_listeners(capsys: pytest.CaptureFixture[str]) -> None:
    net, client, _ = established_net()
    lport = client.conn.local[1]
    with serving(net, "t0"):
        status, out, err = run_cli(capsys, "ss", "-tn")
        assert status == 0, err
        assert _table(out) == [
            ["State", "Recv-Q", "Send-Q", "Local", "Address:Port", "Peer", "Address:Port"],
            ["ESTAB", "0", "0", f"{A_IP}:{lport}", f"{B_IP}:80"],
        ]
        status, out, _ = run_cli(capsys, "ss", "-l")
        assert _table(out)[1:] == [["LISTEN", "0", "17", "0.0.0.0:8080", "0.0.0.0:*", "synq:0"]]
        status, out, _ = run_cli(capsys, "ss", "-a", "--name", "t0")
        assert [r[0] for r in _table(out)[1:]] == ["LISTEN", "ESTAB"]
        status, out, _ = run_cli(capsys, "ss", "-a", "dport", "=", ":81")
        assert _table(out)[1:] == []


def test_ss_info_line_says_what_the_connection_knows(
        capsys: pytest.CaptureFixture[str]) -> None:
    net, client, _ = established_net()
    conn = client.conn
    with serving(net, "t0"):
        status, out, err = run_cli(capsys, "ss", "-ti")
    assert status == 0, err
    lines = out.splitlines()
    assert len(lines) == 3 and lines[2].startswith("\t "), out
    words = lines[2].split()
    fields = dict(w.split(":", 1) for w in words if ":" in w)
    assert words[:3] == ["ts", "sack", "cubic"]
    assert fields["wscale"] == f"{conn.snd_wscale},{conn.rcv_wscale}"
    assert fields["mss"] == str(conn.mss)
    assert int(fields["cwnd"]) == conn.cc.cwnd // conn.mss >= 10
    assert int(fields["bytes_acked"]) == 102400 == int(fields["bytes_sent"])
    assert "bytes_received" not in fields  # zero: ss leaves it out
    assert int(fields["segs_out"]) == conn.segs_out > 10
    assert int(fields["segs_in"]) == conn.segs_in > 5
    rtt, rttvar = (float(x) for x in fields["rtt"].split("/"))
    # The in-memory link answers within a step of the fake clock (1 ms).
    assert 0 < rtt < 10 and rttvar >= 0
    assert float(fields["rto"]) >= 200  # the floor (RFC 6298, Linux's 200 ms)
    assert "retrans" not in fields and "bytes_retrans" not in fields
    # ss's words: "delivery_rate 1.23Mbps", "send 77.2Mbps" (a space, no colon)
    rate = words[words.index("delivery_rate") + 1]
    assert re.fullmatch(r"[\d.]+[KMGT]?bps", rate), rate
    assert re.fullmatch(r"[\d.]+[KMGT]?bps", words[words.index("send") + 1])


def test_ss_json_holds_the_same_rows(capsys: pytest.CaptureFixture[str]) -> None:
    net, client, _ = established_net()
    with serving(net, "t0"):
        status, out, _ = run_cli(capsys, "ss", "-a", "-i", "--json")
    assert status == 0
    rows = json.loads(out)["connections"]
    assert [r["state"] for r in rows] == ["LISTEN", "ESTAB"]
    est = rows[1]
    assert est["local"] == f"{A_IP}:{client.conn.local[1]}" and est["peer"] == f"{B_IP}:80"
    info = est["info"]
    assert info["bytes_acked"] == 102400 and info["cc"] == "cubic" and info["sack"]
    assert info["ssthresh"] is None  # no loss: ss leaves it out too
    assert rows[0]["syn_queue"] == 0 and rows[0]["send_q"] == 17


def test_retransmissions_and_queues_show(capsys: pytest.CaptureFixture[str]) -> None:
    """Data the peer never acknowledges: Send-Q holds it, the
    retransmission timer runs and counts, bytes_retrans grows."""
    net, client, _ = established_net()
    client.send(b"x" * 3000)  # B is polled no more: it never answers
    net.a.flush(net.now)
    for _ in range(700):  # 0.7 s: past the first RTO (200 ms floor)
        net.now += 0.001
        net.a.poll(net.now)
    conn = client.conn
    assert conn.total_retransmits >= 1
    with serving(net, "t0", poll_other=False):
        _status, out, _ = run_cli(capsys, "ss", "-i", "--json")
    (row,) = json.loads(out)["connections"]
    assert row["send_q"] == 3000
    info = row["info"]
    assert info["bytes_retrans"] >= 1000 and info["retrans"][1] >= 1
    assert info["bytes_sent"] == 102400 + 3000 + info["bytes_retrans"]
    names = [t["name"] for t in row["timers"]]
    assert "on" in names
    text = "\n".join(ss_cli.format_rows([row], info=True))
    assert re.search(r"timer:\(on,\d+(ms|\.\dsec),\d+\)", text), text
    assert re.search(r"retrans:\d+/\d+", text) and "bytes_retrans:" in text


def test_time_wait_records_are_listed_with_their_timer(
        capsys: pytest.CaptureFixture[str]) -> None:
    net, client, server = established_net()
    client.close()  # A closes first: A goes to TIME-WAIT (a record, tcp/timewait.py)
    net.step(20)
    server.close()
    net.run_until(lambda: bool(net.a.tcp.tw.records), 5)
    with serving(net, "t0"):
        _, default, _ = run_cli(capsys, "ss")
        _, plain, _ = run_cli(capsys, "ss", "state", "time-wait")
        _, out, _ = run_cli(capsys, "ss", "-o", "state", "time-wait")
    assert _table(default)[1:] == []  # ss lists no TIME-WAIT without -a or a state
    assert len(plain.splitlines()) == 2 and plain.splitlines()[1].split()[0] == "TIME-WAIT"
    (line,) = out.splitlines()[1:]
    assert line.split()[0] == "TIME-WAIT"
    assert re.search(r" timer:\(timewait,\d+sec,0\)$", line), line


def test_request_words_as_a_person_types_them() -> None:
    net, _, _ = established_net()
    rep = reports.answer(net.a, b"ss -tnl\n", None)
    assert [r["state"] for r in rep["connections"]] == ["LISTEN"]
    rep = reports.answer(net.a, b"ss -a sport = :8080", None)
    assert [r["local"] for r in rep["connections"]] == ["0.0.0.0:8080"]
    assert "counters" in reports.answer(net.a, b"stats", None)
    assert reports.answer(net.a, b"ss -z", None) == {"error": "ss: unknown option -z"}
    assert "unknown command" in reports.answer(net.a, b"frob", None)["error"]
    assert "not valid JSON" in reports.answer(net.a, b"{nope", None)["error"]
    assert "unknown state" in reports.answer(net.a, b"ss state nope", None)["error"]


# -- the control socket cannot be held up ---------------------------------------------


def test_silent_and_slow_clients_do_not_stall_the_stack(run_dir: Path) -> None:
    net, _client, _server = established_net()
    path = str(run_dir / "t0.sock")
    ticks: list[float] = []

    def hook() -> None:
        ticks.append(time.monotonic())

    silent = [socket.socket(socket.AF_UNIX) for _ in range(20)]
    try:
        with serving(net, "t0", hook=hook):
            # A client that sends half a request and waits.
            half = socket.socket(socket.AF_UNIX)
            half.connect(path)
            half.sendall(b"ss -")
            # One that asks and never reads (the answer fits the socket
            # buffer here; the server never blocks on it either way).
            deaf = socket.socket(socket.AF_UNIX)
            deaf.connect(path)
            deaf.sendall(b"stats\n")
            time.sleep(0.05)
            for s in silent:
                s.connect(path)
            time.sleep(0.3)
            # The loop kept turning: no gap near the 2 s a client may take
            # (0.25 s: slack for a busy machine).
            recent = [t for t in ticks if t > time.monotonic() - 0.3]
            assert len(recent) > 10
            assert max(b - a for a, b in itertools.pairwise(recent)) < 0.25
            # Old-style clients that say nothing get the counters (after
            # QUIET_TIME); those beyond MAX_CLIENTS were closed at once.
            answered = closed = 0
            for s in silent:
                s.settimeout(5)
                data = s.recv(1 << 20)
                if data:
                    assert "counters" in json.loads(data)
                    answered += 1
                else:
                    closed += 1
            assert answered >= 1 and answered + closed == 20
            half.settimeout(5)
            t = time.monotonic()
            assert half.recv(100) == b""  # given up on after REQUEST_TIME
            assert time.monotonic() - t < control.REQUEST_TIME
            # After all that, a request is answered.
            assert control.ask("t0", "ss -a")["connections"]
    finally:
        for s in silent:
            s.close()
    half.close()
    deaf.close()


def test_oversized_request_is_refused(run_dir: Path) -> None:
    net, _, _ = established_net()
    with serving(net, "t0"):
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(run_dir / "t0.sock"))
        s.sendall(b"x" * (control.MAX_REQUEST + 10))
        s.settimeout(5)
        doc = json.loads(s.recv(1 << 16))
        s.close()
    assert doc == {"error": f"request: longer than {control.MAX_REQUEST} bytes"}


# -- workers ----------------------------------------------------------------------


def test_workers_are_one_stack_for_ss_and_stats(capsys: pytest.CaptureFixture[str]) -> None:
    """Two real stacks under the names X@0 and X@1: listed once, their rows
    together (a Worker column with --per-worker), their counters summed."""
    net0, _c0, _ = established_net()
    net1, _c1, _ = established_net()
    with serving(net0, "X@0"), serving(net1, "X@1"):
        assert control.running_names() == ["X"]
        status, out, err = run_cli(capsys, "ss")
        assert status == 0, err
        assert [r[0] for r in _table(out)[1:]] == ["ESTAB", "ESTAB"]
        _, out, _ = run_cli(capsys, "ss", "--per-worker", "--name", "X")
        table = _table(out)
        assert table[0][0] == "Worker" and sorted(r[0] for r in table[1:]) == ["X@0", "X@1"]
        _, out, _ = run_cli(capsys, "stats")
        merged = dict(line.split() for line in out.splitlines())
        _, out, _ = run_cli(capsys, "stats", "--per-worker")
        per: dict[str, dict[str, int]] = {}
        for line in out.splitlines():
            if line.startswith("# "):
                cur = per.setdefault(line.split()[1], {})
            else:
                k, v = line.split()
                cur[k] = int(v)
        assert sorted(per) == ["X@0", "X@1"]
        assert int(merged["TcpActiveOpens"]) == 2
        # (the stacks run on between the two reads: compare a settled counter)
        assert per["X@0"]["TcpActiveOpens"] == per["X@1"]["TcpActiveOpens"] == 1
        assert int(merged["LinkTxFrames"]) >= per["X@0"]["LinkTxFrames"]
        # One worker of the group, by its own name.
        _, out, _ = run_cli(capsys, "ss", "--name", "X@1")
        assert len(_table(out)) == 2


@pytest.mark.parametrize("name", ["a@b", "a@", "@1", "a@1@2"])
def test_at_sign_is_for_worker_numbers_only(name: str) -> None:
    with pytest.raises(control.ControlError, match="'@' is only for a worker's number"):
        control.check_name(name)
    assert control.check_name("a@12") == "a@12"


# -- stats --watch --------------------------------------------------------------------


def test_stats_watch_prints_what_moved(capsys: pytest.CaptureFixture[str]) -> None:
    """Counters that move are printed each interval, with nstat's names;
    the ones that did not move are not (unless --all)."""
    net, client, server = established_net()
    sent = [0]

    def keep_sending() -> None:  # traffic from A while the watch runs
        with suppress(BlockingIOError):
            sent[0] += client.send(b"y" * 1000)
        with suppress(BlockingIOError):
            server.recv(1 << 20)

    with serving(net, "t0", hook=keep_sending):
        status, out, err = run_cli(capsys, "stats", "--watch", "0.2", "--count", "2")
        assert status == 0, err
        blocks = out.split("#ustack t0 ")[1:]
        assert len(blocks) == 2, out
        for block in blocks:
            head, *lines = block.splitlines()
            assert re.fullmatch(r"\d\d:\d\d:\d\d 0\.\ds", head), head
            moved = {ln.split()[0]: int(ln.split()[1]) for ln in lines}
            assert moved.get("TcpOutSegs", 0) > 0 and moved.get("LinkTxFrames", 0) > 0
            assert all(v != 0 for v in moved.values())
            assert "TcpActiveOpens" not in moved
        status, out, _ = run_cli(capsys, "stats", "--watch", "0.1", "--count", "1", "--all")
        assert "TcpActiveOpens" in out.split()
        status, out, _ = run_cli(capsys, "stats", "--watch", "0.1", "--count", "2", "--json")
        docs = [json.loads(line) for line in out.splitlines()]
        assert [d["name"] for d in docs] == ["t0", "t0"]
        assert all(d["deltas"]["TcpOutSegs"] > 0 for d in docs)
    assert sent[0] > 0


def test_stats_watch_says_when_the_stack_goes_away(
        capsys: pytest.CaptureFixture[str]) -> None:
    net, _, _ = established_net()
    result: list[int] = []
    with serving(net, "t0"):
        thread = threading.Thread(
            target=lambda: result.append(cli.main(["stats", "--watch", "0.2"])))
        thread.start()
        time.sleep(0.5)
    thread.join(10)
    assert result == [cli.EXIT_ERROR]
    err = capsys.readouterr().err
    assert err.startswith("ustack stats: stack 't0' went away after ")
    assert err.count("\n") == 1


@pytest.mark.parametrize(("argv", "says"), [
    (["--watch", "0"], "--watch takes a number of seconds above 0"),
    (["--count", "0"], "--count must be at least 1"),
    (["--watch", "x"], "argument --watch: invalid float value: 'x'"),
])
def test_stats_watch_bad_options(capsys: pytest.CaptureFixture[str], argv: list[str],
                                 says: str) -> None:
    status, _, err = run_cli(capsys, "stats", *argv)
    assert status == cli.EXIT_USAGE and says in err and err.count("\n") == 1
    assert err.startswith("ustack stats: ")


def test_info_counts_a_whole_transfer() -> None:
    net = Net()
    listener = net.b.tcp_listen(("0.0.0.0", 81))
    a = net.a.tcp_connect((B_IP, 81))
    b = net.accept(listener)
    assert transfer(net, a, b, b"z" * 5000) == b"z" * 5000
    info = tcp_info.connection_info(a.conn, net.now)
    assert info["bytes_acked"] == 5000 and info["bytes_sent"] == 5000


def test_a_large_answer_is_written_without_blocking(
        run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer far larger than the socket's buffer (a stack with many
    connections): a client that reads gets all of it, written in pieces
    between the stack's iterations; one that stops reading is cut off after
    REPLY_TIME, and the loop never waits for either."""
    net, _, _ = established_net()
    big = {"connections": [{"state": "ESTAB", "pad": "p" * 1000}] * 3000}  # ~3 MB
    real_start = reports.start
    monkeypatch.setattr(reports, "start",
                        lambda stack, line, more: big if line == b"big" else
                        real_start(stack, line, more))
    monkeypatch.setattr(control, "REPLY_TIME", 0.5)
    ticks: list[float] = []
    path = str(run_dir / "t0.sock")
    with serving(net, "t0", hook=lambda: ticks.append(time.monotonic())):
        deaf = socket.socket(socket.AF_UNIX)
        deaf.connect(path)
        deaf.sendall(b"big\n")
        got = control.ask("t0", "big")
        assert got == big
        time.sleep(0.8)  # past REPLY_TIME: the deaf one is cut off
        assert max(b - a for a, b in itertools.pairwise(ticks)) < 0.3  # REPLY_TIME is 0.5
        deaf.settimeout(5)
        total = 0
        try:  # what the buffers held, then the end (or a reset)
            while chunk := deaf.recv(1 << 20):
                total += len(chunk)
        except ConnectionResetError:
            pass
        assert total < len(json.dumps(big))
        deaf.close()


def test_stats_watch_ends_on_ctrl_c_with_status_0(run_dir: Path) -> None:
    """Ctrl-C is how a watch normally ends: exit 0, no traceback, the
    intervals printed so far on stdout."""
    net, _, _ = established_net()
    env = {**os.environ, "USTACK_RUN_DIR": str(run_dir)}
    with serving(net, "t0"):
        # SIGINT as a terminal delivers it: a suite started in the
        # background by a shell without job control inherits it ignored,
        # and Python then installs no KeyboardInterrupt (nor would a
        # user's background watch stop on Ctrl-C).
        proc = subprocess.Popen(
            [sys.executable, "-m", "ustack.cli", "stats", "--watch", "0.1", "--all"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()  # an interval has been printed
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert first.startswith("#ustack t0 ")
    assert proc.returncode == 0, err
    assert err == ""


def test_a_failing_report_is_an_error_answer_not_a_dead_stack(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An application's counters that raise (``ustack serve`` hands its own
    over): the client gets one error line, the stack goes on serving."""
    net, _, _ = established_net()

    def broken() -> dict[str, int]:
        raise RuntimeError("boom")

    with serving(net, "t0") as server:
        server.more_counters = broken
        with pytest.raises(control.RequestRefused,
                           match="the stack could not answer: RuntimeError: boom"):
            control.ask("t0", "stats")
        server.more_counters = None
        assert "counters" in control.ask("t0", "stats")
