"""bench/tcpgen.c and its driver bench/tcpgen.py, on loopback.

The benchmark's TCP figures are only as good as the tool: its data stream
must be the one tcpgen.py computes independently, its SHA-256 must be
right (with libcrypto and with the built-in fallback), and every mode must
count what really happened and stop by itself.  Each run is bounded to about
a second; loopback only.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import tcpgen  # bench/ is not a package: found through the path set above

LO = "127.0.0.1"


@pytest.fixture(scope="module")
def binary() -> Path:
    try:
        return tcpgen.build()
    except tcpgen.TcpgenError as exc:
        pytest.skip(str(exc))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LO, 0))
        port: int = s.getsockname()[1]
        return port


def run(argv: list[str], env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.stdout


def start(mode: str, **kw: Any) -> tcpgen.ServerProcess:
    """A tcpgen server on a free loopback port, ending by itself within 10 s."""
    return tcpgen.ServerProcess(tcpgen.ServerSpec(mode, LO, free_port(), seconds=10.0, **kw))


# -- the data stream ----------------------------------------------------------


def test_pattern_matches_python_twin_and_hash_is_right(binary: Path) -> None:
    n = 3 * tcpgen.PERIOD + 12345  # crosses the period boundary three times
    expected = hashlib.sha256(tcpgen.pattern_bytes(5, n)).hexdigest()
    assert tcpgen.pattern_sha256(5, n) == expected
    with start("discard", hash=True, verbose=True, max_conns=1) as srv:
        out = run(
            tcpgen.BulkSpec(
                "bulk-send", LO, srv.spec.port, nbytes=n, seed=5, hash=True, warmup=0
            ).argv(binary)
        )
        summary = srv.wait(10)
    sent = tcpgen.parse_bulk(out)
    assert (sent.total, sent.sha256, sent.end) == (n, expected, "count")
    (conn,) = summary.conns
    assert (conn.rx, conn.sha256_rx, conn.end) == (n, expected, "eof")


def test_builtin_sha256_fallback_matches_hashlib(binary: Path, tmp_path: Path) -> None:
    # Sizes around the 64-byte block and the 56-byte padding boundary.
    env = {**os.environ, "TCPGEN_NO_LIBCRYPTO": "1"}
    for size in (0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 300_001):
        data = os.urandom(size)
        path = tmp_path / f"f{size}"
        path.write_bytes(data)
        port = free_port()
        spec = tcpgen.ServerSpec(
            "source", LO, port, seconds=10, file=str(path), hash=True, verbose=True, max_conns=1
        )
        srv = tcpgen.ServerProcess(
            spec, popen=lambda cmd, **kw: subprocess.Popen(cmd, env=env, **kw)
        )
        with srv:
            out = run(
                tcpgen.BulkSpec("bulk-recv", LO, port, hash=True, warmup=0).argv(binary), env=env
            )
            summary = srv.wait(10)
        got = tcpgen.parse_bulk(out)
        want = hashlib.sha256(data).hexdigest()
        assert (got.total, got.sha256, got.end) == (size, want, "eof"), size
        assert summary.conns[0].sha256_tx == want, size


def test_wrong_data_changes_the_hash(binary: Path) -> None:
    with start("discard", hash=True, verbose=True, max_conns=1) as srv:
        run(
            tcpgen.BulkSpec("bulk-send", LO, srv.spec.port, nbytes=100_000, seed=2, warmup=0).argv(
                binary
            )
        )
        (conn,) = srv.wait(10).conns
    assert conn.rx == 100_000
    assert conn.sha256_rx == tcpgen.pattern_sha256(2, 100_000)
    assert conn.sha256_rx != tcpgen.pattern_sha256(3, 100_000)


# -- bulk -----------------------------------------------------------------------


def test_bulk_send_by_time_counts_what_the_peer_got(binary: Path) -> None:
    with start("discard", verbose=True, max_conns=1) as srv:
        out = run(
            tcpgen.BulkSpec("bulk-send", LO, srv.spec.port, seconds=0.4, warmup=0.1).argv(binary)
        )
        (conn,) = srv.wait(10).conns
    r = tcpgen.parse_bulk(out)
    assert r.ok and r.end == "time"
    assert r.total == conn.rx > r.bytes > 0  # warm-up bytes are not counted
    assert r.mb_per_s == pytest.approx(r.bytes / r.seconds / 1e6, rel=1e-3)
    assert 0.35 < r.seconds < 1.5


def test_bulk_recv_from_source_with_byte_limit(binary: Path) -> None:
    with start(
        "source", bytes_per_conn=5_000_000, seed=9, hash=True, verbose=True, max_conns=1
    ) as srv:
        out = run(tcpgen.BulkSpec("bulk-recv", LO, srv.spec.port, hash=True, warmup=0).argv(binary))
        (conn,) = srv.wait(10).conns
    r = tcpgen.parse_bulk(out)
    want = tcpgen.pattern_sha256(9, 5_000_000)
    assert (r.total, r.sha256, r.end) == (5_000_000, want, "eof")
    assert (conn.tx, conn.sha256_tx, conn.end) == (5_000_000, want, "eof")


def test_bulk_against_closed_port_reports_refused(binary: Path) -> None:
    out = run(tcpgen.BulkSpec("bulk-send", LO, free_port()).argv(binary))
    r = tcpgen.parse_bulk(out)
    assert r.end == "connect:ECONNREFUSED" and not r.ok and r.total == 0


# -- connection per request -----------------------------------------------------


@pytest.mark.parametrize("mode", ["echo", "echo-line"])
def test_crr_against_kernel_echo(binary: Path, mode: str) -> None:
    with start(mode) as srv:
        out = run(
            tcpgen.CrrSpec(LO, srv.spec.port, concurrency=4, seconds=0.4, warmup=0.1).argv(binary)
        )
        summary = srv.stop()
    r = tcpgen.parse_crr(out)
    assert r.conns > 100 and r.fail == 0 and r.bad == 0 and r.errors == {}
    assert 0 < r.p50_us <= r.p99_us
    assert summary.served >= r.conns  # the server also saw the warm-up ones


def test_crr_stops_at_count(binary: Path) -> None:
    with start("echo") as srv:
        out = run(
            tcpgen.CrrSpec(LO, srv.spec.port, concurrency=2, count=50, seconds=5, warmup=0).argv(
                binary
            )
        )
    r = tcpgen.parse_crr(out)
    assert 50 <= r.conns <= 52 and r.seconds < 4


def test_crr_counts_refused_connections_by_errno(binary: Path) -> None:
    out = run(tcpgen.CrrSpec(LO, free_port(), concurrency=2, seconds=0.2, warmup=0).argv(binary))
    r = tcpgen.parse_crr(out)
    assert r.conns == 0 and r.fail > 10 and set(r.errors) == {"ECONNREFUSED"}


class Garbler(threading.Thread):
    """A TCP echo that changes the first byte of every line it sends back."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind((LO, 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.stop = False

    def run(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(1.0)
                try:
                    data = conn.recv(4096)
                    conn.sendall(b"X" + data[1:])
                except OSError:
                    pass


def test_crr_counts_wrong_echo_as_bad(binary: Path) -> None:
    g = Garbler()
    g.start()
    try:
        out = run(tcpgen.CrrSpec(LO, g.port, concurrency=1, seconds=0.3, warmup=0).argv(binary))
    finally:
        g.stop = True
        g.join(2)
        g.sock.close()
    r = tcpgen.parse_crr(out)
    assert r.conns == 0 and r.bad > 0 and r.fail == r.bad and r.errors == {}


# -- the driver -----------------------------------------------------------------


def test_echo_server_echoes_a_stream_larger_than_the_socket_buffers(binary: Path) -> None:
    data = os.urandom(3_000_000)
    with start("echo", hash=True, verbose=True, max_conns=1) as srv:
        with socket.create_connection((LO, srv.spec.port), timeout=10) as s:
            sender = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(1)))
            sender.start()
            got = bytearray()
            while chunk := s.recv(1 << 16):
                got += chunk
            sender.join()
        (conn,) = srv.wait(10).conns
    want = hashlib.sha256(data).hexdigest()
    assert bytes(got) == data
    assert conn.sha256_rx == conn.sha256_tx == want


