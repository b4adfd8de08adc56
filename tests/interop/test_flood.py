"""``ustack flood`` against the kernel: SYN cookies counted three ways.

The target is the kernel in the peer namespace of a veth pair (the
kernel's default offloads on), a socket listening on port 80 and
``net.ipv4.tcp_syncookies=2`` (a SYN cookie for every SYN, no state kept),
so every SYN that reaches its TCP is answered with a SYN-ACK.  The flood's
figures (its JSON) are checked against the kernel's own count
(``TcpExtSyncookiesSent``, nstat in the peer namespace) and against a
capture on the target's interface (tcpdump, read with scapy): SYNs sent,
SYN-ACKs, no RST from the flood's side, every source one of ours.  The
captured run is paced (``--rate``): tcpdump loses packets in a burst of
tens of thousands a second (the flood, its count and the kernel's do
not); the full-speed run is checked against the kernel's count.  Bounded
to a few thousand SYNs; the testbed deletes everything it made.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from ustack_testbed import Netns, Testbed, Topology, packet_topology

pytestmark = pytest.mark.root

PORT = 80
FIRST = 10  # our sources: 198.18.1.10 ..
LISTENER = (
    "import socket, time\n"
    f"s = socket.socket(); s.bind(('0.0.0.0', {PORT})); s.listen(4096)\n"
    "time.sleep(120)\n"
)


HTTP_PORT = 8000  # the legitimate clients' server (--mix-load)


@pytest.fixture(scope="module")
def target(root_ok: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    www = tmp_path_factory.mktemp("www")
    (www / "index.html").write_text("hello\n")
    with Testbed() as tb:
        topo = packet_topology(tb, offloads=True)
        topo.peer_ns.sysctl("net.ipv4.tcp_syncookies", "2")
        topo.peer_ns.popen([sys.executable, "-c", LISTENER])
        topo.peer_ns.popen([sys.executable, "-m", "http.server", str(HTTP_PORT), "--bind",
                            topo.peer_ip, "--directory", str(www)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not all(f":{p} " in topo.peer_ns.run(["ss", "-ltnH"]).stdout
                      for p in (PORT, HTTP_PORT)):
            assert time.monotonic() < deadline, "the listeners did not start"
            time.sleep(0.05)
        yield topo


def cookies(ns: Netns) -> int:
    """The kernel's TcpExtSyncookiesSent (absolute: nstat's history file is per user,
    not per namespace)."""
    out = ns.run(["nstat", "-az", "TcpExtSyncookiesSent"]).stdout
    (line,) = [x for x in out.splitlines() if x.startswith("TcpExtSyncookiesSent")]
    return int(line.split()[1])


def flood(topo: Topology, tmp: Path, *args: str) -> dict[str, object]:
    out = tmp / "flood.json"
    proc = topo.stack_ns.run(
        [sys.executable, "-m", "ustack.cli", "flood", "--to", f"{topo.peer_ip}:{PORT}",
         "--link", topo.link, *args, "--json", str(out)], check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    report: dict[str, object] = json.loads(out.read_text())
    assert f"{report['sent']:,} SYNs" in proc.stdout
    topo.peer_ns.ip("neigh", "flush", "dev", topo.peer_if, check=False)
    return report


def test_syn_acks_counted_agree_with_the_kernel_and_a_capture(
        target: Topology, tmp_path: Path) -> None:
    topo = target
    before = cookies(topo.peer_ns)
    with topo.peer_ns.capture(topo.peer_if, "tcp") as cap:
        r = flood(topo, tmp_path, "--ip", f"198.18.1.{FIRST}-198.18.1.{FIRST + 49}/24",
                  "--rand-source", "--count", "3000", "--rate", "3000", "--grace", "1")
    sent_cookies = cookies(topo.peer_ns) - before
    pkts = [Ether(f) for f in cap.frames]
    tcp = [p for p in pkts if TCP in p]
    syns = [p for p in tcp if p[IP].dst == topo.peer_ip and str(p[TCP].flags) == "S"]
    synacks = [p for p in tcp if p[IP].src == topo.peer_ip and str(p[TCP].flags) == "SA"]
    from_us = [p for p in tcp if p[IP].dst == topo.peer_ip]
    (t,) = r["targets"]  # type: ignore[misc]
    assert r["sent"] == 3000 and r["stopped_by"] == "count" and r["path"] == "tx-ring"
    assert len(syns) == len(from_us) == 3000  # SYNs only: no RST, no ACK from the flood
    assert t["synack"] == len(synacks) == sent_cookies == 3000
    assert t["unanswered"] == 0 and t["rst"] == 0 and t["unmatched"] == 0
    ours = {f"198.18.1.{FIRST + i}" for i in range(50)}
    srcs = {p[IP].src for p in syns}
    assert srcs <= ours and len(srcs) > 40  # random over the range
    # The SYNs carry Linux's options, and the cookies answer them.
    assert [k for k, _ in syns[0][TCP].options] == ["MSS", "SAckOK", "Timestamp", "NOP",
                                                    "WScale"]
    assert all(p[IP].dst in ours for p in synacks)


def test_a_full_speed_flood_is_counted_as_the_kernel_counts_it(
        target: Topology, tmp_path: Path) -> None:
    """As fast as the TX ring goes, options off, from the stack's addresses in
    turn: every SYN the kernel answered is counted once."""
    topo = target
    before = cookies(topo.peer_ns)
    r = flood(topo, tmp_path, "--ip", f"198.18.1.{FIRST}/24", "--sources", "20",
              "--syn-options", "none", "--count", "20000", "--grace", "1")
    sent_cookies = cookies(topo.peer_ns) - before
    (t,) = r["targets"]  # type: ignore[misc]
    assert r["sent"] == 20000 and r["syn_options"] == "none"
    assert t["synack"] == sent_cookies and t["unmatched"] == 0
    assert t["synack"] + t["unanswered"] == 20000
    assert t["synack"] >= 19000, t  # the kernel may drop a few under the burst
    assert r["pps"] > 0 and r["device"]["tx_frames"] >= 20000  # type: ignore[index]


def test_mix_load_reports_the_legitimate_clients_during_the_flood(
        target: Topology, tmp_path: Path) -> None:
    """--mix-load: connection-per-request GETs from other addresses of ours
    while the flood runs; with SYN cookies on, the kernel serves them all, and
    the report says how many and how fast (their own SYNs are not counted as
    the flood's answers)."""
    topo = target
    r = flood(topo, tmp_path, "--ip", f"198.18.1.{FIRST}/24", "--sources", "20",
              "--count", "20000", "--rate", "10000", "--duration", "3", "--grace", "0.5",
              "--mix-load", f"http://{topo.peer_ip}:{HTTP_PORT}/index.html",
              "--mix-sources", "5", "--mix-conns", "4")
    mix = r["mix_load"]
    assert isinstance(mix, dict)
    req = mix["requests"]
    assert req["succeeded"] >= 50, mix
    assert req["failed"] == 0
    opened = mix["connections"]["opened"]
    assert mix["success_rate"] == pytest.approx(req["succeeded"] / opened, abs=1e-4)
    assert mix["success_rate"] > 0.99  # (the last few are cut short by the end)
    assert mix["latency_us"]["connect"]["p50"] > 0  # time moves within the flood's steps
    assert [s["ip"] for s in mix["sources"]] == [f"198.18.1.{FIRST + 20 + i}"
                                                for i in range(5)]
    (t,) = r["targets"]  # type: ignore[misc]
    assert t["unmatched"] == 0 and t["synack"] + t["unanswered"] == r["sent"]
