"""``ustack ss``: the TCP endpoints of a running stack, like ``ss -tni``.

Read from the stack's control socket (``control.py``; the rows are
tcp/info.py's).  Columns as ``ss`` prints them: State, Recv-Q, Send-Q,
Local Address:Port, Peer Address:Port; a listener's Recv-Q is its accept
queue and its Send-Q its backlog, and ``synq:N`` after it the connections
in SYN-RECEIVED.  ``-i`` adds a line per connection in ``ss``'s words
(``cubic wscale:7,7 rto:204 rtt:0.3/0.1 mss:1448 cwnd:10 ...``) and its
pending timer as ``ss -o`` shows it (``timer:(on,200ms,0)``), which -o
puts at the end of the row as ``ss`` does.  What
is listed: without -a or -l the connections (as ``ss``: not the SYN-RECV
or TIME-WAIT ones), -l the listeners, -a everything; a FILTER naming
states lists those (``ssfilter.py`` for its syntax).  Addresses are
always numeric (-n is accepted for ``ss``'s sake) and only TCP is listed
(-t likewise).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ustack.cli.common import UsageError

HELP = "list the TCP connections of a running stack (like ss -tni)"
DESCRIPTION = ("List the TCP connections and listeners of a running stack, like ss -tni. "
               "FILTER as ss's: state STATE, sport = :N, dport = :N, src ADDR[:PORT], "
               "dst ADDR[:PORT], combined with and, or, not.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", help="which stack (default: the only one running)")
    p.add_argument("-t", "--tcp", action="store_true", help="TCP (the only kind listed)")
    p.add_argument("-l", "--listening", action="store_true", help="listeners only")
    p.add_argument("-a", "--all", action="store_true",
                   help="everything: listeners, connections, SYN-RECV and TIME-WAIT")
    p.add_argument("-i", "--info", action="store_true",
                   help="TCP internals: cwnd, rtt, rto, bytes, retransmissions, timers")
    p.add_argument("-n", "--numeric", action="store_true",
                   help="numeric addresses (they always are); with -i, rates in bps "
                        "as numbers, as ss -n prints them")
    p.add_argument("-o", "--options", action="store_true",
                   help="each row's pending timer, as timer:(NAME,TIME,COUNT)")
    p.add_argument("--json", action="store_true", help="the rows as JSON")
    p.add_argument("--per-worker", action="store_true",
                   help="a stack run as workers: say which worker holds each row")
    p.add_argument("filter", nargs="*", metavar="FILTER",
                   help="e.g. state established sport = :80, dst 198.18.0.1")


def main(args: argparse.Namespace) -> int:
    from ustack.cli import ssfilter
    from ustack.cli.control import ControlError, query_all
    from ustack.cli.reports import ss_request

    try:  # checked here: a bad filter is a usage error before any stack is asked
        ssfilter.parse(args.filter)
    except ssfilter.FilterError as e:
        raise UsageError(f"ustack ss: {e}") from None
    except (RecursionError, ValueError) as e:  # a backstop: the parser bounds itself
        raise UsageError(f"ustack ss: filter: cannot be taken ({type(e).__name__})") from None
    request = ss_request(args.listening, args.all, args.info, args.filter)
    try:
        answers = query_all(args.name, request)
    except ControlError as e:
        raise UsageError(f"ustack ss: {e}") from None
    rows: list[dict[str, Any]] = []
    cut: list[str] = []
    for member, answer in answers:
        for row in answer.get("connections", []):
            if args.per_worker:
                row["worker"] = member
            rows.append(row)
        if answer.get("truncated"):
            cut.append(truncated_text(member, len(answer.get("connections", [])),
                                      int(answer.get("left_out", 0))))
    if args.json:
        doc: dict[str, Any] = {"connections": rows}
        if cut:
            doc["truncated"] = True
            doc["left_out"] = sum(int(a.get("left_out", 0)) for _, a in answers)
        print(json.dumps(doc, indent=2))
    else:
        for line in format_rows(rows, info=args.info, timers=args.options,
                                per_worker=args.per_worker, numeric=args.numeric):
            print(line)
    for text in cut:  # never a partial list that looks whole
        print(f"ustack ss: {text}", file=sys.stderr)
    return 0


def truncated_text(member: str, rows: int, left_out: int) -> str:
    return (f"{member}: the answer was cut after {rows} rows, {left_out} more endpoints "
            "not listed (more than the stack holds of answers at once: "
            "narrow it with a FILTER)")


def format_rows(rows: list[dict[str, Any]], *, info: bool = False, timers: bool = False,
                per_worker: bool = False, numeric: bool = False) -> list[str]:
    """The table ``ss`` prints: a header, a line per row (its timer at the
    end with ``timers``, -o) and with ``info`` (-i) a line of internals."""
    head = ["State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port"]
    table = [[str(r["state"]), str(r["recv_q"]), str(r["send_q"]), str(r["local"]),
              str(r["peer"])] for r in rows]
    if per_worker:
        head.insert(0, "Worker")
        for r, cells in zip(rows, table, strict=True):
            cells.insert(0, str(r.get("worker", "")))
    widths = [max([len(h)] + [len(c[i]) for c in table]) for i, h in enumerate(head)]
    # Numbers right-aligned as ss does, the rest left.
    right = {head.index("Recv-Q"), head.index("Send-Q")}

    def line(cells: list[str]) -> str:
        return " ".join(c.rjust(w) if i in right else c.ljust(w)
                        for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    out = [line(head)]
    for r, cells in zip(rows, table, strict=True):
        text = line(cells)
        if "syn_queue" in r:
            text += f" synq:{r['syn_queue']}"
        if timers:
            t = timer_text(r.get("timers", []))
            if t:
                text += " " + t
        out.append(text)
        extra = info_line(r, with_timer=not timers, numeric=numeric) if info else ""
        if extra:
            out.append("\t " + extra)
    return out


def timer_text(timers: list[dict[str, Any]]) -> str:
    """``ss -o``'s ``timer:(NAME,TIMEms,COUNT)`` for the earliest timer ss
    has a name for (a delayed ACK ss does not show: listed last)."""
    shown = [t for t in timers if t["name"] != "delack"] or timers
    if not shown:
        return ""
    t = shown[0]
    return f"timer:({t['name']},{_duration(float(t['ms']))},{t['count']})"


def _duration(ms: float) -> str:
    """As ss prints a timer: ``200ms``, ``1.2sec``, ``1min2sec``."""
    if ms < 1000:
        return f"{int(ms)}ms"
    s = ms / 1000.0
    if s < 60:
        return f"{s:.1f}sec" if s < 10 else f"{int(s)}sec"
    return f"{int(s // 60)}min{int(s % 60)}sec"


def _rate(bps: float, numeric: bool) -> str:
    """A rate in bits per second as ss prints one after ``send``,
    ``pacing_rate`` and ``delivery_rate`` (iproute2's sprint_bw): the
    number itself under -n, else three digits and a unit (``1.23Mbps``)."""
    if numeric:
        return f"{bps:.0f}bps"
    for unit, div in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if bps >= div:
            return f"{bps / div:.3g}{unit}bps"
    return f"{bps:g}bps"


def _num(ms: float) -> str:
    return f"{ms:.3f}".rstrip("0").rstrip(".")


def info_line(row: dict[str, Any], with_timer: bool = True, numeric: bool = False) -> str:
    """``ss -i``'s line for a row, in its words, order and separators
    (iproute2's tcp_stats_print: ``name:value``, but ``send``,
    ``delivery_rate`` a space before their rate; a field that is zero left
    out as ss leaves it out), and its pending timer unless the row's line
    has it (-o)."""
    words: list[str] = []
    i = row.get("info")
    if i:
        if i["timestamps"]:
            words.append("ts")
        if i["sack"]:
            words.append("sack")
        words.append(str(i["cc"]))
        snd, rcv = i["wscale"]
        if snd or rcv:
            words.append(f"wscale:{snd},{rcv}")
        words.append(f"rto:{_num(float(i['rto']))}")
        if i["backoff"]:
            words.append(f"backoff:{i['backoff']}")
        if i["rtt"] is not None:
            words.append(f"rtt:{_num(float(i['rtt']))}/{_num(float(i['rttvar']))}")
        words.append(f"mss:{i['mss']}")
        words.append(f"cwnd:{i['cwnd']}")
        if i["ssthresh"] is not None:
            words.append(f"ssthresh:{i['ssthresh']}")
        for key in ("bytes_sent", "bytes_retrans", "bytes_acked", "bytes_received",
                    "segs_out", "segs_in"):
            if i[key]:
                words.append(f"{key}:{i[key]}")
        rtt = i["rtt"]
        cwnd_bytes = i.get("cwnd_bytes", 0)
        if rtt and cwnd_bytes:  # ss's send: cwnd over the smoothed RTT
            words.append(f"send {_rate(cwnd_bytes * 8.0 / (float(rtt) / 1000.0), numeric)}")
        for key in ("lastsnd", "lastrcv"):
            if i[key]:
                words.append(f"{key}:{i[key]}")
        if i["delivery_rate"]:
            words.append(f"delivery_rate {_rate(float(i['delivery_rate']), numeric)}")
        if i["unacked"]:
            words.append(f"unacked:{i['unacked']}")
        now, total = i["retrans"]
        if now or total:
            words.append(f"retrans:{now}/{total}")
        if i["lost"]:
            words.append(f"lost:{i['lost']}")
        if i["sacked"]:
            words.append(f"sacked:{i['sacked']}")
        if i["recovery"]:
            words.append("recovery")  # ustack's own: ss has no such word
        if i.get("minrtt") is not None:
            words.append(f"minrtt:{_num(float(i['minrtt']))}")
        for key in ("snd_wnd", "rcv_wnd"):
            if i[key]:
                words.append(f"{key}:{i[key]}")
    t = timer_text(row.get("timers", [])) if with_timer else ""
    if t:
        words.append(t)
    return " ".join(words)
