"""The testbed: naming, address guard, output parsing, and (as root) that it
creates working namespaces/links and leaves nothing behind in every exit path."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import dpkt
import pytest

from ustack_testbed import (
    IFNAME_MAX,
    Namer,
    Testbed,
    TestbedError,
    check_test_address,
    owner_pid,
    packet_topology,
    parse_counters,
    parse_ready_line,
    read_pcap,
    reap_stale,
    stack_name,
    tap_topology,
)

# ---------------------------------------------------------------- no root


def test_iface_names_unique_short_and_owned() -> None:
    namer = Namer(pid=4194304)  # the largest pid Linux hands out (pid_max)
    names = [namer.iface("a") for _ in range(2000)]
    assert len(set(names)) == len(names)
    assert all(len(n) <= IFNAME_MAX for n in names)
    assert all(owner_pid(n) == 4194304 for n in names)


def test_iface_name_too_long_is_refused() -> None:
    namer = Namer(pid=4194304)
    for _ in range(36**3):  # counter now needs 4 base-36 digits: 16 chars
        namer.netns("x")
    with pytest.raises(TestbedError):
        namer.iface("ab")


@pytest.mark.parametrize("kind", ["", "abc", "A", "-"])
def test_iface_kind_validated(kind: str) -> None:
    with pytest.raises(ValueError):
        Namer(pid=1).iface(kind)


def test_netns_names_sanitise_role_and_share_counter() -> None:
    namer = Namer(pid=42)
    assert namer.netns("Peer Host!") == "us42-0-peerhost"
    assert namer.iface("t") == "us42-1t"
    assert namer.netns("") == "us42-2-ns"


@pytest.mark.parametrize(
    ("name", "pid"),
    [("us123-0-peer", 123), ("us9-zz3a", 9), ("us-1-x", None), ("eth0", None), ("usb0", None)],
)
def test_owner_pid(name: str, pid: int | None) -> None:
    assert owner_pid(name) == pid


@pytest.mark.parametrize("cidr", ["198.18.0.1/24", "198.19.255.254/30", "198.18.7.7/15"])
def test_test_addresses_accepted(cidr: str) -> None:
    assert str(check_test_address(cidr)) == cidr


@pytest.mark.parametrize(
    "cidr",
    ["10.0.0.1/24", "198.20.0.1/24", "198.17.255.1/24", "198.18.0.1/14", "198.18.0.1", "x/24"],
)
def test_other_addresses_refused(cidr: str) -> None:
    with pytest.raises(TestbedError):
        check_test_address(cidr)


def test_parse_ready_line() -> None:
    line = "ready: link=tap:u0 mac=02:00:c6:12:00:02 ip=198.18.0.2/24 services=udp-echo:7\n"
    assert parse_ready_line(line) == {
        "link": "tap:u0",
        "mac": "02:00:c6:12:00:02",
        "ip": "198.18.0.2/24",
        "services": "udp-echo:7",
    }
    with pytest.raises(TestbedError):
        parse_ready_line("starting: link=tap:u0")


def test_parse_counters_ignores_non_counter_lines() -> None:
    text = "ready: link=tap:x\nIpInReceives 12\nUdpInCsumErrors 0\n\nbogus line here\nX y\n"
    assert parse_counters(text) == {"IpInReceives": 12, "UdpInCsumErrors": 0}


@pytest.mark.parametrize("nano", [False, True])
def test_read_pcap_against_dpkt_writer(nano: bool) -> None:
    frames = [bytes(range(60)), b"\xff" * 1514, b"\x01"]
    buf = io.BytesIO()
    writer = dpkt.pcap.Writer(buf, nano=nano)
    for i, frame in enumerate(frames):
        writer.writepkt(frame, ts=1000.5 + i)
    data = buf.getvalue()
    assert read_pcap(data) == frames
    assert read_pcap(data[:-1]) == frames[:-1]  # truncated last record dropped
    with pytest.raises(TestbedError):
        read_pcap(b"not a pcap file at all, no magic here")


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["up", "--link", "tap:u0", "--ip", "198.18.0.2/24"], "u0"),
        (["up", "--link=packet:veth1", "--ip", "198.18.0.2/24"], "veth1"),
        (["up", "--link", "tap:u0", "--ip", "198.18.0.2/24", "--name", "web"], "web"),
        (["up", "--name=web", "--link", "tap:u0", "--ip=198.18.0.2/24"], "web"),
    ],
)
def test_control_name_follows_the_cli_default(args: list[str], name: str) -> None:
    """``ustack stats --name`` must find the stack: --name, else the device."""
    assert stack_name(args) == name


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["up", "--ip", "198.18.0.2/24"], "--link"),  # required: no default name to guess
        (["up", "--link", "tap:u0"], "--ip"),
        (["up", "--link", "tap:u0", "--ip", "198.18.0.2/24", "--nmae", "web"], "--nmae"),
        (["stats", "--name", "u0"], "not a ustack up"),
    ],
)
def test_control_name_of_a_command_line_the_cli_rejects(args: list[str], words: str) -> None:
    """The CLI's own parser reads the command line: what it rejects is an
    error here too, with its message, not a guessed name."""
    with pytest.raises(TestbedError, match=words):
        stack_name(args)


def test_testbed_is_not_collected_as_a_test_class() -> None:
    assert getattr(Testbed, "__test__", True) is False


# ---------------------------------------------------------------- root


def _netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split(" ", 1)[0] for line in out.splitlines()}


def _root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {line.split(":", 2)[1].strip() for line in out.splitlines() if line.count(":") >= 2}


@pytest.mark.root
def test_create_and_delete_leaves_nothing() -> None:
    before, links_before = _netns_names(), _root_links()
    with Testbed() as tb:
        a, b = tb.netns("a"), tb.netns("b")
        tb.veth(a, b, ip_a="198.18.9.1/24", ip_b="198.18.9.2/24")
        tb.tap(a, ip="198.18.10.1/24")
        packet_topology(tb)
        tap_topology(tb)
        made = _netns_names() - before
        links_made = _root_links() - links_before
        assert len(made) == 5
    # Only what this testbed made is checked: other testbeds (of this
    # session, or of another run on the machine) may come and go meanwhile.
    assert not made & _netns_names()
    assert not links_made & _root_links()


@pytest.mark.root
def test_veth_carries_traffic_and_namespaces_are_isolated(testbed: Testbed) -> None:
    a, b = testbed.netns("a"), testbed.netns("b")
    ia, ib = testbed.veth(a, b, ip_a="198.18.9.1/24", ip_b="198.18.9.2/24")
    ping = a.run(["ping", "-c", "1", "-W", "2", "198.18.9.2"], check=False, timeout=10)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    # No default route: nothing beyond the connected /24 is reachable.
    routes = a.ip("route", "show").stdout
    assert "default" not in routes and "198.18.9.0/24" in routes
    # IPv6 is off, so the kernel sends no router solicitations or MLD.
    assert a.run(["sysctl", "-n", f"net.ipv6.conf.{ia}.disable_ipv6"]).stdout.strip() == "1"
    # Offloads are off on both ends.
    feats = b.run(["ethtool", "-k", ib]).stdout
    assert "tx-checksumming: off" in feats and "generic-segmentation-offload: off" in feats


@pytest.mark.root
def test_socket_is_created_inside_the_namespace(testbed: Testbed) -> None:
    a, b = testbed.netns("a"), testbed.netns("b")
    testbed.veth(a, b, ip_a="198.18.9.1/24", ip_b="198.18.9.2/24")
    with b.socket() as server, a.socket() as client:
        server.bind(("198.18.9.2", 0))  # only exists inside b
        server.settimeout(2)
        client.sendto(b"hello", server.getsockname())
        data, peer = server.recvfrom(100)
    assert data == b"hello" and peer[0] == "198.18.9.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as outside, pytest.raises(OSError):
        outside.bind(("198.18.9.2", 0))  # not an address of this namespace


@pytest.mark.root
def test_capture_sees_kernel_traffic(testbed: Testbed) -> None:
    a, b = testbed.netns("a"), testbed.netns("b")
    ia, _ = testbed.veth(a, b, ip_a="198.18.9.1/24", ip_b="198.18.9.2/24")
    with a.capture(ia, "icmp") as cap:
        a.run(["ping", "-c", "1", "-W", "2", "-s", "3000", "198.18.9.2"], timeout=10)
    # 3028-byte datagrams in 1500-byte fragments: 3 out, 3 back.
    assert sorted(len(f) for f in cap.frames) == [82, 82, 1514, 1514, 1514, 1514]


@pytest.mark.root
def test_exception_in_with_block_still_cleans_up() -> None:
    before = _netns_names()
    with pytest.raises(RuntimeError), Testbed() as tb:
        packet_topology(tb)
        raise RuntimeError("test failed here")
    assert _netns_names() == before


@pytest.mark.root
def test_popen_children_are_stopped_at_close() -> None:
    with Testbed() as tb:
        ns = tb.netns("p")
        proc = ns.popen(["sleep", "60"])
    assert proc.poll() is not None


_CHILD = textwrap.dedent(
    """
    import sys, time
    from ustack_testbed import Testbed, packet_topology
    tb = Testbed()
    topo = packet_topology(tb)
    print(topo.peer_ns.name, topo.stack_ns.name, flush=True)
    if sys.argv[1] == "exit":
        sys.exit(0)          # no close(): atexit must clean up
    time.sleep(60)           # killed by the test
    """
)


def _child(mode: str) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, mode], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    names = proc.stdout.readline().split()
    assert len(names) == 2
    return proc, names


@pytest.mark.root
def test_atexit_cleans_up_in_a_process_that_forgot_close() -> None:
    proc, names = _child("exit")
    assert proc.wait(timeout=20) == 0
    assert not set(names) & _netns_names()


@pytest.mark.root
def test_sigterm_cleans_up() -> None:
    proc, names = _child("sleep")
    assert set(names) <= _netns_names()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == -signal.SIGTERM
    assert not set(names) & _netns_names()


@pytest.mark.root
def test_reap_stale_deletes_dead_owners_only() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"us{dead.pid}-0-stale"
    mine = f"us{os.getpid()}-zzz-live"
    for name in (stale, mine):
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:  # pid reuse within a second is unlikely
            try:
                os.kill(dead.pid, 0)
            except ProcessLookupError:
                break
        removed = reap_stale()
        assert stale in removed and mine not in removed
        assert mine in _netns_names() and stale not in _netns_names()
    finally:
        for name in (stale, mine):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
