"""``--trace`` and ``ustack plot`` with the Linux kernel as the peer.

``ustack tcp send`` moves a file to a kernel sink under injected loss with
``--trace`` and ``--pcap``; the trace and the capture (read by ``ustack
plot``'s own parser) must tell the same story: the same segments, the
same retransmissions, an ACK line that rises to the end of the file.
Then ``ustack plot`` draws both, and an unwritable trace file is one line.
"""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from tcp_tools import KernelSink, KernelSource, TestFile, kernel_echo, make_test_file

from ustack.plot import pcapread, series
from ustack.tcp.trace import REQUIRED
from ustack_testbed import Testbed, topology

pytestmark = pytest.mark.root

SIZE = 4 << 20
FAULT = "loss=2%,seed=5"
SINK_PORT = 5029
DEADLINE = 40.0


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> TestFile:
    return make_test_file(tmp_path_factory.mktemp("trace"), SIZE, 15)


@pytest.mark.parametrize("kind", ["tap", "packet"])
def test_lossy_send_to_the_kernel_traced_and_plotted(
    tmp_path: Path, data: TestFile, kind: str
) -> None:
    trace, pcap = tmp_path / "send.jsonl", tmp_path / "send.pcap"
    with Testbed() as tb:
        topo = topology(tb, kind)
        with KernelSink(topo.peer_ns, "0.0.0.0", SINK_PORT, timeout=DEADLINE + 10) as sink:
            args = ["tcp", "send", "--to", f"{topo.peer_ip}:{SINK_PORT}", str(data.path),
                    "--link", topo.link, "--ip", topo.stack_cidr, "--timeout", "8",
                    "--fault", FAULT, "--trace", str(trace), "--pcap", str(pcap)]
            if kind == "tap":
                args += ["--host-ip", topo.peer_cidr]
            proc = topo.stack_ns.run([sys.executable, "-m", "ustack.cli", *args],
                                     check=False, timeout=DEADLINE + 10)
            if proc.returncode != 0:
                sink.close()
            got = sink.result(timeout=15.0)
    assert proc.returncode == 0, proc.stderr
    assert got.received == SIZE and got.sha256 == data.sha256
    lines = trace.read_text().splitlines()
    assert all(all(k in json.loads(line) for k in REQUIRED) for line in lines)
    events = series.read_events(trace)
    (conn,) = series.trace_conns(events)
    assert conn.label.startswith(f"{topo.stack_ip}:")
    assert conn.label.endswith(f" > {topo.peer_ip}:{SINK_PORT}")
    t = series.from_trace(events, conn)
    fls = pcapread.flows(pcapread.read_pcap(pcap))
    (pconn,) = [c for c in pcapread.pcap_conns(fls) if c.label == conn.label]
    p = pcapread.from_pcap(fls[pconn.id - 1], pconn)
    # 2 % loss each way over ~2900 segments: retransmissions, the same
    # ones in the stack's trace and in the capture of what it sent.
    assert len(t.retransmitted) > 5
    assert sorted((a, b) for _, a, b in p.retransmitted) == sorted(
        (a, b) for _, a, b in t.retransmitted)
    assert p.segments == t.segments
    for s in (t, p):
        acks = [a for _, a in s.acks]
        assert acks == sorted(acks) and acks[-1] >= SIZE + 1  # SYN, the data (and the FIN)
    pytest.importorskip("matplotlib")
    for src in (trace, pcap):
        out = tmp_path / f"{src.stem}-{src.suffix[1:]}.png"
        drawn = subprocess.run(
            [sys.executable, "-m", "ustack.cli", "plot", str(src), "-o", str(out)],
            capture_output=True, text=True, timeout=60, check=False)
        assert drawn.returncode == 0, drawn.stderr
        assert f"{len(t.retransmitted)} retransmitted" in drawn.stdout
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("command", ["up", "run"])
def test_unwritable_trace_is_one_line_exit_1(testbed: Testbed, tmp_path: Path,
                                             command: str) -> None:
    ns = testbed.netns("cli")
    path = str(tmp_path / "missing" / "t.jsonl")
    tail = ["--", "python3", "-c", "pass"] if command == "run" else []
    proc = ns.run([sys.executable, "-m", "ustack.cli", command, "--link",
                   f"tap:{testbed.ifname('x', ns)}", "--ip", "198.18.0.2/24",
                   "--trace", path, *tail], check=False, timeout=20)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == f"ustack {command}: --trace {path}: No such file or directory\n"


