"""The ``ustack`` command as a new user meets it: every failure they can cause
is one line on stderr naming the command, with a fitting exit status, never a
traceback (issue 15, item 5).

``ROWS`` is the table: command line, the line expected (a regex searched in
stderr) and the exit status.  Rows marked ``ns`` need a namespace and a
link (root); the others fail before any link is touched and run anywhere.
Each row also checks stderr is exactly one line and holds no traceback.

Then the cases a table cannot hold: Ctrl-C during ``ustack tcp recv`` and
during ``ustack tcp send`` reading a slow pipe (real processes, real
SIGINT), ``ustack stats --name`` reading a running ``ustack tcp``, the
warnings for a ``packet:`` interface, and the progress display.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ustack.apps.services import SERVICES
from ustack.cli import common
from ustack.cli.progress import Progress
from ustack.net import arp
from ustack.wire import arp as warp
from ustack.wire import ethernet
from ustack_testbed import Netns, Testbed, Topology, packet_topology, tap_topology

# The pure build when the session runs it (USTACK_PURE), else the default.
ENV = dict(os.environ)
USTACK = [sys.executable, "-m", "ustack.cli"]
PEER_CIDR = "198.18.1.1/24"
STACK_CIDR = "198.18.1.2/24"


@dataclass(frozen=True)
class Row:
    id: str
    argv: tuple[str, ...]  # after `ustack`; {link} {peer} {peer_ip} {peer_mac} {tmp} filled in
    line: str  # regex searched in the one line of stderr ({peer_mac} etc. filled in)
    status: int
    ns: bool = False  # needs the packet topology (root)
    user: int | None = None  # run as this uid (not root)
    # A shell around the command: "{cmd}" is replaced by it ("{cmd} <&-"
    # runs it with stdin closed); bash, the status of the command's own.
    shell: str | None = None
    server: bool = False  # a kernel server on {peer_ip}:5003 sends 4 MB to each client


LINK = ("--link", "{link}", "--ip", STACK_CIDR)
ROWS = [
    Row("run-missing-script", ("run", "--link", "tap:x", "--ip", "198.18.0.2/24", "--",
                               "/nonexistent/s.py"),
        r"^ustack run: can't open file '/nonexistent/s\.py': No such file", 2),
    Row("run-python-missing-script", ("run", "--link", "tap:x", "--ip", "198.18.0.2/24", "--",
                                      "python3", "/nonexistent/s.py", "arg"),
        r"^ustack run: can't open file '/nonexistent/s\.py': No such file", 2),
    Row("tcp-recv-file-in-missing-folder", ("tcp", "recv", "--to", "198.18.0.1:5",
                                            "--link", "tap:x", "--ip", "198.18.0.2/24",
                                            "/nonexistent/out"),
        r"^ustack tcp recv: /nonexistent/out: No such file or directory$", 2),
    Row("run-missing-module", ("run", "--link", "tap:x", "--ip", "198.18.0.2/24", "--",
                               "python3", "-m", "nosuchmodule"),
        r"^ustack run: No module named nosuchmodule$", 2),
    Row("run-missing-dotted-module", ("run", "--link", "tap:x", "--ip", "198.18.0.2/24", "--",
                                      "python3", "-m", "nosuchpkg.mod"),
        r"^ustack run: No module named nosuchpkg$", 2),
    Row("stats-misspelt-option", ("stats", "--jsn"),
        r"^ustack stats: unrecognized arguments: --jsn \(see ustack stats --help\)$", 2),
    Row("tcp-recv-misspelt-option", ("tcp", "recv", "--to", "198.18.1.1:5", "--tiemout", "3",
                                     "--link", "tap:x", "--ip", "198.18.0.2/24"),
        r"^ustack tcp recv: unrecognized arguments: --tiemout \(see ustack tcp recv --help\)$",
        2),
    Row("multicast-mac", ("up", "--link", "tap:x", "--ip", "198.18.0.2/24",
                          "--mac", "01:00:5e:00:00:01"),
        r"^ustack up: --mac 01:00:5e:00:00:01: a group \(multicast\) address", 2),
    Row("ip-is-host-ip", ("up", "--link", "tap:x", "--ip", "198.18.0.2/24",
                          "--host-ip", "198.18.0.2/24"),
        r"^ustack up: --host-ip 198\.18\.0\.2/24: the same address as --ip", 2),
    Row("two-services-one-port", ("up", "--link", "tap:x", "--ip", "198.18.0.2/24",
                                  "--service", "udp-echo:7", "--service", "udp-discard:7"),
        r"^ustack up: --service udp-discard:7: UDP port 7 is already taken by "
        r"--service udp-echo:7$", 2),
    Row("not-root-packet", ("up", "--link", "packet:x0", "--ip", STACK_CIDR),
        r"^ustack up: needs root \(CAP_NET_RAW\) to open --link packet:x0$", 2, user=65534),
    Row("not-root-tap", ("tcp", "send", "--to", "198.18.0.1:5", "--link", "tap:x0",
                         "--ip", "198.18.0.2/24"),
        r"^ustack tcp send: needs root \(CAP_NET_ADMIN\) to open --link tap:x0$", 2,
        user=65534),
    Row("pcap-missing-folder", ("up", *LINK, "--pcap", "/nonexistent/x.pcap"),
        r"^ustack up: --pcap /nonexistent/x\.pcap: no such directory /nonexistent$", 2,
        ns=True),
    Row("pcap-folder-not-writable", ("up", *LINK, "--pcap", "/proc/x.pcap"),
        r"^ustack up: --pcap /proc/x\.pcap: ", 2, ns=True),
    Row("address-of-the-peer", ("up", "--link", "{link}", "--ip", PEER_CIDR),
        r"^ustack up: 198\.18\.1\.1 is already in use on the link by {peer_mac} "
        r"\(RFC 5227 ARP probe\); choose another --ip, or --no-dad", 1, ns=True),
    Row("address-of-the-peer-kernel-elsewhere", ("up", "--link", "{link}",
                                                 "--ip", "198.18.1.77/24"),
        r"^ustack up: 198\.18\.1\.77 is already in use on the link by {peer_mac} ", 1,
        ns=True),
    Row("address-among-sources", ("tcp", "send", "--to", "198.18.1.1:5", "--link", "{link}",
                                  "--ip", "198.18.1.70/24", "--sources", "10"),
        r"^ustack tcp send: 198\.18\.1\.77 is already in use on the link by {peer_mac} ", 1,
        ns=True),
    Row("address-the-kernel-holds", ("up", "--link", "{link}", "--ip", "198.18.1.88/24"),
        r"^ustack up: 198\.18\.1\.88 is the kernel's own address here, on lo: both would "
        r"answer for it; choose another --ip", 1, ns=True),
    Row("kernel-address-among-sources", ("tcp", "send", "--to", "198.18.1.1:5",
                                         "--link", "{link}", "--ip", "198.18.1.80/24",
                                         "--sources", "100"),
        r"^ustack tcp send: 198\.18\.1\.88 is the kernel's own address here, on lo: .*"
        r"\(ip addr del 198\.18\.1\.88/32 dev lo\)$", 1,
        ns=True),
    Row("tcp-send-stdin-closed", ("tcp", "send", "--to", "198.18.0.1:5", "--link", "tap:x",
                                  "--ip", "198.18.0.2/24"),
        r"^ustack tcp send: stdin is closed$", 2, shell="{cmd} <&-"),
    Row("tcp-recv-stdout-closed", ("tcp", "recv", "--to", "198.18.0.1:5", "--link", "tap:x",
                                   "--ip", "198.18.0.2/24", "-"),
        r"^ustack tcp recv: stdout is closed$", 2, shell="{cmd} >&-"),
    Row("tcp-recv-into-head", ("tcp", "recv", "--to", "198.18.1.1:5003", *LINK, "--no-dad"),
        r"^ustack tcp recv: stdout: Broken pipe$", 1, ns=True, server=True,
        shell="{cmd} | head -c 1000 >/dev/null; exit ${{PIPESTATUS[0]}}"),
    Row("tcp-recv-into-a-full-disk", ("tcp", "recv", "--to", "198.18.1.1:5003", *LINK,
                                      "--no-dad", "/dev/full"),
        r"^ustack tcp recv: /dev/full: No space left on device$", 1, ns=True, server=True),
    Row("tcp-send-unreachable", ("tcp", "send", "--to", "198.18.1.9:5001", *LINK,
                                 "--no-dad", "--timeout", "3", "/etc/hostname"),
        r"^ustack tcp send: 198\.18\.1\.9:5001: No route to host$", 1, ns=True),
    Row("tcp-send-refused", ("tcp", "send", "--to", "198.18.1.1:9", *LINK, "--no-dad",
                             "/etc/hostname"),
        r"^ustack tcp send: 198\.18\.1\.1:9: Connection refused$", 1, ns=True),
]


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def _check_one_line(proc: subprocess.CompletedProcess[str], line: str, status: int) -> None:
    err = proc.stderr
    assert "Traceback" not in err, err
    assert err.count("\n") == 1 and err.endswith("\n"), f"not one line: {err!r}"
    assert re.search(line, err.rstrip("\n")), f"{err!r} does not match {line!r}"
    assert proc.returncode == status, (proc.returncode, err)


@pytest.fixture(scope="module")
def link_topo() -> Iterator[Topology]:
    """AF_PACKET on a veth whose kernel end has PEER_CIDR, and 198.18.1.77
    on its loopback (the kernel answers ARP for any address of its own)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with Testbed() as tb:
        topo = packet_topology(tb, STACK_CIDR, PEER_CIDR)
        topo.peer_ns.ip("addr", "add", "198.18.1.77/32", "dev", "lo")
        # The probe leaves through AF_PACKET: the stack's own kernel never
        # sees it (``ustack.claim.check_kernel_addresses`` asks it instead).
        topo.stack_ns.ip("addr", "add", "198.18.1.88/32", "dev", "lo")
        yield topo


