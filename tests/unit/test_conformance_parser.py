"""The packetdrill script parser: the whole FreeBSD suite, each syntax element, bad input."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tcp_testsuite import SUITE, require_suite

from ustack.wire import tcp
from ustack_conform import (
    WILDCARD,
    CodeEvent,
    IcmpEvent,
    PacketEvent,
    Script,
    ScriptError,
    ShellEvent,
    SyscallEvent,
    TcpOptionSpec,
    Time,
    iter_scripts,
    parse_all,
    parse_path,
    parse_text,
)
from ustack_conform.parser import main
from ustack_conform.script import (
    Array,
    BitOr,
    Call,
    Field,
    Int,
    Str,
    Struct,
    Symbol,
)


def _suite_scripts() -> list[Path]:
    if SUITE.is_dir():
        return list(iter_scripts(SUITE))
    return []


SUITE_SCRIPTS = _suite_scripts()


def one(text: str) -> object:
    """The action of a script with exactly one event."""
    s = parse_text(text)
    assert len(s.events) == 1, s.events
    return s.events[0].action


# --- the FreeBSD tcp-testsuite ----------------------------------------------

# Independent of the parser: a line that starts with a time and then a
# direction is a packet line, one that starts with a time and then name( is a
# system call.  Every such line must come back as exactly one event.
_TIME = r"\s*(?:\*|\+?\s*\d*\.?\d+(?:~\+?\d*\.?\d+)?)"
_PACKET_LINE = re.compile(_TIME + r"\s*[<>]")
_SYSCALL_LINE = re.compile(_TIME + r"(?:\.\.\.\d*\.?\d+)?\s+[a-z_]+\(")


def _lines_matching(path: Path, pattern: re.Pattern[str]) -> set[int]:
    out = set()
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if pattern.match(line.split("//", 1)[0]):
            out.add(i)
    return out


def test_suite_is_present() -> None:
    require_suite()
    assert len(SUITE_SCRIPTS) >= 370


@pytest.mark.parametrize("path", SUITE_SCRIPTS, ids=lambda p: str(p.relative_to(SUITE)))
def test_suite_script_parses(path: Path) -> None:
    s = parse_path(path)
    assert s.events
    assert s.ip_version == "ipv4"
    assert s.tolerance_usecs is not None and s.tolerance_usecs > 0
    packets = {e.line for e in s.events if isinstance(e.action, PacketEvent | IcmpEvent)}
    assert packets == _lines_matching(path, _PACKET_LINE)
    calls = {e.line for e in s.events if isinstance(e.action, SyscallEvent)}
    assert calls == _lines_matching(path, _SYSCALL_LINE)
    # Every script opens a socket, and every outbound TCP line is checkable.
    assert any(isinstance(e.action, SyscallEvent) and e.action.name == "socket"
               for e in s.events)
    for e in s.events:
        a = e.action
        if isinstance(a, PacketEvent):
            assert a.flag_bits or a.flags == "-"
            if a.seq_start is not None:
                assert a.seq_end == (a.seq_start + a.length) & 0xFFFFFFFF


def test_suite_census() -> None:
    """What the runner must implement; a change in the suite shows here."""
    results = list(parse_all(require_suite()))
    assert not [r for r in results if isinstance(r, ScriptError)]
    names: dict[str, int] = {}
    icmp = guarded = 0
    for s in results:
        assert isinstance(s, Script)
        for e in s.events:
            if isinstance(e.action, SyscallEvent):
                names[e.action.name] = names.get(e.action.name, 0) + 1
            icmp += isinstance(e.action, IcmpEvent)
            guarded += bool(e.guards)
    assert set(names) == {
        "socket", "fcntl", "setsockopt", "getsockopt", "bind", "listen", "accept",
        "connect", "recv", "send", "shutdown", "close",
    }
    assert names["recv"] > 800 and names["close"] > 500
    assert icmp > 30
    assert guarded > 0


# --- times ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "time"),
    [
        ("+0.1 close(3) = 0", Time("relative", 0.1)),
        ("+ 0.25 close(3) = 0", Time("relative", 0.25)),
        ("0.100 close(3) = 0", Time("absolute", 0.1)),
        ("2 close(3) = 0", Time("absolute", 2.0)),
        ("0.1~0.2 close(3) = 0", Time("absolute", 0.1, 0.2)),
        ("+0.1~+0.3 close(3) = 0", Time("relative", 0.1, 0.3)),
        ("* > S 0:0(0) win 65535 <...>", Time("any", 0.0)),
    ],
)
def test_times(text: str, time: Time) -> None:
    assert parse_text(text).events[0].time == time


def test_blocking_call_end_time() -> None:
    a = one(" 1.00...6.00 connect(3, ..., ...) = -1 ETIMEDOUT (Operation timed out)")
    assert isinstance(a, SyscallEvent)
    assert a.end_time == Time("absolute", 6.0)
    assert (a.expect, a.errno, a.errno_text) == (Int(-1), "ETIMEDOUT", "Operation timed out")
    b = one("+0...+0.5 accept(3, ..., ...) = 4")
    assert isinstance(b, SyscallEvent) and b.end_time == Time("relative", 0.5)


# --- header, comments, shell, code, #ifdef -----------------------------------------


def test_header_options_and_comments() -> None:
    s = parse_text(
        "// a comment\n"
        "--ip_version=ipv4\n"
        "--tolerance_usecs=25000   // trailing comment\n"
        "--tcp_md5_secret=secret\n"
        "/* a block\n   comment over\n   three lines */\n"
        "+0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3 /* inline */\n"
        "+0.00 close(3) = 0//glued comment\n"
    )
    assert s.options == {"ip_version": "ipv4", "tolerance_usecs": "25000",
                         "tcp_md5_secret": "secret"}
    assert s.tolerance_usecs == 25000
    assert [e.line for e in s.events] == [8, 9]


def test_shell_lines() -> None:
    s = parse_text(
        "`kldload tcpmd5; echo 'add x' |\n   setkey -c`\n"
        " 0.00 `sysctl -w net.inet.tcp.sack.enable=1`\n"
        "+0.00 close(3) = 0\n"
        "`setkey -F`\n"
    )
    a = [e.action for e in s.events]
    assert a[0] == ShellEvent("kldload tcpmd5; echo 'add x' |\n   setkey -c")
    assert a[1] == ShellEvent("sysctl -w net.inet.tcp.sack.enable=1")
    assert a[3] == ShellEvent("setkey -F")
    assert [e.line for e in s.events] == [1, 3, 4, 5]
    assert s.events[0].time == Time("relative", 0.0)


def test_crlf_line_endings() -> None:
    s = parse_text("--ip_version=ipv4\r\n#ifdef X\r\n+0 close(3) = 0\r\n#endif\r\n"
                   "+0 < . 1:1(0) ack 1 win 1\r\n")
    assert [(e.line, e.guards) for e in s.events] == [(3, ("X",)), (5, ())]


def test_code_block() -> None:
    a = one("+0.00 %{ assert tcpi_state == TCPI_SYN_SENT }%")
    assert a == CodeEvent(" assert tcpi_state == TCPI_SYN_SENT ")


def test_ifdef_blocks_and_select() -> None:
    s = parse_text(
        "+0 close(1) = 0\n"
        "#ifdef STANDARD\n"
        "+0 close(2) = 0\n"
        "#endif\n"
        "#ifdef FreeBSD\n"
        "+0 close(3) = 0\n"
        "#else\n"
        "+0 close(4) = 0\n"
        "#endif\n"
        "#ifndef Linux\n"
        "#ifdef STANDARD\n"
        "+0 close(5) = 0\n"
        "#endif\n"
        "#endif\n"
    )
    assert [e.guards for e in s.events] == [
        (), ("STANDARD",), ("FreeBSD",), ("!FreeBSD",), ("!Linux", "STANDARD"),
    ]

    def fds(defines: set[str]) -> list[int]:
        out = []
        for e in s.select(defines).events:
            assert isinstance(e.action, SyscallEvent) and isinstance(e.action.args[0], Int)
            out.append(e.action.args[0].value)
        return out

    assert fds({"STANDARD"}) == [1, 2, 4, 5]
    assert fds({"FreeBSD"}) == [1, 3]
    assert fds({"STANDARD", "Linux"}) == [1, 2, 4]
    assert len(s.events) == 5  # select() copies


# --- system calls and expressions --------------------------------------------------


def test_syscall_forms() -> None:
    a = one("+0.00 fcntl(3, F_GETFL) = 0x02 (flags O_RDWR)")
    assert a == SyscallEvent("fcntl", [Int(3), Symbol("F_GETFL")], Int(2), None, "flags O_RDWR")
    a = one("+0.00 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0")
    assert isinstance(a, SyscallEvent)
    assert a.args[2] == BitOr([Symbol("O_RDWR"), Symbol("O_NONBLOCK")])
    a = one("+0.00 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)")
    assert a == SyscallEvent("connect", [Int(3), WILDCARD, WILDCARD], Int(-1), "EINPROGRESS",
                             "Operation now in progress")
    a = one("+0 getsockopt(4, SOL_SOCKET, SO_ERROR, [ECONNRESET], [4]) = 0")
    assert isinstance(a, SyscallEvent)
    assert a.args[3] == Array([Symbol("ECONNRESET")]) and a.args[4] == Array([Int(4)])
    a = one("+0 read(4, ..., 1000) = ...")
    assert isinstance(a, SyscallEvent) and a.expect is WILDCARD
    a = one("+0 getpid() = 7")
    assert isinstance(a, SyscallEvent) and a.args == []


def test_structs_strings_calls() -> None:
    a = one("+0 setsockopt(3, SOL_SOCKET, SO_LINGER, {onoff=1, linger=0}, 8) = 0")
    assert isinstance(a, SyscallEvent)
    linger = a.args[3]
    assert linger == Struct([Field("onoff", Int(1)), Field("linger", Int(0))])
    assert isinstance(linger, Struct) and linger.get("linger") == Int(0)
    assert linger.get("nope") is None
    a = one("+0 poll([{fd=5, events=POLLIN|POLLOUT, revents=POLLIN}], 1, 0) = 1")
    assert isinstance(a, SyscallEvent)
    assert str(a.args[0]) == "[{fd=5, events=POLLIN | POLLOUT, revents=POLLIN}]"
    a = one('+0 connect(3, {sa_family=AF_INET, sin_port=htons(8080), '
            'sin_addr=inet_addr("192.0.2.1")}, 16) = 0')
    assert isinstance(a, SyscallEvent) and isinstance(a.args[1], Struct)
    assert a.args[1].get("sin_port") == Call("htons", [Int(8080)])
    assert a.args[1].get("sin_addr") == Call("inet_addr", [Str("192.0.2.1")])
    a = one('+0 sendmsg(4, {msg_name(...)=..., msg_iov(1)=[{..., 10}], msg_flags=0}, 0) = 10')
    assert isinstance(a, SyscallEvent) and isinstance(a.args[1], Struct)
    assert a.args[1].get("msg_iov(1)") == Array([Struct([Field(None, WILDCARD),
                                                         Field(None, Int(10))])])
    a = one('+0 write(4, "hello\\n"..., 6) = 6')
    assert isinstance(a, SyscallEvent) and a.args[1] == Str("hello\\n", truncated=True)
    assert str(a.args[1]) == '"hello\\n"...'
    a = one("+0 listen(3, 0x10) = 0")
    assert isinstance(a, SyscallEvent) and a.args[1] == Int(16)


def test_multiline_syscall() -> None:
    s = parse_text(
        "+0 setsockopt(3, SOL_SOCKET,\n     SO_REUSEADDR, [1], 4) = 0\n+0 close(3) = 0\n"
    )
    assert [e.line for e in s.events] == [1, 3]


# --- TCP packets -----------------------------------------------------------------------


def test_packet_fields() -> None:
    a = one("+0.00 > S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,eol,eol>")
    assert a == PacketEvent(">", "S.", tcp.SYN | tcp.ACK, 0, 0, 0, 1, 65535, [
        TcpOptionSpec("mss", 1460), TcpOptionSpec("sackOK"), TcpOptionSpec("eol"),
        TcpOptionSpec("eol"),
    ])
    a = one("+0.00 <  . 16:32(16) ack  1 win 65535 // Fifth segment")
    assert a == PacketEvent("<", ".", tcp.ACK, 16, 32, 16, 1, 65535, None)
    a = one("+0 > P. 1:1461(1460) ack 1")
    assert isinstance(a, PacketEvent)
    assert (a.flag_bits, a.length, a.win, a.options) == (tcp.PSH | tcp.ACK, 1460, None, None)
    a = one("+0 < R 0:0(0) win 0")
    assert isinstance(a, PacketEvent) and (a.flag_bits, a.ack) == (tcp.RST, None)
    a = one("+0 > SEW 0:0(0) win 65535 <mss 1460>")
    assert isinstance(a, PacketEvent) and a.flag_bits == tcp.SYN | tcp.ECE | tcp.CWR
    a = one("+0 < SF 0:0(0) win 32767")
    assert isinstance(a, PacketEvent) and a.flag_bits == tcp.SYN | tcp.FIN
    a = one("+0 < FPU. 1:2(1) ack 1 win 100")
    assert isinstance(a, PacketEvent)
    assert a.flag_bits == tcp.FIN | tcp.PSH | tcp.URG | tcp.ACK
    a = one("+0 < - 1:1(0) win 100")
    assert isinstance(a, PacketEvent) and (a.flags, a.flag_bits) == ("-", 0)
    a = one("+0 > S 0:0(0) <mss 1460,nop,wscale 6,sackOK,TS val 100 ecr 0>")
    assert isinstance(a, PacketEvent) and a.win is None
    assert a.options == [TcpOptionSpec("mss", 1460), TcpOptionSpec("nop"),
                         TcpOptionSpec("wscale", 6), TcpOptionSpec("sackOK"),
                         TcpOptionSpec("TS", 100, 0)]
    assert [o.kind_number for o in a.options] == [2, 1, 3, 4, 8]


def test_packet_seq_wrap_and_wildcards() -> None:
    a = one("+0 < . 4294967295:99(100) ack 1 win 10")
    assert isinstance(a, PacketEvent) and (a.seq_start, a.seq_end) == (4294967295, 99)
    a = one("+0 > S. ...(0) ack 1 win 65535 <...>")
    assert isinstance(a, PacketEvent)
    assert (a.seq_start, a.seq_end, a.length, a.options) == (None, None, 0, WILDCARD)


def test_sack_md5_fastopen_options() -> None:
    a = one("+0 > . 1:1(0) ack 100 win 65535 <nop,nop,sack 600:700 400:500 200:300>")
    assert isinstance(a, PacketEvent) and isinstance(a.options, list)
    assert a.options[2] == TcpOptionSpec("sack", blocks=((600, 700), (400, 500), (200, 300)))
    a = one("+0 < . 1:1(0) ack 1 win 1 <nop,nop, md5 valid,nop,nop,sack 2881:4321>")
    assert isinstance(a, PacketEvent) and isinstance(a.options, list)
    assert a.options[2] == TcpOptionSpec("md5", text="valid")
    assert a.options[-1].blocks == ((2881, 4321),)
    a = one("+0 < S 0:0(0) win 1 <FO abcd1234,FO>")
    assert isinstance(a, PacketEvent)
    assert a.options == [TcpOptionSpec("FO", text="abcd1234"), TcpOptionSpec("FO")]


def test_nplab_extensions() -> None:
    a = one("+0 > (ttl 4) R. 0:0(0)! ack 1 win 0")
    assert isinstance(a, PacketEvent)
    assert (a.ttl, a.absolute_seq, a.flag_bits) == (4, True, tcp.RST | tcp.ACK)
    a = one("+0 > R 1:1(0) win 0 <nop,nop,md5 valid>/udp(9811 > 1)")
    assert isinstance(a, PacketEvent) and a.udp_encap == (9811, 1)
    a = one("+0 < [ect0] . 1:1(0) ack 1 win 1")
    assert isinstance(a, PacketEvent) and a.ecn == "ect0"
    a = one("+0 < . 1:1(0) ack 1 win 1")
    assert isinstance(a, PacketEvent)
    assert (a.ttl, a.ecn, a.udp_encap, a.absolute_seq) == (None, None, None, False)


# --- ICMP -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "itype", "code", "numbers", "mtu"),
    [
        ("< icmp unreachable port_unreachable [0:0(0)]", "unreachable", "port_unreachable",
         (3, 3), None),
        ("<icmp unreachable net_unreachable [0:0(0)]", "unreachable", "net_unreachable",
         (3, 0), None),
        ("< icmp unreachable frag_needed mtu 1234 [0:0(0)]", "unreachable", "frag_needed",
         (3, 4), 1234),
        ("< icmp unreachable precedence_cutoff [0:0(0)]", "unreachable", "precedence_cutoff",
         (3, 15), None),
        ("< icmp parameter_problem code_2 [0:0(0)]", "parameter_problem", "code_2", (12, 2),
         None),
        ("< icmp source_quench [0:0(0)]", "source_quench", None, (4, 0), None),
        ("< icmp redirect [0:0(0)]", "redirect", None, (5, 0), None),
        ("< icmp time_exceeded frag_reass_exceeded [0:0(0)]", "time_exceeded",
         "frag_reass_exceeded", (11, 1), None),
    ],
)
def test_icmp(text: str, itype: str, code: str | None, numbers: tuple[int, int],
              mtu: int | None) -> None:
    a = one("+0.00 " + text)
    assert isinstance(a, IcmpEvent)
    assert (a.direction, a.icmp_type, a.code) == ("<", itype, code)
    assert (a.type_number, a.code_number, a.mtu) == (*numbers, mtu)
    assert (a.seq_start, a.seq_end, a.length) == (0, 0, 0)


def test_icmp_quoted_segment_forms() -> None:
    a = one("+0 < [1:1461(1460)] icmp unreachable frag_needed mtu 1280")
    assert isinstance(a, IcmpEvent) and (a.seq_start, a.seq_end, a.length) == (1, 1461, 1460)
    a = one("+0 < icmp unreachable host_unreachable")
    assert isinstance(a, IcmpEvent) and a.seq_start is None and a.length is None


# --- malformed input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("+0 close(3) = 0\n+0 > Q 0:0(0) win 1", 2, "unknown TCP flag 'Q'"),
        ("+0 > SS 0:0(0) win 1", 1, "twice"),
        ("\n\n+0 < . 1:5(3) ack 1 win 1", 3, "end - start is not the length"),
        ("+0 < . 1:1 ack 1", 1, "expected '('"),
        ("+0 < . 1:1(0) ack 1 win 65536", 1, "out of range 0..65535"),
        ("+0 < . 1:1(0) ack 4294967296", 1, "out of range"),
        ("+0 < . 1:1(0) ack 1 win 1 <mss 1460,bogus 3>", 1, "unknown TCP option 'bogus'"),
        ("+0 < . 1:1(0) ack 1 win 1 <mss 1460", 1, "expected ','"),
        ("+0 < . 1:1(0) ack 1 win 1 <sack>", 1, "at least one block"),
        ("+0 < . 1:1(0) ack 1 win 1 junk", 1, "one event per line"),
        ("+0 close(3) = 0 +0 close(4) = 0", 1, "one event per line"),
        ("+0 close(3 = 0", 1, "to close the arguments"),
        ("+0 close(3)", 1, "expected return value"),
        ("+0 connect(3, ..., ...) = -1 einprogress", 1, "errno name"),
        ("+0 connect(3, ..., ...) = -1 EINPROGRESS (Operation", 1, "unclosed '('"),
        ("+0\n", 1, "expected a packet"),
        ("close(3) = 0", 1, "expected a time"),
        ("-1 close(3) = 0", 1, "expected a time"),
        ("+0.2~+0.1 close(3) = 0", 1, "before it starts"),
        ("+0.1~0.2 close(3) = 0", 1, "expected '+'"),
        ("+0 close(3) = 0\n--tolerance_usecs=5", 2, "after the first event"),
        ("--tolerance_usecs=fast", 1, "not a number"),
        ("--ip_version=ipv5", 1, "--ip_version=ipv5"),
        ("--verbose", 1, "needs a value"),
        ("\n/* never closed\n+0 close(3) = 0", 2, "unterminated /* comment"),
        ("+0 `sysctl -w x=1\n+0 close(3) = 0", 1, "unterminated ` command"),
        ('+0 write(3, "abc, 3) = 3', 1, 'unterminated " string'),
        ("+0 %{ assert 1 ", 1, "unterminated %{"),
        ("#endif\n", 1, "#endif without #ifdef"),
        ("+0 close(3) = 0\n#ifdef FreeBSD\n+0 close(4) = 0\n", 2, "without #endif"),
        ("#if defined(X)\n", 1, "unsupported directive"),
        ("#ifdef X\n+0 setsockopt(3,\n#endif\n 1, 2) = 0\n", 4, "inside an event"),
        ("+0 < icmp bogus [0:0(0)]", 1, "unknown ICMP type"),
        ("+0 < icmp unreachable bogus [0:0(0)]", 1, "unknown ICMP unreachable code"),
        ("+0 < [0:0(0)] icmp unreachable port_unreachable [0:0(0)]", 1, "twice"),
        ("+0 < udp (100)", 1, "not supported"),
        ("+0 write(3, " + "[" * 100 + "]" * 100 + ", 1) = 1", 1, "nested deeper"),
        ("+0 write(3, " + "9" * 5000 + ", 1) = 1", 1, "too long"),
        ("+0 write(3, {1=2}, 1) = 1", 1, "member name"),
        ("+0 > S. 0:0(0) ack 1 win 65535 <mss 1460,\n\n TS val 1 ecn 2>", 3, "expected 'ecr'"),
        ("+0 close(3) = 0 \x00", 1, "one event per line"),
    ],
)
def test_malformed(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ScriptError) as ei:
        parse_text(text, "bad.pkt")
    e = ei.value
    msg = str(e)
    assert (e.path, e.line) == ("bad.pkt", line), msg
    assert msg.startswith(f"bad.pkt:{line}: "), msg
    assert fragment in msg
    assert "\n" not in msg


def test_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pkt"
    with pytest.raises(ScriptError, match=r"nope\.pkt:0: cannot read"):
        parse_path(missing)
    with pytest.raises(ScriptError, match=r":0: cannot read"):
        parse_path(tmp_path)
    binary = tmp_path / "bin.pkt"
    binary.write_bytes(b"+0 close(3) = 0\n\xff\xfe\n")
    with pytest.raises(ScriptError, match=r"bin\.pkt:2: not UTF-8"):
        parse_path(binary)


def test_error_pickles() -> None:
    e = ScriptError("a.pkt", 3, "oops")
    e2 = pickle.loads(pickle.dumps(e))
    assert (e2.path, e2.line, e2.message, str(e2)) == ("a.pkt", 3, "oops", "a.pkt:3: oops")


def test_parse_all_goes_on_after_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.pkt").write_text("+0 close(3) = 0\n")
    (tmp_path / "sub" / "b.pkt").write_text("+0 > Q 0:0(0)\n")
    (tmp_path / "c.pkt").write_text("+0 < . 1:1(0) ack 1 win 1\n")
    (tmp_path / "notes.txt").write_text("not a script")
    paths = list(iter_scripts(tmp_path))
    assert [p.name for p in paths] == ["a.pkt", "c.pkt", "b.pkt"]
    assert list(iter_scripts(tmp_path / "a.pkt")) == [tmp_path / "a.pkt"]
    results = list(parse_all(tmp_path, tmp_path / "missing.pkt"))
    kinds = [type(r).__name__ for r in results]
    assert kinds == ["Script", "Script", "ScriptError", "ScriptError"]
    assert main([str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "2 parsed, 1 errors"
    assert any(line.startswith("error ") and "b.pkt:1: unknown TCP flag" in line for line in out)
    assert main([str(tmp_path / "a.pkt")]) == 0


# --- fuzz: nothing but ScriptError -------------------------------------------------------

_ALPHABET = st.sampled_from(
    [*"0123456789.:+-*~<>()[]{},=|!/`\"%#\n \t",
     "...", "ack ", "win ", "S.", "icmp ", "mss ", "sack ", "TS val ", "ecr ", "//", "/*",
     "*/", "%{", "}%", "#ifdef X\n", "#endif\n", "close(", "--tolerance_usecs=", "0x1f"]
)

_SAMPLE = (
    "--ip_version=ipv4\n--tolerance_usecs=10000\n"
    " 0.00 `sysctl -w a=1`\n"
    "+0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n"
    "+0.00 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0\n"
    "+0.00 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)\n"
    "+0.00 > S  0:0(0) win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 100 ecr 0>\n"
    "+0.00 < S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,eol,eol>\n"
    "+0.00 > (ttl 4) R. 0:0(0)! ack 1 win 0 <nop,nop,md5 valid>/udp(9811 > 1)\n"
    "+0.00 < icmp unreachable frag_needed mtu 1234 [0:0(0)]\n"
    "#ifdef STANDARD\n+0.00 %{ assert tcpi_state == 1 }%\n#endif\n"
    "+0.00 setsockopt(3, SOL_SOCKET, SO_LINGER, {onoff=1, linger=0}, 8) = 0\n"
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ALPHABET, max_size=60).map("".join))
def test_fuzz_tokens_raise_only_script_error(text: str) -> None:
    try:
        parse_text(text)
    except ScriptError as e:
        assert str(e).startswith("<script>:")


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(_SAMPLE)), st.integers(0, 8), st.text(max_size=6))
def test_fuzz_mutated_script_raises_only_script_error(at: int, cut: int, insert: str) -> None:
    text = _SAMPLE[:at] + insert + _SAMPLE[at + cut:]
    try:
        s = parse_text(text)
    except ScriptError as e:
        assert 0 <= e.line <= text.count("\n") + 1
    else:
        assert s.events


def test_sample_parses() -> None:
    s = parse_text(_SAMPLE)
    assert len(s.events) == 10
    assert s.options == {"ip_version": "ipv4", "tolerance_usecs": "10000"}
