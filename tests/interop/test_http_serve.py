"""``ustack serve`` against real clients: curl, ab, wrk and h11 as judges.

One server per link kind for the module (TAP; AF_PACKET on a veth with the
kernel's default offloads), serving a small tree with a secret beside it
and symlinks pointing out; the large-file tests start their own servers
(with and without ``--vnet-hdr``, and with faults injected).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ustack_testbed import Testbed, Topology, UstackProcess, topology

pytestmark = pytest.mark.root

SMALL = bytes(range(256)) * 4  # 1 KB
INDEX = b"<!doctype html><title>ustack</title><p>served by ustack\n"


def make_tree(base: Path) -> Path:
    root = base / "www"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_bytes(INDEX)
    (root / "small.bin").write_bytes(SMALL)
    (root / "a b.txt").write_bytes(b"space in the name\n")
    (root / "sub" / "index.html").write_bytes(b"sub index\n")
    (root / "mid.bin").write_bytes(os.urandom(300_000))
    secret = base / "secret.txt"
    secret.write_bytes(b"NOT TO BE SERVED\n")
    (base / "outside").mkdir()
    (base / "outside" / "x.txt").write_bytes(b"NOT TO BE SERVED EITHER\n")
    (root / "link-out.txt").symlink_to(secret)
    (root / "dir-out").symlink_to(base / "outside")
    (root / "link-in.bin").symlink_to(root / "small.bin")
    return root


def serve_args(topo: Topology, root: Path, *extra: str) -> list[str]:
    return ["serve", str(root), *topo.ustack_args(*extra)[1:]]


@pytest.fixture(scope="module", params=["tap", "packet-offload"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, root_ok: None
) -> Iterator[tuple[Topology, UstackProcess, Path]]:
    root = make_tree(tmp_path_factory.mktemp("serve"))
    with Testbed() as tb:
        topo = topology(tb, request.param)
        proc = tb.start_ustack(topo.stack_ns, serve_args(topo, root), timeout=20)
        yield topo, proc, root


def curl(topo: Topology, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return topo.peer_ns.run(["curl", "-sS", "--max-time", "20", *args], check=False,
                            timeout=timeout)


def curl_bytes(topo: Topology, url: str, *args: str) -> tuple[int, bytes, str]:
    """(status, body, headers) of one request (curl -D to stdout, body to a file)."""
    proc = subprocess.run(
        [*topo.peer_ns.exec_prefix(), "curl", "-sS", "--max-time", "20", "-D", "/dev/stderr",
         *args, url], capture_output=True, timeout=30)
    headers = proc.stderr.decode("latin-1")
    m = re.search(r"^HTTP/1\.[01] (\d{3})", headers, re.M)
    assert m is not None, (proc.returncode, headers)
    return int(m.group(1)), proc.stdout, headers


def test_ready_line_gives_the_url(served: tuple[Topology, UstackProcess, Path]) -> None:
    topo, proc, _ = served
    assert proc.ready_line.startswith(f"ready: http://{topo.stack_ip}/ ")


def test_get_index_and_file(served: tuple[Topology, UstackProcess, Path],
                            need_tool: object) -> None:
    topo, _, _ = served
    url = f"http://{topo.stack_ip}"
    status, body, headers = curl_bytes(topo, url + "/")
    assert (status, body) == (200, INDEX)
    assert re.search(r"^Content-Type: text/html", headers, re.M | re.I), headers
    status, body, headers = curl_bytes(topo, url + "/small.bin")
    assert (status, body) == (200, SMALL)
    for name in ("Date", "Last-Modified", "ETag", "Content-Length"):
        assert re.search(rf"^{name}: ", headers, re.M | re.I), headers
    status, body, _ = curl_bytes(topo, url + "/a%20b.txt")
    assert (status, body) == (200, b"space in the name\n")
    status, body, _ = curl_bytes(topo, url + "/sub/")
    assert (status, body) == (200, b"sub index\n")
    status, body, _ = curl_bytes(topo, url + "/link-in.bin")
    assert (status, body) == (200, SMALL)
    mid = (served[2] / "mid.bin").read_bytes()
    status, body, _ = curl_bytes(topo, url + "/mid.bin")
    assert (status, body) == (200, mid)
    status, _, _ = curl_bytes(topo, url + "/nothing-here")
    assert status == 404


def test_head_range_and_conditional(served: tuple[Topology, UstackProcess, Path]) -> None:
    topo, _, _ = served
    url = f"http://{topo.stack_ip}/small.bin"
    status, _, head_h = curl_bytes(topo, url, "-I")  # (curl -I prints the head as the body)
    assert status == 200
    assert re.search(r"^Content-Length: 1024\r?$", head_h, re.M | re.I), head_h
    status, body, headers = curl_bytes(topo, url, "-r", "10-19")
    assert (status, body) == (206, SMALL[10:20])
    assert re.search(r"^Content-Range: bytes 10-19/1024", headers, re.M | re.I), headers
    status, _, headers = curl_bytes(topo, url, "-r", "5000-6000")
    assert status == 416
    etag = re.search(r"^ETag: (\S+)", head_h, re.M | re.I)
    assert etag is not None
    status, body, _ = curl_bytes(topo, url, "-H", f"If-None-Match: {etag.group(1)}")
    assert (status, body) == (304, b"")
    lm = re.search(r"^Last-Modified: (.+?)\r?$", head_h, re.M | re.I)
    assert lm is not None
    status, _, _ = curl_bytes(topo, url, "-H", f"If-Modified-Since: {lm.group(1)}")
    assert status == 304


def test_keep_alive_connection_is_reused(served: tuple[Topology, UstackProcess, Path]) -> None:
    topo, _, _ = served
    url = f"http://{topo.stack_ip}/small.bin"
    proc = curl(topo, "-v", "-o", "/dev/null", url, "--next", "-o", "/dev/null", url)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"Re-?using existing connection", proc.stderr, re.I), proc.stderr


@pytest.mark.parametrize("path", [
    "/../secret.txt", "/%2e%2e/secret.txt", "/sub/%2e%2e/%2e%2e/secret.txt",
    "/..%2fsecret.txt", "/%2e%2e%2fsecret.txt", "/link-out.txt", "/dir-out/x.txt",
    "/sub/../../secret.txt",
])
def test_nothing_outside_the_root_is_served(served: tuple[Topology, UstackProcess, Path],
                                            path: str) -> None:
    topo, _, _ = served
    status, body, _ = curl_bytes(topo, f"http://{topo.stack_ip}{path}", "--path-as-is")
    assert status in (400, 403, 404), status
    assert b"NOT TO BE SERVED" not in body


RAW_CLIENT = textwrap.dedent("""
    import socket, sys
    s = socket.create_connection((sys.argv[1], 80), timeout=10)
    s.sendall(bytes.fromhex(sys.argv[2]))
    if sys.argv[3] == "shut":
        s.shutdown(socket.SHUT_WR)
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    sys.stdout.write(out.hex())
""")


def raw_exchange(topo: Topology, data: bytes, *, shut: bool = True) -> bytes:
    """Send ``data`` from a kernel socket (then shut down its side unless not
    ``shut``) and read to the end of the stream."""
    proc = topo.peer_ns.run([sys.executable, "-c", RAW_CLIENT, topo.stack_ip, data.hex(),
                             "shut" if shut else "-"], timeout=30)
    return bytes.fromhex(proc.stdout.strip())


def test_pipelined_requests_answered_in_order_and_h11_parses_them(
        served: tuple[Topology, UstackProcess, Path]) -> None:
    h11 = pytest.importorskip("h11")
    topo, _, _ = served
    host = topo.stack_ip.encode()
    reqs = [b"/small.bin", b"/", b"/nothing", b"/sub/"]
    data = b"".join(b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (p, host) for p in reqs)
    data += b"HEAD /small.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    raw = raw_exchange(topo, data, shut=False)  # (the last request closes)
    client = h11.Connection(h11.CLIENT)
    client.receive_data(raw)
    got = []
    for i, path in enumerate([*reqs, b"/small.bin"]):
        if client.our_state is h11.DONE:
            client.start_next_cycle()
        client.send(h11.Request(method="HEAD" if i == 4 else "GET", target=path,
                                headers=[("Host", "x")]))
        client.send(h11.EndOfMessage())
        status, body = 0, b""
        while True:
            ev = client.next_event()
            assert ev is not h11.NEED_DATA, (i, raw[-300:])
            if isinstance(ev, h11.Response):
                status = ev.status_code
            elif isinstance(ev, h11.Data):
                body += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                break
        got.append((status, body))
    assert got == [(200, SMALL), (200, INDEX), (404, got[2][1]), (200, b"sub index\n"),
                   (200, b"")]


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    (b"BREW / HTTP/1.1\r\nHost: a\r\n\r\n", 501),
    (b"DELETE / HTTP/1.1\r\nHost: a\r\n\r\n", 405),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"b" * 17000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
     400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", 400),
])
def test_malformed_requests_get_their_status(
        served: tuple[Topology, UstackProcess, Path], request_bytes: bytes, status: int) -> None:
    topo, _, _ = served
    raw = raw_exchange(topo, request_bytes)
    assert raw.startswith(b"HTTP/1.1 %d " % status), raw[:200]


def test_ab_keep_alive_has_no_errors(served: tuple[Topology, UstackProcess, Path],
                                     need_tool: object) -> None:
    need_tool("ab")  # type: ignore[operator]
    topo, _, _ = served
    proc = topo.peer_ns.run(["ab", "-k", "-q", "-n", "3000", "-c", "8", "-s", "10",
                             f"http://{topo.stack_ip}/small.bin"], timeout=120)
    assert re.search(r"^Complete requests:\s+3000$", proc.stdout, re.M), proc.stdout
    assert re.search(r"^Failed requests:\s+0$", proc.stdout, re.M), proc.stdout
    assert re.search(r"^Keep-Alive requests:\s+3000$", proc.stdout, re.M), proc.stdout
    assert "Non-2xx" not in proc.stdout


def test_wrk_has_no_errors(served: tuple[Topology, UstackProcess, Path],
                           need_tool: object) -> None:
    need_tool("wrk")  # type: ignore[operator]
    topo, _, _ = served
    for extra in ([], ["-H", "Connection: close"]):
        proc = topo.peer_ns.run(["wrk", "-t", "1", "-c", "16", "-d", "2", *extra,
                                 f"http://{topo.stack_ip}/small.bin"], timeout=60)
        out = proc.stdout
        assert "Socket errors" not in out, out
        assert "Non-2xx" not in out, out
        m = re.search(r"^\s+(\d+) requests in", out, re.M)
        assert m is not None and int(m.group(1)) > 100, out


def test_counters_at_exit(tmp_path: Path, testbed: Testbed) -> None:
    root = make_tree(tmp_path)
    topo = topology(testbed, "tap")
    proc = testbed.start_ustack(topo.stack_ns, serve_args(topo, root), timeout=20)
    url = f"http://{topo.stack_ip}"
    for path in ("/small.bin", "/", "/nothing"):
        curl(topo, "-o", "/dev/null", url + path)
    counters = proc.stop()
    assert counters["HttpRequests"] == 3
    assert counters["HttpResponses2xx"] == 2 and counters["HttpResponses4xx"] == 1
    assert counters["HttpResponsesSpecialised"] == 2
    assert counters["HttpConnsAccepted"] == 3
    assert counters["TcpPassiveOpens"] == 3


SLOW_CLIENTS = textwrap.dedent("""
    import socket, sys, time
    conns = []
    for _ in range(int(sys.argv[2])):
        s = socket.create_connection((sys.argv[1], 80), timeout=5)
        s.setblocking(False)
        conns.append(s)
    line = b"GET / HTTP/1.1\\r\\nHost: x\\r\\nX-Slow: " + b"a" * 100
    end = time.monotonic() + float(sys.argv[3])
    i = 0
    while time.monotonic() < end and i < len(line):
        for s in conns:
            try:
                s.send(line[i:i + 1])
            except OSError:
                pass
        i += 1
        time.sleep(1.0)
