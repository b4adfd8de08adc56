"""The data model of a packetdrill script, as the parser produces it.

A script is a header of ``--name=value`` options and a list of events.
Each event has a time and one action: a system call, a TCP packet, an ICMP
packet, a backtick shell command or a ``%{ code }%`` block.  The syntax is
packetdrill's (google/packetdrill ``Syntax.md``) plus the extensions the
FreeBSD tcp-testsuite uses (nplab/packetdrill): ``(ttl N)`` before the
flags, ``!`` after the sequence numbers, ``/udp(a > b)`` encapsulation,
``md5`` options, and ``#ifdef NAME`` / ``#endif`` blocks.

Everything here is plain data: the runner (issue 4) interprets it.  Sequence
and acknowledgment numbers are kept as written, i.e. relative to the initial
sequence numbers unless ``PacketEvent.absolute_seq`` says otherwise; the
runner maps them into sequence space (and must compare them with
``ustack.tcp.seq``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal, TypeAlias

from ustack.wire import tcp as _tcp

__all__ = [
    "ICMP_CODES",
    "ICMP_TYPES",
    "IPTOS_NAMES",
    "TCP_FLAG_BITS",
    "TCP_OPTION_KINDS",
    "WILDCARD",
    "Action",
    "Array",
    "BitOr",
    "Call",
    "CodeEvent",
    "Event",
    "Expr",
    "Field",
    "IcmpEvent",
    "Int",
    "PacketEvent",
    "Script",
    "ScriptError",
    "ShellEvent",
    "Str",
    "Struct",
    "Symbol",
    "SyscallEvent",
    "TcpOptionSpec",
    "Time",
    "Wildcard",
]


class ScriptError(Exception):
    """A malformed script: ``path:line: message`` on one line.

    The only exception the parser raises, whatever the input (unreadable
    file, bad UTF-8, syntax error, value out of range).  ``line`` is 1-based;
    0 means the file as a whole (it could not be read).
    """

    def __init__(self, path: str, line: int, message: str) -> None:
        # All three go to Exception so the error pickles (a runner may parse
        # in worker processes) and compares by value in tests.
        super().__init__(path, line, message)
        self.path = path
        self.line = line
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


# --- expressions (system-call arguments and return values) -----------------


@dataclass(frozen=True, slots=True)
class Wildcard:
    """``...``: any value (an argument the runner fills in, or not checked)."""

    def __str__(self) -> str:
        return "..."


WILDCARD = Wildcard()


@dataclass(frozen=True, slots=True)
class Int:
    """A decimal or hexadecimal integer (``4``, ``-1``, ``0x02``)."""

    value: int

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True, slots=True)
class Str:
    """A double-quoted string, escapes kept as written.

    ``truncated`` is packetdrill's ``"abc"...``: the data starts with
    ``value`` and may go on.
    """

    value: str
    truncated: bool = False

    def __str__(self) -> str:
        return f'"{self.value}"' + ("..." if self.truncated else "")


@dataclass(frozen=True, slots=True)
class Symbol:
    """A symbolic constant: ``AF_INET``, ``SOL_SOCKET``, ``O_NONBLOCK``, ``ECONNRESET``..."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Array:
    """``[a, b, ...]``; ``[4]`` is how packetdrill passes an int by pointer."""

    items: list[Expr]

    def __str__(self) -> str:
        return "[" + ", ".join(map(str, self.items)) + "]"


@dataclass(frozen=True, slots=True)
class Field:
    """One member of a struct: ``name=value``, or a bare ``value`` (iovec's ``{..., 10}``)."""

    name: str | None
    value: Expr

    def __str__(self) -> str:
        return str(self.value) if self.name is None else f"{self.name}={self.value}"


@dataclass(frozen=True, slots=True)
class Struct:
    """``{onoff=1, linger=0}``, ``{fd=5, events=POLLIN, revents=POLLIN}``, sockaddr..."""

    fields: list[Field]

    def get(self, name: str) -> Expr | None:
        """The value of the member called ``name``, or None."""
        for f in self.fields:
            if f.name == name:
                return f.value
        return None

    def __str__(self) -> str:
        return "{" + ", ".join(map(str, self.fields)) + "}"


