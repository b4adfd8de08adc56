"""Issue 15 item 4: the TCP event trace (``--trace``) and ``ustack plot``.

A lossy transfer between two simulated stacks (goodput_sim.py: a shaped
pipe with seeded random loss both ways) is traced on the sender and
captured there with a pcap tee; the picture's data, from the trace and
from the capture, is checked against what the stack counted.
"""

from __future__ import annotations

import io
import json
import struct
import sys
from collections import Counter
from pathlib import Path

import pytest
from goodput_sim import A_IP, A_MAC, B_IP, SimNet, bulk

from ustack import cli
from ustack.link.pcap import PcapTee
from ustack.plot import pcapread, series
from ustack.stack import Stack
from ustack.tcp.isn import IsnGenerator
from ustack.tcp.trace import REQUIRED, Tracer
from ustack.tracefile import open_trace

NBYTES = 1_500_000
LOSS = 0.03


class TappedNet(SimNet):
    """SimNet with a pcap tee on A, outside its shaper and fault injector:
    the capture holds what A sent (lost later or not) and what it received."""

    def __init__(self, loss: float, seed: int, pcap: Path) -> None:
        super().__init__(loss, 256 * 1024, seed)
        # A again, on a tee of its device, with the same settings (the
        # first A is dropped unclosed: closing it would close the device).
        self.a = Stack()
        self.tee = PcapTee(self.shapers[0], str(pcap), clock=lambda: self.now)
        self.a.add_interface(self.tee, f"{A_IP}/24", mac=A_MAC)
        self.a.tcp.isn = IsnGenerator(secret=b"sim-isn-secret-a")
        for k in ("rcvbuf", "sndbuf"):
            setattr(self.a.tcp.config, k, 256 * 1024)
        self.a.tcp.config.rcvbuf_max = self.a.tcp.config.sndbuf_max = 0


@pytest.fixture(scope="module")
def lossy(tmp_path_factory: pytest.TempPathFactory) -> tuple[TappedNet, Path, Path]:
    """One lossy transfer A -> B, traced and captured on A."""
    d = tmp_path_factory.mktemp("lossy")
    trace, pcap = d / "t.jsonl", d / "t.pcap"
    net = TappedNet(LOSS, 11, pcap)
    tf = open_trace(net.a, str(trace))
    client, server = net.connect()
    bulk(net, client, server, NBYTES)
    for _ in range(1000):  # until A has the last ACK (B has the data already)
        net.settle()
        if client.conn.snd_una == client.conn.snd_nxt:
            break
        net.advance()
    tf.close()
    net.tee.writer.flush()
    return net, trace, pcap


def test_every_line_is_an_event_with_the_required_keys(lossy: tuple[TappedNet, Path, Path]
                                                       ) -> None:
    _, trace, _ = lossy
    lines = trace.read_text().splitlines()
    assert len(lines) > 1000
    kinds: Counter[str] = Counter()
    for line in lines:
        ev = json.loads(line)
        assert all(k in ev for k in REQUIRED), line
        kinds[ev["ev"]] += 1
        if ev["ev"] in ("send", "retransmit"):
            assert ev["len"] > 0 and isinstance(ev["seq"], int)
        if ev["ev"] == "retransmit":
            assert ev["rtx"] == [ev["seq"], ev["seq"] + ev["len"]]
    first = json.loads(lines[0])
    assert first["ev"] == "open" and first["tuple"][0] == A_IP and first["tuple"][2] == B_IP
    # A lossy transfer with SACK: each kind of event happened.
    for kind in ("send", "retransmit", "ack", "sack", "recovery", "state"):
        assert kinds[kind], kinds


