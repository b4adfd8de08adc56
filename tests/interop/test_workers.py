"""``--workers N``: N stacks on one MAC and address, the kernel as the peer.

The kernel spreads the flows (PACKET_FANOUT_HASH on AF_PACKET, the queues
of a multi-queue TAP); every connection must succeed whichever worker it
lands on, both workers must get some, and SIGINT must print the sum of the
workers' counters.  A killed worker comes back.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nginx_server import start_nginx

from ustack_testbed import Testbed, Topology, UstackProcess, topology

pytestmark = pytest.mark.root

BODY = bytes(range(256)) * 4  # 1 KB
CONNS = 40


def worker_report(topo: Topology, proc: UstackProcess, index: int) -> dict[str, object]:
    """``ustack stats --name NAME@K --json`` of worker ``index``."""
    out = topo.stack_ns.run([sys.executable, "-m", "ustack.cli", "stats", "--name",
                             f"{proc.name}@{index}", "--json"], timeout=10)
    doc: dict[str, object] = json.loads(out.stdout)
    return doc


def counters_of(doc: dict[str, object]) -> dict[str, int]:
    counters = doc["counters"]
    assert isinstance(counters, dict)
    return {str(k): int(v) for k, v in counters.items()}


def fetch_many(topo: Topology, n: int) -> list[str]:
    """``n`` requests, each on a connection of its own (a new source port,
    so a new flow hash): their status codes."""
    url = f"http://{topo.stack_ip}/f.bin"
    cmd = ["curl", "-sS", "--max-time", "10", "-H", "Connection: close",
           "-w", "%{http_code}\\n"]
    for _ in range(n):
        cmd += ["-o", "/dev/null", url]
    out = topo.peer_ns.run(cmd, check=False, timeout=60)
    return out.stdout.split()


@pytest.fixture(params=["packet", "tap"])
def served(request: pytest.FixtureRequest, tmp_path: Path,
           root_ok: None) -> Iterator[tuple[Topology, UstackProcess]]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "f.bin").write_bytes(BODY)
    with Testbed() as tb:
        topo = topology(tb, request.param)
        args = ["serve", str(root), *topo.ustack_args("--workers", "2")[1:]]
        proc = tb.start_ustack(topo.stack_ns, args, timeout=30)
        yield topo, proc


def test_connections_spread_over_both_workers_and_counters_merge(
        served: tuple[Topology, UstackProcess], need_tool: object) -> None:
    topo, proc = served
    assert proc.ready_line.endswith(" workers=2"), proc.ready_line
    codes = fetch_many(topo, CONNS)
    assert codes == ["200"] * CONNS, codes
    reports = [worker_report(topo, proc, k) for k in range(2)]
    per_worker = [counters_of(r) for r in reports]
    served_by = [c.get("HttpRequests", 0) for c in per_worker]
    assert sum(served_by) == CONNS and all(served_by), served_by
    # Each worker resolved the kernel peer, wherever the kernel's reply
    # landed (the ARP reply listener), and none gave up on it.
    for r, c in zip(reports, per_worker, strict=True):
        interfaces = r["interfaces"]
        assert isinstance(interfaces, list)
        assert topo.peer_ip in interfaces[0]["arp"], interfaces[0]["arp"]
        assert c.get("ArpResolveFailed", 0) == 0, c
    merged = proc.stop()
    assert merged["HttpRequests"] == CONNS
    assert merged["TcpPassiveOpens"] == sum(c["TcpPassiveOpens"] for c in per_worker)
    assert merged["HttpResponses2xx"] == CONNS
    assert "Traceback" not in proc.stderr_text()


def test_a_killed_worker_is_restarted(served: tuple[Topology, UstackProcess],
                                      need_tool: object) -> None:
    topo, proc = served
    old = worker_report(topo, proc, 1)["pid"]
    assert isinstance(old, int)
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 10
    new = old
    while new == old and time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            pid = worker_report(topo, proc, 1)["pid"]
        except Exception:  # not back yet (no socket, or a stale one)
            continue
        assert isinstance(pid, int)
        new = pid
    assert new != old, "worker 1 was not restarted"
    log = proc.stderr_text()
    assert re.search(rf"^ustack serve: worker 1 \(pid {old}\) killed by signal 9 \(SIGKILL\); "
                     r"restarting it in [\d.]+ s$", log, re.M), log
    # Both workers serve again.
    codes = fetch_many(topo, CONNS)
    assert codes == ["200"] * CONNS, codes
    assert counters_of(worker_report(topo, proc, 1)).get("HttpRequests", 0) > 0
    proc.stop()


def test_up_workers_answer_ping_and_udp_from_many_ports(testbed: Testbed) -> None:
    topo = topology(testbed, "packet")
    proc = topo.start_ustack("--workers", "2", "--service", "udp-echo:7", timeout=30)
    ping = topo.peer_ns.run(["ping", "-c", "5", "-i", "0.1", "-W", "2", topo.stack_ip],
                            check=False)
    assert " 0% packet loss" in ping.stdout, ping.stdout

    def echo_from_many_ports() -> int:
        answered = 0
        for i in range(40):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(2.0)
                msg = f"ping {i}".encode()
                s.sendto(msg, (topo.stack_ip, 7))
                data, _ = s.recvfrom(2048)
                answered += data == msg
        return answered

    assert topo.peer_ns.call(echo_from_many_ports) == 40
    per_worker = [counters_of(worker_report(topo, proc, k)) for k in range(2)]
    udp = [c.get("UdpInDatagrams", 0) for c in per_worker]
    assert sum(udp) == 40 and all(udp), udp
    merged = proc.stop()
    assert merged["UdpInDatagrams"] == 40
    assert merged["IcmpInEchos"] == 5


def test_a_worker_that_cannot_start_fails_the_command_in_one_line(testbed: Testbed) -> None:
    ns = testbed.netns("bad")
    out = ns.run([sys.executable, "-m", "ustack.cli", "up", "--link", "packet:nosuch0",
                  "--ip", "198.18.9.2/24", "--workers", "2"], check=False, timeout=30)
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ustack up: "), out.stderr
    assert "nosuch0" in lines[0]


def test_syncookies_always_on_both_workers(tmp_path: Path, testbed: Testbed,
                                           need_tool: object) -> None:
    """Every handshake finished by a cookie: the workers check cookies with
    the secret the parent made for them all."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "f.bin").write_bytes(BODY)
    topo = topology(testbed, "packet")
    args = ["serve", str(root), *topo.ustack_args("--workers", "2", "--syncookies",
                                                  "always")[1:]]
    proc = testbed.start_ustack(topo.stack_ns, args, timeout=30)
    codes = fetch_many(topo, CONNS)
    assert codes == ["200"] * CONNS, codes
    per_worker = [counters_of(worker_report(topo, proc, k)) for k in range(2)]
    recv = [c.get("TcpExtSyncookiesRecv", 0) for c in per_worker]
    assert all(recv) and sum(recv) == CONNS, recv
    merged = proc.stop()
    assert merged["TcpExtSyncookiesRecv"] == CONNS
    assert merged.get("TcpExtSyncookiesFailed", 0) == 0


