"""Tests of the benchmark tools themselves: `pytest bench/test_bench.py`.

The reflect loop must produce frames a real parser accepts with valid
checksums (else the "ceiling" would be measuring garbage), and the load
generator must count echoes and detect wrong or missing replies.  Loopback
only; every run is bounded to about a second.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

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
# bench_inproc measures both builds where the core is compiled, else the pure one.
_COMPILED = any((Path(__file__).resolve().parents[1] / "src" / "ustack").glob("stack.*.so"))
BUILDS: list[str] = [] if _COMPILED else ["--build", "pure"]
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


@pytest.mark.root
def test_bench_http_smallest_run_gives_three_rows_with_positive_rates() -> None:
    """bench_http.py end to end: kernel, ustack packet and ustack tap each
    serve http.server requests (1 run of 1 s, no warm-up: about 10 s)."""
    missing = "needs root" if os.geteuid() != 0 else None
    if missing is None and shutil.which("ab") is None:
        missing = "needs ab (apache2-utils; scripts/install-system-deps.sh)"
    _require(missing)
    script = Path(__file__).resolve().parent / "bench_http.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--runs", "1", "--seconds", "1", "--warmup", "0"],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("kernel veth", "ustack packet", "ustack tap"):
        m = re.search(rf"^{name}\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)", proc.stdout, re.M)
        assert m is not None, f"no {name!r} row in:\n{proc.stdout}"
        assert float(m.group(2)) > 0 and float(m.group(4)) > 0, m.group(0)


@pytest.mark.root
def test_bench_aio_smallest_run_gives_every_row_in_both_modes() -> None:
    """bench_aio.py end to end: the kernel and the three ustack.aio servers
    echo in ping-pong and stream mode (1 run of 0.5 s each: about 20 s)."""
    _require("needs root" if os.geteuid() != 0 else None)
    script = Path(__file__).resolve().parent / "bench_aio.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--runs", "1", "--seconds", "0.5", "--warmup", "0.1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
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
