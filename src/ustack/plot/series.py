"""What a time-sequence graph shows, as plain data, and reading it from a trace.

A ``Series`` is one direction of one connection, the sender's view, in the
style of tcptrace: every segment sent (its time and sequence range),
the retransmitted ones apart, the cumulative ACK over time (a step line),
the SACK blocks reported, the receive window's right edge (ACK + the
peer's advertised window), and for the second panel cwnd, ssthresh, srtt
and bytes in flight over time.  Sequence numbers are relative: our SYN is
0 and the first data byte 1 (as the trace writes them, ``ustack.tcp.trace``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ustack.tcp import seq as sq
from ustack.tcp.trace import REQUIRED


class PlotInputError(Exception):
    """A file that is not a trace or capture this can read (one line)."""


@dataclass
class Conn:
    """One connection of a file, as ``--list`` shows it."""

    id: int  # --conn N: the trace's connection id, or the capture's order of appearance
    label: str  # "198.18.0.1:40000 > 198.18.0.2:5001" (the data sender first)
    bytes: int  # sequence space sent, retransmissions not counted
    received: int = 0  # bytes of text that arrived (recv events; a trace only)

    @property
    def receiving(self) -> bool:
        """Only the receiving side of a transfer: drawn from its recv events."""
        return self.bytes <= 2 and self.received > 0  # (a SYN and a FIN: no text sent)


@dataclass
class Series:
    """One connection's sender, ready to draw (times in seconds from ``t0``)."""

    source: str  # "trace" or "pcap"
    conn: Conn
    t0: float = 0.0  # the file's clock at time 0 of the picture
    # "sender", or "receiver": a trace of the receiving side only, where
    # ``sent`` is the text as it arrived, ``acks`` RCV.NXT, ``window`` our
    # window's right edge and ``sacks`` the blocks beyond a gap (_receiver).
    side: str = "sender"
    sent: list[tuple[float, int, int]] = field(default_factory=list)  # (t, seq, end), new data
    retransmitted: list[tuple[float, int, int]] = field(default_factory=list)
    acks: list[tuple[float, int]] = field(default_factory=list)  # (t, cumulative ACK): steps
    sacks: list[tuple[float, int, int]] = field(default_factory=list)  # (t, left, right)
    window: list[tuple[float, int]] = field(default_factory=list)  # (t, ACK + peer's window)
    cwnd: list[tuple[float, int]] = field(default_factory=list)
    ssthresh: list[tuple[float, int]] = field(default_factory=list)
    srtt: list[tuple[float, float]] = field(default_factory=list)
    inflight: list[tuple[float, int]] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)  # rto, recovery ...

    @property
    def segments(self) -> int:
        """Segments sent, retransmissions included."""
        return len(self.sent) + len(self.retransmitted)


# ssthresh before the first loss is "arbitrarily high" (cc.py): not drawn.
_SSTHRESH_SHOWN = 1 << 30
# Events marked on the picture.
_MARKED = ("rto", "fast-retransmit", "recovery", "recovery-end", "tlp", "undo")


# The type of each key a picture reads: a line with another is not an event.
_NUMBER = (int, float)
_TYPES: dict[str, tuple[type, ...]] = {
    "t": _NUMBER, "conn": (int,), "ev": (str,), "una": (int,), "nxt": (int,),
    "cwnd": (int,), "ssthresh": (int,), "srtt": (int, float, type(None)), "rto": _NUMBER,
    "inflight": (int,), "rwnd": (int,), "wnd": (int,),
}
_SEGMENT_EVENTS = ("send", "retransmit", "recv")
# Larger than any count a trace holds (and than a float keeps exactly).
_BIGGEST = 1 << 53


def _ranges(v: object) -> bool:
    """``[[start, end], ...]`` of integers."""
    return isinstance(v, list) and all(
        isinstance(r, list) and len(r) == 2 and all(_is_int(x) for x in r) for r in v)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and abs(v) <= _BIGGEST


def check_event(ev: object) -> str | None:
    """Why ``ev`` is not a trace event a picture can be drawn from, or None."""
    if not isinstance(ev, dict):
        return "not an object"
    missing = [k for k in REQUIRED if k not in ev]
    if missing:
        return f"no {', '.join(missing)}"
    for key, types in _TYPES.items():
        v = ev[key]
        if (not isinstance(v, types) or isinstance(v, bool)
                or (isinstance(v, float) and not math.isfinite(v))
                or (isinstance(v, int) and abs(v) > _BIGGEST)):
            return f"{key}: {json.dumps(v)[:40]}"
    if not _ranges(ev["sacked"]):
        return f"sacked: {json.dumps(ev['sacked'])[:40]}"
    kind = ev["ev"]
    if kind in _SEGMENT_EVENTS:
        for key in ("seq", "len"):
            if not _is_int(ev.get(key)):
                return f"{kind} without an integer {key}"
    if kind == "recv" and not (_is_int(ev.get("rcv")) and _ranges(ev.get("ooo", []))):
        return "recv without an integer rcv"
    return None