""")


def test_slowloris_does_not_stop_other_clients(tmp_path: Path, testbed: Testbed) -> None:
    """100 connections sending a header byte a second: a curl loop beside
    them is served throughout, and the slow ones are closed by the header
    timeout."""
    root = make_tree(tmp_path)
    topo = topology(testbed, "tap")
    proc = testbed.start_ustack(
        topo.stack_ns, serve_args(topo, root, "--header-timeout", "3", "--max-conns", "200"),
        timeout=20)
    slow = topo.peer_ns.popen([sys.executable, "-c", SLOW_CLIENTS, topo.stack_ip, "100", "6"],
                              stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    ok = 0
    t_end = time.monotonic() + 5
    while time.monotonic() < t_end:
        status, body, _ = curl_bytes(topo, f"http://{topo.stack_ip}/small.bin")
        ok += status == 200 and body == SMALL
    slow.wait(timeout=30)
    counters = proc.stop()
    assert ok >= 10
    assert counters["HttpConnsSlow"] >= 100, counters


def big_file(base: Path, size: int) -> tuple[Path, str]:
    root = base / "big"
    root.mkdir()
    block = os.urandom(1 << 20)
    h = hashlib.sha256()
    with open(root / "big.bin", "wb") as f:
        for i in range(size >> 20):
            chunk = block[i % 251:] + block[: i % 251]
            f.write(chunk)
            h.update(chunk)
    return root, h.hexdigest()


@pytest.mark.parametrize("kind, extra", [
    ("tap", []),
    ("tap", ["--vnet-hdr"]),
    ("packet", []),
    ("packet-offload", ["--vnet-hdr"]),
    ("packet-offload", ["--fault", "loss=1%,reorder=1%,dup=1%,seed=5"]),
])
def test_100mb_file_arrives_intact(tmp_path: Path, testbed: Testbed, kind: str,
                                   extra: list[str]) -> None:
    size = (100 << 20) if not any("fault" in e for e in extra) else (20 << 20)
    root, digest = big_file(tmp_path, size)
    topo = topology(testbed, kind)
    testbed.start_ustack(topo.stack_ns, serve_args(topo, root, *extra), timeout=20)
    proc = topo.peer_ns.run(
        ["sh", "-c", f"curl -sS --max-time 120 http://{topo.stack_ip}/big.bin | sha256sum"],
        timeout=150)
    assert proc.stdout.split()[0] == digest, proc.stderr