@dataclass(frozen=True, slots=True)
class BitOr:
    """``O_RDWR | O_NONBLOCK``: the bitwise or of two or more terms."""

    terms: list[Expr]

    def __str__(self) -> str:
        return " | ".join(map(str, self.terms))


@dataclass(frozen=True, slots=True)
class Call:
    """``htons(8080)``, ``inet_addr("192.0.2.1")`` inside a sockaddr."""

    name: str
    args: list[Expr]

    def __str__(self) -> str:
        return f"{self.name}(" + ", ".join(map(str, self.args)) + ")"


Expr: TypeAlias = Wildcard | Int | Str | Symbol | Array | Struct | BitOr | Call


# --- time -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Time:
    """When an event happens, in seconds.

    ``absolute``: since the start of the script (``0.100``).  ``relative``:
    since the previous event (``+0.1``).  ``any``: ``*``, whenever it comes
    (``start`` is 0).  A range ``0.1~0.2`` or ``+0.1~+0.2`` sets ``end``; the
    event must happen within [start, end] (plus the tolerance).
    """

    kind: Literal["absolute", "relative", "any"]
    start: float
    end: float | None = None


# --- actions ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SyscallEvent:
    """``name(args) = expect [ERRNO] [(note)]``.

    ``expect`` is the expected return value: an ``Int`` (``-1`` with an
    ``errno`` such as ``EINPROGRESS``), or ``WILDCARD``.  ``errno_text`` is
    the parenthesised note after the expectation, as written: the strerror
    text, or another remark such as ``flags O_RDWR`` after ``0x02``.
    ``end_time`` is set for a blocking call written ``1.0...6.0 connect(...)``:
    the call starts at the event time and must return at ``end_time``.
    """

    name: str
    args: list[Expr]
    expect: Expr
    errno: str | None = None
    errno_text: str | None = None
    end_time: Time | None = None


@dataclass(frozen=True, slots=True)
class TcpOptionSpec:
    """One TCP option in a packet line's ``<...>`` list.

    ``kind`` is the script's name: ``nop``, ``eol``, ``mss``, ``wscale``,
    ``sackOK``, ``sack``, ``TS``, ``FO`` (fast open), ``md5`` (RFC 2385
    signature).  ``value`` holds the MSS, the window-scale shift or the
    timestamp value; ``ecr`` the timestamp echo reply; ``blocks`` the SACK
    blocks as written (relative, like sequence numbers); ``text`` the fast
    open cookie or the md5 word (``valid``).
    """

    kind: str
    value: int | None = None
    ecr: int | None = None
    blocks: tuple[tuple[int, int], ...] = ()
    text: str | None = None

    @property
    def kind_number(self) -> int:
        """The option's kind on the wire (IANA "TCP Option Kind Numbers")."""
        return TCP_OPTION_KINDS[self.kind]


TCP_OPTION_KINDS: dict[str, int] = {
    "eol": _tcp.OPT_EOL,
    "nop": _tcp.OPT_NOP,
    "mss": _tcp.OPT_MSS,
    "wscale": _tcp.OPT_WSCALE,
    "sackOK": _tcp.OPT_SACK_PERMITTED,
    "sack": _tcp.OPT_SACK,
    "TS": _tcp.OPT_TIMESTAMPS,
    "md5": 19,  # RFC 2385
    "FO": 34,  # RFC 7413
}

# packetdrill's flag letters; "." is ACK, E and W are the ECN bits (RFC 3168).
TCP_FLAG_BITS: dict[str, int] = {
    "F": _tcp.FIN,
    "S": _tcp.SYN,
    "R": _tcp.RST,
    "P": _tcp.PSH,
    ".": _tcp.ACK,
    "U": _tcp.URG,
    "E": _tcp.ECE,
    "W": _tcp.CWR,
}


