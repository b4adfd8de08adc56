"""What the control socket answers (``control.py``), made from the Stack in
its own loop: the ``stats`` report (counters, device statistics,
interfaces) and the ``ss`` report (TCP endpoints, tcp/info.py).

A request is one line: a JSON object (``{"cmd": "ss", "info": true,
"states": [...], "filter": [...]}``) as ``ustack ss`` sends it, or words a
person can type into ``socat - UNIX-CONNECT:/run/ustack/NAME.sock``:
``stats``, ``ss``, ``ss -tni``, ``ss -a state time-wait``.  A request
that cannot be taken is answered ``{"error": "one line"}``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from ustack.cli import ssfilter
from ustack.stack import Stack
from ustack.tcp import info
from ustack.wire import ethernet, ipv4

Report = dict[str, Any]


class RequestError(ValueError):
    """One line: why a request was not understood."""


def stats_report(stack: Stack, more: Callable[[], dict[str, int]] | None = None) -> Report:
    counters = stack.counters.snapshot()
    if more is not None:
        # An application's own counters (``ustack serve``'s Http*).
        counters.update(more())
    return {
        "pid": os.getpid(),
        "counters": counters,
        "tcp": tcp_states(stack),
        "interfaces": [
            {
                "name": i.name,
                "mac": ethernet.mac_to_str(i.mac),
                "ip": f"{ipv4.addr_to_str(i.ip)}/{i.prefix_len}",
                # How many addresses of ours (--sources): a count, the
                # list can be 65536 long.
                "addresses": len(i.addrs),
                "mtu": i.mtu,
                "arp": {ipv4.addr_to_str(ip): ethernet.mac_to_str(e.mac)
                        for ip, e in i.arp.entries.items()},
                "device": i.device.stats(),
            }
            for i in stack.interfaces
        ],
    }


def tcp_states(stack: Stack) -> dict[str, int]:
    """How many TCP connections are in each state (like ``ss -s``)."""
    counts: dict[str, int] = {}
    for sock in stack.tcp.conns.values():
        name = sock.conn.state.value
        counts[name] = counts.get(name, 0) + 1
    if stack.tcp.tw:  # closed connections kept as TIME-WAIT records (tcp/timewait.py)
        counts["TIME-WAIT"] = counts.get("TIME-WAIT", 0) + len(stack.tcp.tw)
    listening = len(stack.tcp.listeners)
    if listening:
        counts["LISTEN"] = listening
    return counts


def ss_report(stack: Stack, states: frozenset[str], filt: ssfilter.Filter,
              with_info: bool) -> Report:
    """The endpoints in ``states`` that ``filt`` matches: listeners first,
    then connections (with tcp_info when ``with_info``), then TIME-WAIT
    records; each a row of tcp/info.py."""
    now = stack.now
    match = filt.match
    rows: list[Report] = []
    tcp = stack.tcp
    if "LISTEN" in states:
        for listener in tcp.listeners.values():
            row = info.listener_row(listener)
            if match("LISTEN", str(row["local"]), str(row["peer"])):
                rows.append(row)
    for sock in tcp.conns.values():
        conn = sock.conn
        name = info.SS_STATE[conn.state]
        if name not in states:
            continue
        row = info.connection_row(conn, now)
        if not match(name, str(row["local"]), str(row["peer"])):
            continue
        if with_info:
            row["info"] = info.connection_info(conn, now)
        rows.append(row)
    if "TIME-WAIT" in states:
        for rec in tcp.tw.records.values():
            row = info.time_wait_row(rec, now)
            if match("TIME-WAIT", str(row["local"]), str(row["peer"])):
                rows.append(row)
    return {"pid": os.getpid(), "connections": rows}


def ss_words(words: list[str]) -> Report:
    """``ss`` options and filter as words (``-tni``, ``-a``, ``state x``) as
    the JSON request ``ustack ss`` sends; RequestError for an unknown option."""
    listening = all_ = with_info = False
    rest = list(words)
    while rest and rest[0].startswith("-"):
        opt = rest.pop(0)
        for letter in opt[1:]:
            if letter == "l":
                listening = True
            elif letter == "a":
                all_ = True
            elif letter == "i":
                with_info = True
            elif letter not in "tno":  # TCP only, numbers only, timers always sent
                raise RequestError(f"ss: unknown option -{letter}")
    return {"cmd": "ss", "states": sorted(base_states(listening, all_)), "info": with_info,
            "filter": rest}


def base_states(listening: bool, all_: bool) -> frozenset[str]:
    """The states -l / -a / neither list when the filter names none."""
    if all_:
        return ssfilter.ALL_STATES
    if listening:
        return frozenset({"LISTEN"})
    return ssfilter.DEFAULT_STATES


def parse_request(line: bytes) -> Report:
    """A request line as a JSON object with ``cmd`` (RequestError if none)."""
    text = line.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            req = json.loads(text)
        except ValueError:
            raise RequestError("request: not valid JSON") from None
        if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
            raise RequestError('request: a JSON object with "cmd" is expected')
        return req
    words = text.split()
    if not words or words[0] == "stats":
        return {"cmd": "stats"}
    if words[0] == "ss":
        return ss_words(words[1:])
    raise RequestError(f"request: unknown command {words[0]!r} (stats, ss)")


def answer(stack: Stack, line: bytes, more: Callable[[], dict[str, int]] | None) -> Report:
    """The report a request line asks for, or ``{"error": ...}``."""
    try:
        req = parse_request(line)
        cmd = req["cmd"]
        if cmd == "stats":
            return stats_report(stack, more)
        if cmd == "ss":
            filt = ssfilter.parse([str(w) for w in req.get("filter", [])])
            wanted = req.get("states")
            base = (ssfilter.DEFAULT_STATES if not isinstance(wanted, list)
                    else frozenset(str(s) for s in wanted))
            return ss_report(stack, filt.shown(base), filt, bool(req.get("info")))
        raise RequestError(f"request: unknown command {cmd!r} (stats, ss)")
    except (RequestError, ssfilter.FilterError) as e:
        return {"error": str(e)}
    except RecursionError:  # a backstop: the filter parser bounds its own depth
        return {"error": "filter: nested too deep"}
