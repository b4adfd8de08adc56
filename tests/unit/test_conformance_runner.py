"""The packetdrill runner: the FreeBSD suite against xfail.txt, our own scripts, each rule.

Every script here runs against a real ustack Stack over the in-memory link
with the runner's fake clock; nothing is mocked.  A test that expects a
failure also checks the line and the reason, so a runner that fails for the
wrong reason (or passes everything) cannot hide.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tcp_testsuite import OURS, SUITE, require_suite

from ustack import cli
from ustack_conform import runner
from ustack_conform.parser import iter_scripts, parse_path, parse_text
from ustack_conform.runner import (
    Outcome,
    RunOptions,
    find_xfail,
    judge,
    load_xfail,
    run_all,
    run_path,
    run_script,
)
from ustack_conform.script import Event, PacketEvent, Script, ScriptError, Time

# Our own scripts at the top of tests/conformance, FreeBSD's suite below it
# (tcp_testsuite: SUITE, the vendored copy or USTACK_TCP_TESTSUITE's).
OUR_SCRIPTS = sorted(OURS.glob("*.pkt"))
XFAIL = OURS / "xfail.txt"


def run(*lines: str, **opts: object) -> Outcome:
    """Run a script given line by line (line numbers are 1-based positions)."""
    text = "\n".join(lines) + "\n"
    return run_script(parse_text(text, "t.pkt"), RunOptions(**opts))  # type: ignore[arg-type]


def failed_at(o: Outcome, line: int, *words: str) -> bool:
    return o.status == "fail" and o.line == line and all(w in o.message for w in words)


# A passive open: the script connects to a listening socket (lines 1-8).
PASSIVE = (
    "--tolerance_usecs=5000",
    "0     socket(..., SOCK_STREAM, IPPROTO_TCP) = 3",
    "+0    bind(3, ..., ...) = 0",
    "+0    listen(3, 1) = 0",
    "+0    < S 0:0(0) win 4000 <mss 1000>",
    "+0    > S. 0:0(0) ack 1 win 65535 <mss 1460>",
    "+0.1  < . 1:1(0) ack 1 win 4000",
    "+0    accept(3, ..., ...) = 4",
)
N = len(PASSIVE)  # the next line is N + 1

# An active open with the handshake done (lines 1-8).
ACTIVE = (
    "--tolerance_usecs=5000",
    "0     socket(..., SOCK_STREAM, IPPROTO_TCP) = 3",
    "+0    fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0",
    "+0    connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)",
    "+0    > S 0:0(0) <...>",
    "+0.1  < S. 0:0(0) ack 1 win 4000 <mss 1000>",
    "+0    > . 1:1(0) ack 1",
    "+0    %{ assert tcpi_state == TCPI_ESTABLISHED }%",
)


# --- the whole FreeBSD suite and our own scripts -------------------------------


def suite_xfail() -> dict[str, str]:
    """The suite's entries of xfail.txt, made relative to the suite's folder.

    Not a second matcher: ``judge`` (the runner's suffix rule) still decides.
    The entries are written from tests/conformance (``tcp-testsuite/...``), so
    as they stand they match only a copy in a folder named tcp-testsuite;
    without that prefix they also match a copy under another name
    (USTACK_TCP_TESTSUITE), and the entries for our own scripts drop out, so
    the count of expected failures below is the suite's.
    """
    return {name.removeprefix("tcp-testsuite/"): reason
            for name, reason in load_xfail(XFAIL).items() if name.startswith("tcp-testsuite/")}


@pytest.mark.parametrize("strict", [False, True], ids=["relaxed", "strict"])
def test_suite_matches_the_expected_failure_list(strict: bool) -> None:
    """`ustack conform` over the FreeBSD suite: every result is the expected one.

    Strict mode (windows in bytes, options by kind and value, buffer sizes)
    is judged by the same list: it passes every script relaxed mode passes.
    """
    require_suite()
    xfail = suite_xfail()
    t0 = time.monotonic()
    summary = run_all([str(SUITE)], RunOptions(strict=strict), xfail, echo=False)
    elapsed = time.monotonic() - t0
    wrong = [v.line() for v in summary.verdicts if not v.ok]
    assert not wrong, "\n".join(wrong)
    assert len(summary.verdicts) >= 370
    # Every listed script exists (a stale entry would hide nothing but
    # mislead): the entries are paths from the folder of xfail.txt.
    for entry in load_xfail(XFAIL):
        assert (OURS / entry).is_file(), f"xfail.txt: no script {entry}"
    # No error lines: a script the runner cannot play is not a conformance result.
    assert not [v for v in summary.verdicts if v.outcome.status == "error"]
    assert summary.passed == len(summary.verdicts) - len(xfail)
    assert elapsed < 60, f"the suite took {elapsed:.1f} s"


def _passing_suite_scripts() -> list[Script]:
    require_suite()
    xfail = suite_xfail()
    return [parse_path(p).select(runner.DEFAULT_DEFINES) for p in iter_scripts(SUITE)
            if judge(Outcome(str(p), "fail"), xfail).expected_failure is None]


def test_suite_mutations_are_caught() -> None:
    """Each outbound line of the passing suite scripts is really checked.

    One field at a time (ack + 1, payload length + 1, PSH flipped, the time
    moved by twice the tolerance) is changed in the script; the run must
    then fail, at exactly that line.
    """
    scripts = _passing_suite_scripts()
    tried = 0
    for s in scripts:
        tol = (s.tolerance_usecs or 4000) / 1e6
        for i, e in enumerate(s.events):
            a = e.action
            if not (isinstance(a, PacketEvent) and a.direction == ">"):
                continue
            variants: list[Event] = [replace(e, action=replace(a, flag_bits=a.flag_bits ^ 0x08))]
            if a.ack is not None:
                variants.append(replace(e, action=replace(a, ack=a.ack + 1)))
            if a.seq_end is not None and i % 2:
                variants.append(replace(e, action=replace(a, length=a.length + 1,
                                                          seq_end=a.seq_end + 1)))
            if e.time.kind == "relative" and e.time.end is None:
                variants.append(replace(e, time=Time("relative", e.time.start + 2 * tol + 0.01)))
            for v in variants:
                o = run_script(replace(s, events=[*s.events[:i], v, *s.events[i + 1:]]))
                assert o.status == "fail" and o.line == e.line, (s.path, e.line, v, o)
                tried += 1
    assert tried > 3000


@pytest.mark.parametrize("strict", [False, True], ids=["relaxed", "strict"])
def test_our_scripts(strict: bool) -> None:
    """tests/conformance (the hidden close states ...), in both modes, against xfail.txt."""
    xfail = load_xfail(XFAIL)
    paths = OUR_SCRIPTS
    assert len(paths) >= 6
    for p in paths:
        v = judge(run_path(p, RunOptions(strict=strict)), xfail)
        assert v.ok, v.line()
        assert v.outcome.status != "error", v.line()


def test_conform_takes_the_list_next_to_the_scripts(capsys: pytest.CaptureFixture[str]) -> None:
    """`ustack conform tests/conformance` without --xfail: judged by tests/conformance/xfail.txt."""
    assert find_xfail(OURS) == XFAIL
    assert find_xfail(OURS / "tcp-testsuite" / "snd-syn") == XFAIL
    assert find_xfail(OUR_SCRIPTS[0]) == XFAIL
    assert runner.main([str(OURS)]) == 0
    out = capsys.readouterr().out
    listed = len(load_xfail(XFAIL))
    assert f" failed ({listed} expected, 0 unexpected failures, 0 unexpected passes)" in out
    assert out.count("\nxfail ") == listed


def test_xfail_file_format() -> None:
    xfail = load_xfail(XFAIL)
    assert xfail
    for name, reason in xfail.items():
        assert name.endswith(".pkt")
        assert reason.split(":", 1)[0] in {"bug", "choice", "unsupported", "freebsd"}, reason


# --- packets: what is compared, in which mode --------------------------------------


def test_passive_open_passes_in_both_modes() -> None:
    assert run(*PASSIVE).status == "pass"
    assert run(*PASSIVE, strict=True).status == "pass"


@pytest.mark.parametrize(("line", "words"), [
    ("+0 > . 1:11(10) ack 1", ("flags P., expected .:",)),
    ("+0 > P. 2:12(10) ack 1", ("sequence number 1, expected 2",)),
    ("+0 > P. 1:11(10) ack 2", ("acknowledgment number 1, expected 2",)),
    ("+0 > P. 1:10(9) ack 1", ("payload length 10, expected 9",)),
    ("+0 > P. 1:11(10)! ack 1", ("sequence number",)),
])
def test_each_compared_field_fails(line: str, words: tuple[str, ...]) -> None:
    assert run(*PASSIVE, "+0 write(4, ..., 10) = 10", "+0 > P. 1:11(10) ack 1").status == "pass"
    o = run(*PASSIVE, "+0 write(4, ..., 10) = 10", line)
    assert failed_at(o, N + 2, *words), o


def test_syn_sets_the_stack_isn() -> None:
    """The first SYN's number, as written, is where the stack's side starts."""
    lines = list(PASSIVE)
    lines[5] = "+0 > S. 7:7(0) ack 1"
    o = run(*lines)
    assert o.status == "fail" and "accept() blocked" in o.message, o  # ack 1 is now ISN-6


@pytest.mark.parametrize(("variant", "what"), [
    ("win 1000 <mss 1460>", "window 65535"),
    ("win 65535 <mss 1000>", "mss 1460"),
    ("win 65535 <sackOK,mss 1460>", "<mss>, expected <sackOK,mss>"),
    ("win 65535", "<mss>, expected <>"),
])
def test_window_and_options_only_in_strict_mode(variant: str, what: str) -> None:
    lines = list(PASSIVE)
    lines[5] = "+0 > S. 0:0(0) ack 1 " + variant
    assert run(*lines).status == "pass", variant
    assert failed_at(run(*lines, strict=True), 6, what), variant


def test_option_wildcard_and_padding_in_strict_mode() -> None:
    lines = list(PASSIVE)
    lines[5] = "+0 > S. 0:0(0) ack 1 win 65535 <...>"
    assert run(*lines, strict=True).status == "pass"
    lines[5] = "+0 > S. 0:0(0) ack 1 win 65535 <mss 1460,eol,eol>"  # padding
    assert run(*lines, strict=True).status == "pass"


def test_timestamps_and_sack_blocks_are_mapped() -> None:
    """TS echo replies follow the stack's clock; SACK edges are relative (strict)."""
    base = [
        "0     socket(..., SOCK_STREAM, IPPROTO_TCP) = 3",
        "+0    bind(3, ..., ...) = 0",
        "+0    listen(3, 1) = 0",
        "+0    < S 0:0(0) win 4000 <mss 1000,sackOK,TS val 1000 ecr 0,nop,wscale 0>",
        "+0    > S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,TS val 500 ecr 1000,nop,wscale 5>",
        "+0.1  < . 1:1(0) ack 1 win 4000 <nop,nop,TS val 1100 ecr 500>",
        "+0    accept(3, ..., ...) = 4",
        "+0    write(4, ..., 10) = 10",
        "+0    > P. 1:11(10) ack 1 win 32768 <nop,nop,TS val 600 ecr 1100>",
        "+0.1  < . 101:201(100) ack 11 win 4000 <nop,nop,TS val 1200 ecr 600>",
        "+0    > . 11:11(0) ack 1 win 32768 <nop,nop,TS val 700 ecr 1100,nop,nop,sack 101:201>",
    ]
    assert run(*base, strict=True).status == "pass"
    bad_ecr = [*base[:-1], base[-1].replace("ecr 1100", "ecr 1200")]
    assert failed_at(run(*bad_ecr, strict=True), 11, "TS ecr 1100, expected 1200")
    bad_sack = [*base[:-1], base[-1].replace("sack 101:201", "sack 101:200")]
    assert failed_at(run(*bad_sack, strict=True), 11, "sack [(101, 201)]")


def test_mtu_option_sets_the_mss() -> None:
    o = run("--mtu=72",
            "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3",
            "+0 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0",
            "+0 connect(3, ..., ...) = -1 EINPROGRESS",
            "+0 > S 0:0(0) win 65535 <mss 32,sackOK,TS val 1 ecr 0,nop,wscale 5>",
            strict=True)
    assert o.status == "pass", o


def test_a_large_inbound_segment_crosses_the_link() -> None:
    """A tun device takes a segment beyond the MTU; so does the runner's link."""
    o = run(*PASSIVE,
            "+0 < . 1:30001(30000) ack 1 win 4000",
            "* > . 1:1(0) ack 30001",
            "+0 recv(4, ..., 40000, 0) = 30000")
    assert o.status == "pass", o


# --- timing -------------------------------------------------------------------------


def test_timing_within_tolerance_passes_outside_fails() -> None:
    data = ("+0 < P. 1:101(100) ack 1 win 4000",)
    # ustack's delayed ACK is 40 ms (TcpConfig.delack); tolerance is 5 ms.
    assert run(*PASSIVE, *data, "+0.043 > . 1:1(0) ack 101").status == "pass"
    o = run(*PASSIVE, *data, "+0.050 > . 1:1(0) ack 101")
    assert failed_at(o, N + 2, "sent at 0.140000s", "expects it at 0.150000s"), o
    o = run(*PASSIVE, *data, "+0.030 > . 1:1(0) ack 101")
    assert failed_at(o, N + 2, "sent nothing by 0.135000s"), o
    # A range, and `*`: any time in it.
    assert run(*PASSIVE, *data, "+0.02~+0.06 > . 1:1(0) ack 101").status == "pass"
    assert run(*PASSIVE, *data, "* > . 1:1(0) ack 101").status == "pass"


def test_relative_time_after_a_range_counts_from_the_actual_time() -> None:
    o = run(*PASSIVE,
            "+0 < P. 1:101(100) ack 1 win 4000",
            "+0~+1 > . 1:1(0) ack 101",  # sent at +0.040
            "+0 < P. 101:201(100) ack 1 win 4000",  # so this is at +0.040
            "+0.040 > . 1:1(0) ack 201")
    assert o.status == "pass", o


def test_retransmission_timer_runs_on_the_fake_clock() -> None:
    """The SYN-ACK is resent after the 1 s initial RTO, then 2 s (RFC 6298 2.1, 5.5)."""
    o = run(*PASSIVE[:6],
            "+1 > S. 0:0(0) ack 1",
            "+2 > S. 0:0(0) ack 1")
    assert o.status == "pass", o
    o = run(*PASSIVE[:6], "+1.5 > S. 0:0(0) ack 1")
    assert failed_at(o, 7, "sent at 1.000000s"), o


def test_unexpected_packet_is_compared_with_the_next_expected_one() -> None:
    o = run(*PASSIVE, "+0 write(4, ..., 10) = 10", "+0 > F. 11:11(0) ack 1")
    assert failed_at(o, N + 2, "flags P., expected F."), o


# --- system calls ---------------------------------------------------------------------


def test_return_values_and_errno_are_compared() -> None:
    lines = list(PASSIVE)
    lines[7] = "+0 accept(3, ..., ...) = 5"
    assert failed_at(run(*lines), 8, "accept() returned 4, expected 5")
    nb = "+0 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0"
    assert run(*PASSIVE[:4], nb, "+0 accept(3, ..., ...) = -1 EAGAIN").status == "pass"
    o = run(*PASSIVE[:4], nb, "+0 accept(3, ..., ...) = -1 EINVAL")
    assert failed_at(o, 6, "returned -1 EAGAIN, expected -1 EINVAL"), o
    assert run(*PASSIVE[:4], "+0 fcntl(3, F_GETFL) = 0x02", nb,
               "+0 fcntl(3, F_GETFL) = 0x802").status == "pass"
    assert run(*PASSIVE, "+0 close(9) = -1 EBADF").status == "pass"


def test_unsupported_option_fails_the_call() -> None:
    o = run(*PASSIVE[:2], "+0 setsockopt(3, IPPROTO_TCP, TCP_KEEPINIT, [5], 4) = 0")
    assert failed_at(o, 3, "ENOPROTOOPT"), o


def test_buffer_sizes_are_only_compared_in_strict_mode() -> None:
    line = "+0 getsockopt(3, SOL_SOCKET, SO_RCVBUF, [65536], [4]) = 0"
    assert run(*PASSIVE[:2], line).status == "pass"
    assert failed_at(run(*PASSIVE[:2], line, strict=True), 3, "SO_RCVBUF", "[1048576]")
    set_get = ("+0 setsockopt(3, SOL_SOCKET, SO_RCVBUF, [65536], 4) = 0", line)
    assert run(*PASSIVE[:2], *set_get, strict=True).status == "pass"


def test_so_error_is_reported_once_then_eof() -> None:
    o = run(*PASSIVE,
            "+0 < R 1:1(0) win 0",
            "+0 getsockopt(4, SOL_SOCKET, SO_ERROR, [ECONNRESET], [4]) = 0",
            "+0 getsockopt(4, SOL_SOCKET, SO_ERROR, [0], [4]) = 0",
            "+0 recv(4, ..., 100, 0) = 0",
            "+0 %{ assert tcpi_state == TCPI_CLOSED }%")
    assert o.status == "pass", o
    o = run(*PASSIVE, "+0 < R 1:1(0) win 0", "+0 recv(4, ..., 100, 0) = -1 ECONNRESET",
            "+0 recv(4, ..., 100, 0) = 0")
    assert o.status == "pass", o


def test_msg_peek_does_not_consume() -> None:
    o = run(*PASSIVE,
            "+0 < P. 1:101(100) ack 1 win 4000",
            "+0 recv(4, ..., 1000, MSG_PEEK) = 100",
            "+0 recv(4, ..., 30, MSG_PEEK) = 30",
            "+0 recv(4, ..., 1000, 0) = 100")
    assert o.status == "pass", o


def test_blocking_read_returns_when_data_arrives() -> None:
    ok = run(*PASSIVE,
             "0.2...0.3 read(4, ..., 1000) = 100",
             "0.3 < P. 1:101(100) ack 1 win 4000")
    assert ok.status == "pass", ok
    late = run(*PASSIVE,
               "0.2...0.3 read(4, ..., 1000) = 100",
               "0.5 < P. 1:101(100) ack 1 win 4000")
    assert failed_at(late, N + 1, "returned at 0.500000s", "expects 0.300000s"), late
    never = run(*PASSIVE, "+0 read(4, ..., 1000) = 100")
    assert failed_at(never, N + 1, "read() blocked from 0.100000s"), never


def test_blocking_connect() -> None:
    o = run("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3",
            "0...0.1 connect(3, ..., ...) = 0",
            "0 > S 0:0(0) <...>",
            "0.1 < S. 0:0(0) ack 1 win 4000 <mss 1000>",
            "0.1 > . 1:1(0) ack 1")
    assert o.status == "pass", o


def test_nonblocking_connect_states() -> None:
    o = run(*ACTIVE[:5],
            "+0 connect(3, ..., ...) = -1 EALREADY",
            *ACTIVE[5:],
            "+0 connect(3, ..., ...) = -1 EISCONN",
            "+0 write(3, ..., 10) = 10",
            "+0 > P. 1:11(10) ack 1")
    assert o.status == "pass", o
    refused = run(*ACTIVE[:5], "+0.1 < R. 0:0(0) ack 1 win 0",
                  "+0 getsockopt(3, SOL_SOCKET, SO_ERROR, [ECONNREFUSED], [4]) = 0")
    assert refused.status == "pass", refused


def test_poll_waits_for_data_and_times_out() -> None:
    o = run(*PASSIVE,
            "+0 poll([{fd=4, events=POLLIN, revents=POLLIN}], 1, 1000) = 1",
            "+0.2 < P. 1:101(100) ack 1 win 4000",
            "+0 recv(4, ..., 1000, 0) = 100",
            "0.4...0.9 poll([{fd=4, events=POLLIN, revents=0}], 1, 500) = 0",
            "+0 poll([{fd=4, events=POLLOUT, revents=POLLOUT}], 1, 0) = 1")
    assert o.status == "pass", o
    o = run(*PASSIVE, "+0 poll([{fd=4, events=POLLIN, revents=POLLIN}], 1, 0) = 1")
    assert failed_at(o, N + 1, "returned 0, expected 1"), o


def test_shutdown_and_close() -> None:
    o = run(*PASSIVE,
            "+0 shutdown(4, SHUT_WR) = 0",
            "+0 > F. 1:1(0) ack 1",
            "+0 %{ assert tcpi_state == TCPI_FIN_WAIT_1 }%",
            "+0.1 < F. 1:1(0) ack 2 win 4000",
            "+0 > . 2:2(0) ack 2",
            "+0 recv(4, ..., 100, 0) = 0",
            "+0 close(4) = 0",
            "+0 %{ assert tcpi_state == TCPI_TIME_WAIT }%")
    assert o.status == "pass", o


def test_tcp_nodelay_and_so_sndbuf() -> None:
    # Nagle (RFC 896): the second small write waits for the ACK of the first ...
    o = run(*PASSIVE,
            "+0 write(4, ..., 10) = 10", "+0 > P. 1:11(10) ack 1",
            "+0 write(4, ..., 10) = 10",
            "+0.05 < . 1:1(0) ack 11 win 4000", "+0 > P. 11:21(10) ack 1")
    assert o.status == "pass", o
    # ... unless TCP_NODELAY is set.
    o = run(*PASSIVE,
            "+0 setsockopt(4, IPPROTO_TCP, TCP_NODELAY, [1], 4) = 0",
            "+0 getsockopt(4, IPPROTO_TCP, TCP_NODELAY, [1], [4]) = 0",
            "+0 write(4, ..., 10) = 10", "+0 > P. 1:11(10) ack 1",
            "+0 write(4, ..., 10) = 10", "+0 > P. 11:21(10) ack 1")
    assert o.status == "pass", o
    o = run(*PASSIVE,
            "+0 fcntl(4, F_SETFL, O_RDWR | O_NONBLOCK) = 0",
            "+0 setsockopt(4, SOL_SOCKET, SO_SNDBUF, [3000], 4) = 0",
            "+0 write(4, ..., 5000) = 3000",
            "+0 write(4, ..., 5000) = -1 EAGAIN", strict=True)
    assert o.status == "pass", o


def test_so_linger_zero_resets_on_close() -> None:
    o = run(*PASSIVE,
            "+0 setsockopt(4, SOL_SOCKET, SO_LINGER, {onoff=1, linger=0}, 8) = 0",
            "+0 close(4) = 0",
            "+0 > R 1:1(0)")
    assert o.status == "pass", o


# --- ICMP, code blocks, shell lines, #ifdef -----------------------------------------------


def test_icmp_error_reaches_the_connection() -> None:
    o = run(*ACTIVE[:5],
            "+0 < icmp unreachable host_unreachable [0:0(0)]",
            "+0 getsockopt(3, SOL_SOCKET, SO_ERROR, [EHOSTUNREACH], [4]) = 0")
    assert o.status == "pass", o
    # Quoting a sequence number the stack never sent: ignored (RFC 5927 4.1).
    o = run(*ACTIVE[:5],
            "+0 < icmp unreachable host_unreachable [500:500(0)]",
            "+0 getsockopt(3, SOL_SOCKET, SO_ERROR, [0], [4]) = 0")
    assert o.status == "pass", o


def test_tcpi_state() -> None:
    assert run(*ACTIVE).status == "pass"
    o = run(*ACTIVE[:-1], "+0 %{ assert tcpi_state == TCPI_CLOSE_WAIT }%")
    assert failed_at(o, 8, "tcpi_state is TCPI_ESTABLISHED, expected TCPI_CLOSE_WAIT"), o
    o = run(*ACTIVE[:-1], "+0 %{ print(tcpi_rtt) }%")
    assert o.status == "error" and o.line == 8 and "unsupported" in o.message


def test_sysctl_lines_set_the_defaults() -> None:
    """`sysctl -w` sets what ustack has an equivalent for; the rest is noted."""
    o = run(*PASSIVE[:2],
            "+0 `sysctl -w net.inet.tcp.keepcnt=3`",
            "+0 `sysctl -w net.inet.tcp.keepidle=5000 net.inet.tcp.recvspace=4000`",
            "+0 `sysctl -w net.inet.tcp.insecure_rst=1`",
            "+0 `sysctl -w net.inet.tcp.frobnicate=1`",
            "+0 `sockstat -4 | grep -c TIME_WAIT`",
            "+0 getsockopt(3, IPPROTO_TCP, TCP_KEEPCNT, [3], [4]) = 0",
            "+0 getsockopt(3, IPPROTO_TCP, TCP_KEEPIDLE, [5], [4]) = 0",
            "+0 getsockopt(3, SOL_SOCKET, SO_RCVBUF, [4000], [4]) = 0",
            strict=True)
    assert o.status == "pass", o
    assert [n.split(": ", 1)[0] for n in o.notes] == ["5", "6", "7"], o.notes
    assert "insecure_rst=1: not honoured (RSTs are checked as RFC 5961 3.2 says)" in o.notes[0]
    assert "unknown to ustack" in o.notes[1] and "not run" in o.notes[2]
    # Without the sysctl, ustack's own default (9 probes, Linux's) shows.
    o = run(*PASSIVE[:2], "+0 getsockopt(3, IPPROTO_TCP, TCP_KEEPCNT, [3], [4]) = 0")
    assert failed_at(o, 3, "TCP_KEEPCNT) gives [9]"), o
    # The receive buffer set by sysctl is the window ustack offers (strict).
    lines = list(PASSIVE)
    lines[5] = "+0 > S. 0:0(0) ack 1 win 4000 <mss 1460>"
    assert run(lines[0], "+0 `sysctl -w net.inet.tcp.recvspace=4000`", *lines[1:],
               strict=True).status == "pass"


def test_ip_annotations_tos_and_ttl() -> None:
    """(tos N), [tos N], (ttl N), IPTOS_* names: parsed, injected, compared when written."""
    s = parse_text("0 < (tos 0x10, ttl 7) S 0:0(0) win 1\n"
                   "+0 > [tos IPTOS_LOWDELAY] S. 0:0(0) ack 1\n+0 < [ect0] . 1:1(0) ack 1\n")
    a0, a1, a2 = (e.action for e in s.events)
    assert isinstance(a0, PacketEvent) and (a0.tos, a0.ttl) == (0x10, 7)
    assert isinstance(a1, PacketEvent) and a1.tos == 0x10
    assert isinstance(a2, PacketEvent) and (a2.tos, a2.ecn) == (None, "ect0")
    with pytest.raises(ScriptError, match="IP annotation"):
        parse_text("0 < (tos 1, frob 2) S 0:0(0) win 1\n")
    lines = list(PASSIVE)
    lines[4] = "+0 < (tos 0x10) S 0:0(0) win 4000 <mss 1000>"  # inbound TOS is accepted
    assert run(*lines).status == "pass"
    lines[5] = "+0 > (tos 0x00, ttl 64) S. 0:0(0) ack 1"
    assert run(*lines).status == "pass"
    lines[5] = "+0 > (tos IPTOS_THROUGHPUT) S. 0:0(0) ack 1"
    assert failed_at(run(*lines), 6, "TOS 0x00, expected 0x08"), run(*lines)
    lines[5] = "+0 > (ttl 5) S. 0:0(0) ack 1"  # written: compared in relaxed mode too
    assert failed_at(run(*lines), 6, "TTL 64, expected 5")


def test_tcp_info_checks() -> None:
    """tcpi_state and tcpi_options, in %{ }% blocks and in getsockopt(TCP_INFO)."""
    ts = [*PASSIVE]
    ts[4] = "+0 < S 0:0(0) win 4000 <mss 1000,sackOK,TS val 1 ecr 0>"
    ts[5] = "+0 > S. 0:0(0) ack 1 <...>"
    ts[6] = "+0.1 < . 1:1(0) ack 1 win 4000 <nop,nop,TS val 2 ecr 0>"
    ok = [
        "+0 %{ assert tcpi_options & TCPI_OPT_SACK != 0 }%",
        "+0 %{ assert tcpi_options == TCPI_OPT_SACK | TCPI_OPT_TIMESTAMPS }%",
        "+0 %{ assert tcpi_state == TCPI_ESTABLISHED and tcpi_snd_mss == 988 }%",
        "+0 getsockopt(4, SOL_TCP, TCP_INFO, {tcpi_state=TCPI_ESTABLISHED, "
        "tcpi_options=TCPI_OPT_SACK|TCPI_OPT_TIMESTAMPS}, [104]) = 0",
    ]
    for line in ok:
        assert run(*ts, line).status == "pass", (line, run(*ts, line))
    o = run(*ts, "+0 %{ assert tcpi_options & TCPI_OPT_WSCALE }%")
    assert failed_at(o, N + 1, "is false", "tcpi_options=3"), o
    o = run(*PASSIVE, "+0 %{ assert tcpi_options == 0 }%")  # nothing negotiated
    assert o.status == "pass", o
    o = run(*ts, "+0 getsockopt(4, SOL_TCP, TCP_INFO, {tcpi_options=TCPI_OPT_SACK}, [4]) = 0")
    assert failed_at(o, N + 1, "tcpi_options is 3"), o
    o = run(*ts, "+0 %{ import os }%")
    assert o.status == "error" and "unsupported" in o.message, o
    o = run(*ts, "+0 %{ assert __import__('os') }%")
    assert o.status == "error" and "unsupported" in o.message, o


def test_non_fatal_mismatches_are_noted() -> None:
    """--non_fatal=packet,syscall: the script goes on; the mismatches are notes."""
    body = (*PASSIVE, "+0 write(4, ..., 10) = 10", "+0 > P. 1:11(10) ack 7",
            "+0 close(4) = 9", "+0 > F. 11:11(0) ack 1")
    assert failed_at(run(*body), N + 2, "acknowledgment number 1, expected 7")
    o = run(*body, non_fatal=frozenset({"packet"}))
    assert failed_at(o, N + 3, "close() returned 0, expected 9"), o
    o = run(*body, non_fatal=frozenset({"packet", "syscall"}))
    assert o.status == "pass" and len(o.notes) == 2, o
    assert "(2 non-fatal mismatches)" in str(o)
    o = run("--non_fatal=packet,syscall", *body)  # the script's own header
    assert o.status == "pass", o
    o = run("--non_fatal=everything", *body)
    assert o.status == "error" and "--non_fatal" in o.message, o


def test_strict_options_ignore_padding_and_order_and_dsack_is_reported() -> None:
    """Options by kind and value; a duplicate is reported first (RFC 2883 D-SACK)."""
    lines = list(PASSIVE)
    lines[4] = "+0 < S 0:0(0) win 4000 <mss 1000,sackOK,nop,nop>"
    lines[5] = "+0 > S. 0:0(0) ack 1 win 65535 <sackOK,nop,nop,eol,mss 1460>"
    data = ("+0 < . 1:101(100) ack 1 win 4000",
            "+0 < . 201:301(100) ack 1 win 4000",
            "+0 > . 1:1(0) ack 101 <nop,nop,sack 201:301>",
            "+0 < . 201:251(50) ack 1 win 4000",
            "+0 > . 1:1(0) ack 101 <nop,nop,sack 201:251 201:301>",
            "+0 < . 1:51(50) ack 1 win 4000",
            "+0 > . 1:1(0) ack 101 <nop,nop,sack 1:51 201:301>")
    assert run(*lines, *data, strict=True).status == "pass", run(*lines, *data, strict=True)
    lines[5] = "+0 > S. 0:0(0) ack 1 win 65535 <sackOK,mss 1400>"
    assert failed_at(run(*lines, strict=True), 6, "mss 1460, expected 1400")


def test_shell_lines_are_ignored_and_standard_branch_is_taken() -> None:
    o = run(*PASSIVE,
            "+0 `sysctl -w net.inet.tcp.insecure_rst=1`",
            "#ifdef STANDARD",
            "+0 close(4) = 0",
            "#endif",
            "#ifdef FreeBSD",
            "+0 close(4) = 7",
            "#endif")
    assert o.status == "pass", o
    o = run(*PASSIVE, "#ifdef FreeBSD", "+0 close(4) = 7", "#endif", defines=frozenset({"FreeBSD"}))
    assert failed_at(o, N + 2, "close() returned 0, expected 7"), o


# --- bad input, the command, the expected-failure list ---------------------------------------


def test_an_exception_in_the_stack_is_an_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ustack bug that raises is reported at the line being played; the run goes on."""
    from ustack.tcp.socket import TcpSocket

    def broken(self: TcpSocket) -> None:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(TcpSocket, "shutdown_write", broken)
    o = run(*PASSIVE, "+0 shutdown(4, SHUT_WR) = 0")
    assert o.status == "error" and o.line == N + 1, o
    assert "internal error: RuntimeError: injected fault" in o.message


def test_script_errors_are_lines_not_tracebacks() -> None:
    cases = [
        ("+0 frobnicate(3) = 0", "frobnicate() is not supported"),
        ("+0 socket(..., SOCK_DGRAM, IPPROTO_UDP) = 3", "only SOCK_STREAM"),
        ("+0 recv(4, ..., -5, 0) = 0", "out of range"),
        ("+0 setsockopt(4, SOL_SOCKET, SO_LINGER, 5, 8) = 0", "SO_LINGER takes"),
        ("+0 getsockopt(4, SOL_SOCKET, SO_ERROR, [NOT_A_THING], [4]) = 0", "unknown symbol"),
        ("+0 < . ...(0) ack 1 win 4000", "needs a sequence number"),
        ("+0 close(4) = \"x\"", "expected return value"),
        ("+0 send(4) = 0", "send() takes 4 arguments"),
    ]
    for line, words in cases:
        o = run(*PASSIVE, line)
        assert o.status == "error" and o.line == N + 1 and words in o.message, (line, o)
    o = run("--ip_version=ipv6", "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3")
    assert o.status == "error" and "IPv4 only" in o.message


_GOOD = "\n".join(PASSIVE) + "\n"
_FAILING = "\n".join((*PASSIVE, "+0 > F. 1:1(0) ack 1")) + "\n"


def _write(d: Path, name: str, text: str) -> Path:
    p = d / name
    p.write_text(text)
    return p


def test_main_reports_every_script_and_continues(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path, "a-good.pkt", _GOOD)
    _write(tmp_path, "b-syntax.pkt", _GOOD + "+0 < S. 0:0(0 ack\n")
    _write(tmp_path, "c-fails.pkt", _FAILING)
    (tmp_path / "d-binary.pkt").write_bytes(b"\xff\xfe\x00junk")
    rc = runner.main([str(tmp_path), str(tmp_path / "missing.pkt"), "--no-xfail"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 1
    assert out[0].startswith("pass ") and out[0].endswith("a-good.pkt")
    assert out[1].startswith("error ") and f"b-syntax.pkt:{N + 1}:" in out[1]
    assert out[2].startswith("FAIL ") and f"c-fails.pkt:{N + 1}:" in out[2]
    assert out[3].startswith("error ") and "d-binary.pkt:1:" in out[3]
    assert out[4].startswith("error ") and "missing.pkt:0: cannot read" in out[4]
    assert out[5].startswith("1 passed, 4 failed")
    assert "Traceback" not in "\n".join(out)


def test_expected_failures_and_unexpected_passes(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    good = _write(tmp_path, "good.pkt", _GOOD)
    bad = _write(tmp_path, "bad.pkt", _FAILING)
    xf = _write(tmp_path, "xfail.txt", "# comment\nbad.pkt: freebsd: listed on purpose\n")
    assert runner.main([str(good), str(bad), "--xfail", str(xf)]) == 0
    out = capsys.readouterr().out
    assert "xfail " in out and "[freebsd: listed on purpose]" in out
    assert "1 passed, 1 failed (1 expected, 0 unexpected" in out
    _write(tmp_path, "xfail.txt", "good.pkt: bug: should fail\nbad.pkt: bug: fails\n")
    assert runner.main([str(good), str(bad), "--xfail", str(xf)]) == 1
    assert "XPASS" in capsys.readouterr().out
    assert runner.main([str(good), str(bad), "--no-xfail"]) == 1
    _write(tmp_path, "xfail.txt", "good.pkt\n")
    assert runner.main([str(good), "--xfail", str(xf)]) == 2
    assert "expected 'path/to/script.pkt: reason'" in capsys.readouterr().err
    assert runner.main(["--jobs", "0", str(good)]) == 2
    assert "--jobs" in capsys.readouterr().err


def test_nearest_xfail_per_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each PATH is judged by the nearest xfail.txt in it or above it; --xfail and
    --no-xfail replace that for every PATH."""
    top, sub, other = tmp_path / "top", tmp_path / "top" / "a" / "b", tmp_path / "other"
    sub.mkdir(parents=True)
    # The search goes up to the top of a project, no higher: make tmp_path one
    # (without it only a PATH's own folder would count, and the lists in top/
    # and top/a/ would not be found from a/b/).
    _write(tmp_path, "pyproject.toml", "")
    other.mkdir()
    bad = _write(sub, "bad.pkt", _FAILING)
    other_bad = _write(other, "bad.pkt", _FAILING)
    assert find_xfail(sub) is None and find_xfail(bad) is None
    top_list = _write(top, "xfail.txt", "a/b/bad.pkt: freebsd: from the top\n")
    assert find_xfail(bad) == find_xfail(sub) == find_xfail(top) == top_list
    assert find_xfail(sub / "missing.pkt") == top_list
    assert runner.main([str(bad)]) == 0
    assert "[freebsd: from the top]" in capsys.readouterr().out
    # The nearest list wins, whole: the top one no longer counts below a/.
    near = _write(top / "a", "xfail.txt", "b/other.pkt: freebsd: another\n")
    assert find_xfail(sub) == near
    assert runner.main([str(sub)]) == 1
    # Two PATHs, two lists: other/ has none, so its failure is unexpected.
    _write(top / "a", "xfail.txt", "bad.pkt: freebsd: near\n")
    assert runner.main([str(sub), str(other_bad)]) == 1
    out = capsys.readouterr().out
    assert "[freebsd: near]" in out and f"FAIL  {other_bad}:" in out
    assert runner.main([str(sub), str(other_bad), "--xfail", str(near)]) == 0
    assert runner.main([str(sub), "--no-xfail"]) == 1
    assert runner.main([str(sub), "--xfail", str(tmp_path / "none.txt")]) == 2
    assert "none.txt" in capsys.readouterr().err
    _write(top / "a", "xfail.txt", "bad.pkt\n")
    assert runner.main([str(sub)]) == 2
    assert "expected 'path/to/script.pkt: reason'" in capsys.readouterr().err


@pytest.mark.parametrize("marker", [".git", "pyproject.toml"])
def test_xfail_search_stops_at_the_project_top(tmp_path: Path, marker: str) -> None:
    """A list above the project's top folder (e.g. a stray /tmp/xfail.txt)
    never judges its scripts; outside any project only PATH's folder counts."""
    _write(tmp_path, "xfail.txt", "proj/a/bad.pkt: freebsd: not ours\n")
    project, scripts = tmp_path / "proj", tmp_path / "proj" / "a"
    scripts.mkdir(parents=True)
    bad = _write(scripts, "bad.pkt", _FAILING)
    assert find_xfail(bad) is None  # no project: a/ only
    if marker == ".git":
        (project / marker).mkdir()
    else:
        _write(project, marker, "")
    assert find_xfail(bad) is None  # the project stops the search below tmp_path
    assert runner.main([str(bad)]) == 1
    own = _write(project, "xfail.txt", "a/bad.pkt: freebsd: ours\n")
    assert find_xfail(bad) == find_xfail(scripts) == find_xfail(project) == own
    assert runner.main([str(bad)]) == 0


def test_conform_help_explains_the_rule(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["conform", "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "nearest xfail.txt" in out and "--no-xfail" in out


def test_judge_matches_by_path_suffix() -> None:
    o = Outcome(str(SUITE / "snd-syn" / "x.pkt"), "fail", 3, "m")
    assert judge(o, {"snd-syn/x.pkt": "freebsd: r"}).ok
    assert not judge(o, {"other/x.pkt": "freebsd: r"}).ok
    assert not judge(o._replace(status="pass"), {"snd-syn/x.pkt": "freebsd: r"}).ok


def test_cli_conform_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _write(tmp_path, "good.pkt", _GOOD)
    assert cli.main(["conform", str(good), "--strict", "-j", "2", str(good), "--no-xfail"]) == 0
    assert capsys.readouterr().out.count("pass ") == 2
    assert cli.main(["conform"]) == 2
    assert "ustack conform:" in capsys.readouterr().err


# --- robustness: mutated scripts never raise ------------------------------------------------

_TOKENS = ["0", "1", "-1", "65535", "4294967295", "...", "S", "F.", "R", "<", ">", "[1]",
           "{onoff=1, linger=0}", "SO_ERROR", "MSG_PEEK", "POLLIN", "+0", "*", "ack", "win",
           "<nop,sack 1:2>", "<TS val 1 ecr 2>", "5", "3", "4", "accept(3, ..., ...) = 4"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 200), st.sampled_from(_TOKENS)), min_size=1,
                max_size=4))
def test_mutated_scripts_give_an_outcome(edits: list[tuple[int, str]]) -> None:
    lines = list((*PASSIVE, "+0 < P. 1:101(100) ack 1 win 4000",
                  "+0 recv(4, ..., 1000, MSG_PEEK) = 100", "+0.1 > . 1:1(0) ack 101",
                  "+0 close(4) = 0", "+0 > F. 1:1(0) ack 101"))
    for pos, tok in edits:
        i = pos % len(lines)
        words = lines[i].split()
        words[pos % len(words)] = tok
        lines[i] = " ".join(words)
    text = "\n".join(lines) + "\n"
    try:
        script = parse_text(text, "m.pkt")
    except ScriptError:
        return
    o = run_script(script, RunOptions())
    assert o.status in ("pass", "fail", "error")
