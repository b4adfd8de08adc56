"""The `ustack up` / `ustack stats` command as specified for users and tools.

Each test here starts its own stack (the ``topo`` fixture: TAP and
AF_PACKET), because they are about start-up and shutdown themselves.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import dpkt
import pytest

from ustack import purepy
from ustack_testbed import Netns, Testbed, Topology

pytestmark = pytest.mark.root

MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
# The spec says "ustack: "; "ustack up: " / "ustack stats: " name the
# subcommand too and are accepted.
ERROR_RE = re.compile(r"^ustack( up| stats)?: \S[^\n]*\n\Z")


def ping_once(topo: Topology) -> None:
    cmd = ["timeout", "10", "ping", "-n", "-c", "1", "-W", "2", topo.stack_ip]
    proc = topo.peer_ns.run(cmd, check=False, timeout=15)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def ustack(ns: Netns, *args: str) -> subprocess.CompletedProcess[str]:
    return ns.run([sys.executable, "-m", "ustack.cli", *args], check=False, timeout=20)


def test_ready_line_describes_the_stack(topo: Topology) -> None:
    stack = topo.start_ustack("--service", "udp-echo:7")
    assert stack.ready["link"] == topo.link
    assert stack.ready["ip"] == topo.stack_cidr
    assert stack.ready["services"] == "udp-echo:7"
    assert stack.ready["build"] == purepy.build()  # the process runs the build this one does
    assert MAC_RE.match(stack.mac), stack.mac
    first = int(stack.mac[:2], 16)
    assert first & 0x02 and not first & 0x01, "default MAC: locally administered unicast"


def test_mac_option_is_the_mac_on_the_wire(topo: Topology) -> None:
    mac = "02:00:c6:12:00:99"
    stack = topo.start_ustack("--mac", mac)
    assert stack.mac == mac
    ping_once(topo)
    neigh = topo.peer_ns.ip("neigh", "show", topo.stack_ip, "dev", topo.peer_if).stdout
    assert f"lladdr {mac}" in neigh


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_exits_zero_and_prints_counters(topo: Topology, sig: int) -> None:
    stack = topo.start_ustack()
    ping_once(topo)
    counters = stack.stop(sig=sig)  # raises unless the exit status is 0
    assert stack.returncode == 0
    # netstat -s names (RFC 1213 MIB-II): one echo request in, one reply out.
    assert counters.get("IcmpInEchos", 0) >= 1, counters
    assert counters.get("IcmpOutEchoReps", 0) >= 1, counters


def test_stats_command_text_and_json(topo: Topology) -> None:
    stack = topo.start_ustack()
    ping_once(topo)
    text = ustack(topo.stack_ns, "stats", "--name", stack.name)
    assert text.returncode == 0, text.stderr
    lines = dict(line.split() for line in text.stdout.splitlines() if line.strip())
    assert int(lines["IcmpInEchos"]) >= 1
    report = json.loads(ustack(topo.stack_ns, "stats", "--name", stack.name, "--json").stdout)
    assert report["counters"]["IcmpInEchos"] == int(lines["IcmpInEchos"])
    assert report["pid"] == stack.pid


def test_stats_for_unknown_name_is_a_one_line_error(testbed: Testbed) -> None:
    ns = testbed.netns("cli")
    proc = ustack(ns, "stats", "--name", f"{ns.name}-none")
    assert proc.returncode != 0
    assert ERROR_RE.match(proc.stderr), proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--link", "bogus:x", "--ip", "198.18.0.2/24"],
        ["--link", "packet:{missing}", "--ip", "198.18.0.2/24"],
        ["--link", "tap:{missing}", "--ip", "198.18.0.300/24"],
        ["--link", "packet:{missing}", "--ip", "198.18.0.2/24", "--host-ip", "198.18.0.1/24"],
    ],
    ids=["unknown-link-kind", "missing-interface", "bad-ip", "host-ip-without-tap"],
)
def test_bad_arguments_are_a_one_line_error(testbed: Testbed, args: list[str]) -> None:
    ns = testbed.netns("cli")
    missing = testbed.ifname("x", ns)  # never created
    proc = ustack(ns, "up", *(a.format(missing=missing) for a in args))
    assert proc.returncode != 0
    assert ERROR_RE.match(proc.stderr), proc.stderr
    assert proc.stdout == ""


def test_pcap_file_is_readable_by_tshark(
    topo: Topology, tmp_path: Path, need_tool: Callable[[str], str]
) -> None:
    need_tool("tshark")
    pcap = tmp_path / "ustack.pcap"
    stack = topo.start_ustack("--pcap", str(pcap))
    ping_once(topo)
    stack.stop()
    proc = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), "-Y", "icmp.type == 0", "-T", "fields", "-e", "ip.src"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert topo.stack_ip in proc.stdout.split(), proc.stdout
    # The same file through an independent reader: frames in and out.
    with pcap.open("rb") as f:
        frames = [buf for _ts, buf in dpkt.pcap.Reader(f)]
    arp = [f for f in frames if dpkt.ethernet.Ethernet(f).type == dpkt.ethernet.ETH_TYPE_ARP]
    assert arp and len(frames) >= 4  # ARP request/reply, echo request/reply


@pytest.mark.parametrize("command", ["up", "run"])
@pytest.mark.parametrize("where", ["missing-dir", "a-directory"])
def test_unwritable_pcap_is_a_one_line_error(testbed: Testbed, tmp_path: Path, command: str,
                                             where: str) -> None:
    """The pcap file is created once the link is open: its failure is one
    line naming the command and the file, exit 2, no traceback."""
    ns = testbed.netns("cli")
    pcap = str(tmp_path / "missing" / "x.pcap") if where == "missing-dir" else str(tmp_path)
    tail = ["--", "python3", "-c", "pass"] if command == "run" else []
    proc = ustack(ns, command, "--link", f"tap:{testbed.ifname('x', ns)}",
                  "--ip", "198.18.0.2/24", "--pcap", pcap, *tail)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"ustack {command}: --pcap {pcap}: ")
    assert proc.stderr.count("\n") == 1, proc.stderr


def test_link_lost_during_tcp_transfer_is_a_one_line_error(testbed: Testbed,
                                                           tmp_path: Path) -> None:
    """The TAP removed under a running 'ustack tcp recv': the device's
    LinkError is one line naming the command (was a traceback)."""
    ns = testbed.netns("cli")
    tap = testbed.ifname("x", ns)
    server = ns.popen([sys.executable, "-c", "import socket, sys, time\n"
                       "s = socket.create_server(('0.0.0.0', 5000))\n"
                       "print('listening', flush=True)\n"
                       "c, _ = s.accept()\nprint('accepted', flush=True)\ntime.sleep(30)\n"],
                      stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stdout.readline() == "listening\n"
    client = ns.popen([sys.executable, "-m", "ustack.cli", "tcp", "recv",
                       "--to", "198.18.0.1:5000", "--link", f"tap:{tap}",
                       "--ip", "198.18.0.2/24", "--host-ip", "198.18.0.1/24",
                       "--timeout", "20", str(tmp_path / "out")],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline() == "accepted\n"
        ns.ip("link", "del", tap)
        _out, err = client.communicate(timeout=15)
    finally:
        client.kill()
        server.kill()
    assert client.returncode == 2, err
    assert err.startswith(f"ustack tcp recv: tap {tap}: ") and err.count("\n") == 1, err
