"""``ustack plot``: draw one TCP connection of a ``--trace`` file or a pcap.

    ustack plot trace.jsonl                 # the busiest connection -> trace.png
    ustack plot trace.jsonl --list          # the connections in the file
    ustack plot capture.pcap --conn 2 -o c2.svg

A time-sequence graph (segments, retransmissions, ACK line, SACK blocks,
receive window) above cwnd/ssthresh/srtt over time (``ustack.plot``).
matplotlib is optional: without it the command says how to get it.
"""

from __future__ import annotations

import argparse
import os
import sys

from ustack.cli.common import EXIT_ERROR, UsageError, os_error_text

PROG = "ustack plot"
HELP = "draw a TCP connection from a --trace file or a pcap (time-sequence graph)"
DESCRIPTION = ("Draw one TCP connection of a --trace file (JSON lines) or a pcap capture of "
               "any TCP: a tcptrace-style time-sequence graph (segments sent, retransmissions, "
               "ACK line, SACK blocks, receive window) and cwnd/ssthresh/srtt over time. "
               "Needs matplotlib (pip install ustack[plot]).")
_PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
                b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="a --trace file (JSON lines) or a pcap")
    p.add_argument("--conn", type=int, metavar="N",
                   help="the connection to draw (see --list; default: the one that sent "
                        "the most)")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="the picture to write, .png, .svg or .pdf (default: FILE's name "
                        "with .png)")
    p.add_argument("--list", action="store_true", help="list the connections and exit")


def _fail(line: str) -> int:
    print(f"{PROG}: {line}", file=sys.stderr)
    return EXIT_ERROR


def main(args: argparse.Namespace) -> int:
    from ustack.plot import draw, pcapread, series

    path: str = args.file
    out = args.output or os.path.splitext(path)[0] + ".png"
    ext = os.path.splitext(out)[1].lstrip(".").lower()
    if not args.list and ext not in draw.FORMATS:
        raise UsageError(f"{PROG}: -o {out}: write .png, .svg or .pdf")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        is_pcap = head in _PCAP_MAGICS
        if is_pcap:
            flows = pcapread.flows(pcapread.read_pcap(path))
            conns = pcapread.pcap_conns(flows)
        else:
            notes: list[str] = []
            events = series.read_events(path, notes)
            for note in notes:
                print(f"{PROG}: note: {note}", file=sys.stderr)
            conns = series.trace_conns(events)
    except series.PlotInputError as e:
        return _fail(str(e))
    except OSError as e:
        return _fail(os_error_text(e))
    if not conns:
        return _fail(f"{path}: no TCP connection in it")
    if args.list:
        print(f"{'conn':>5} {'bytes':>12}  sender > receiver")
        for c in conns:
            if c.receiving:  # a receiver's trace: what arrived
                print(f"{c.id:>5} {c.received:>12}  {c.label} (received: the receiving side)")
            else:
                print(f"{c.id:>5} {c.bytes:>12}  {c.label}")
        return 0
    if args.conn is not None:
        chosen = next((c for c in conns if c.id == args.conn), None)
        if chosen is None:
            ids = ", ".join(str(c.id) for c in conns[:10]) + (", ..." if len(conns) > 10 else "")
            raise UsageError(f"{PROG}: --conn {args.conn}: no such connection in {path} "
                             f"(there are {ids}; see --list)")
    else:
        chosen = max(conns, key=lambda c: max(c.bytes, c.received))
        if len(conns) > 1:
            print(f"{PROG}: connection {chosen.id} of {len(conns)} ({chosen.label}, "
                  f"{chosen.bytes} bytes), the busiest; --conn N for another, --list for all",
                  file=sys.stderr)
    if is_pcap:
        s = pcapread.from_pcap(flows[chosen.id - 1], chosen)
    else:
        s = series.from_trace(events, chosen)
    try:
        draw.draw(s, out)
    except draw.MatplotlibMissing:
        return _fail("needs matplotlib: pip install 'ustack[plot]' "
                     "(or .venv/bin/pip install matplotlib)")
    except OSError as e:
        return _fail(f"-o {os_error_text(e)}" if e.filename else f"-o {out}: {os_error_text(e)}")
    if s.side == "receiver":
        print(f"{PROG}: wrote {out}: connection {chosen.id} ({chosen.label}), the receiving "
              f"side: {len(s.sent)} segments received, {chosen.received} bytes")
    else:
        print(f"{PROG}: wrote {out}: connection {chosen.id} ({chosen.label}): {len(s.sent)} "
              f"segments sent, {len(s.retransmitted)} retransmitted")
        if chosen.bytes <= 2 and not s.retransmitted:
            print(f"{PROG}: note: connection {chosen.id} moved no data: plot the trace of "
                  "a side that sent or received some, or a pcap", file=sys.stderr)
    return 0
