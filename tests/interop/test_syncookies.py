"""SYN cookies against the kernel's clients: ``ustack serve --syncookies always``.

curl (the kernel's TCP) completes every handshake through a cookie, gets
every byte, and what the capture shows is what the cookie promised: the
SYN-ACK's ISS is a cookie that the stack's counters say it checked, the
SYN-ACK offers window scale and SACK through the timestamp, and the data
that follows carries timestamps continuing from the SYN-ACK's and is
windowed as scaled.  The CLI's mistakes are one line and exit 2.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import dpkt
import pytest

from ustack_testbed import Testbed, topology

pytestmark = pytest.mark.root


def _tcp_opts(tcp: dpkt.tcp.TCP) -> dict[int, bytes]:
    return dict(dpkt.tcp.parse_opts(tcp.opts))


def test_curl_completes_cookie_handshakes_and_the_options_hold(tmp_path: Path,
                                                               testbed: Testbed) -> None:
    root = tmp_path / "www"
    root.mkdir()
    body = os.urandom(300_000)
    (root / "mid.bin").write_bytes(body)
    topo = topology(testbed, "packet-offload")
    proc = testbed.start_ustack(topo.stack_ns, ["serve", str(root), *topo.ustack_args(
        "--syncookies", "always")[1:]], timeout=20)
    url = f"http://{topo.stack_ip}/mid.bin"
    n = 10
    with topo.peer_ns.capture(topo.peer_if, "tcp port 80") as cap:
        for _ in range(n):
            out = subprocess.run([*topo.peer_ns.exec_prefix(), "curl", "-sS", "--max-time",
                                  "20", "-o", "-", url], capture_output=True, timeout=30)
            assert out.returncode == 0, out.stderr
            assert hashlib.sha256(out.stdout).digest() == hashlib.sha256(body).digest()
    counters = proc.stop()
    assert counters["TcpExtSyncookiesSent"] == n
    assert counters["TcpExtSyncookiesRecv"] == n
    assert counters.get("TcpExtSyncookiesFailed", 0) == 0  # (printed when nonzero)
    assert counters["TcpPassiveOpens"] == n and counters["HttpResponses2xx"] == n
    synacks, data = [], []
    offered: dict[int, int] = {}  # client port: the window scale its SYN offered
    for frame in cap.frames:
        ip = dpkt.ethernet.Ethernet(frame).data
        tcp = ip.data
        if tcp.sport != 80:
            if tcp.flags & dpkt.tcp.TH_SYN:
                offered[tcp.sport] = _tcp_opts(tcp)[dpkt.tcp.TCP_OPT_WSCALE][0]
            continue
        if tcp.flags & dpkt.tcp.TH_SYN:
            synacks.append(tcp)
        elif len(tcp.data):
            data.append(tcp)
    assert len(synacks) == n and data
    for sa in synacks:
        opts = _tcp_opts(sa)
        # The kernel's SYN offers MSS, SACK, timestamps, window scale: the
        # cookie SYN-ACK answers all of them (they ride in our TSval).
        assert {dpkt.tcp.TCP_OPT_MSS, dpkt.tcp.TCP_OPT_SACKOK, dpkt.tcp.TCP_OPT_TIMESTAMP,
                dpkt.tcp.TCP_OPT_WSCALE} <= set(opts)
        tsval = int.from_bytes(opts[dpkt.tcp.TCP_OPT_TIMESTAMP][:4], "big")
        assert tsval & 0x10, "SACK-permitted in the TSval's option bits"
        assert tsval & 0x0F == offered[sa.dport], "the client's window scale in the TSval"
    # Every data segment carries timestamps; its window field is the
    # scaled one (1 MB receive buffer >> 7 fits 16 bits; unscaled it would
    # be 65535).
    for d in data:
        opts = _tcp_opts(d)
        assert dpkt.tcp.TCP_OPT_TIMESTAMP in opts
        assert d.win < 0xFFFF


def test_the_options_mistakes_are_one_line(tmp_path: Path) -> None:
    bad_secret = tmp_path / "secret"
    bad_secret.write_bytes(b"too short")
    for extra, want in (
            (["--syncookies", "sometimes"], "invalid choice"),
            (["--syncookie-secret", str(bad_secret)], "holds 9 bytes, a secret is 32"),
            (["--syncookie-secret", str(tmp_path / "no" / "dir")], "No such file")):
        proc = subprocess.run(
            [sys.executable, "-m", "ustack.cli", "serve", str(tmp_path), "--link",
             "tap:ustk-none", "--ip", "198.18.0.2/24", *extra],
            capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2, (extra, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and want in lines[0], (extra, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_a_secret_file_is_created_once_and_shared(tmp_path: Path) -> None:
    """The first process writes a random 32-byte secret (mode 0600); the
    next one reads the same bytes."""
    from ustack.cli.common import read_cookie_secret

    path = str(tmp_path / "cookie.key")
    first = read_cookie_secret(path, "test")
    assert len(first) == 32 and os.stat(path).st_mode & 0o777 == 0o600
    assert read_cookie_secret(path, "test") == first


def test_stateless_serve_to_curl_and_wrk_and_a_fallback(tmp_path: Path,
                                                        testbed: Testbed) -> None:
    """``ustack serve --stateless``: curl and wrk (a connection per request)
    get every small response with no connection made at the server; a file
    beyond the initial window comes over an ordinary connection."""
    root = tmp_path / "www"
    root.mkdir()
    small = bytes(range(256)) * 4
    large = os.urandom(200_000)
    (root / "small.bin").write_bytes(small)
    (root / "large.bin").write_bytes(large)
    topo = topology(testbed, "packet-offload")
    proc = testbed.start_ustack(topo.stack_ns, ["serve", str(root), *topo.ustack_args(
        "--stateless")[1:]], timeout=20)
    url = f"http://{topo.stack_ip}"
    for path, body in (("/small.bin", small), ("/large.bin", large), ("/small.bin", small)):
        out = subprocess.run([*topo.peer_ns.exec_prefix(), "curl", "-sS", "--max-time", "20",
                              "-o", "-", url + path], capture_output=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout == body
    wrk = topo.peer_ns.run(["wrk", "-t", "1", "-c", "4", "-d", "2", "-H", "Connection: close",
                            url + "/small.bin"], check=False, timeout=60)
    assert wrk.returncode == 0, wrk.stderr
    assert "Socket errors" not in wrk.stdout and "Non-2xx" not in wrk.stdout, wrk.stdout
    m = re.search(r"(\d+) requests in", wrk.stdout)
    assert m is not None and int(m.group(1)) > 100, wrk.stdout
    counters = proc.stop()
    # The large file, and wrk's connections still unused when its time was
    # up (their FIN, with no request before it, goes to a connection).
    assert counters["HttpStatelessFallbacks"] >= 1
    assert counters["HttpStatelessResponses"] >= int(m.group(1)) + 2
    assert counters["HttpConnsAccepted"] == counters["HttpStatelessFallbacks"]


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_flood_leaves_no_state_and_memory_flat(tmp_path: Path, testbed: Testbed) -> None:
    """200,000 SYNs from 200 addresses at random (random ports) against
    ``ustack serve --syncookies always``: nearly every one answered by a
    cookie, no connection made, resident memory within 4 MB of before; the
    server still serves afterwards."""
    (tmp_path / "small.bin").write_bytes(b"x" * 1024)
    topo = topology(testbed, "packet-offload")
    proc = testbed.start_ustack(topo.stack_ns, ["serve", str(tmp_path), *topo.ustack_args(
        "--syncookies", "always")[1:]], timeout=20)
    before = _rss(proc.popen.pid)
    out = tmp_path / "flood.json"
    flood = topo.peer_ns.run(
        [sys.executable, "-m", "ustack.cli", "flood", "--to", f"{topo.stack_ip}:80", "--link",
         f"packet:{topo.peer_if}", "--ip", "198.18.1.10/24", "--sources", "200",
         "--rand-source", "--count", "200000", "--rate", "50000", "--duration", "30",
         "--json", str(out)], check=False, timeout=90)
    assert flood.returncode == 0, flood.stderr
    grown = _rss(proc.popen.pid) - before
    report = json.loads(out.read_text())
    assert report["sent"] == 200_000
    assert report["targets"][0]["synack"] >= 190_000
    assert grown < 4 << 20, grown
    got = subprocess.run([*topo.peer_ns.exec_prefix(), "curl", "-sS", "--max-time", "10",
                          f"http://{topo.stack_ip}/small.bin"], capture_output=True, timeout=30)
    assert got.stdout == b"x" * 1024
    counters = proc.stop()
    assert counters["TcpExtSyncookiesSent"] >= 190_000
    assert counters["TcpPassiveOpens"] == 1  # curl's
