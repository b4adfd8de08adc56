"""The FILTER of ``ustack ss``, in the syntax of iproute2's ``ss``.

    FILTER := [ state STATE-NAME | exclude STATE-NAME ]... [ EXPRESSION ]
    EXPRESSION := TERM [ or TERM ]...        TERM := FACTOR [ [and] FACTOR ]...
    FACTOR := not FACTOR | ( EXPRESSION ) | state STATE-NAME
            | sport OP :PORT | dport OP :PORT | src ADDR[/LEN][:PORT] | dst ...

with OP one of ``= == eq != ne neq < lt > gt <= le >= ge`` (or none: ``=``);
``&&``, ``||`` and ``!`` work too.  State names are ``ss``'s: established,
syn-sent, syn-recv, fin-wait-1, fin-wait-2, time-wait, closed, close-wait,
last-ack, closing, listening, and the sets all, connected (all but
listening and closed), synchronized (connected but syn-sent) and bucket
(syn-recv and time-wait).

Parsed once into a ``Filter`` (``parse``; a ``FilterError`` is one line
naming the word it could not take), the client checks it before asking
and the control socket applies it to each row it would send (so a stack
with many connections sends only what was asked for).  A row is matched by
its ``ss`` state name and its ``local``/``peer`` ``"a.b.c.d:port"``
strings (tcp/info.py).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from typing import Final

# ss state names -> the row names (tcp/info.py's SS_STATE values).
STATE_WORDS: Final[dict[str, frozenset[str]]] = {
    "established": frozenset({"ESTAB"}),
    "syn-sent": frozenset({"SYN-SENT"}),
    "syn-recv": frozenset({"SYN-RECV"}),
    "fin-wait-1": frozenset({"FIN-WAIT-1"}),
    "fin-wait-2": frozenset({"FIN-WAIT-2"}),
    "time-wait": frozenset({"TIME-WAIT"}),
    "closed": frozenset({"UNCONN"}),
    "close-wait": frozenset({"CLOSE-WAIT"}),
    "last-ack": frozenset({"LAST-ACK"}),
    "closing": frozenset({"CLOSING"}),
    "listening": frozenset({"LISTEN"}),
}
ALL_STATES: Final = frozenset().union(*STATE_WORDS.values())
STATE_WORDS.update({
    "listen": STATE_WORDS["listening"],
    "all": ALL_STATES,
    "connected": ALL_STATES - {"LISTEN", "UNCONN"},
    "synchronized": ALL_STATES - {"LISTEN", "UNCONN", "SYN-SENT"},
    "bucket": frozenset({"SYN-RECV", "TIME-WAIT"}),
})
# What ss lists without -a or -l (its SS_CONN): connections, but neither
# the SYN-RECV nor the TIME-WAIT ones.
DEFAULT_STATES: Final = ALL_STATES - {"LISTEN", "UNCONN", "SYN-RECV", "TIME-WAIT"}

Match = Callable[[str, str, str], bool]  # (state, local, peer) -> shown?

_OPS: Final[dict[str, str]] = {
    "=": "eq", "==": "eq", "eq": "eq", "!=": "ne", "ne": "ne", "neq": "ne",
    "<": "lt", "lt": "lt", ">": "gt", "gt": "gt", "<=": "le", "le": "le",
    ">=": "ge", "ge": "ge",
}
_COMPARE: Final[dict[str, Callable[[int, int], bool]]] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b, "gt": lambda a, b: a > b,
    "le": lambda a, b: a <= b, "ge": lambda a, b: a >= b,
}


# A filter is typed by a person or sent by a client: bounded so that no
# filter can exhaust the parser's recursion (each '(' or 'not' is a level).
MAX_WORDS: Final = 256
MAX_DEPTH: Final = 32

# ASCII digits only: str.isdigit() takes '²' and other digits int() refuses,
# and a bound on the length keeps int() from its digit limit.
_PORT: Final = re.compile(r"[0-9]{1,5}")


class FilterError(ValueError):
    """One line: which word of the filter could not be taken, and why."""


def _split(endpoint: str) -> tuple[str, int]:
    ip, _, port = endpoint.rpartition(":")
    return ip, (int(port) if _PORT.fullmatch(port) else -1)


class Filter:
    """A parsed filter: the states it admits (None: it names none, the
    command's -a/-l choose) and the expression rows must match."""

    def __init__(self, states: frozenset[str] | None, match: Match, text: str) -> None:
        self.states = states
        self.match = match
        self.text = text

    def shown(self, base: frozenset[str]) -> frozenset[str]:
        """The states to list: the filter's, else ``base`` (-a, -l, default)."""
        return base if self.states is None else self.states


def _always(state: str, local: str, peer: str) -> bool:
    return True


class _Parser:
    def __init__(self, words: Sequence[str]) -> None:
        # ss takes "(", ")" and "!" glued to words too: split them off.
        self.words: list[str] = []
        for w in words:
            for part in w.replace("(", " ( ").replace(")", " ) ").split():
                while part.startswith("!") and part not in ("!", "!="):
                    self.words.append("!")
                    part = part[1:]
                self.words.append(part)
        if len(self.words) > MAX_WORDS:
            raise FilterError(f"filter: more than {MAX_WORDS} words")
        self.pos = 0
        self.depth = 0  # '(' and 'not' being parsed, nested
        self.named_state = False

    def peek(self) -> str | None:
        return self.words[self.pos] if self.pos < len(self.words) else None

    def take(self, what: str) -> str:
        w = self.peek()
        if w is None:
            raise FilterError(f"filter ends where {what} should follow")
        self.pos += 1
        return w

    def state_set(self) -> frozenset[str]:
        w = self.take("a state name")
        states = STATE_WORDS.get(w.lower())
        if states is None:
            raise FilterError(f"filter: unknown state {w!r} (one of {', '.join(STATE_WORDS)})")
        self.named_state = True
        return states

    def expression(self) -> Match:
        left = self.term()
        while self.peek() in ("or", "||"):
            self.pos += 1
            right = self.term()
            left = _either(left, right)
        return left

    def term(self) -> Match:
        left = self.factor()
        while True:
            w = self.peek()
            if w is None or w in ("or", "||", ")"):
                return left
            if w in ("and", "&&"):
                self.pos += 1
            right = self.factor()
            left = _both(left, right)

    def factor(self) -> Match:
        w = self.take("a condition")
        if w in ("not", "!", "("):
            if self.depth >= MAX_DEPTH:
                raise FilterError(f"filter: nested deeper than {MAX_DEPTH} "
                                  "('(' and 'not' within each other)")
            self.depth += 1
            try:
                return self.nested(w)
            finally:
                self.depth -= 1
        if w == "state":
            return _in_states(self.state_set())
        if w in ("sport", "dport"):
            op = "eq"
            if self.peek() in _OPS:
                op = _OPS[self.take("an operator")]
            port = self.port(self.take("a port (:N)"))
            if port < 0:
                raise FilterError(f"filter: {w} needs a port, got '*'")
            return _port_match(w == "sport", _COMPARE[op], port)
        if w in ("src", "dst"):
            if self.peek() in ("=", "==", "eq"):
                self.pos += 1
            return self.address(w == "src", self.take("an address"))
        raise FilterError(f"filter: cannot take {w!r} (state, sport, dport, src, dst, "
                          "and, or, not, parentheses)")

    def nested(self, w: str) -> Match:
        """``not FACTOR`` or ``( EXPRESSION )``, ``w`` being taken."""
        if w != "(":
            return _negate(self.factor())
        inner = self.expression()
        if self.take("')'") != ")":
            raise FilterError(f"filter: ')' expected at {self.words[self.pos - 1]!r}")
        return inner

    def port(self, word: str) -> int:
        text = word[1:] if word.startswith(":") else word
        if text == "*":
            return -1
        if not _PORT.fullmatch(text) or int(text) > 65535:
            raise FilterError(f"filter: bad port {word!r} (give :N, N from 0 to 65535)")
        return int(text)

    def address(self, local: bool, word: str) -> Match:
        host, port_text = word, ""
        if ":" in word:
            host, _, port_text = word.rpartition(":")
            port_text = ":" + port_text
        port = self.port(port_text) if port_text else -1
        if host in ("", "*", "0.0.0.0/0"):
            net = None
        else:
            try:
                net = ipaddress.IPv4Network(host, strict=False)
            except ValueError:
                raise FilterError(f"filter: bad address {word!r} "
                                  "(give ADDR[/LEN][:PORT], e.g. 198.18.0.1:80)") from None
        return _address_match(local, net, port)


def _either(a: Match, b: Match) -> Match:
    return lambda s, lo, pe: a(s, lo, pe) or b(s, lo, pe)


def _both(a: Match, b: Match) -> Match:
    return lambda s, lo, pe: a(s, lo, pe) and b(s, lo, pe)


def _negate(a: Match) -> Match:
    return lambda s, lo, pe: not a(s, lo, pe)


def _in_states(states: frozenset[str]) -> Match:
    return lambda s, lo, pe: s in states


def _port_match(local: bool, compare: Callable[[int, int], bool], port: int) -> Match:
    def match(state: str, lo: str, pe: str) -> bool:
        _, p = _split(lo if local else pe)
        return p >= 0 and compare(p, port)
    return match


def _address_match(local: bool, net: ipaddress.IPv4Network | None, port: int) -> Match:
    def match(state: str, lo: str, pe: str) -> bool:
        ip, p = _split(lo if local else pe)
        if port >= 0 and p != port:
            return False
        return net is None or ipaddress.IPv4Address(ip) in net
    return match


def parse(words: Sequence[str]) -> Filter:
    """The filter the words say (no words: every row of the listed states)."""
    p = _Parser(words)
    states: frozenset[str] | None = None
    while True:
        w = p.peek()
        if (states is not None and w in ("or", "||") and p.pos + 1 < len(p.words)
                and p.words[p.pos + 1] in ("state", "exclude")):
            p.pos += 1  # "state time-wait or state listening": the union, as without "or"
            continue
        if w not in ("state", "exclude"):
            break
        if p.take("state") == "state":
            states = (states or frozenset()) | p.state_set()
        else:
            states = (ALL_STATES if states is None else states) - p.state_set()
    if states is not None and p.peek() in ("and", "&&"):
        p.pos += 1  # "state established and dport = :80"
    match: Match = _always
    if p.peek() is not None:
        match = p.expression()
        if p.peek() is not None:
            raise FilterError(f"filter: unexpected {p.peek()!r}")
    if states is None and p.named_state:
        # A state named inside the expression: it chooses among all of them.
        states = ALL_STATES
    return Filter(states, match, " ".join(words))
