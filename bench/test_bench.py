"""Tests of the benchmark tools themselves: `pytest bench/test_bench.py`.

The reflect loop must produce frames a real parser accepts with valid
checksums (else the "ceiling" would be measuring garbage), and the load
generator must count echoes and detect wrong or missing replies.  Loopback
only; every run is bounded to about a second.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import harness
import loadgen
import pytest
import reflect
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import ARP, Ether

MY_IP = "198.18.0.2"
MY_MAC = "02:00:c6:12:00:02"
PEER_IP = "198.18.0.1"
PEER_MAC = "02:00:c6:12:00:01"
IP_BYTES = socket.inet_aton(MY_IP)
BENCH = Path(__file__).resolve().parent
SRC = BENCH.parent / "src"
# The benchmarks measure the compiled build where the core is compiled (both
# builds where they can), else, told so, the pure one.
_COMPILED = any((SRC / "ustack").glob("stack.*.so"))
BUILDS: list[str] = [] if _COMPILED else ["--build", "pure"]
COMPILED_WORDS = "compiled with mypyc"
PURE_WORDS = "pure Python, USTACK_PURE=1"
MAC_BYTES = bytes.fromhex(MY_MAC.replace(":", ""))


def reflect_one(frame: bytes) -> list[bytes]:
    c = reflect.Counters()
    return reflect.reflect_batch([frame], IP_BYTES, MAC_BYTES, c)


def checksums_valid(frame: bytes) -> bool:
    """Rebuild with scapy (checksums recomputed) and compare with the original."""
    pkt = Ether(frame)
    del pkt[IP].chksum
    layer = pkt[UDP] if UDP in pkt else pkt[ICMP]
    del layer.chksum
    return bytes(Ether(bytes(pkt))) == frame


@pytest.mark.parametrize("payload", [b"", b"x", b"hello world" * 50], ids=["0", "1", "550"])
def test_udp_frame_is_reflected_with_valid_checksums(payload: bytes) -> None:
    req = bytes(
        Ether(src=PEER_MAC, dst=MY_MAC)
        / IP(src=PEER_IP, dst=MY_IP, id=77)
        / UDP(sport=40000, dport=7)
        / payload
    )
    (out,) = reflect_one(req)
    pkt = Ether(out)
    assert (pkt.src, pkt.dst) == (MY_MAC, PEER_MAC)
    assert (pkt[IP].src, pkt[IP].dst) == (MY_IP, PEER_IP)
    assert (pkt[UDP].sport, pkt[UDP].dport) == (7, 40000)
    assert bytes(pkt[UDP].payload) == payload
    assert checksums_valid(out)


def test_icmp_echo_request_becomes_valid_reply() -> None:
    req = bytes(
        Ether(src=PEER_MAC, dst=MY_MAC)
        / IP(src=PEER_IP, dst=MY_IP)
        / ICMP(type=8, id=0x1234, seq=9)
        / (b"\xff" * 56)
    )
    (out,) = reflect_one(req)
    pkt = Ether(out)
    assert pkt[ICMP].type == 0 and pkt[ICMP].id == 0x1234 and pkt[ICMP].seq == 9
    assert pkt[IP].dst == PEER_IP
    assert checksums_valid(out)


def test_arp_request_for_our_ip_is_answered() -> None:
    req = bytes(
        Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff")
        / ARP(op=1, hwsrc=PEER_MAC, psrc=PEER_IP, pdst=MY_IP)
    )
    (out,) = reflect_one(req)
    arp = Ether(out)[ARP]
    assert arp.op == 2
    assert (arp.hwsrc, arp.psrc) == (MY_MAC, MY_IP)
    assert (arp.hwdst, arp.pdst) == (PEER_MAC, PEER_IP)


@pytest.mark.parametrize(
    "frame",
    [
        # Another host's IP, a TCP segment, an ICMP reply, an ARP for another
        # IP, a runt: none may be reflected (a reflector that answers
        # everything would loop frames between two of them).
        bytes(Ether(dst=MY_MAC) / IP(src=PEER_IP, dst="198.18.0.9") / UDP(dport=7)),
        bytes(Ether(dst=MY_MAC) / IP(src=PEER_IP, dst=MY_IP, proto=6) / (b"\0" * 20)),
        bytes(Ether(dst=MY_MAC) / IP(src=PEER_IP, dst=MY_IP) / ICMP(type=0)),
        bytes(Ether() / ARP(op=1, psrc=PEER_IP, pdst="198.18.0.9")),
        b"\x00" * 20,
    ],
)
def test_other_frames_are_ignored(frame: bytes) -> None:
    c = reflect.Counters()
    assert reflect.reflect_batch([frame], IP_BYTES, MAC_BYTES, c) == []
    assert c.ignored == 1


def test_parse_result_line() -> None:
    r = loadgen.parse_result(
        "noise\nreplies=10 seconds=0.5 rate=20.0 lost=1 late=2 bad=3 sent=14 cpu=0.5 wait=0.01\n"
    )
    assert (r.replies, r.rate, r.lost, r.late, r.bad, r.sent) == (10, 20.0, 1, 2, 3, 14)
    with pytest.raises(loadgen.LoadgenError):
        loadgen.parse_result("replies=10 seconds=x\n")
    with pytest.raises(loadgen.LoadgenError):
        loadgen.parse_result("nothing here\n")


def run_client(binary: Path, port: int, **kw: float) -> loadgen.Result:
    spec = loadgen.ClientSpec(mode="udp", addr="127.0.0.1", port=port, seconds=0.3, warmup=0.0)
    argv = spec.argv(binary)
    for flag, value in kw.items():
        argv += [f"-{flag}", str(value)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=True)
    return loadgen.parse_result(proc.stdout)


def test_loadgen_against_its_kernel_echo_server() -> None:
    binary = loadgen.build()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        loadgen.server_argv(binary, "127.0.0.1", port, 5.0),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith("ready:")
        r = run_client(binary, port)
        assert r.replies > 1000 and r.lost == 0 and r.bad == 0
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=5)
    assert "served=" in out


class Corruptor(threading.Thread):
    """A UDP echo that flips one payload byte of every other datagram."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = False

    def run(self) -> None:
        n = 0
        while not self.stop:
            try:
                data, addr = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            n += 1
            if n % 2:
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
            self.sock.sendto(data, addr)