@dataclass(frozen=True, slots=True)
class PacketEvent:
    """A TCP segment: ``<`` the script injects it, ``>`` the stack must send it.

    ``flags`` as written (``"S."``, ``"P."``, ``"."``, ``"-"`` for none) and
    ``flag_bits`` the same as header bits.  ``seq_start:seq_end(length)``;
    ``seq_start``/``seq_end`` are None for ``...(len)`` (any sequence
    number).  ``absolute_seq`` (``0:0(0)!``, a nplab extension) marks numbers
    taken as they are instead of relative to the ISN: the RST that answers a
    segment without ACK carries SEQ 0 (RFC 9293 3.10.7.1), whatever the ISN.
    ``ack``/``win`` are None when not written.  ``options``: None when no
    ``<...>`` list is written, ``WILDCARD`` for ``<...>`` (not checked), else
    the list.  ``ttl`` from ``(ttl N)``, ``ecn`` from ``[ect0]``,
    ``udp_encap`` (source, destination port) from ``/udp(a > b)`` (RFC 8229
    style UDP tunnelling).
    """

    direction: Literal["<", ">"]
    flags: str
    flag_bits: int
    seq_start: int | None
    seq_end: int | None
    length: int
    ack: int | None = None
    win: int | None = None
    options: list[TcpOptionSpec] | Wildcard | None = None
    absolute_seq: bool = False
    ttl: int | None = None
    ecn: str | None = None
    udp_encap: tuple[int, int] | None = None
    tos: int | None = None


# The IP_TOS values of <netinet/ip.h> by name: the RFC 1349 TOS bits, the RFC
# 791 precedences and the RFC 2474 class selectors, the ECN bits (RFC 3168).
IPTOS_NAMES: dict[str, int] = {
    "IPTOS_LOWDELAY": 0x10,
    "IPTOS_THROUGHPUT": 0x08,
    "IPTOS_RELIABILITY": 0x04,
    "IPTOS_MINCOST": 0x02,
    "IPTOS_PREC_NETCONTROL": 0xE0,
    "IPTOS_PREC_INTERNETCONTROL": 0xC0,
    "IPTOS_PREC_CRITIC_ECP": 0xA0,
    "IPTOS_PREC_FLASHOVERRIDE": 0x80,
    "IPTOS_PREC_FLASH": 0x60,
    "IPTOS_PREC_IMMEDIATE": 0x40,
    "IPTOS_PREC_PRIORITY": 0x20,
    "IPTOS_PREC_ROUTINE": 0x00,
    "IPTOS_DSCP_CS0": 0x00,
    "IPTOS_DSCP_CS1": 0x20,
    "IPTOS_DSCP_CS2": 0x40,
    "IPTOS_DSCP_CS3": 0x60,
    "IPTOS_DSCP_CS4": 0x80,
    "IPTOS_DSCP_CS5": 0xA0,
    "IPTOS_DSCP_CS6": 0xC0,
    "IPTOS_DSCP_CS7": 0xE0,
    "IPTOS_DSCP_EF": 0xB8,
    "IPTOS_ECN_NOTECT": 0x00,
    "IPTOS_ECN_ECT1": 0x01,
    "IPTOS_ECN_ECT0": 0x02,
    "IPTOS_ECN_CE": 0x03,
}

# ICMPv4 types and codes by packetdrill name (RFC 792; unreachable codes
# 6-12 RFC 1122 3.2.2.1, 13-15 RFC 1812 5.2.7.1).  ``code_N`` is accepted for
# any type as code N.
ICMP_TYPES: dict[str, int] = {
    "echo_reply": 0,
    "unreachable": 3,
    "source_quench": 4,
    "redirect": 5,
    "echo_request": 8,
    "time_exceeded": 11,
    "parameter_problem": 12,
    "timestamp": 13,
    "timestamp_reply": 14,
}

