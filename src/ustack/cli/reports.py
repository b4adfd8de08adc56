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
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

from ustack.cli import ssfilter
from ustack.stack import Stack
from ustack.tcp import info
from ustack.tcp.socket import TcpListener
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


# How long one step of an ss answer may run in the stack's loop (its ACKs
# and timers wait meanwhile), and how big a piece of the answer is kept as
# one bytes object (written with one send()).
STEP_TIME: Final = 0.002
CHUNK: Final = 1 << 16


class SsAnswer:
    """An ``ss`` answer built a few rows at a time (``step``), so that no
    callback of the stack's loop runs long however many endpoints the stack
    has: the keys of its tables are taken at once (a list: fast), each row
    made from what its endpoint is when its turn comes (one gone by then is
    left out), encoded as it is made.  Listeners first, then connections
    (with tcp_info when ``with_info``), then TIME-WAIT records; each a row
    of tcp/info.py.  Cut, rather than grown without bound, when the room it
    is given runs out: the answer says so (``truncated``, and ``left_out``:
    the endpoints not examined)."""

    def __init__(self, stack: Stack, states: frozenset[str], filt: ssfilter.Filter,
                 with_info: bool) -> None:
        tcp = stack.tcp
        self.stack = stack
        self.states = states
        self.match = filt.match
        self.with_info = with_info
        self.listeners: list[TcpListener] = (list(tcp.listeners.values())
                                             if "LISTEN" in states else [])
        self.conn_keys = list(tcp.conns.keys())
        self.tw_keys = list(tcp.tw.records.keys()) if "TIME-WAIT" in states else []
        self.total = len(self.listeners) + len(self.conn_keys) + len(self.tw_keys)
        self.examined = 0
        self.rows = 0
        self.now = stack.now
        self._rows = self._generate()
        self._piece: list[bytes] = []  # encoded rows not yet joined into a chunk
        self._piece_bytes = 0
        self.chunks: list[bytes] = []  # the answer so far, in pieces of about CHUNK bytes
        self.nbytes = 0
        self.done = False

    def _generate(self) -> Iterator[Report | None]:
        """Each endpoint's row, or None for one examined and not shown."""
        tcp = self.stack.tcp
        match = self.match
        for listener in self.listeners:
            row = info.listener_row(listener)
            yield row if match("LISTEN", str(row["local"]), str(row["peer"])) else None
        for key in self.conn_keys:
            sock = tcp.conns.get(key)
            if sock is None:  # closed since the answer began
                yield None
                continue
            conn = sock.conn
            name = info.SS_STATE[conn.state]
            # Matched on its ends before its row is made (most rows of a
            # big table are filtered out).
            if name not in self.states or not match(
                    name, info.endpoint(key[0], key[1]), info.endpoint(key[2], key[3])):
                yield None
                continue
            row = info.connection_row(conn, self.now)
            if self.with_info:
                row["info"] = info.connection_info(conn, self.now)
            yield row
        for key in self.tw_keys:
            rec = tcp.tw.records.get(key)
            if rec is None:
                yield None
                continue
            if not match("TIME-WAIT", info.endpoint(key[0], key[1]),
                         info.endpoint(key[2], key[3])):
                yield None
                continue
            yield info.time_wait_row(rec, self.now)

    def step(self, now: float, until: float, room: int) -> bool:
        """Rows until ``clock()`` passes ``until`` (32 at least), the answer
        held to ``room`` bytes; True once it is complete (``chunks``)."""
        if self.done:
            return True
        self.now = now
        since_check = 0
        cut = False
        for row in self._rows:
            if row is not None:
                piece = json.dumps(row).encode()
                if self.nbytes + len(piece) + 200 > room:
                    cut = True
                    break
                if self.rows:
                    piece = b", " + piece
                self._piece.append(piece)
                self._piece_bytes += len(piece)
                self.nbytes += len(piece)
                self.rows += 1
                if self._piece_bytes >= CHUNK:
                    self._flush()
            self.examined += 1
            since_check += 1
            if since_check >= 32:
                since_check = 0
                if clock() > until:
                    return False
        self._finish(cut)
        return True

    def _flush(self) -> None:
        if self._piece:
            self.chunks.append(b"".join(self._piece))
            self._piece = []
            self._piece_bytes = 0

    def _finish(self, cut: bool) -> None:
        self._flush()
        head = {"pid": os.getpid(), "truncated": cut, "left_out": self.total - self.examined}
        # The document: the head's fields, then the rows as they were made.
        self.chunks.insert(0, json.dumps(head)[:-1].encode() + b', "connections": [')
        self.chunks.append(b"]}\n")
        self.nbytes = sum(len(c) for c in self.chunks)
        self.done = True


def clock() -> float:
    """The clock ``SsAnswer.step``'s ``until`` is read on."""
    return time.perf_counter()


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
    return ss_request(listening, all_, with_info, rest)


def ss_request(listening: bool, all_: bool, with_info: bool, words: list[str]) -> Report:
    """The JSON request for ``ss``: the states -l / -a ask for, -i, the filter's words."""
    return {"cmd": "ss", "states": sorted(base_states(listening, all_)), "info": with_info,
            "filter": words}


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


def start(stack: Stack, line: bytes, more: Callable[[], dict[str, int]] | None
          ) -> Report | SsAnswer:
    """What a request line asks for: a report made at once (``stats``, or
    ``{"error": ...}``), or an ``ss`` answer to build a step at a time."""
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
            return SsAnswer(stack, filt.shown(base), filt, bool(req.get("info")))
        raise RequestError(f"request: unknown command {cmd!r} (stats, ss)")
    except (RequestError, ssfilter.FilterError) as e:
        return {"error": str(e)}
    except RecursionError:  # a backstop: the filter parser bounds its own depth
        return {"error": "filter: nested too deep"}


def answer(stack: Stack, line: bytes, more: Callable[[], dict[str, int]] | None) -> Report:
    """The report a request line asks for, or ``{"error": ...}``, whole."""
    got = start(stack, line, more)
    if isinstance(got, SsAnswer):
        got.step(stack.now, float("inf"), 1 << 62)
        doc: Report = json.loads(b"".join(got.chunks))
        return doc
    return got