def test_trace_data_matches_the_counters(lossy: tuple[TappedNet, Path, Path]) -> None:
    net, trace, _ = lossy
    events = series.read_events(trace)
    (conn,) = series.trace_conns(events)
    s = series.from_trace(events, conn)
    c = net.a.counters
    assert len(s.retransmitted) == c.TcpRetransSegs > 10
    # Every segment A sent carried data but the handshake's ACK (and no
    # FIN: the connection stays open): the SYN and data segments are the
    # picture's, TcpOutSegs counts them all.
    assert s.segments == c.TcpOutSegs - 1
    acks = [a for _, a in s.acks]
    assert acks == sorted(acks) and acks[-1] == NBYTES + 1  # SYN + every byte
    assert [t for t, _ in s.acks] == sorted(t for t, _ in s.acks)
    assert len(s.window) >= len(s.acks) and s.window[-1][1] > acks[-1]
    assert s.sacks and all(left < right for _, left, right in s.sacks)
    assert s.cwnd and s.srtt and all(v > 0 for _, v in s.srtt)
    assert conn.bytes == NBYTES + 1


def test_pcap_data_matches_the_counters(lossy: tuple[TappedNet, Path, Path]) -> None:
    net, trace, pcap = lossy
    fls = pcapread.flows(pcapread.read_pcap(pcap))
    (conn,) = pcapread.pcap_conns(fls)
    assert conn.label.startswith(f"{A_IP}:") and conn.bytes == NBYTES + 1
    s = pcapread.from_pcap(fls[0], conn)
    c = net.a.counters
    # Retransmissions found in the capture alone are the ones the stack counted.
    assert len(s.retransmitted) == c.TcpRetransSegs
    t = series.from_trace(series.read_events(trace), series.trace_conns(
        series.read_events(trace))[0])
    assert s.segments == t.segments
    assert sorted((a, b) for _, a, b in s.retransmitted) == sorted(
        (a, b) for _, a, b in t.retransmitted)
    acks = [a for _, a in s.acks]
    assert acks == sorted(acks) and acks[-1] == NBYTES + 1
    assert s.sacks and s.srtt and s.inflight
    # The simulated path: 10 ms of propagation, more with queueing.
    assert 0.009 < s.srtt[-1][1] < 0.2


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    w, h = struct.unpack(">II", data[16:24])
    return w, h


@pytest.mark.parametrize("source", ["trace", "pcap"])
def test_ustack_plot_writes_a_picture(lossy: tuple[TappedNet, Path, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str], source: str) -> None:
    pytest.importorskip("matplotlib")
    net, trace, pcap = lossy
    src = trace if source == "trace" else pcap
    png, svg = tmp_path / "p.png", tmp_path / "p.svg"
    assert cli.main(["plot", str(src), "-o", str(png)]) == 0
    out = capsys.readouterr().out
    assert f"{net.a.counters.TcpRetransSegs} retransmitted" in out
    w, h = _png_size(png.read_bytes())
    assert w > 500 and h > 400
    assert cli.main(["plot", str(src), "--conn", "1", "-o", str(svg)]) == 0
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text and "</svg>" in text


