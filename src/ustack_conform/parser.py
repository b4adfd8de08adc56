"""Parse packetdrill scripts into ``ustack_conform.script`` objects.

Written from packetdrill's documented grammar (``Syntax.md`` in
google/packetdrill) and the forms the FreeBSD tcp-testsuite uses; see
``script.py`` for the model.  Two passes: a lexer that turns the whole file
into tokens (the grammar ignores newlines, so a backtick command or a
system call may span lines), then a recursive-descent parser over them.
One rule is added to the grammar to catch garbage: an event must end on the
line where the next one begins, i.e. two events never share a line.

Every problem raises ``ScriptError(path, line, message)`` and nothing else,
so a runner reports ``file:line: message`` and goes on with the next script.

Usage::

    script = parse_path("tests/conformance/close-with-unsent-data.pkt")
    for result in parse_all("tests/conformance/tcp-testsuite"):
        ...  # a Script, or the ScriptError of a malformed one
    main(["PATH", ...])  # parse only: one line per script and a summary
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, NamedTuple

from ustack.tcp import seq
from ustack_conform.script import (
    ICMP_CODES,
    ICMP_TYPES,
    IPTOS_NAMES,
    TCP_FLAG_BITS,
    WILDCARD,
    Action,
    Array,
    BitOr,
    Call,
    CodeEvent,
    Event,
    Expr,
    Field,
    IcmpEvent,
    Int,
    PacketEvent,
    Script,
    ScriptError,
    ShellEvent,
    Str,
    Struct,
    Symbol,
    SyscallEvent,
    TcpOptionSpec,
    Time,
    Wildcard,
)

__all__ = ["iter_scripts", "main", "parse_all", "parse_path", "parse_text"]

_U32 = 0xFFFFFFFF
_U16 = 0xFFFF
_U8 = 0xFF
# Deeper nesting than this in an expression is certainly not a real script;
# the limit keeps a hostile ``[[[[...`` from reaching Python's recursion limit.
_MAX_DEPTH = 32
# Python refuses int() of more than 4300 digits; no script needs 40.
_MAX_DIGITS = 40
_MAX_SECONDS = 1e6
_IP_VERSIONS = frozenset({"ipv4", "ipv6", "ipv4-mapped-ipv6"})
_ECN = frozenset({"noecn", "ect0", "ect1", "ect01", "ce"})
_ERRNO = re.compile(r"E[A-Z0-9]+\Z")
_CODE_N = re.compile(r"code_(\d{1,3})\Z")


class _Tok(NamedTuple):
    kind: str
    """INT HEX FLOAT STR WORD ELLIPSIS BACKTICK CODE OPTION PUNCT EOF."""
    text: str
    line: int
    end_line: int
    start: int
    end: int
    guards: tuple[str, ...]


# Order matters: directive only at a line start; block constructs before
# their unterminated forms; ``...`` before floats; floats and hex before ints.
_LEX = re.compile(
    r"""
    (?P<directive>^[ \t]*\#[^\n]*)
  | (?P<ws>[ \t\r\f\v]+)
  | (?P<nl>\n)
  | (?P<lcomment>//[^\n]*)
  | (?P<bcomment>/\*.*?\*/)
  | (?P<CODE>%\{.*?\}%)
  | (?P<BACKTICK>`(?:\\.|[^`\\])*`)
  | (?P<STR>"(?:\\.|[^"\\\n])*")
  | (?P<open_bcomment>/\*)
  | (?P<open_code>%\{)
  | (?P<open_backtick>`)
  | (?P<open_string>")
  | (?P<OPTION>--[A-Za-z0-9_]+(?:=\S*)?)
  | (?P<ELLIPSIS>\.\.\.)
  | (?P<FLOAT>\d*\.\d+)
  | (?P<HEX>0[xX][0-9A-Fa-f]+)
  | (?P<INT>-?\d+)
  | (?P<WORD>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<PUNCT>.)
    """,
    re.VERBOSE | re.DOTALL | re.MULTILINE,
)
_DIRECTIVE = re.compile(r"[ \t]*\#[ \t]*(\w*)[ \t]*(\w*)\s*(?://.*)?\Z")
_UNTERMINATED = {
    "open_bcomment": "unterminated /* comment",
    "open_code": "unterminated %{ code block",
    "open_backtick": "unterminated ` command",
    "open_string": 'unterminated " string',
}


def _lex(text: str, path: str) -> list[_Tok]:
    toks: list[_Tok] = []
    append = toks.append
    line = 1
    guards: list[str] = []
    guard_lines: list[int] = []
    frozen: tuple[str, ...] = ()
    pos = 0
    n = len(text)
    match = _LEX.match
    while pos < n:
        m = match(text, pos)
        if m is None:  # pragma: no cover - PUNCT matches any character
            raise ScriptError(path, line, "cannot read the script here")
        kind = m.lastgroup
        s = m.group()
        end = m.end()
        if kind == "nl":
            line += 1
        elif kind == "ws" or kind == "lcomment":
            pass
        elif kind == "bcomment":
            line += s.count("\n")
        elif kind == "directive":
            # nplab packetdrill's #ifdef blocks (platform-specific lines).
            d = _DIRECTIVE.match(s)
            word, name = (d.group(1), d.group(2)) if d else ("", "")
            if word in ("ifdef", "ifndef") and name:
                guards.append(name if word == "ifdef" else "!" + name)
                guard_lines.append(line)
            elif word == "else" and not name and guards:
                g = guards[-1]
                guards[-1] = g[1:] if g[0] == "!" else "!" + g
            elif word == "endif" and not name and guards:
                guards.pop()
                guard_lines.pop()
            elif word in ("else", "endif") and not name:
                raise ScriptError(path, line, f"#{word} without #ifdef")
            else:
                raise ScriptError(
                    path, line, f"unsupported directive {s.strip()!r} "
                    "(only #ifdef NAME, #ifndef NAME, #else, #endif)"
                )
            frozen = tuple(guards)
        elif kind in _UNTERMINATED:
            raise ScriptError(path, line, _UNTERMINATED[kind])
        else:
            assert kind is not None
            nls = s.count("\n") if kind in ("CODE", "BACKTICK") else 0
            append(_Tok(kind, s, line, line + nls, pos, end, frozen))
            line += nls
        pos = end
    if guards:
        raise ScriptError(path, guard_lines[-1], f"#ifdef {guards[-1].lstrip('!')} without #endif")
    append(_Tok("EOF", "", line, line, n, n, frozen))
    return toks


def _describe(t: _Tok) -> str:
    if t.kind == "EOF":
        return "the end of the script"
    s = t.text if len(t.text) <= 20 else t.text[:17] + "..."
    return repr(s.split("\n", 1)[0])


class _Parser:
    __slots__ = ("i", "last", "path", "text", "toks")

    def __init__(self, text: str, path: str) -> None:
        self.text = text
        self.path = path
        self.toks = _lex(text, path)
        self.i = 0
        self.last = self.toks[0]

    # --- token helpers ------------------------------------------------------

    def error(self, msg: str, tok: _Tok | None = None) -> ScriptError:
        t = tok if tok is not None else self.toks[self.i]
        # Running out of input is reported where the unfinished event is.
        line = self.last.end_line if t.kind == "EOF" else t.line
        return ScriptError(self.path, line, msg)

    def peek(self, k: int = 0) -> _Tok:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else self.toks[-1]

    def take(self) -> _Tok:
        t = self.toks[self.i]
        if t.kind != "EOF":
            self.i += 1
            self.last = t
        return t

    def at(self, kind: str, text: str | None = None) -> bool:
        t = self.toks[self.i]
        return t.kind == kind and (text is None or t.text == text)

    def at_punct(self, c: str) -> bool:
        t = self.toks[self.i]
        return t.kind == "PUNCT" and t.text == c

    def at_word(self, w: str) -> bool:
        t = self.toks[self.i]
        return t.kind == "WORD" and t.text == w

    def expect_punct(self, c: str, what: str) -> _Tok:
        if not self.at_punct(c):
            raise self.error(f"expected '{c}' {what}, found {_describe(self.peek())}")
        return self.take()

    def expect_word(self, w: str, what: str) -> _Tok:
        if not self.at_word(w):
            raise self.error(f"expected '{w}' {what}, found {_describe(self.peek())}")
        return self.take()

    def integer(self, what: str, lo: int, hi: int) -> int:
        """An INT or HEX token within [lo, hi]."""
        t = self.peek()
        if t.kind not in ("INT", "HEX"):
            raise self.error(f"expected {what} (an integer), found {_describe(t)}")
        v = self.int_value(t)
        if not lo <= v <= hi:
            raise self.error(f"{what} {t.text} out of range {lo}..{hi}")
        self.take()
        return v

    def int_value(self, t: _Tok) -> int:
        if len(t.text) > _MAX_DIGITS:
            raise self.error(f"number {t.text[:20]}... is too long", t)
        return int(t.text, 16) if t.kind == "HEX" else int(t.text)

    # --- script ----------------------------------------------------------

    def script(self) -> Script:
        options: dict[str, str] = {}
        events: list[Event] = []
        while not self.at("EOF"):
            t = self.peek()
            if t.kind == "OPTION":
                if events:
                    raise self.error(f"header option {t.text} after the first event")
                self.take()
                self.option(t, options)
                continue
            start = self.i
            ev = self.event()
            first = self.toks[start]
            if first.guards != self.last.guards:
                raise self.error("an #ifdef or #endif inside an event", self.last)
            nxt = self.peek()
            if nxt.kind != "EOF" and nxt.line <= self.last.end_line:
                raise self.error(
                    f"unexpected {_describe(nxt)} after the event (one event per line)", nxt
                )
            events.append(ev)
        return Script(self.path, options, events)

    def option(self, t: _Tok, options: dict[str, str]) -> None:
        name, eq, value = t.text[2:].partition("=")
        if not eq:
            raise self.error(f"header option {t.text} needs a value (--{name}=VALUE)", t)
        if name == "tolerance_usecs" and not (value.isdigit() and len(value) <= _MAX_DIGITS):
            raise self.error(f"--tolerance_usecs={value}: not a number of microseconds", t)
        if name == "ip_version" and value not in _IP_VERSIONS:
            raise self.error(
                f"--ip_version={value}: expected one of {', '.join(sorted(_IP_VERSIONS))}", t
            )
        options[name] = value

    def event(self) -> Event:
        first = self.peek()
        if first.kind == "BACKTICK":
            # An init command before the events, or a clean-up command after
            # them, may stand without a time (nplab scripts do both).
            self.take()
            return Event(first.line, Time("relative", 0.0), ShellEvent(first.text[1:-1]),
                         first.guards)
        time = self.time()
        return Event(first.line, time, self.action(), first.guards)

    def number(self, what: str) -> float:
        t = self.peek()
        if t.kind not in ("FLOAT", "INT") or t.text.startswith("-"):
            raise self.error(f"expected {what}, found {_describe(t)}")
        if len(t.text) > _MAX_DIGITS:
            raise self.error(f"time {t.text[:20]}... is too long")
        v = float(t.text)
        if not (math.isfinite(v) and v <= _MAX_SECONDS):
            raise self.error(f"time {t.text} out of range")
        self.take()
        return v

    def time(self) -> Time:
        if self.at_punct("*"):
            self.take()
            return Time("any", 0.0)
        relative = self.at_punct("+")
        if relative:
            self.take()
        start = self.number("a time (+0.1, 0.100 or *) at the start of the event")
        end: float | None = None
        if self.at_punct("~"):
            self.take()
            if relative:
                self.expect_punct("+", "after '~' in a relative time range (+a~+b)")
            elif self.at_punct("+"):
                raise self.error("absolute time range written with '+' after '~' (a~b)")
            end = self.number("the end of the time range")
            if end < start:
                raise self.error(f"time range ends ({end}) before it starts ({start})")
        return Time("relative" if relative else "absolute", start, end)

    def action(self) -> Action:
        t = self.peek()
        if t.kind == "PUNCT" and t.text in ("<", ">"):
            return self.packet()
        if t.kind == "BACKTICK":
            self.take()
            return ShellEvent(t.text[1:-1])
        if t.kind == "CODE":
            self.take()
            return CodeEvent(t.text[2:-2])
        if t.kind == "ELLIPSIS" or (t.kind == "WORD" and self.peek(1).text == "("):
            return self.syscall()
        raise self.error(
            f"expected a packet (< or >), a system call, a `command` or %{{ code }}% "
            f"after the time, found {_describe(t)}"
        )

    # --- packets ------------------------------------------------------------

    def packet(self) -> PacketEvent | IcmpEvent:
        direction: Literal["<", ">"] = "<" if self.take().text == "<" else ">"
        ttl, tos, ecn = self.ip_info()
        if ttl is None and tos is None and ecn is None and self.at_punct("[") and (
                self.peek(1).kind == "INT"):
            # The older grammar writes the quoted segment before "icmp".
            quoted = self.quoted_segment()
            if not self.at_word("icmp"):
                raise self.error(f"expected 'icmp' after [seq], found {_describe(self.peek())}")
            return self.icmp(direction, quoted)
        if self.at_word("icmp"):
            if ttl is not None or tos is not None or ecn is not None:
                raise self.error("(ttl N), (tos N) and [ecn] are for TCP packets, not ICMP")
            return self.icmp(direction, None)
        if self.at_word("udp"):
            raise self.error("UDP packet lines are not supported (TCP and ICMP only)")
        flags, bits = self.flags()
        if self.at("ELLIPSIS"):
            self.take()
            seq_start: int | None = None
            seq_end: int | None = None
            self.expect_punct("(", "after '...' (any sequence number), as in ...(0)")
            length = self.integer("the payload length", 0, _U32)
            self.expect_punct(")", "after the payload length")
        else:
            seq_start, seq_end, length = self.seq_range()
        absolute = False
        if self.at_punct("!"):
            self.take()
            absolute = True
        ack: int | None = None
        win: int | None = None
        options: list[TcpOptionSpec] | Wildcard | None = None
        udp: tuple[int, int] | None = None
        if self.at_word("ack"):
            self.take()
            ack = self.integer("the acknowledgment number", 0, _U32)
        if self.at_word("win"):
            self.take()
            win = self.integer("the window", 0, _U16)
        if self.at_punct("<"):
            options = self.tcp_options()
        if self.at_punct("/"):
            self.take()
            self.expect_word("udp", "after '/' (UDP encapsulation, /udp(sport > dport))")
            self.expect_punct("(", "after /udp")
            sport = self.integer("the UDP source port", 0, _U16)
            self.expect_punct(">", "between the UDP ports")
            dport = self.integer("the UDP destination port", 0, _U16)
            self.expect_punct(")", "after the UDP ports")
            udp = (sport, dport)
        return PacketEvent(
            direction, flags, bits, seq_start, seq_end, length, ack, win, options,
            absolute, ttl, ecn, udp, tos,
        )

    def ip_info(self) -> tuple[int | None, int | None, str | None]:
        """packetdrill's IP annotation before the flags: ``(ttl N)``, ``(tos N)``,
        ``[ect0]`` (an ECN codepoint), in ``( )`` or ``[ ]``, several joined by
        commas; ``tos`` takes a number or an ``IPTOS_*`` name (RFC 791, 2474).
        Returns (ttl, tos, ecn), None for what is not written."""
        ttl: int | None = None
        tos: int | None = None
        ecn: str | None = None
        opening = self.peek()
        word = self.peek(1)
        if not (opening.kind == "PUNCT" and opening.text in "([" and word.kind == "WORD"
                and (word.text in ("ttl", "tos") or word.text in _ECN)):
            return None, None, None
        close = ")" if opening.text == "(" else "]"
        self.take()
        while True:
            t = self.take()
            if t.text == "ttl" and ttl is None:
                ttl = self.integer("the IP TTL", 0, _U8)
            elif t.text == "tos" and tos is None:
                nxt = self.peek()
                if nxt.kind == "WORD" and nxt.text in IPTOS_NAMES:
                    self.take()
                    tos = IPTOS_NAMES[nxt.text]
                else:
                    tos = self.integer("the IP TOS", 0, _U8)
            elif t.text in _ECN and ecn is None:
                ecn = t.text
            else:
                raise self.error(f"expected ttl N, tos N or an ECN codepoint in the IP "
                                 f"annotation, found {_describe(t)}", t)
            if not self.at_punct(","):
                break
            self.take()
        self.expect_punct(close, "after the IP annotation")
        return ttl, tos, ecn

    def flags(self) -> tuple[str, int]:
        t = self.peek()
        if t.kind == "PUNCT" and t.text in (".", "-"):
            self.take()
            return t.text, TCP_FLAG_BITS["."] if t.text == "." else 0
        if t.kind != "WORD":
            raise self.error(f"expected TCP flags (S, S., P., F., R, .) found {_describe(t)}")
        self.take()
        flags = t.text
        # "S." lexes as WORD "S" then ".", with nothing between them.
        nxt = self.peek()
        if nxt.kind == "PUNCT" and nxt.text == "." and nxt.start == t.end:
            self.take()
            flags += "."
        bits = 0
        for c in flags:
            b = TCP_FLAG_BITS.get(c)
            if b is None:
                raise self.error(f"unknown TCP flag {c!r} in {flags!r} (known: FSRP.UEW)", t)
            if bits & b:
                raise self.error(f"TCP flag {c!r} twice in {flags!r}", t)
            bits |= b
        return flags, bits

    def seq_range(self) -> tuple[int, int, int]:
        start = self.integer("the first sequence number (start:end(length))", 0, _U32)
        self.expect_punct(":", "in start:end(length)")
        end = self.integer("the end sequence number", 0, _U32)
        self.expect_punct("(", "in start:end(length)")
        length = self.integer("the payload length", 0, _U32)
        self.expect_punct(")", "in start:end(length)")
        # RFC 9293 3.4: the data occupies [start, start + length) in sequence
        # space (SYN and FIN are not counted in packetdrill's length).
        if seq.add(start, length) != end:
            raise self.error(f"{start}:{end}({length}): end - start is not the length",
                             self.last)
        return start, end, length

    def quoted_segment(self) -> tuple[int, int, int]:
        self.expect_punct("[", "before the quoted segment")
        r = self.seq_range()
        self.expect_punct("]", "after the quoted segment")
        return r

    def icmp(self, direction: Literal["<", ">"],
             quoted: tuple[int, int, int] | None) -> IcmpEvent:
        self.expect_word("icmp", "")
        t = self.peek()
        if t.kind != "WORD" or t.text not in ICMP_TYPES:
            raise self.error(
                f"unknown ICMP type {_describe(t)} (known: {', '.join(ICMP_TYPES)})"
            )
        self.take()
        itype = t.text
        code: str | None = None
        code_number = 0
        c = self.peek()
        if c.kind == "WORD" and c.text != "mtu":
            self.take()
            code = c.text
            m = _CODE_N.match(code)
            named = ICMP_CODES.get(itype, {})
            if m and int(m.group(1)) <= _U8:
                code_number = int(m.group(1))
            elif code in named:
                code_number = named[code]
            else:
                known = ", ".join([*named, "code_N"])
                raise self.error(f"unknown ICMP {itype} code {code!r} (known: {known})", c)
        mtu: int | None = None
        if self.at_word("mtu"):
            self.take()
            mtu = self.integer("the MTU", 0, _U16)
        if self.at_punct("["):
            if quoted is not None:
                raise self.error("the quoted segment is given twice")
            if self.peek(1).text == "udp":
                raise self.error("ICMP quoting a UDP datagram is not supported")
            quoted = self.quoted_segment()
        s, e, ln = quoted if quoted is not None else (None, None, None)
        return IcmpEvent(direction, itype, code, ICMP_TYPES[itype], code_number, mtu, s, e, ln)

    def tcp_options(self) -> list[TcpOptionSpec] | Wildcard:
        self.expect_punct("<", "")
        if self.at("ELLIPSIS"):
            self.take()
            self.expect_punct(">", "after <...")
            return WILDCARD
        opts: list[TcpOptionSpec] = []
        while True:
            opts.append(self.tcp_option())
            if self.at_punct(">"):
                self.take()
                return opts
            self.expect_punct(",", "between TCP options (or '>' to end them)")

    def tcp_option(self) -> TcpOptionSpec:
        t = self.peek()
        if t.kind != "WORD":
            raise self.error(f"expected a TCP option name, found {_describe(t)}")
        self.take()
        k = t.text
        if k in ("nop", "eol", "sackOK"):
            return TcpOptionSpec(k)
        if k == "mss":
            return TcpOptionSpec(k, self.integer("the MSS", 0, _U16))
        if k == "wscale":
            return TcpOptionSpec(k, self.integer("the window scale shift", 0, _U8))
        if k == "sack":
            blocks: list[tuple[int, int]] = []
            while self.at("INT") or self.at("HEX"):
                left = self.integer("a SACK left edge", 0, _U32)
                self.expect_punct(":", "in a SACK block left:right")
                blocks.append((left, self.integer("a SACK right edge", 0, _U32)))
            if not blocks:
                raise self.error("sack needs at least one block left:right")
            return TcpOptionSpec(k, blocks=tuple(blocks))
        if k == "TS":
            self.expect_word("val", "in TS val N ecr N")
            val = self.integer("the timestamp value", 0, _U32)
            self.expect_word("ecr", "in TS val N ecr N")
            return TcpOptionSpec(k, val, self.integer("the timestamp echo reply", 0, _U32))
        if k == "FO":
            c = self.peek()
            if c.kind in ("WORD", "INT", "HEX"):
                self.take()
                return TcpOptionSpec(k, text=c.text)
            return TcpOptionSpec(k)
        if k == "md5":
            c = self.peek()
            if c.kind != "WORD":
                raise self.error(f"expected a word after md5 (valid), found {_describe(c)}")
            self.take()
            return TcpOptionSpec(k, text=c.text)
        raise self.error(
            f"unknown TCP option {k!r} (known: nop, eol, mss, wscale, sackOK, sack, TS, FO, md5)",
            t,
        )

    # --- system calls ----------------------------------------------------------

    def syscall(self) -> SyscallEvent:
        end_time: Time | None = None
        if self.at("ELLIPSIS"):
            # "1.0...6.0 connect(...)": a blocking call returning at the end time.
            self.take()
            rel = self.at_punct("+")
            if rel:
                self.take()
            end_time = Time("relative" if rel else "absolute",
                            self.number("the end time of a blocking call"))
        name = self.take()
        if name.kind != "WORD" or not self.at_punct("("):
            raise self.error(f"expected a system call name(...), found {_describe(name)}", name)
        self.take()
        args: list[Expr] = []
        if not self.at_punct(")"):
            args.append(self.expr(0))
            while self.at_punct(","):
                self.take()
                args.append(self.expr(0))
        self.expect_punct(")", f"to close the arguments of {name.text}()")
        self.expect_punct("=", f"and the expected return value after {name.text}(...)")
        expect = self.expr(0)
        errno: str | None = None
        note: str | None = None
        t = self.peek()
        if t.kind == "WORD" and t.line == self.last.end_line:
            if not _ERRNO.match(t.text):
                raise self.error(f"expected an errno name (EINPROGRESS...), found {t.text!r}")
            self.take()
            errno = t.text
        t = self.peek()
        if t.kind == "PUNCT" and t.text == "(" and t.line == self.last.end_line:
            note = self.note()
        return SyscallEvent(name.text, args, expect, errno, note, end_time)

    def note(self) -> str:
        """``(Operation now in progress)``: free text up to the matching ')'."""
        open_ = self.take()
        depth = 1
        while True:
            t = self.peek()
            if t.kind == "EOF" or t.line != open_.line:
                raise self.error("unclosed '(' in the note after the return value", open_)
            self.take()
            if t.kind == "PUNCT":
                if t.text == "(":
                    depth += 1
                elif t.text == ")":
                    depth -= 1
                    if depth == 0:
                        return self.text[open_.end : t.start].strip()

    def expr(self, depth: int) -> Expr:
        first = self.primary(depth)
        if not self.at_punct("|"):
            return first
        terms = [first]
        while self.at_punct("|"):
            self.take()
            terms.append(self.primary(depth))
        return BitOr(terms)

    def primary(self, depth: int) -> Expr:
        if depth > _MAX_DEPTH:
            raise self.error(f"expression nested deeper than {_MAX_DEPTH}")
        t = self.peek()
        k = t.kind
        if k == "ELLIPSIS":
            self.take()
            return WILDCARD
        if k in ("INT", "HEX"):
            v = self.int_value(t)
            self.take()
            return Int(v)
        if k == "STR":
            self.take()
            truncated = self.at("ELLIPSIS")
            if truncated:
                self.take()
            return Str(t.text[1:-1], truncated)
        if k == "WORD":
            self.take()
            if self.at_punct("("):
                self.take()
                args: list[Expr] = []
                if not self.at_punct(")"):
                    args.append(self.expr(depth + 1))
                    while self.at_punct(","):
                        self.take()
                        args.append(self.expr(depth + 1))
                self.expect_punct(")", f"to close {t.text}(")
                return Call(t.text, args)
            return Symbol(t.text)
        if k == "PUNCT" and t.text == "[":
            self.take()
            items: list[Expr] = []
            if not self.at_punct("]"):
                items.append(self.expr(depth + 1))
                while self.at_punct(","):
                    self.take()
                    items.append(self.expr(depth + 1))
            self.expect_punct("]", "to close the array")
            return Array(items)
        if k == "PUNCT" and t.text == "{":
            self.take()
            fields: list[Field] = []
            if not self.at_punct("}"):
                fields.append(self.field(depth + 1))
                while self.at_punct(","):
                    self.take()
                    fields.append(self.field(depth + 1))
            self.expect_punct("}", "to close the struct")
            return Struct(fields)
        raise self.error(f"expected a value, found {_describe(t)}")

    def field(self, depth: int) -> Field:
        start = self.peek()
        value = self.expr(depth)
        if not self.at_punct("="):
            return Field(None, value)
        # msghdr writes "msg_iov(1)=[...]": a name may carry an argument.
        if not isinstance(value, (Symbol, Call)):
            raise self.error(f"a struct member name must be a word, not {value}", start)
        self.take()
        return Field(str(value), self.expr(depth))


def parse_text(text: str, path: str = "<script>") -> Script:
    """Parse a script held in a string; ``path`` names it in errors."""
    return _Parser(text, path).script()


def parse_path(path: str | os.PathLike[str]) -> Script:
    """Read and parse one script file.  Raises ScriptError only."""
    name = os.fspath(path)
    try:
        data = Path(name).read_bytes()
    except OSError as e:
        raise ScriptError(name, 0, f"cannot read: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ScriptError(name, line, f"not UTF-8 text (byte {e.start})") from None
    return parse_text(text, name)


def iter_scripts(root: str | os.PathLike[str]) -> Iterator[Path]:
    """The ``*.pkt`` files under ``root`` in sorted order, or ``root`` itself.

    A root that is not a directory (a script, or a path that does not exist)
    is yielded as it is, so that ``parse_path`` reports it like any other
    script instead of the run stopping.
    """
    p = Path(root)
    if not p.is_dir():
        yield p
        return
    yield from sorted(q for q in p.rglob("*.pkt") if q.is_file())


def parse_all(*roots: str | os.PathLike[str]) -> Iterator[Script | ScriptError]:
    """Parse every script under ``roots``; a bad one yields its error and the rest go on."""
    for root in roots:
        for path in iter_scripts(root):
            try:
                yield parse_path(path)
            except ScriptError as e:
                yield e


def main(argv: list[str] | None = None) -> int:
    """Parse only, for a CLI: a line per script, a summary, exit status 1 on errors."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m ustack_conform.parser PATH...", file=sys.stderr)
        return 2
    ok = bad = 0
    for r in parse_all(*args):
        if isinstance(r, ScriptError):
            bad += 1
            print(f"error {r}")
        else:
            ok += 1
            print(f"ok {r.path} ({len(r.events)} events)")
    print(f"{ok} parsed, {bad} errors")
    return 1 if bad else 0