@pytest.mark.parametrize("kind", ["tap", "packet"])
def test_trace_of_ustack_up_is_whole_after_ctrl_c_and_counts_as_the_stack(
    tmp_path: Path, data: TestFile, kind: str
) -> None:
    """``ustack up --trace`` echoing to a kernel client under loss, stopped
    by SIGINT: the file ends with a whole line, and its retransmissions are
    the ones the stack counted (TcpRetransSegs, printed at exit)."""
    trace = tmp_path / "up.jsonl"
    with Testbed() as tb:
        topo = topology(tb, kind)
        stack = topo.start_ustack("--service", "tcp-echo:7", "--fault", FAULT,
                                  "--trace", str(trace), timeout=20)
        got = kernel_echo(topo.peer_ns, topo.stack_ip, 7, data.path.read_bytes()[:1 << 20],
                          timeout=DEADLINE)
        counters = stack.stop(sig=signal.SIGINT)
    assert got.ok and got.received == 1 << 20, got
    text = trace.read_text()
    assert text.endswith("\n")
    events = [json.loads(line) for line in text.splitlines()]
    assert all(all(k in ev for k in REQUIRED) for ev in events)
    kinds = Counter(ev["ev"] for ev in events)
    assert kinds["open"] == 1 and kinds["send"] and kinds["ack"], kinds
    assert kinds["retransmit"] == counters["TcpRetransSegs"] > 0, (kinds, counters)
    (conn,) = series.trace_conns(events)
    s = series.from_trace(events, conn)
    acks = [a for _, a in s.acks]
    # (The last ACKs may still be on their way, or lost and awaiting a
    # retransmission, when the signal stops the stack.)
    assert acks == sorted(acks) and 0.9 * (1 << 20) < acks[-1] <= (1 << 20) + 2


def test_the_trace_of_a_running_ustack_up_is_on_disk(tmp_path: Path) -> None:
    """Written as the stack runs (a timer flushes it): whole lines, read by
    ``series.read_events`` while ``ustack up`` still runs."""
    trace = tmp_path / "live.jsonl"
    with Testbed() as tb:
        topo = topology(tb, "tap")
        stack = topo.start_ustack("--service", "tcp-echo:7", "--trace", str(trace), timeout=20)
        got = kernel_echo(topo.peer_ns, topo.stack_ip, 7, bytes(100_000), timeout=DEADLINE)
        time.sleep(1.5)  # > FLUSH_EVERY, and no event since
        text = trace.read_text()
        live = series.read_events(trace)
        stack.stop(sig=signal.SIGINT)
    assert got.ok
    assert text.endswith("\n")
    kinds = Counter(ev["ev"] for ev in live)
    assert kinds["open"] == 1 and kinds["recv"] and kinds["send"] and kinds["close"], kinds
    assert len(trace.read_text().splitlines()) >= len(live)


def test_a_trace_that_cannot_be_written_stops_and_the_transfer_goes_on(
        tmp_path: Path, data: TestFile) -> None:
    with Testbed() as tb:
        topo = topology(tb, "tap")
        with KernelSink(topo.peer_ns, "0.0.0.0", SINK_PORT, timeout=DEADLINE + 10) as sink:
            proc = topo.stack_ns.run(
                [sys.executable, "-m", "ustack.cli", "tcp", "send", "--to",
                 f"{topo.peer_ip}:{SINK_PORT}", str(data.path), "--link", topo.link,
                 "--ip", topo.stack_cidr, "--host-ip", topo.peer_cidr, "--timeout", "8",
                 "--trace", "/dev/full"], check=False, timeout=DEADLINE + 10)
            if proc.returncode != 0:
                sink.close()
            got = sink.result(timeout=15.0)
    assert proc.returncode == 0, proc.stderr
    assert got.received == SIZE and got.sha256 == data.sha256
    lines = proc.stderr.splitlines()
    assert lines[0] == ("ustack tcp send: warning: --trace /dev/full: No space left on "
                        "device; tracing stopped"), lines
    assert len(lines) == 2 and lines[1].startswith(f"send: {SIZE} bytes in "), lines