def test_fragmented_datagrams_reach_one_worker_whole(testbed: Testbed, tmp_path: Path) -> None:
    """4000-byte datagrams from many ports: the kernel fragments them, the
    fanout reassembles them before choosing (PACKET_FANOUT_FLAG_DEFRAG), the
    worker echoes them whole (fragmented again).  Also: SIGTERM stops the
    parent as SIGINT does, and --pcap gives each worker its own file."""
    topo = topology(testbed, "packet")
    pcap = tmp_path / "cap.pcap"
    proc = topo.start_ustack("--workers", "2", "--service", "udp-echo:7", "--pcap", str(pcap),
                             timeout=30)

    def echo_big() -> int:
        answered = 0
        for i in range(20):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(2.0)
                msg = bytes([i]) * 4000
                s.sendto(msg, (topo.stack_ip, 7))
                data, _ = s.recvfrom(8192)
                answered += data == msg
        return answered

    assert topo.peer_ns.call(echo_big) == 20
    per_worker = [counters_of(worker_report(topo, proc, k)) for k in range(2)]
    udp = [c.get("UdpInDatagrams", 0) for c in per_worker]
    assert sum(udp) == 20 and all(udp), udp
    merged = proc.stop(sig=signal.SIGTERM)
    assert merged["UdpInDatagrams"] == 20
    assert not pcap.exists()
    for k in range(2):
        assert (tmp_path / f"cap@{k}.pcap").stat().st_size > 24  # more than the header