ICMP_CODES: dict[str, dict[str, int]] = {
    "unreachable": {
        "net_unreachable": 0,
        "host_unreachable": 1,
        "protocol_unreachable": 2,
        "port_unreachable": 3,
        "frag_needed": 4,
        "source_route_failed": 5,
        "net_unknown": 6,
        "host_unknown": 7,
        "source_host_isolated": 8,
        "net_prohibited": 9,
        "host_prohibited": 10,
        "net_unreachable_for_tos": 11,
        "host_unreachable_for_tos": 12,
        "packet_filtered": 13,
        "precedence_violation": 14,
        "precedence_cutoff": 15,
    },
    "redirect": {"net": 0, "host": 1, "tos_net": 2, "tos_host": 3},
    "time_exceeded": {"ttl_exceeded_in_transit": 0, "frag_reass_exceeded": 1},
}


@dataclass(frozen=True, slots=True)
class IcmpEvent:
    """``< icmp unreachable port_unreachable [0:0(0)]`` and its relatives.

    ``icmp_type``/``code`` as written (``code`` None when omitted, meaning 0),
    ``type_number``/``code_number`` as on the wire.  ``mtu`` for
    ``frag_needed mtu N`` (RFC 1191).  The bracket names the TCP segment the
    ICMP message quotes, ``seq_start:seq_end(length)`` relative like a packet
    line; all three are None when no bracket is written.
    """

    direction: Literal["<", ">"]
    icmp_type: str
    code: str | None
    type_number: int
    code_number: int
    mtu: int | None = None
    seq_start: int | None = None
    seq_end: int | None = None
    length: int | None = None


@dataclass(frozen=True, slots=True)
class ShellEvent:
    """A backtick command (FreeBSD ``sysctl`` lines); the relaxed runner ignores it."""

    command: str


@dataclass(frozen=True, slots=True)
class CodeEvent:
    """A ``%{ python }%`` block (``assert tcpi_state == ...`` over TCP_INFO)."""

    code: str


Action: TypeAlias = SyscallEvent | PacketEvent | IcmpEvent | ShellEvent | CodeEvent


@dataclass(frozen=True, slots=True)
class Event:
    """One timed line of a script.

    ``line`` is where the event starts (1-based).  ``guards`` are the
    ``#ifdef`` conditions around it, innermost last: ``"NAME"`` inside
    ``#ifdef NAME``, ``"!NAME"`` inside ``#ifndef NAME`` or the ``#else`` of
    ``#ifdef NAME``.  A backtick command written without a time (allowed
    before the first event and after the last) gets ``+0``.
    """

    line: int
    time: Time
    action: Action
    guards: tuple[str, ...] = ()

    def enabled(self, defines: frozenset[str]) -> bool:
        """Whether every guard holds when ``defines`` are the defined names."""
        return all(
            (g[1:] not in defines) if g[0] == "!" else (g in defines) for g in self.guards
        )


@dataclass(frozen=True, slots=True)
class Script:
    """A parsed script: header ``options`` (``{"ip_version": "ipv4", ...}``) and events.

    The parser keeps the events of every ``#ifdef`` branch; ``select`` picks
    those of one configuration.
    """

    path: str
    options: dict[str, str]
    events: list[Event] = field(default_factory=list)

    @property
    def ip_version(self) -> str | None:
        """``--ip_version`` as written (``ipv4``), None when absent."""
        return self.options.get("ip_version")

    @property
    def tolerance_usecs(self) -> int | None:
        """``--tolerance_usecs``; the parser has checked that it is an integer."""
        v = self.options.get("tolerance_usecs")
        return None if v is None else int(v)

    def select(self, defines: Iterable[str]) -> Script:
        """The script as packetdrill would run it with ``defines`` defined.

        packetdrill defines the platform name (``FreeBSD``, ``Linux``); the
        FreeBSD suite writes the RFC behaviour under ``#ifdef STANDARD``, so
        a runner for ustack selects ``{"STANDARD"}``.
        """
        d = frozenset(defines)
        return replace(self, events=[e for e in self.events if e.enabled(d)])