def test_server_that_cannot_bind_raises(binary: Path) -> None:
    with socket.socket() as s:
        s.bind((LO, 0))
        s.listen()
        with pytest.raises(tcpgen.TcpgenError, match="did not start"):
            tcpgen.ServerProcess(tcpgen.ServerSpec("discard", LO, s.getsockname()[1], 5))


def test_parsers_reject_garbage() -> None:
    with pytest.raises(tcpgen.TcpgenError):
        tcpgen.parse_crr("nothing\n")
    with pytest.raises(tcpgen.TcpgenError):
        tcpgen.parse_bulk("bytes=1 seconds=x\n")
    with pytest.raises(tcpgen.TcpgenError):
        tcpgen.parse_server("conn peer=1\nserved=1\n")
    r = tcpgen.parse_crr(
        "conns=5 seconds=1 rate=5.0 fail=3 errors=ECONNRESET:2,EOF:1 bad=0 p50_us=5 "
        "p99_us=9 cpu=0.1 wait=0.0\n"
    )
    assert r.errors == {"ECONNRESET": 2, "EOF": 1}
    with pytest.raises(ValueError):
        tcpgen.ServerSpec("chargen", LO, 19).argv(Path("x"))
    with pytest.raises(ValueError):
        tcpgen.BulkSpec("bulk", LO, 9).argv(Path("x"))