def test_the_tap_goes_with_the_parent_and_workers_die_with_it(testbed: Testbed) -> None:
    topo = topology(testbed, "tap")
    proc = topo.start_ustack("--workers", "2", timeout=30)
    pids = [worker_report(topo, proc, k)["pid"] for k in range(2)]
    assert all(isinstance(p, int) for p in pids)
    # The kernel side keeps its address while workers come and go: it is
    # the parent's (it holds every worker's queue).
    assert topo.peer_ip in topo.stack_ns.ip("-4", "addr", "show", "dev", topo.stack_if).stdout
    proc.popen.kill()  # SIGKILL: the parent cannot stop its workers itself
    proc.popen.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in pids):  # type: ignore[arg-type]
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)  # type: ignore[arg-type]
    gone = topo.stack_ns.ip("link", "show", "dev", topo.stack_if, check=False)
    assert gone.returncode != 0, gone.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too (its parent, the test's testbed, reaps it late).
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0] != "Z"


def test_a_tap_that_cannot_be_shared_is_one_line(testbed: Testbed) -> None:
    """An existing single-queue TAP cannot take a queue per worker: the
    parent says so before any worker starts."""
    ns = testbed.netns("tapq")
    tap = testbed.tap(ns)
    out = ns.run([sys.executable, "-m", "ustack.cli", "up", "--link", f"tap:{tap}",
                  "--ip", "198.18.9.2/24", "--workers", "2"], check=False, timeout=30)
    assert out.returncode == 2, (out.returncode, out.stderr)
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ustack up: tap {tap}: "), out.stderr
    assert "ready" not in out.stdout




