"""The ``--trace`` file as a running stack writes it (review of issue 15):
on disk while the stack runs, a write error that stops tracing instead of
failing TCP, a forked child that writes nothing twice, a receiver's trace
that shows the transfer, and ``ustack plot`` that never shows a traceback
for a line it cannot read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from goodput_sim import SimNet, bulk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ustack import cli
from ustack.plot import series
from ustack.tcp.trace import FLUSH_EVERY, REQUIRED
from ustack.tracefile import open_trace


def _lines(path: Path) -> list[dict[str, object]]:
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "a partial line on disk"
    return [json.loads(line) for line in text.splitlines()]


def test_the_trace_is_on_disk_while_the_stack_runs(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    net = SimNet(0.0, 64 * 1024, 3)
    tf = open_trace(net.a, str(trace))
    client, server = net.connect()
    bulk(net, client, server, 300_000)
    # Quiet now: no event comes to flush the tracer; its timer does.
    end = net.now + FLUSH_EVERY * 1.5
    while net.now < end:
        net.settle()
        net.now += 0.1
    net.settle()
    on_disk = _lines(trace)
    assert len(on_disk) == tf.tracer.events > 100 and not tf.tracer.lines
    assert on_disk[0]["ev"] == "open"
    tf.close()
    assert len(_lines(trace)) == len(on_disk)


def test_a_write_error_stops_tracing_and_the_transfer_goes_on() -> None:
    warnings: list[str] = []
    net = SimNet(0.0, 64 * 1024, 4)
    tf = open_trace(net.a, "/dev/full", warnings.append)
    client, server = net.connect()
    bulk(net, client, server, 500_000)  # > FLUSH_LINES events: the write fails mid-transfer
    assert warnings == ["--trace /dev/full: No space left on device; tracing stopped"]
    assert net.a.tcp.tracer is None and tf.tracer.closed
    tf.close()  # nothing raised, nothing more said
    assert len(warnings) == 1


def test_a_forked_child_writes_no_line_of_the_parent(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    net = SimNet(0.0, 64 * 1024, 5)
    tf = open_trace(net.a, str(trace))
    net.connect()
    assert tf.tracer.lines  # buffered, not written yet
    pid = os.fork()
    if pid == 0:  # the child: what its exit path would do
        try:
            tf.tracer.record({"ev": "child"})
            tf.flush()
            tf.close()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    tf.close()
    lines = _lines(trace)
    assert len(lines) == tf.tracer.events and not any(e["ev"] == "child" for e in lines)


def test_a_receivers_trace_shows_the_transfer(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "r.jsonl"
    net = SimNet(0.03, 128 * 1024, 7)
    tf = open_trace(net.b, str(trace))  # the receiver's side only
    client, server = net.connect()
    nbytes = 400_000
    bulk(net, client, server, nbytes)
    tf.close()
    events = series.read_events(trace)
    recvs = [e for e in events if e["ev"] == "recv"]
    assert sum(e["len"] for e in recvs) >= nbytes  # type: ignore[misc]
    assert any(e["ooo"] for e in recvs)  # the loss left gaps
    (conn,) = series.trace_conns(events)
    assert conn.receiving and conn.received >= nbytes
    s = series.from_trace(events, conn)
    assert s.side == "receiver" and len(s.sent) == len(recvs)
    assert s.acks[-1][1] == nbytes + 1  # RCV.NXT: the peer's SYN and every byte
    assert [a for _, a in s.acks] == sorted(a for _, a in s.acks)
    assert s.sacks and all(left < right for _, left, right in s.sacks)
    assert len(s.window) == len(recvs) and s.window[-1][1] >= s.acks[-1][1]
    pytest.importorskip("matplotlib")
    out = tmp_path / "r.svg"
    assert cli.main(["plot", str(trace), "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert "the receiving side" in said and f"{conn.received} bytes" in said
    assert out.stat().st_size > 1000


def test_a_last_line_cut_short_is_left_out_with_a_note(tmp_path: Path) -> None:
    base = {k: 0 for k in REQUIRED} | {"conn": 1, "sacked": [], "ev": "open"}
    f = tmp_path / "live.jsonl"
    whole = json.dumps(base) + "\n"
    f.write_text(whole * 3 + whole[:20])
    notes: list[str] = []
    assert len(series.read_events(f, notes)) == 3
    assert len(notes) == 1 and "line 4 is cut short" in notes[0]
    f.write_text(whole + whole[:20] + "\n" + whole)  # cut short inside: not a trace
    with pytest.raises(series.PlotInputError, match="line 2: not a JSON line"):
        series.read_events(f)


_BASE = {k: 0 for k in REQUIRED} | {"conn": 1, "sacked": [], "ev": "send", "seq": 1,
                                     "len": 10, "state": "ESTABLISHED", "srtt": 0.01}


@pytest.mark.parametrize(("change", "words"), [
    ({"t": "x"}, "line 2: not a trace event (t: \"x\")"),
    ({"ev": "sack", "sacked": [[1]]}, "line 2: not a trace event (sacked: [[1]])"),
    ({"seq": None}, "line 2: not a trace event (send without an integer seq)"),
    ({"cwnd": True}, "line 2: not a trace event (cwnd: true)"),
    ({"t": float("nan")}, "line 2: not a trace event (t: NaN)"),
])
def test_a_malformed_event_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       change: dict[str, object], words: str) -> None:
    f = tmp_path / "bad.jsonl"
    bad = dict(_BASE) | change
    if change.get("seq", 0) is None:
        del bad["seq"]
    f.write_text(json.dumps(_BASE) + "\n" + json.dumps(bad) + "\n")
    assert cli.main(["plot", str(f), "-o", str(tmp_path / "x.svg")]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert err == f"ustack plot: {f}: {words}\n"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=6)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(st.dictionaries(st.sampled_from([*REQUIRED, "seq", "len", "rcv",
                                                           "ooo", "tuple"]),
                                        _JSON, max_size=3), min_size=1, max_size=4),
       evs=st.lists(st.sampled_from(["open", "send", "retransmit", "ack", "sack", "recv",
                                     "rto", "close"]), min_size=4, max_size=4))
def test_any_json_lines_give_a_picture_or_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        changes: list[dict[str, object]], evs: list[str]) -> None:
    pytest.importorskip("matplotlib")
    lines = []
    for change, ev in zip(changes, evs, strict=False):
        e = dict(_BASE) | {"ev": ev, "rcv": 5, "ooo": []} | change
        lines.append(json.dumps(e))
    f = tmp_path / "h.jsonl"
    f.write_text("\n".join(lines) + "\n")
    out = tmp_path / "h.svg"
    status = cli.main(["plot", str(f), "-o", str(out)])
    captured = capsys.readouterr()
    if status == 0:
        assert out.exists()
    else:
        assert status == cli.EXIT_ERROR
        assert captured.err.count("\n") == 1 and captured.err.startswith("ustack plot: ")