def test_loadgen_counts_corrupted_replies_as_bad_and_recovers_the_slots() -> None:
    binary = loadgen.build()
    echo = Corruptor()
    echo.start()
    try:
        # Window 4, timeout 20 ms: the corrupted half time out and are resent.
        r = run_client(binary, echo.port, w=4, T=20)
    finally:
        echo.stop = True
        echo.join(timeout=2)
        echo.sock.close()
    assert r.bad > 0 and r.lost > 0 and r.replies > 0


_IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _require(missing: str | None) -> None:
    """Skip for a missing prerequisite, except under CI=true, where it fails."""
    if missing is not None:
        if _IN_CI:
            pytest.fail(f"CI=true and a prerequisite is missing: {missing}", pytrace=False)
        pytest.skip(missing)


def _serve_available() -> bool:
    proc = subprocess.run([sys.executable, "-m", "ustack", "serve", "--help"],
                          capture_output=True, timeout=60, env=harness.build_env(
                              "compiled" if _COMPILED else "pure"))
    return proc.returncode == 0


@pytest.mark.root
def test_bench_http_smallest_run_gives_every_row_its_ratios_and_the_json() -> None:
    """bench_http.py end to end, 1 run of 1 s, 1 KB, keep-alive: nginx,
    asyncio_static, http.server on the kernel and under ``ustack run`` on
    AF_PACKET (and ``ustack serve`` on AF_PACKET where it exists, else its
    row says "not available"), each with a positive rate and its ratios to
    asyncio and nginx; the JSON holds the runs (about 15 s)."""
    missing = "needs root" if os.geteuid() != 0 else None
    for tool in ("wrk", "nginx"):
        if missing is None and shutil.which(tool) is None:
            missing = f"needs {tool} (scripts/install-system-deps.sh)"
    _require(missing)
    serve = _serve_available()
    proc = run_script(
        "bench_http.py", "--runs", "1", "--seconds", "1", "--warmup", "0", "--size", "1K",
        "--mode", "keepalive", "--only", "nginx", "asyncio", "http.server", "run-packet",
        "serve-packet", *BUILDS, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    words = COMPILED_WORDS if _COMPILED else PURE_WORDS
    assert f"build: {words} (the ustack rows: ustack serve, ustack run)" in out, out
    table = out.split("1K (1024 B), keepalive: persistent connections\n", 1)[1]
    header = table.splitlines()[0]
    assert re.split(r"\s{2,}", header.strip()) == bench_http_headers(), header
    f3 = r"([\d.]+) / ([\d.]+) / ([\d.]+)"
    measured = ["nginx", "asyncio", "http.server", "run packet"]
    if serve:
        measured.append("serve packet")
    else:
        assert re.search(r"^serve packet\s+not available\s", table, re.M), table
        assert re.search(r"^goal: 1 KB keep-alive: ustack serve >= 0.5 x asyncio \(ustack "
                         r"serve\): not measured: not available", out, re.M), out
    for name in measured:
        m = re.search(rf"^{re.escape(name)}\s+{f3}\s+{f3}\s+\S+\s+\S+\s+0\s+"
                      r"[\d.]+/[\d.]+\s+([\d.]+)\s+([\d.]+)\s*$", table, re.M)
        assert m is not None, f"no {name!r} row in:\n{table}"
        assert float(m.group(2)) > 0 and float(m.group(5)) > 0, m.group(0)
    assert re.search(r"^asyncio\s.*\s1\.00\s+[\d.]+\s*$", table, re.M), table
    assert re.search(r"^nginx\s.*\s[\d.]+\s+1\.00\s*$", table, re.M), table
    if serve:
        assert re.search(r"^goal: 1 KB keep-alive: ustack serve >= 0.5 x asyncio \(serve "
                         r"packet\): (met|NOT met) \([\d.]+\)$", out, re.M), out
    assert "\n! " not in out, out
    m = re.search(r"raw numbers: (\S+)", out)
    assert m is not None, out
    doc = json.loads((BENCH.parent / m.group(1)).read_text())
    assert doc["benchmark"] == "http" and doc["problems"] == [], out
    by_server = {c["server"]: c for c in doc["cells"]}
    assert set(by_server) == {"nginx", "asyncio", "http.server", "run packet", "serve packet"}
    for name in measured:
        c = by_server[name]
        (run,) = c["runs"]
        assert run["requests"] > 0 and run["bytes"] >= run["requests"] * 1024, (name, run)
        assert set(run["errors"]) == {"connect", "read", "write", "timeout", "status"}
        assert 0 < run["latency_us"]["p50"] <= run["latency_us"]["p99"], (name, run)
        assert c["ratio_to_asyncio"] > 0 and c["ratio_to_nginx"] > 0, (name, c)
    assert by_server["asyncio"]["ratio_to_asyncio"] == 1.0
    if not serve:
        assert by_server["serve packet"]["runs"] == []
        assert by_server["serve packet"]["unavailable"].startswith("not available")


def bench_http_headers() -> list[str]:
    import bench_http

    return list(bench_http.HEADERS)


class _KeepOpen(io.BufferedReader):
    """A socket's reader that http.client's responses may "close" in turn:
    the bytes of the next pipelined response stay buffered in it."""

    def close(self) -> None:
        pass


class _ReaderSock:
    def __init__(self, reader: io.BufferedReader) -> None:
        self.reader = reader

    def makefile(self, *args: object, **kw: object) -> io.BufferedReader:
        return self.reader


def _responses(sock: socket.socket, requests: list[bytes]) -> list[tuple[int, dict[str, str],
                                                                             bytes]]:
    """Send ``requests`` at once (pipelined), then parse one response each:
    with h11 (an independent parser) when installed, else http.client.
    (status, headers lower-cased, body)."""
    sock.sendall(b"".join(requests))
    out: list[tuple[int, dict[str, str], bytes]] = []
    try:
        import h11
    except ImportError:
        reader = _KeepOpen(socket.SocketIO(sock, "rb"))  # type: ignore[arg-type]
        for req in requests:
            resp = http.client.HTTPResponse(_ReaderSock(reader),  # type: ignore[arg-type]
                                            method=req.split(b" ", 1)[0].decode())
            resp.begin()
            out.append((resp.status, {k.lower(): v for k, v in resp.getheaders()},
                        resp.read()))
        return out
    conn = h11.Connection(our_role=h11.CLIENT)
    for i, req in enumerate(requests):
        method, target = req.split(b" ")[:2]
        if i:
            conn.start_next_cycle()
        # Tell h11 what was sent (the bytes already went, pipelined).
        conn.send(h11.Request(method=method, target=target, headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        status, headers, body = 0, {}, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise AssertionError(f"unexpected {event!r}")
        out.append((status, headers, body))
    return out


@pytest.fixture
def asyncio_static(tmp_path: Path):  # type: ignore[no-untyped-def]
    """asyncio_static.py on loopback serving a 1 KB and a 100 KB file."""
    (tmp_path / "1K.bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "100K.bin").write_bytes(b"y" * 100 * 1024)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(BENCH / "asyncio_static.py"), str(tmp_path),
                             "--bind", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(f"ready: http://127.0.0.1:{port}/")
        yield port
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    assert re.search(r"served=\d+ connections=\d+", out), out


def test_asyncio_static_keeps_the_connection_alive(asyncio_static: int) -> None:
    with socket.create_connection(("127.0.0.1", asyncio_static), timeout=5) as sock:
        for _ in range(2):  # the same connection serves the second request
            ((status, headers, body),) = _responses(
                sock, [b"GET /1K.bin HTTP/1.1\r\nHost: x\r\n\r\n"])
            assert status == 200 and body == bytes(range(256)) * 4
            assert headers["content-length"] == "1024" and "connection" not in headers


def test_asyncio_static_closes_on_connection_close_and_says_so(asyncio_static: int) -> None:
    with socket.create_connection(("127.0.0.1", asyncio_static), timeout=5) as sock:
        ((status, headers, body),) = _responses(
            sock, [b"GET /100K.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"])
        assert status == 200 and body == b"y" * 100 * 1024
        assert headers["connection"] == "close"
        assert sock.recv(1) == b""  # closed after the response


def test_asyncio_static_answers_pipelined_requests_in_order(asyncio_static: int) -> None:
    with socket.create_connection(("127.0.0.1", asyncio_static), timeout=5) as sock:
        got = _responses(sock, [b"GET /100K.bin HTTP/1.1\r\nHost: x\r\n\r\n",
                                b"GET /1K.bin HTTP/1.1\r\nHost: x\r\n\r\n",
                                b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"])
        assert [(s, len(b)) for s, _, b in got] == [(200, 100 * 1024), (200, 1024), (404, 10)]
        assert got[2][1]["connection"] == "close"
        assert sock.recv(1) == b""


@pytest.mark.root
def test_bench_aio_smallest_run_gives_every_row_in_both_modes() -> None:
    """bench_aio.py end to end: the kernel and the three ustack.aio servers
    echo in ping-pong and stream mode (1 run of 0.5 s each: about 20 s)."""
    _require("needs root" if os.geteuid() != 0 else None)
    script = Path(__file__).resolve().parent / "bench_aio.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--runs", "1", "--seconds", "0.5", "--warmup", "0.1",
         "--build", "pure"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The pure build here (the http test runs the compiled one): the servers
    # are started with USTACK_PURE=1 and checked to have loaded no extension.
    assert f"build: {PURE_WORDS} (the ustack.aio servers)" in proc.stdout, proc.stdout
    tables = proc.stdout.split("\n\n")[1:]
    assert len(tables) == 2, proc.stdout
    for table in tables:
        for name in ("kernel veth", "ustack.aio packet", "ustack.aio tap",
                     "ustack.aio tap+offload"):
            m = re.search(rf"^{re.escape(name)}\s+(\d+)\s+(\d+)\s+(\d+)", table, re.M)
            assert m is not None, f"no {name!r} row in:\n{table}"
            assert int(m.group(2)) > 0, m.group(0)


def test_bench_inproc_reports_cost_and_bytecodes(capsys: pytest.CaptureFixture[str]) -> None:
    """bench_inproc.py (no root): the echoes complete and both figures print."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_inproc

    assert bench_inproc.main(["--runs", "2", "--echoes", "300", "--opcodes", *BUILDS]) == 0
    out = capsys.readouterr().out
    words = f"{COMPILED_WORDS}; {PURE_WORDS}" if not BUILDS else PURE_WORDS
    assert f"build: {words}\n" in out, out
    for build in ("compiled", "pure") if not BUILDS else ("pure",):
        m = re.search(build + r" build: us per echo min / median / max ([\d.]+)", out)
        assert m is not None and float(m.group(1)) > 0, out
    if not BUILDS:
        assert re.search(r"compiled vs pure, same rounds: [\d.]+x faster", out), out
    m = re.search(r"bytecodes per echo \(both stacks, pure build\): (\d+)", out)
    assert m is not None and int(m.group(1)) > 100, out
    assert "connection.py:receive_predicted" in out  # the header-prediction path ran


def test_bench_inproc_udp_reports_bytecodes(capsys: pytest.CaptureFixture[str]) -> None:
    """bench_inproc.py --udp: the UDP echoes complete through the udp-echo service."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_inproc

    assert bench_inproc.main(["--udp", "--runs", "1", "--echoes", "300", "--opcodes",
                              *BUILDS]) == 0
    out = capsys.readouterr().out
    assert "in-process UDP echo" in out
    m = re.search(r"bytecodes per echo \(both stacks, pure build\): (\d+)", out)
    assert m is not None and int(m.group(1)) > 50, out
    assert "socket.py:input" in out  # the UDP receive path ran


# --------------------------------------------------------------------------
# Builds: the build: line, --build pure, no compiled build -> status 1
# --------------------------------------------------------------------------


def test_build_env_sets_or_removes_ustack_pure() -> None:
    base = {"PATH": "/bin", "USTACK_PURE": "1"}
    assert harness.build_env("compiled", base) == {"PATH": "/bin"}
    assert harness.build_env("pure", {"PATH": "/bin"}) == base


def test_check_build_names_the_way_out() -> None:
    assert harness.check_build("compiled", COMPILED_WORDS) == COMPILED_WORDS
    assert harness.check_build("pure", PURE_WORDS) == PURE_WORDS
    with pytest.raises(harness.BuildUnavailable, match="--build pure") as err:
        harness.check_build("compiled", "pure Python, not compiled (make install compiles it)")
    assert "make install" in str(err.value)
    with pytest.raises(harness.BuildUnavailable, match="unset USTACK_PURE"):
        harness.check_build("compiled", PURE_WORDS)
    with pytest.raises(harness.BuildUnavailable, match="pure build"):
        harness.check_build("pure", COMPILED_WORDS)


def test_ustack_build_asks_ustack_version() -> None:
    assert harness.ustack_build("pure") == PURE_WORDS
    if _COMPILED:
        assert harness.ustack_build("compiled") == COMPILED_WORDS
    else:
        with pytest.raises(harness.BuildUnavailable, match="not available"):
            harness.ustack_build("compiled")


def test_running_build_reads_the_memory_map() -> None:
    from ustack import purepy

    assert harness.running_build(os.getpid()) == purepy.build()
    with subprocess.Popen(
        [sys.executable, "-c", "import ustack.stack, sys; print('up', flush=True); "
         "sys.stdin.read()"],
        env=harness.build_env("pure"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None and child.stdout.readline() == "up\n"
        assert harness.running_build(child.pid) == "pure"
        child.communicate("")


def run_script(name: str, *args: str, env: dict[str, str] | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.mark.parametrize("build", ["default", "pure"])
def test_bench_checksum_says_its_build(build: str) -> None:
    """--build pure starts the script again with USTACK_PURE=1 (the build is
    fixed at import): the line says which build ones_sum was."""
    args = ["--build", "pure"] if build == "pure" else BUILDS
    proc = run_script("bench_checksum.py", "--sizes", "20", "--repeat", "1", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    words = COMPILED_WORDS if build == "default" and _COMPILED else PURE_WORDS
    assert proc.stdout.startswith(f"build: {words} (ones_sum"), proc.stdout
    assert re.search(r"^ones_sum \(chosen\)\s+20\s+[\d.]+\s+1.00$", proc.stdout, re.M)


def test_bench_socket_thread_says_its_build() -> None:
    proc = run_script("bench_socket_thread.py", "--seconds", "0.1", *BUILDS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    words = COMPILED_WORDS if _COMPILED else PURE_WORDS
    assert f"\nbuild: {words}\n" in proc.stdout, proc.stdout
    assert re.search(r"native \(one thread, no ustack.socket\)\s+\d+", proc.stdout)


@pytest.fixture(scope="module")
def uncompiled_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of src/ without the compiled extensions: a tree never compiled."""
    dst = tmp_path_factory.mktemp("uncompiled") / "src"
    shutil.copytree(SRC, dst, ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.egg-info"))
    return dst


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("bench_checksum.py", ["--sizes", "20", "--repeat", "1"]),
        ("bench_socket_thread.py", ["--seconds", "0.1"]),
        ("bench_inproc.py", ["--runs", "1", "--echoes", "50"]),
        ("bench_inproc.py", ["--runs", "1", "--echoes", "50", "--build", "compiled"]),
    ],
)
def test_without_the_compiled_build_a_benchmark_fails_and_says_so(
    uncompiled_src: Path, script: str, args: list[str]
) -> None:
    """No figure of the pure build may pass for the compiled one: status 1,
    one line saying what is missing and how to measure the pure build."""
    env = {**harness.build_env("compiled"), "PYTHONPATH": str(uncompiled_src)}
    proc = run_script(script, *args, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "the compiled build is not available" in proc.stderr, proc.stderr
    assert "--build pure" in proc.stderr
    assert "build:" not in proc.stdout and "us per echo" not in proc.stdout, proc.stdout


def test_without_the_compiled_build_build_pure_measures_the_pure_one(
    uncompiled_src: Path,
) -> None:
    env = {**harness.build_env("compiled"), "PYTHONPATH": str(uncompiled_src)}
    proc = run_script("bench_inproc.py", "--runs", "1", "--echoes", "50", "--build", "pure",
                      env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"build: {PURE_WORDS}\n"), proc.stdout


@pytest.mark.root
def test_testbed_start_ustack_passes_the_environment_through_ip_netns_exec() -> None:
    """USTACK_PURE=1 given to start_ustack reaches the ustack process (no
    extension in its memory map); without it, the compiled build runs."""
    _require("needs root" if os.geteuid() != 0 else None)
    from ustack_testbed import Testbed, packet_topology

    with Testbed() as tb:
        topo = packet_topology(tb)
        for build in ("pure", "compiled") if _COMPILED else ("pure",):
            proc = topo.start_ustack(env=harness.build_env(build))
            try:
                assert harness.running_build(proc.pid) == build
            finally:
                proc.stop()


@pytest.mark.root
def test_bench_echo_smallest_run_has_both_ustack_builds_and_their_ratio() -> None:
    """bench_echo.py end to end on AF_PACKET, 1 run of 0.2 s per figure: the
    compiled and the pure ustack rows, compiled/pure, the goal line and the
    build line; the JSON holds both builds (about 10 s)."""
    _require("needs root" if os.geteuid() != 0 else None)
    proc = run_script(
        "bench_echo.py", "--runs", "1", "--seconds", "0.2", "--link", "packet", *BUILDS,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    header = next(line for line in out.splitlines() if line.startswith("link"))
    assert re.split(r"\s{2,}", header.strip()) == bench_echo_headers()
    rate = r"([\d.]+)k / [\d.]+k / [\d.]+k(?: \^)?"
    cells = rf"{rate}\s+{rate}" if _COMPILED else rf"-\s+{rate}"
    for proto in ("ICMP", "UDP"):
        m = re.search(rf"^AF_PACKET\s+{proto}\s+{cells}", out, re.M)
        assert m is not None, out
        assert all(float(g) > 0 for g in m.groups()), m.group(0)
    if _COMPILED:
        m = re.search(r"^AF_PACKET\s+UDP\s.*\s([\d.]+) \(goal 0.80\)\s+[\d.]+\s+([\d.]+)\s*$",
                      out, re.M)
        assert m is not None and float(m.group(1)) > 0 and float(m.group(2)) > 0, out
        assert re.search(r"goal: UDP echo over AF_PACKET, ustack \(compiled\) >= 0.80 x raw "
                         r"reflect: [\d.]+, (met|NOT met)", out), out
        assert f"build: ustack: {COMPILED_WORDS}; ustack pure: {PURE_WORDS}" in out
    else:
        assert f"build: ustack pure: {PURE_WORDS}" in out
    m = re.search(r"raw numbers: (\S+)", out)
    assert m is not None, out
    doc = json.loads((BENCH.parent / m.group(1)).read_text())
    want = {"compiled": COMPILED_WORDS, "pure": PURE_WORDS} if _COMPILED else {"pure": PURE_WORDS}
    assert doc["builds"] == want
    got = {(c["responder"], c["build"], c["proto"]) for c in doc["cells"] if c["build"]}
    rows = [("ustack", "compiled"), ("ustack-pure", "pure")] if _COMPILED else [
        ("ustack-pure", "pure")]
    assert got == {(r, b, p) for r, b in rows for p in ("icmp", "udp")}
    if _COMPILED:
        assert doc["ratios"]["packet/udp/compiled_over_pure"] > 0
        assert doc["goal"]["measured"] == doc["ratios"]["packet/udp/ustack_over_raw"]


def bench_echo_headers() -> list[str]:
    import bench_echo

    return list(bench_echo.HEADERS)


@pytest.mark.root
def test_bench_loss_smallest_run_times_both_stacks_through_the_relay() -> None:
    """bench_loss.py end to end: one 64 KB transfer each way for the kernel
    and for ustack through the relay at 3 % loss, every one checked (about
    5 s); the JSON holds the relay's counters of each transfer."""
    _require("needs root" if os.geteuid() != 0 else None)
    proc = run_script(
        "bench_loss.py", "--runs", "1", "--profile", "loss 3%", "--size", "64K", *BUILDS,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    words = COMPILED_WORDS if _COMPILED else PURE_WORDS
    assert f"build: {words} (the ustack runs)" in out, out
    t = r"[\d.]+m?s"
    for direction in ("send", "recv"):
        m = re.search(rf"^loss 3%\s+64K\s+{direction}\s+{t} / {t} / {t}\s+{t} / {t} / {t}"
                      r"\s+([\d.]+)\s*$", out, re.M)
        assert m is not None and float(m.group(1)) > 0, out
    assert "FAILED" not in out
    m = re.search(r"raw numbers: (\S+)", out)
    assert m is not None, out
    doc = json.loads((BENCH.parent / m.group(1)).read_text())
    assert {(c["stack"], c["direction"]) for c in doc["cells"]} == {
        (s, d) for s in ("kernel", "ustack") for d in ("send", "recv")}
    for c in doc["cells"]:
        (run,) = c["runs"]
        assert run["relay"]["l2r_forwarded"] > 0 and run["relay"]["r2l_forwarded"] > 0
        if c["stack"] == "kernel":
            # Linux's default controller, whatever this machine's sysctl says.
            assert run["peer"]["cc"] == "cubic"
    assert doc["config"]["kernel_cc"] == "cubic"


def test_bench_loss_refuses_an_unknown_congestion_control() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_loss.py"), "--kernel-cc", "nosuch"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    want = "--kernel-cc nosuch: the kernel has no such congestion control"
    assert last == f"bench_loss.py: error: {want}"


def test_bench_loss_refuses_zero_runs() -> None:
    """No runs would print an empty table as if it were a result: refused,
    one line, exit 2."""
    proc = subprocess.run([sys.executable, str(BENCH / "bench_loss.py"), "--runs", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "bench_loss.py: error: --runs must be at least 1, got 0"


@pytest.mark.root
def test_bench_http_memory_smallest_run() -> None:
    """bench_http_memory.py end to end with 50 connections, ustack serve
    only: the per-connection figure, the goal line and the JSON."""
    _require("needs root" if os.geteuid() != 0 else None)
    proc = run_script("bench_http_memory.py", "--conns", "50", "--runs", "1", "--no-nginx",
                      timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    m = re.search(r"^  ustack serve\s+(-?\d+) /\s+(-?\d+) /\s+(-?\d+) B per connection", out, re.M)
    assert m is not None, out
    assert re.search(r"^goal: under 4096 B per idle keep-alive connection: (met|NOT met)", out,
                     re.M), out
    m = re.search(r"raw numbers: (\S+)", out)
    assert m is not None, out
    doc = json.loads((BENCH.parent / m.group(1)).read_text())
    (before, during, after), = doc["results"]["ustack serve"]["rounds_kb"]
    assert before > 0 and during > 0 and after > 0


def test_bench_flood_rate_is_the_busy_window_of_the_samples() -> None:
    """The receiver's rate leaves out the idle start and the tail: 10 ms
    samples, 1000 packets a step for 1 s between a trickle of ARP."""
    import bench_flood

    samples = [(0.0, 0), (0.01, 2), (0.02, 3)]
    t, n = 0.02, 3
    for _ in range(100):
        t, n = t + 0.01, n + 1000
        samples.append((t, n))
    samples += [(t + 0.01, n + 1), (t + 0.02, n + 1)]
    rate, total = bench_flood.window_rate(samples)
    assert rate == pytest.approx(100_000, rel=1e-6)
    assert total == n + 1
    assert bench_flood.window_rate([(0.0, 5), (0.01, 5), (0.02, 5)]) == (0.0, 0)


@pytest.mark.root
def test_bench_workers_smallest_run_has_both_workloads_and_their_ratios() -> None:
    """bench_workers.py end to end, 1 run of 1 s per figure: http and udp
    with 1 and 2 workers, each with a rate and a rate per CPU-second of the
    server, the 2-over-1 ratios, and the JSON (about 20 s)."""
    _require("needs root" if os.geteuid() != 0 else None)
    _require(None if shutil.which("wrk") else "needs wrk")
    proc = run_script("bench_workers.py", "--runs", "1", "--seconds", "1", *BUILDS,
                      timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    header = next(line for line in out.splitlines() if line.startswith("workload"))
    import bench_workers

    assert re.split(r"\s{2,}", header.strip()) == list(bench_workers.HEADERS)
    for workload in ("http", "udp"):
        for workers in (1, 2):
            m = re.search(rf"^{workload}\s+{workers}\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+"
                          r"([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+0\s*$", out, re.M)
            assert m is not None, out
            assert all(float(g) > 0 for g in m.groups()), m.group(0)
        assert re.search(rf"^  {workload}: 2 workers / 1: req/s x[\d.]+, req per cpu-s x[\d.]+$",
                         out, re.M), out
    m = re.search(r"raw numbers: (\S+)", out)
    assert m is not None, out
    doc = json.loads((BENCH.parent / m.group(1)).read_text())
    assert {(c["workload"], c["workers"]) for c in doc["cells"]} == {
        (w, n) for w in ("http", "udp") for n in (1, 2)}
    assert doc["ratios"]["http/per_cpu/2_over_1"] > 0