@pytest.mark.parametrize("close", [False, True], ids=["keepalive", "close"])
def test_load_workers_split_the_sources_and_report_once(
        testbed: Testbed, tmp_path: Path, need_tool: Any, close: bool) -> None:
    """``ustack load --workers 2 --sources 4`` against nginx on the kernel:
    each worker's connections from its own addresses, every one answered
    (the socket filter gives each worker the frames to its addresses), one
    report adding both up."""
    need_tool("nginx")
    topo = topology(testbed, "packet")
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "f.bin").write_bytes(BODY)
    start_nginx(topo.peer_ns, tmp_path, topo.peer_ip, tmp_path / "www")
    out = tmp_path / "load.json"
    proc = topo.stack_ns.run(
        [sys.executable, "-m", "ustack.cli", "load", f"http://{topo.peer_ip}/f.bin", "--link",
         topo.link, "--ip", topo.stack_cidr, "--sources", "4", "--workers", "2", "-c", "8",
         "-d", "2", "--json", str(out), *(["--close"] if close else [])],
        check=False, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    report = json.loads(out.read_text())
    assert report["requests"]["completed"] > 100, report["requests"]
    assert not any(report["errors"].values()), report["errors"]
    assert all(s["connections"] > 0 and s["completed"] > 0 for s in report["sources"]), \
        report["sources"]
    conns = report["connections"]
    if not close:
        assert conns["opened"] == conns["established"] == 8, conns
    assert proc.stdout.count("Requests/sec") == 1


def test_load_workers_refuse_a_tap_in_one_line(testbed: Testbed) -> None:
    ns = testbed.netns("tapl")
    out = ns.run([sys.executable, "-m", "ustack.cli", "load", "http://198.18.9.1/",
                  "--link", "tap:ustl0", "--ip", "198.18.9.2/24", "--sources", "2",
                  "--workers", "2", "-d", "1"], check=False, timeout=30)
    assert out.returncode == 2
    assert out.stderr.startswith("ustack load: --workers 2 with a TAP: ")
    assert len(out.stderr.splitlines()) == 1


def _echo(s: socket.socket, msg: bytes) -> bool:
    """``msg`` through the echo service on ``s``: True when it came back whole."""
    try:
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            chunk = s.recv(4096)
            if not chunk:
                return False
            got += chunk
        return got == msg
    except OSError:  # reset by a worker that does not know the connection
        return False


def _restart(topo: Topology, proc: UstackProcess, index: int) -> None:
    """SIGKILL worker ``index`` and wait until its next life serves."""
    old = worker_report(topo, proc, index)["pid"]
    assert isinstance(old, int)
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            pid = worker_report(topo, proc, index)["pid"]
        except Exception:  # not back yet (no socket, or a stale one)
            continue
        if pid != old:
            return
    raise AssertionError(f"worker {index} was not restarted")


@pytest.mark.parametrize("kind", ["packet", "tap"])
def test_a_restart_leaves_the_other_workers_connections_alone(testbed: Testbed,
                                                              kind: str) -> None:
    """Worker 0 killed and restarted while worker 1 holds connections: the
    kernel's choice of a worker must not change (the parent holds every
    worker's fanout socket or TAP queue, so the membership keeps its
    order), so worker 1's connections still echo; new connections reach
    both workers again."""
    topo = topology(testbed, kind)
    proc = topo.start_ustack("--workers", "2", "--service", "tcp-echo:7", timeout=30)
    n = 16

    def connect() -> list[socket.socket]:
        out = []
        for _ in range(n):
            s = socket.create_connection((topo.stack_ip, 7), timeout=5)
            out.append(s)
        return out

    conns = topo.peer_ns.call(connect)
    try:
        assert all(_echo(s, b"before") for s in conns)
        held = [counters_of(worker_report(topo, proc, k))["TcpCurrEstab"] for k in range(2)]
        assert sum(held) == n and all(held), held
        _restart(topo, proc, 0)
        # Worker 1's connections survive; worker 0's died with it.
        echoed = sum(_echo(s, b"after the restart") for s in conns)
        assert echoed == held[1], (echoed, held)
        assert counters_of(worker_report(topo, proc, 1))["TcpCurrEstab"] == held[1]
        before = [counters_of(worker_report(topo, proc, k)).get("TcpPassiveOpens", 0)
                  for k in range(2)]
        fresh = topo.peer_ns.call(connect)
        try:
            assert all(_echo(s, b"new") for s in fresh)
        finally:
            for s in fresh:
                s.close()
        after = [counters_of(worker_report(topo, proc, k)).get("TcpPassiveOpens", 0)
                 for k in range(2)]
        new = [a - b for a, b in zip(after, before, strict=True)]
        assert sum(new) == n and all(new), new
    finally:
        for s in conns:
            s.close()
    proc.stop()
    assert "Traceback" not in proc.stderr_text()


def test_each_arp_reply_is_counted_once(served: tuple[Topology, UstackProcess],
                                        need_tool: object) -> None:
    """Every worker hears every ARP reply (its side socket) and the link
    hands each to one worker too: the merged ``ArpInReplies`` is the number
    of replies the kernel sent, not more (the worker that got a reply both
    ways counted it twice)."""
    from ustack.link import bpf

    topo, proc = served

    def capture() -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        bpf.attach(s, bpf.arp_replies(outgoing=True))
        s.bind((topo.peer_if, 0x0003))
        s.setblocking(False)
        return s

    cap = topo.peer_ns.call(capture)
    try:
        assert fetch_many(topo, CONNS) == ["200"] * CONNS
        time.sleep(0.2)
        sent = 0
        while True:
            try:
                cap.recv(2048)
            except BlockingIOError:
                break
            sent += 1
    finally:
        cap.close()
    merged = proc.stop()
    assert sent >= 1  # a worker the kernel did not ask asked itself
    assert merged.get("ArpInReplies", 0) == sent, (merged.get("ArpInReplies"), sent)