# -- bench_tcp's verdicts -------------------------------------------------------


def test_bench_tcp_ratios_and_goals_use_the_kernel_offload_row() -> None:
    import bench_tcp

    cfg = bench_tcp.Config(
        runs=3,
        seconds=1.0,
        warmup=0.1,
        concurrency=8,
        links=("packet", "tap"),
        offloads=(False, True),
        verify_bytes=0,
        gen_cpu=None,
        resp_cpu=None,
    )
    report = bench_tcp.Report(cfg)

    def put(row: bench_tcp.RowKey, metric: str, *values: float) -> None:
        cell = report.cell(row, metric)
        cell.values += values
        cell.client_cpu += [0.5] * len(values)

    ref, kernel_off = ("kernel", "veth", True), ("kernel", "veth", False)
    for metric, value in (("recv", 1000.0), ("send", 800.0), ("crr", 20000.0)):
        put(ref, metric, value * 0.9, value, value * 1.1)
        put(kernel_off, metric, value * 2)  # must not be the reference
    put(("ustack", "packet", True), "recv", 240.0, 260.0, 250.0)  # 25% of 1000: not met
    put(("ustack", "packet", True), "send", 150.0)  # 18.75% of 800: not met
    put(("ustack", "tap", True), "recv", 950.0)
    put(("ustack", "tap", True), "send", 720.0)  # 90%: met
    put(("ustack", "tap", False), "crr", 15000.0)
    put(("ustack", "packet", False), "crr", 14999.0)

    rows = {(r[0], r[1], r[2]): r for r in bench_tcp.table(report)}
    assert rows[("kernel", "veth", "on")][6:] == ["1.00", "1.00", "1.00"]
    assert rows[("kernel", "veth", "off")][6:] == ["2.00", "2.00", "2.00"]
    assert rows[("ustack", "AF_PACKET", "on")][3:] == [
        "240 / 250 / 260",
        "150 / 150 / 150",
        "-",
        "0.25",
        "0.19",
        "-",
    ]
    bulk, conn = bench_tcp.goal_lines(report)
    assert "AF_PACKET recv 25%, send 19%: NOT met" in bulk
    assert "TAP recv 95%, send 90%: met" in bulk
    assert "TAP 15000/s: met" in conn and "AF_PACKET 14999/s: NOT met" in conn


def test_bench_tcp_without_ustack_rows_says_not_measured() -> None:
    import bench_tcp

    cfg = bench_tcp.Config(1, 1.0, 0.1, 8, ("packet",), (True,), 0, None, None)
    report = bench_tcp.Report(cfg, ustack_skip="ustack rows skipped: no TCP services")
    bulk, conn = bench_tcp.goal_lines(report)
    assert bulk.endswith("not measured") and conn.endswith("not measured")
    assert "ustack rows skipped: no TCP services" in bench_tcp.footnotes(report)
    assert [r[3:6] for r in bench_tcp.table(report)][-1] == ["-", "-", "-"]