FORKER = """
import os, socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.sendall(bytes(20000))
pid = os.fork()
if pid == 0:
    sys.exit(0)  # the child ends: it must leave the parent's stack and files alone
_, status = os.waitpid(pid, 0)
s.close()
print("child", status, flush=True)
"""


def test_a_forked_child_under_run_ends_and_writes_nothing_twice(tmp_path: Path) -> None:
    trace, pcap, script = tmp_path / "t.jsonl", tmp_path / "t.pcap", tmp_path / "f.py"
    script.write_text(FORKER)
    with Testbed() as tb:
        topo = topology(tb, "tap")
        with KernelSink(topo.peer_ns, "0.0.0.0", SINK_PORT, timeout=DEADLINE) as sink:
            proc = topo.stack_ns.run(
                [sys.executable, "-m", "ustack.cli", "run", "--link", topo.link, "--ip",
                 topo.stack_cidr, "--host-ip", topo.peer_cidr, "--trace", str(trace),
                 "--pcap", str(pcap), "--", "python3", str(script), topo.peer_ip,
                 str(SINK_PORT)], check=False, timeout=30)
            got = sink.result(timeout=15.0)
    assert proc.returncode == 0 and proc.stdout == "child 0\n", proc.stderr
    assert got.received == 20000
    lines = trace.read_text().splitlines()
    assert lines and max(Counter(lines).values()) == 1, "a trace line written twice"
    assert Counter(json.loads(line)["ev"] for line in lines)["open"] == 1
    frames = _pcap_records(pcap.read_bytes())
    assert frames and max(Counter(frames).values()) == 1, "a frame written twice"


def _pcap_records(data: bytes) -> list[bytes]:
    """Each record of a classic pcap, its header (time stamp) included."""
    out, off = [], 24
    while off + 16 <= len(data):
        (incl,) = struct.unpack_from("<I", data, off + 8)
        out.append(data[off:off + 16 + incl])
        off += 16 + incl
    assert off == len(data), "a record cut short"
    return out


def test_a_receivers_trace_is_drawn_from_its_side(tmp_path: Path, data: TestFile) -> None:
    """``ustack tcp recv --trace`` under loss: recv events, and a picture of
    the receiving side (segments as they arrived, RCV.NXT up to the end)."""
    trace, out = tmp_path / "recv.jsonl", tmp_path / "got"
    with Testbed() as tb:
        topo = topology(tb, "tap")
        with KernelSource(topo.peer_ns, "0.0.0.0", data, SINK_PORT,
                          timeout=DEADLINE) as source:
            proc = topo.stack_ns.run(
                [sys.executable, "-m", "ustack.cli", "tcp", "recv", "--to",
                 f"{topo.peer_ip}:{SINK_PORT}", str(out), "--link", topo.link, "--ip",
                 topo.stack_cidr, "--host-ip", topo.peer_cidr, "--timeout", "8",
                 "--fault", FAULT, "--trace", str(trace)], check=False, timeout=DEADLINE)
            source.result(timeout=15.0)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == data.path.read_bytes()
    events = series.read_events(trace)
    (conn,) = series.trace_conns(events)
    assert conn.receiving and conn.received >= SIZE
    s = series.from_trace(events, conn)
    assert s.side == "receiver" and s.acks[-1][1] >= SIZE + 1
    assert s.sacks  # the loss left blocks beyond a gap
    pytest.importorskip("matplotlib")
    drawn = subprocess.run(
        [sys.executable, "-m", "ustack.cli", "plot", str(trace), "-o", str(tmp_path / "r.png")],
        capture_output=True, text=True, timeout=60, check=False)
    assert drawn.returncode == 0, drawn.stderr
    assert "the receiving side" in drawn.stdout and f"{conn.received} bytes" in drawn.stdout