def _peer_mac(topo: Topology) -> str:
    out = topo.peer_ns.ip("-o", "link", "show", topo.peer_if).stdout
    found = re.search(r"link/ether ([0-9a-f:]{17})", out)
    assert found, out
    return found.group(1)


@pytest.mark.parametrize("row", [r for r in ROWS if not r.ns], ids=lambda r: r.id)
def test_error_without_a_link(row: Row) -> None:
    cmd = _shell([*USTACK, *row.argv], row.shell)
    if row.user is not None:
        cmd = ["setpriv", f"--reuid={row.user}", f"--regid={row.user}", "--clear-groups",
               *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=ENV,
                          stdin=subprocess.DEVNULL)
    _check_one_line(proc, row.line, row.status)
    assert proc.stdout == ""


@pytest.mark.root
@pytest.mark.parametrize("row", [r for r in ROWS if r.ns], ids=lambda r: r.id)
def test_error_on_a_link(row: Row, link_topo: Topology) -> None:
    values = {"link": link_topo.link, "peer_mac": _peer_mac(link_topo)}
    argv = [_fill(a, values) for a in row.argv]
    server = None
    if row.server:
        server = link_topo.peer_ns.popen([sys.executable, "-c", BULK_SERVER],
                                         stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None and server.stdout.readline() == "listening\n"
    try:
        proc = link_topo.stack_ns.run(_shell([*USTACK, *argv], row.shell), check=False,
                                      timeout=30, env=ENV)
    finally:
        if server is not None:
            server.kill()
            server.wait()
    _check_one_line(proc, _fill(row.line, values), row.status)
    if row.server:
        # The peer was reset, not left waiting: the server saw it.
        assert server is not None and server.stdout is not None
        assert "reset" in server.stdout.read(), "the peer was not reset"


# Sends until the client goes; says how it went.
BULK_SERVER = """
import socket
s = socket.create_server(("0.0.0.0", 5003))
print("listening", flush=True)
c, _ = s.accept()
try:
    for _ in range(1000):
        c.sendall(bytes(65536))
    print("all sent", flush=True)
except ConnectionResetError:
    print("reset", flush=True)
"""


def _shell(cmd: list[str], shell: str | None) -> list[str]:
    """``cmd`` inside ``shell`` (``{cmd}`` the command), run by bash."""
    if shell is None:
        return cmd
    return ["bash", "-c", shell.replace("{cmd}", '"$@"').replace("{{", "{").replace("}}", "}"),
            "bash", *cmd]


# -- what a row cannot show ---------------------------------------------------


def test_service_help_lists_every_service() -> None:
    assert set(common.SERVICE_NAMES) == set(SERVICES)
    proc = subprocess.run([*USTACK, "up", "--help"], capture_output=True, text=True,
                          timeout=30, env=ENV)
    text = " ".join(proc.stdout.split())
    for name in SERVICES:
        assert name in text


def _arp_frame(op: int, sha: bytes, spa: bytes, tpa: bytes) -> bytes:
    return (ethernet.BROADCAST + sha + b"\x08\x06"
            + warp.build(op, sha, spa, b"\x00" * 6, tpa))


OURS = bytes([198, 18, 1, 5])
OUR_MAC = bytes.fromhex("020000000005")
THEIR_MAC = bytes.fromhex("020000000009")


@pytest.mark.parametrize(("frame", "found"), [
    (_arp_frame(warp.OP_REPLY, THEIR_MAC, OURS, b"\x00" * 4), (OURS, THEIR_MAC)),
    (_arp_frame(warp.OP_REQUEST, THEIR_MAC, OURS, bytes([198, 18, 1, 1])), (OURS, THEIR_MAC)),
    (_arp_frame(warp.OP_REQUEST, THEIR_MAC, b"\x00" * 4, OURS), (OURS, THEIR_MAC)),
    (arp.probe_frame(OUR_MAC, OURS), None),  # our own probe
    (_arp_frame(warp.OP_REQUEST, THEIR_MAC, bytes([198, 18, 1, 1]), OURS), None),
    (_arp_frame(warp.OP_REPLY, THEIR_MAC, bytes([198, 18, 1, 6]), OURS), None),
    (ethernet.BROADCAST + THEIR_MAC + b"\x08\x00" + bytes(46), None),
], ids=["reply", "owner-speaks", "other-prober", "own-probe", "request-for-us",
        "other-address", "not-arp"])
def test_probe_conflict(frame: bytes, found: tuple[bytes, bytes] | None) -> None:
    """RFC 5227 2.1.1: the owner's ARP or another host's probe is a conflict;
    a request for the address from an address-holding host is not."""
    assert arp.probe_conflict(frame, OUR_MAC, {OURS}) == found


def test_probe_frame_is_an_rfc_5227_probe() -> None:
    frame = arp.probe_frame(OUR_MAC, OURS)
    assert frame[:6] == ethernet.BROADCAST and len(frame) == 60
    pkt = warp.parse(frame[14:])
    assert (pkt.op, pkt.sha, pkt.spa, pkt.tha, pkt.tpa) == (
        warp.OP_REQUEST, OUR_MAC, b"\x00" * 4, b"\x00" * 6, OURS)


def test_progress_plain_lines_only_after_a_while() -> None:
    out = io.StringIO()
    bar = Progress("send", 1000, out=out, fancy=False)
    bar.update(0, 100.0)
    bar.update(500, 101.0)
    assert out.getvalue() == ""  # a short transfer adds no line
    bar.update(600, 111.0)
    assert out.getvalue() == "send: 600 bytes (60%) in 11.0 s, 0.00 MB/s so far\n"
    bar.close(1000)


def test_progress_bar_on_a_terminal() -> None:
    out = io.StringIO()
    bar = Progress("recv", None, out=out, fancy=True)
    bar.update(3_000_000, 1.0)
    bar.close(5_000_000)
    shown = out.getvalue()
    assert shown.startswith("recv ") and "5.0 MB" in shown and "?" not in shown, shown


# -- real processes, real signals --------------------------------------------

SLOW_SERVER = """
import socket, sys, time
s = socket.create_server(("0.0.0.0", 5002))
print("listening", flush=True)
c, _ = s.accept()
try:
    for i in range(400):
        c.sendall(b"x" * 1000)
        time.sleep(0.05)
except OSError:
    pass
"""

SINK = """
import socket
s = socket.create_server(("0.0.0.0", 5003))
print("listening", flush=True)
c, _ = s.accept()
n = 0
while True:
    b = c.recv(65536)
    if not b:
        break
    n += len(b)
    print(n, flush=True)
"""


def _start(ns: Netns, code: str) -> subprocess.Popen[str]:
    proc = ns.popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "listening\n"
    return proc


def _stats(ns: Netns, name: str) -> subprocess.CompletedProcess[str]:
    return ns.run([*USTACK, "stats", "--name", name], check=False, timeout=10, env=ENV)


def _wait(pred: object, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not pred():  # type: ignore[operator]
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


@pytest.mark.root
def test_sigint_during_recv_says_interrupted_and_stats_read_it(
        testbed: Testbed, tmp_path: Path) -> None:
    topo = tap_topology(testbed)
    server = _start(topo.peer_ns, SLOW_SERVER)
    out = tmp_path / "out"
    name = "recv-" + topo.stack_ns.name
    client = topo.stack_ns.popen(
        [*USTACK, "tcp", "recv", "--to", f"{topo.peer_ip}:5002", "--link", topo.link,
         "--ip", topo.stack_cidr, "--host-ip", topo.peer_cidr, "--name", name, str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        _wait(lambda: out.exists() and out.stat().st_size >= 5000, 15)
        stats = _stats(topo.stack_ns, name)
        assert stats.returncode == 0, stats.stderr
        counters = dict(line.split() for line in stats.stdout.splitlines())
        assert int(counters["TcpInSegs"]) >= 5, counters
        client.send_signal(signal.SIGINT)
        _out, err = client.communicate(timeout=10)
    finally:
        client.kill()
        server.kill()
    assert client.returncode == 130, err
    size = out.stat().st_size
    assert err == (f"ustack tcp recv: interrupted after {size} bytes received; {out} is "
                   f"incomplete" + err[err.index(" ("):]), err
    assert err.count("\n") == 1 and size < 400_000


@pytest.mark.root
def test_sigint_while_send_waits_for_a_slow_pipe(testbed: Testbed) -> None:
    """stdin is a pipe we hold open: the stack keeps serving (its control
    socket answers, what was written is sent) while no more comes, and
    SIGINT ends it at once with exit 130."""
    topo = tap_topology(testbed)
    sink = _start(topo.peer_ns, SINK)
    name = "send-" + topo.stack_ns.name
    client = topo.stack_ns.popen(
        [*USTACK, "tcp", "send", "--to", f"{topo.peer_ip}:5003", "--link", topo.link,
         "--ip", topo.stack_cidr, "--host-ip", topo.peer_cidr, "--name", name,
         "--timeout", "2"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    assert client.stdin is not None and sink.stdout is not None
    try:
        client.stdin.write(b"y" * 3000)
        client.stdin.flush()
        assert sink.stdout.readline().strip().isdigit()
        # Longer than --timeout with nothing to read: a slow writer is no stall.
        time.sleep(2.5)
        # stdin's open file description (shared with whoever else holds it,
        # a terminal's often with stdout and stderr) is left blocking.
        fdinfo = Path(f"/proc/{client.pid}/fdinfo/0").read_text()
        flags = re.search(r"^flags:\s+([0-7]+)$", fdinfo, re.M)
        assert flags is not None and not int(flags.group(1), 8) & os.O_NONBLOCK, fdinfo
        started = time.monotonic()
        stats = _stats(topo.stack_ns, name)
        assert stats.returncode == 0, stats.stderr
        assert time.monotonic() - started < 3.0
        client.stdin.write(b"z" * 2000)
        client.stdin.flush()
        got = 0
        while got < 5000:
            got = int(sink.stdout.readline())
        client.send_signal(signal.SIGINT)
        started = time.monotonic()
        _out, err = client.communicate(timeout=10)
        assert time.monotonic() - started < 2.0
    finally:
        client.kill()
        sink.kill()
    text = err.decode()
    assert client.returncode == 130, text
    assert text == "ustack tcp send: interrupted after 5000 bytes sent" + text[text.index(" ("):]
    assert text.count("\n") == 1


@pytest.mark.root
def test_send_from_a_pipe_is_whole(testbed: Testbed) -> None:
    """A pipe read when readable still delivers everything, in order, then FIN."""
    topo = tap_topology(testbed)
    sink = _start(topo.peer_ns, SINK)
    data = bytes(range(256)) * 4096  # 1 MiB
    proc = topo.stack_ns.run(
        ["sh", "-c", f"head -c {len(data)} /dev/zero | tr '\\0' 'a' | "
         f"{' '.join(USTACK)} tcp send --to {topo.peer_ip}:5003 --link {topo.link} "
         f"--ip {topo.stack_cidr} --host-ip {topo.peer_cidr}"],
        check=False, timeout=60, env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert re.match(rf"^send: {len(data)} bytes in ", proc.stderr), proc.stderr
    assert sink.stdout is not None
    last = sink.stdout.read().split()
    sink.wait(timeout=10)
    assert int(last[-1]) == len(data)


@pytest.mark.root
def test_packet_interface_down_or_addressed_is_a_warning(testbed: Testbed) -> None:
    topo = packet_topology(testbed, STACK_CIDR, PEER_CIDR)
    topo.stack_ns.ip("link", "set", topo.stack_if, "down")
    topo.stack_ns.ip("addr", "add", "198.18.1.50/24", "dev", topo.stack_if)
    proc = topo.stack_ns.run(
        [*USTACK, "tcp", "send", "--to", "198.18.1.1:9", "--link", topo.link,
         "--ip", STACK_CIDR, "--no-dad", "--timeout", "1", "/etc/hostname"],
        check=False, timeout=30, env=ENV)
    lines = proc.stderr.splitlines()
    assert f"ustack tcp send: warning: interface {topo.stack_if} is down: " in proc.stderr
    assert (f"ustack tcp send: warning: interface {topo.stack_if} has an IPv4 address of "
            "its own (198.18.1.50)") in proc.stderr
    assert "Traceback" not in proc.stderr and len(lines) == 3, lines


@pytest.mark.root
def test_an_address_the_kernel_holds_on_the_link_is_refused(testbed: Testbed) -> None:
    topo = packet_topology(testbed, STACK_CIDR, PEER_CIDR)
    topo.stack_ns.ip("addr", "add", "198.18.1.50/24", "dev", topo.stack_if)
    topo.stack_ns.ip("addr", "add", "198.18.1.51/24", "dev", topo.stack_if)  # secondary
    for ip in ("198.18.1.50", "198.18.1.51"):
        proc = topo.stack_ns.run([*USTACK, "up", "--link", topo.link, "--ip", f"{ip}/24"],
                                 check=False, timeout=30, env=ENV)
        _check_one_line(proc, rf"^ustack up: {re.escape(ip)} is the kernel's own address "
                        rf"here, on {topo.stack_if}: ", 1)
    # Another address is taken, with a warning naming both of the kernel's.
    proc = topo.stack_ns.run(
        [*USTACK, "tcp", "send", "--to", "198.18.1.1:9", "--link", topo.link,
         "--ip", STACK_CIDR, "--timeout", "1", "/etc/hostname"],
        check=False, timeout=30, env=ENV)
    assert (f"ustack tcp send: warning: interface {topo.stack_if} has IPv4 addresses of "
            "its own (198.18.1.50, 198.18.1.51)") in proc.stderr, proc.stderr
    assert "Connection refused" in proc.stderr and proc.returncode == 1, proc.stderr


@pytest.mark.root
def test_stats_reads_a_running_ustack_run(testbed: Testbed) -> None:
    topo = tap_topology(testbed)
    name = "run-" + topo.stack_ns.name
    proc = topo.stack_ns.popen(
        [*USTACK, "run", "--link", topo.link, "--ip", topo.stack_cidr, "--host-ip",
         topo.peer_cidr, "--name", name, "--", "python3", "-c",
         "import time; print('started', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "started\n"
        ping = topo.peer_ns.run(["ping", "-n", "-c", "1", "-W", "2", topo.stack_ip],
                                check=False, timeout=10)
        assert ping.returncode == 0, ping.stdout
        stats = _stats(topo.stack_ns, name)
        assert stats.returncode == 0, stats.stderr
        counters = dict(line.split() for line in stats.stdout.splitlines())
        assert int(counters["IcmpInEchos"]) >= 1, counters
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 143


@pytest.mark.root
def test_progress_bar_when_stderr_is_a_terminal(testbed: Testbed, tmp_path: Path) -> None:
    """stderr a terminal: rich draws the bar (bytes, rate, time left)."""
    topo = tap_topology(testbed)
    sink = _start(topo.peer_ns, SINK)
    data = tmp_path / "data"
    data.write_bytes(bytes(2_000_000))
    master, slave = os.openpty()
    try:
        proc = topo.stack_ns.popen(
            [*USTACK, "tcp", "send", "--to", f"{topo.peer_ip}:5003", "--link", topo.link,
             "--ip", topo.stack_cidr, "--host-ip", topo.peer_cidr, str(data)],
            stderr=slave, env={**ENV, "COLUMNS": "100"})
        os.close(slave)
        assert proc.wait(timeout=60) == 0
        shown = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
        sink.kill()
    text = shown.decode(errors="replace")
    assert "send" in text and "━" in text and "2.0/2.0 MB" in text, text
    assert "send: 2000000 bytes in " in text