def read_events(path: str | Path, notes: list[str] | None = None) -> list[dict[str, object]]:
    """Every event of a trace file, checked to be one (PlotInputError, one
    line naming the line).  A last line cut short (a trace still being
    written, or of a process killed) is left out, with a line in ``notes``."""
    events: list[dict[str, object]] = []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except UnicodeDecodeError:
        raise PlotInputError(f"{path}: neither a --trace file nor a pcap") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            if n == len(lines) and not line.endswith("\n") and events:
                if notes is not None:
                    notes.append(f"{path}: line {n} is cut short (a trace being written?): "
                                 "left out")
                break
            raise PlotInputError(f"{path}: line {n}: not a JSON line (neither a --trace "
                                 "file nor a pcap)") from None
        why = check_event(ev)
        if why is not None:
            raise PlotInputError(f"{path}: line {n}: not a trace event ({why})")
        events.append(ev)
    return events


def _int(v: object) -> int:
    return v if isinstance(v, int) else 0


def unwrap(value: int, near: int) -> int:
    """``value`` (mod 2^32) as the number closest to ``near``: relative
    sequence numbers keep growing past 4 GB."""
    return near + sq.sub(value, near)


def trace_conns(events: list[dict[str, object]]) -> list[Conn]:
    """The connections of a trace, in the order they opened."""
    conns: dict[int, Conn] = {}
    for ev in events:
        cid = _int(ev["conn"])
        c = conns.get(cid)
        if c is None:
            c = conns[cid] = Conn(cid, f"connection {cid}", 0)
        tup = ev.get("tuple")
        if isinstance(tup, list) and len(tup) == 4:
            c.label = f"{tup[0]}:{tup[1]} > {tup[2]}:{tup[3]}"
        if ev["ev"] == "send":
            c.bytes += _int(ev.get("len"))
        elif ev["ev"] == "recv":
            c.received += _int(ev.get("len"))
    return list(conns.values())


def from_trace(events: list[dict[str, object]], conn: Conn) -> Series:
    """The series of connection ``conn`` of a trace's ``events``."""
    mine = [ev for ev in events if ev["conn"] == conn.id]
    t0 = float(mine[0]["t"]) if mine else 0.0  # type: ignore[arg-type]
    if conn.receiving:
        return _receiver(mine, conn, t0)
    s = Series("trace", conn, t0)
    top = 0  # the highest relative sequence number seen, for unwrapping
    last_ack = -1
    for ev in mine:
        t = float(ev["t"]) - t0  # type: ignore[arg-type]
        kind = ev["ev"]
        una = top = unwrap(_int(ev["una"]), top)
        if kind == "send" or kind == "retransmit":
            seq = unwrap(_int(ev["seq"]), top)
            end = seq + _int(ev["len"])
            (s.sent if kind == "send" else s.retransmitted).append((t, seq, end))
            top = max(top, end)
        elif kind == "ack" or kind == "sack":
            if una != last_ack:
                s.acks.append((t, una))
                last_ack = una
            s.window.append((t, una + _int(ev["rwnd"])))
            sacked = ev["sacked"]
            if kind == "sack" and isinstance(sacked, list):
                for left, right in sacked:
                    s.sacks.append((t, unwrap(left, top), unwrap(right, top)))
        elif kind in _MARKED:
            s.events.append((t, str(kind)))
        s.cwnd.append((t, _int(ev["cwnd"])))
        ssthresh = _int(ev["ssthresh"])
        if ssthresh < _SSTHRESH_SHOWN:
            s.ssthresh.append((t, ssthresh))
        srtt = ev["srtt"]
        if isinstance(srtt, (int, float)):
            s.srtt.append((t, float(srtt)))
        s.inflight.append((t, _int(ev["inflight"])))
    return s


def _receiver(mine: list[dict[str, object]], conn: Conn, t0: float) -> Series:
    """The receiving side of a connection, from its recv events: the text
    as it arrived (``sent``: the arrival of each segment), RCV.NXT (the ACK
    we send, ``acks``), our window's right edge and the blocks held beyond
    a gap (``sacks``: what our SACK blocks report), relative to the peer's SYN."""
    s = Series("trace", conn, t0, side="receiver")
    top = 0
    last = -1
    for ev in mine:
        t = float(ev["t"]) - t0  # type: ignore[arg-type]
        if ev["ev"] == "recv":
            seq = unwrap(_int(ev["seq"]), top)
            end = seq + _int(ev["len"])
            rcv = top = max(top, unwrap(_int(ev["rcv"]), top))
            s.sent.append((t, seq, end))
            if rcv != last:
                s.acks.append((t, rcv))
                last = rcv
            s.window.append((t, rcv + _int(ev["wnd"])))
            ooo = ev.get("ooo")
            if isinstance(ooo, list):
                for left, right in ooo:
                    s.sacks.append((t, unwrap(left, top), unwrap(right, top)))
        elif ev["ev"] in _MARKED:
            s.events.append((t, str(ev["ev"])))
        srtt = ev["srtt"]
        if isinstance(srtt, (int, float)):
            s.srtt.append((t, float(srtt)))
    return s