def test_plot_lists_and_picks_the_busiest(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    lines = []
    for cid, n in ((1, 100), (2, 5000), (3, 10)):
        base = {k: 0 for k in REQUIRED} | {"conn": cid, "sacked": [], "state": "ESTABLISHED"}
        lines.append(base | {"ev": "open", "tuple": ["198.18.0.1", 1000 + cid, "198.18.0.2", 80]})
        lines.append(base | {"ev": "send", "seq": 1, "len": n, "t": 0.1})
        lines.append(base | {"ev": "ack", "una": n + 1, "t": 0.2, "rwnd": 65535})
    f = tmp_path / "multi.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert cli.main(["plot", str(f), "--list"]) == 0
    out = capsys.readouterr().out
    assert "198.18.0.1:1002 > 198.18.0.2:80" in out and len(out.splitlines()) == 4
    pytest.importorskip("matplotlib")
    assert cli.main(["plot", str(f), "-o", str(tmp_path / "m.png")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("ustack plot: connection 2 of 3") and err.count("\n") == 1


@pytest.mark.parametrize(("argv", "status", "words"), [
    (["--conn", "9"], cli.EXIT_USAGE, "--conn 9: no such connection"),
    (["-o", "x.gif"], cli.EXIT_USAGE, "-o x.gif: write .png, .svg or .pdf"),
    (["-o", "/nonexistent/dir/x.png"], cli.EXIT_ERROR, "/nonexistent/dir/x.png"),
])
def test_plot_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  argv: list[str], status: int, words: str) -> None:
    pytest.importorskip("matplotlib")
    base = {k: 0 for k in REQUIRED} | {"conn": 1, "sacked": [], "ev": "open"}
    f = tmp_path / "one.jsonl"
    f.write_text(json.dumps(base) + "\n")
    assert cli.main(["plot", str(f), *argv]) == status
    err = capsys.readouterr().err
    assert err.startswith("ustack plot: ") and words in err and err.count("\n") == 1, err


@pytest.mark.parametrize(("content", "words"), [
    (b"hello\n", "not a JSON line"),
    (b'{"a": 1}\n', "not a trace event"),
    (b"", "no TCP connection"),
    (b"\x0a\x0d\x0d\x0a" + bytes(40), "pcapng"),
])
def test_plot_refuses_what_it_cannot_read(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          content: bytes, words: str) -> None:
    f = tmp_path / "bad"
    f.write_bytes(content)
    assert cli.main(["plot", str(f)]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("ustack plot: ") and words in err and err.count("\n") == 1, err
    assert cli.main(["plot", str(tmp_path / "missing")]) == cli.EXIT_ERROR
    assert "No such file or directory" in capsys.readouterr().err


def test_without_matplotlib_it_says_how_to_get_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = {k: 0 for k in REQUIRED} | {"conn": 1, "sacked": [], "ev": "open"}
    f = tmp_path / "one.jsonl"
    f.write_text(json.dumps(base) + "\n")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    assert cli.main(["plot", str(f)]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "pip install" in err and "ustack[plot]" in err and err.count("\n") == 1


def test_tracing_off_leaves_tracer_none_and_costs_nothing() -> None:
    net = SimNet(0.0, 64 * 1024, 3)
    client, server = net.connect()
    assert net.a.tcp.tracer is None and client.conn.tracer is None
    assert server.conn.tracer is None
    bulk(net, client, server, 100_000)
    assert client.conn.tracer is None


def test_tracer_buffers_and_flushes_on_close() -> None:
    clock = [0.0]
    out = io.StringIO()
    tr = Tracer(out.write, lambda: clock[0])
    net = SimNet(0.0, 64 * 1024, 5)
    net.a.tcp.tracer = tr
    net.connect()
    assert out.getvalue() == "" and tr.lines  # still buffered: clock[0] never moved
    tr.close()
    assert out.getvalue().count("\n") == tr.events > 0
    tr.record({"ev": "late"})  # after close: dropped
    assert out.getvalue().count("\n") == tr.events


def _truncated_copy(src: Path, dst: Path, snap: int) -> None:
    """``src`` as tcpdump -s SNAP would have written it: each frame cut."""
    data = src.read_bytes()
    out = bytearray(data[:24])
    struct.pack_into("<I", out, 16, snap)
    off = 24
    while off + 16 <= len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, off)
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        out += struct.pack("<IIII", sec, usec, min(incl, snap), orig) + frame[:snap]
    dst.write_bytes(bytes(out))


def test_a_capture_cut_at_a_snap_length_reads_the_same(lossy: tuple[TappedNet, Path, Path],
                                                       tmp_path: Path) -> None:
    """Lengths come from the IP header, not from the bytes kept."""
    _, _, pcap = lossy
    short = tmp_path / "short.pcap"
    _truncated_copy(pcap, short, 96)
    full = pcapread.flows(pcapread.read_pcap(pcap))
    cut = pcapread.flows(pcapread.read_pcap(short))
    a = pcapread.from_pcap(full[0], pcapread.pcap_conns(full)[0])
    b = pcapread.from_pcap(cut[0], pcapread.pcap_conns(cut)[0])
    assert (a.sent, a.retransmitted, a.acks, a.sacks) == (b.sent, b.retransmitted, b.acks, b.sacks)
    assert pcapread.pcap_conns(cut)[0].bytes == NBYTES + 1
