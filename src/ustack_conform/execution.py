"""Playing one packetdrill script against one ustack Stack (issue 4).

One script runs against a fresh ``Stack`` (198.18.0.1) on one end of an
in-memory link; the runner is the other end, the script's remote peer
(198.18.0.2).  Time is a fake clock that only the runner moves, so a script
that spans minutes of retransmission timers runs in milliseconds and every
outbound segment carries the exact time the stack sent it.

How a script is played (packetdrill's documented semantics):

* Events run in order at their script times.  ``+t`` is relative to the
  previous event's script time, or to its actual time when that event was
  ``*`` or a range (``a~b``).  Before an event the clock moves to its time,
  firing the stack's timers on the way; whatever the stack sends meanwhile
  waits in a queue, like packets in packetdrill's tun device.
* ``<`` lines are injected; ``>`` lines take the oldest packet in the queue
  (waiting for the stack's timers up to the end of the event's time window
  plus the tolerance) and compare it: TCP flags, sequence number, payload
  length and acknowledgment number always, the time within
  ``--tolerance_usecs`` (default 4 ms).  ``strict`` mode also compares the
  window, the IP TTL and the option list (kinds in order, MSS, window
  scale, SACK blocks, the timestamp echo; a TSval follows the stack's clock
  and is never compared).  Relaxed mode (the default) does not, and does
  not compare buffer sizes that getsockopt reports.
* Numbers are relative to the initial sequence numbers: the peer's is
  fixed just below 2**32 (so every script wraps), the stack's is learned
  from its first SYN.  Inbound TS echo replies are shifted by the offset
  between the stack's first TSval and the script's.  There is one
  connection, packetdrill's model: ``bind``/``listen`` and ``connect`` set
  its ports.
* System calls go through ``syscalls.Syscalls``.  A call that would block
  on a blocking descriptor is retried while the clock moves, as if it sat
  in the kernel (later events still run); ``a...b call()`` must return at
  ``b``, and a later system call first waits for it.
* Shell lines (FreeBSD ``sysctl``) are ignored in both modes.  ``%{ assert
  tcpi_state == TCPI_X }%`` is checked against the last socket a call used,
  even after close() (the orphan's state: an extension of ours).
"""

from __future__ import annotations

import math
import re
import socket
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

from ustack.link.pipe import PipeDevice, pipe_pair
from ustack.stack import Stack
from ustack.tcp.states import State
from ustack.wire import tcp as wtcp
from ustack_conform import packets
from ustack_conform.script import (
    TCP_OPTION_KINDS,
    CodeEvent,
    Event,
    IcmpEvent,
    Int,
    PacketEvent,
    Script,
    ScriptError,
    ShellEvent,
    SyscallEvent,
    Time,
    Wildcard,
)
from ustack_conform.symbols import errno_name
from ustack_conform.syscalls import Flow, Invocation, Syscalls, SysResult

__all__ = ["DEFAULT_DEFINES", "Execution", "Outcome", "RunOptions", "run_script"]

STACK_IP, PEER_IP = "198.18.0.1", "198.18.0.2"
STACK_MAC, PEER_MAC = bytes.fromhex("020000000101"), bytes.fromhex("020000000102")
# The peer's initial sequence number sits just below 2**32 so that the
# numbers of every script wrap and a comparison that is not modular shows.
PEER_ISN = 0xFFFFFF00
LINK_MTU = 65535
DEFAULT_TOLERANCE_USECS = 4000  # packetdrill's default
DEFAULT_DEFINES = frozenset({"STANDARD"})  # the RFC branch of the FreeBSD suite's #ifdefs
MAX_WAIT = 3600.0  # how far past the script a `*` or blocked event may wait (script seconds)
_MASK = 0xFFFFFFFF
_SYN, _ACK = wtcp.SYN, wtcp.ACK
_FLAG_LETTERS = (("F", wtcp.FIN), ("S", wtcp.SYN), ("R", wtcp.RST), ("P", wtcp.PSH),
                 (".", wtcp.ACK), ("U", wtcp.URG), ("E", wtcp.ECE), ("W", wtcp.CWR))
_TCPI = re.compile(r"\s*assert\s+tcpi_state\s*==\s*TCPI_([A-Z0-9_]+)\s*;?\s*")
_TCPI_ALIASES = {"SYN_RECV": "SYN_RECEIVED", "FIN_WAIT1": "FIN_WAIT_1",
                 "FIN_WAIT2": "FIN_WAIT_2", "CLOSE": "CLOSED"}



@dataclass(frozen=True)
class RunOptions:
    strict: bool = False
    defines: frozenset[str] = DEFAULT_DEFINES
    tolerance_usecs: int | None = None  # overrides the scripts' own
    trace: bool = False  # print every event as it runs (stderr)


class Outcome(NamedTuple):
    """How one script went: ``status`` pass/fail/error, where (``line``) and why."""

    path: str
    status: Literal["pass", "fail", "error"]
    line: int = 0
    message: str = ""

    def __str__(self) -> str:
        if self.status == "pass":
            return f"pass  {self.path}"
        tag = "FAIL " if self.status == "fail" else "error"
        return f"{tag} {self.path}:{self.line}: {self.message}"


class _Mismatch(Exception):
    """The stack did something the script does not expect (a failed script)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _Pending(NamedTuple):
    event: Event
    call: Invocation
    started: float
    end_lo: float | None  # the window a blocking `a...b` call must return in
    end_hi: float | None


# ==========================================================================
# One script against one stack
# ==========================================================================


class Execution:
    """One script against one fresh stack; ``run()`` raises on the first mismatch."""

    def __init__(self, script: Script, opts: RunOptions) -> None:
        self.script = script
        self.opts = opts
        self.strict = opts.strict
        tol = opts.tolerance_usecs if opts.tolerance_usecs is not None else (
            script.tolerance_usecs if script.tolerance_usecs is not None
            else DEFAULT_TOLERANCE_USECS)
        self.tol = tol / 1e6
        if script.ip_version not in (None, "ipv4"):
            raise ScriptError(script.path, 0, f"--ip_version={script.ip_version}: the runner "
                                              "plays IPv4 only")
        mtu = 1500
        if "mtu" in script.options:
            try:
                mtu = int(script.options["mtu"])
            except ValueError:
                raise ScriptError(script.path, 0, "--mtu is not a number") from None
            if not 68 <= mtu <= 65535:
                raise ScriptError(script.path, 0, f"--mtu={mtu} out of range (68..65535)")
        self.now = 0.0
        self.dev: PipeDevice
        self.wire: PipeDevice
        # The link carries whatever a script injects (packetdrill writes to a
        # tun device, which takes a segment of any size); the stack's own
        # interface MTU is the script's --mtu, which is what sets its MSS.
        self.dev, self.wire = pipe_pair(LINK_MTU, queue_len=4096, names=("ustack", "peer"))
        self.stack = Stack()
        iface = self.stack.add_interface(self.dev, f"{STACK_IP}/24", mac=STACK_MAC)
        iface.mtu = mtu
        iface.arp.add_static(socket.inet_aton(PEER_IP), PEER_MAC)
        self.ep = packets.Endpoints(STACK_MAC, PEER_MAC, socket.inet_aton(STACK_IP),
                                    socket.inet_aton(PEER_IP))
        self.flow = Flow()
        self.sys = Syscalls(self.stack, PEER_IP, self.flow, script.path, lambda: self.now,
                            strict=opts.strict)
        self.out: deque[packets.Sent] = deque()
        self.pending: _Pending | None = None
        self.ts_offset: int | None = None  # stack TSval - script TSval
        self.line = 0  # the event being played
        self._ident = 0
        self._step()
        self.out.clear()  # the gratuitous ARP (not IPv4 anyway)

    def close(self) -> None:
        self.stack.close()
        self.wire.close()

    # -- the clock ------------------------------------------------------------------

    def _step(self) -> None:
        """Let the stack run at ``now``: take frames, fire timers, retry a blocked call."""
        st = self.stack
        st.poll(self.now)
        while self.dev.queued():
            st.poll(self.now)
        self._drain()
        for _ in range(64):
            if self.pending is None or not self._retry_pending():
                break
            st.flush()
            self._drain()

    def _drain(self) -> None:
        now = self.now
        while True:
            frames = self.wire.recv_batch(256, now)
            if not frames:
                return
            for f in frames:
                p = packets.parse_frame(bytes(f), now)
                if p is not None:
                    self.out.append(p)

    def _next_wake(self) -> float | None:
        d = self.stack.next_deadline()
        p = self.pending
        if p is not None and p.call.wake_at is not None and (d is None or p.call.wake_at < d):
            d = p.call.wake_at
        return d

    def _advance(self, t: float) -> None:
        """Move the clock to ``t``, stopping at every deadline on the way."""
        for _ in range(1_000_000):
            d = self._next_wake()
            if d is None or d > t:
                break
            self.now = max(self.now, d)
            self._step()
        else:  # pragma: no cover - a timer that keeps re-arming in the past
            raise RuntimeError("the stack's timers never settle")
        if t > self.now:
            self.now = t
            self._step()

    def _advance_until(self, limit: float, done: Callable[[], bool]) -> None:
        """Move the clock deadline by deadline until ``done()`` or past ``limit``."""
        for _ in range(1_000_000):
            if done():
                return
            d = self._next_wake()
            if d is None or d > limit:
                return
            self.now = max(self.now, d)
            self._step()
        raise RuntimeError("the stack's timers never settle")  # pragma: no cover

    # -- the script -------------------------------------------------------------------

    def run(self) -> None:
        base = 0.0
        for ev in self.script.select(self.opts.defines).events:
            self.line = ev.line
            lo, hi = self._window(ev.time, base)
            a = ev.action
            if isinstance(a, (PacketEvent, IcmpEvent)) and a.direction == ">":
                actual = self._outbound(ev, lo, hi)
            else:
                if isinstance(a, SyscallEvent) and self.pending is not None:
                    self._finish_pending(lo + self.tol)
                if not math.isinf(lo):
                    self._advance(lo)
                actual = self.now
                self._execute(ev, a, lo)
            # packetdrill: relative times count from the script time of the
            # previous event, or from when it really happened if it had none.
            exact = ev.time.kind != "any" and ev.time.end is None
            base = lo if exact and not math.isinf(lo) else actual
        if self.pending is not None:
            self._finish_pending(self.now + self.tol)

    def _window(self, t: Time, base: float) -> tuple[float, float]:
        if t.kind == "any":
            return -math.inf, math.inf
        origin = base if t.kind == "relative" else 0.0
        start = origin + t.start
        return start, (origin + t.end if t.end is not None else start)

    def _trace(self, ev: Event, t: float, what: str) -> None:
        if self.opts.trace:
            print(f"{self.script.path}:{ev.line}: {t:.6f} {what}", file=sys.stderr)

    def _execute(self, ev: Event, a: object, lo: float) -> None:
        if self.opts.trace and not isinstance(a, (SyscallEvent, ShellEvent)):
            self._trace(ev, self.now, "< " + _render_event(a) if isinstance(
                a, (PacketEvent, IcmpEvent)) else type(a).__name__)
        if isinstance(a, PacketEvent):
            self._inject_tcp(ev, a)
        elif isinstance(a, IcmpEvent):
            self._inject_icmp(ev, a)
        elif isinstance(a, SyscallEvent):
            self._syscall(ev, a, lo)
        elif isinstance(a, CodeEvent):
            self._code(ev, a)
        elif isinstance(a, ShellEvent):
            pass  # FreeBSD sysctl and friends: nothing to do against ustack
        # What the event made the stack send leaves now (the flush after an
        # application call), and a blocked call may have become ready.
        self._step()

    # -- outbound packets ------------------------------------------------------------------

    def _outbound(self, ev: Event, lo: float, hi: float) -> float:
        a = ev.action
        tol = self.tol
        limit = (self.now + MAX_WAIT) if math.isinf(hi) else hi + tol
        self._advance_until(limit, lambda: bool(self.out))
        if not self.out:
            when = "" if math.isinf(lo) else f" at {lo:.6f}s"
            raise _Mismatch(ev.line, f"expected {_render_event(a)}{when}; the stack sent "
                                     f"nothing by {limit:.6f}s")
        p = self.out.popleft()
        if (isinstance(a, PacketEvent) and a.flag_bits & p.flags & _SYN and p.proto == 6
                and self.flow.local_isn is None):
            # The stack's ISN: every number of its side is relative to it.
            self.flow.local_isn = (p.seq - (a.seq_start or 0)) & _MASK
        if self.opts.trace:
            self._trace(ev, p.t, "> " + self._render(p))
        if not math.isinf(lo) and p.t < lo - tol:
            raise _Mismatch(ev.line, f"{self._render(p)} sent at {p.t:.6f}s, the script expects "
                                     f"it at {lo:.6f}s (tolerance {tol * 1e3:g} ms)")
        if p.t > limit:  # queued while the clock was already past this event
            raise _Mismatch(ev.line, f"{self._render(p)} sent late at {p.t:.6f}s")
        if not p.checksum_ok:
            raise _Mismatch(ev.line, f"{self._render(p)} has a bad IPv4 or TCP checksum")
        if isinstance(a, IcmpEvent):
            self._check_icmp(ev, a, p)
        elif isinstance(a, PacketEvent):
            self._check_tcp(ev, a, p)
        return p.t

    def _check_icmp(self, ev: Event, a: IcmpEvent, p: packets.Sent) -> None:
        if p.proto != 1 or (p.icmp_type, p.icmp_code) != (a.type_number, a.code_number):
            raise _Mismatch(ev.line, f"expected ICMP type {a.type_number} code "
                                     f"{a.code_number}, got {self._render(p)}")

    def _check_tcp(self, ev: Event, a: PacketEvent, p: packets.Sent) -> None:
        problem = self._tcp_differs(a, p)
        if problem is not None:
            raise _Mismatch(ev.line, f"{problem}: {self._render(p)}")
        ts = self._ts_of(p)
        if ts is not None and self.ts_offset is None and isinstance(a.options, list):
            for o in a.options:
                if o.kind == "TS" and o.value is not None:
                    self.ts_offset = (ts[0] - o.value) & _MASK

    def _tcp_differs(self, a: PacketEvent, p: packets.Sent) -> str | None:
        """The first field of ``p`` that is not what ``a`` says, or None."""
        if p.proto != 6:
            return "expected a TCP segment"
        flow = self.flow
        if (p.sport, p.dport) != (flow.local_port, flow.remote_port) or p.dst != self.ep.peer_ip:
            return (f"segment for another connection (ports {p.sport} > {p.dport}, expected "
                    f"{flow.local_port} > {flow.remote_port})")
        if p.flags != a.flag_bits:
            return f"flags {_flags(p.flags)}, expected {a.flags}"
        if a.seq_start is not None:
            want = a.seq_start if a.absolute_seq else self._local(a.seq_start)
            if p.seq != want & _MASK:
                return f"sequence number {self._rel_seq(p.seq)}, expected {a.seq_start}"
        if p.payload_len != a.length:
            return f"payload length {p.payload_len}, expected {a.length}"
        if a.ack is not None and p.flags & _ACK and p.ack != self._remote(a.ack):
            return f"acknowledgment number {self._rel_ack(p.ack)}, expected {a.ack}"
        if not self.strict:
            return None
        if a.win is not None and p.win != a.win:
            return f"window {p.win}, expected {a.win}"
        if a.ttl is not None and p.ttl != a.ttl:
            return f"TTL {p.ttl}, expected {a.ttl}"
        problem = self._options_differ(a, p)
        return None if problem is None else f"options: {problem}"

    def _options_differ(self, a: PacketEvent, p: packets.Sent) -> str | None:
        if isinstance(a.options, Wildcard):
            return None
        want = list(a.options or [])
        got = list(p.options)
        # EOL ends the list; what follows is padding (RFC 9293 3.1), so
        # ``eol,eol`` in a script and one EOL parsed off the wire agree.
        while want and want[-1].kind == "eol":
            want.pop()
        while got and got[-1][0] == 0:
            got.pop()
        kinds_w = [o.kind_number for o in want]
        kinds_g = [k for k, _ in got]
        if kinds_w != kinds_g:
            return f"<{_kind_names(kinds_g)}>, expected <{_kind_names(kinds_w)}>"
        for o, (_, data) in zip(want, got, strict=True):
            k = o.kind
            if k == "mss" and o.value is not None and data[:2] != o.value.to_bytes(2, "big"):
                return f"mss {int.from_bytes(data[:2], 'big')}, expected {o.value}"
            if k == "wscale" and o.value is not None and data[:1] != bytes((o.value,)):
                return f"wscale {data[0] if data else None}, expected {o.value}"
            if k == "sack":
                blocks = [(int.from_bytes(data[i:i + 4], "big"),
                           int.from_bytes(data[i + 4:i + 8], "big"))
                          for i in range(0, len(data) - 7, 8)]
                rel = [(self._rel_ack(left), self._rel_ack(right)) for left, right in blocks]
                if rel != list(o.blocks):
                    return f"sack {rel}, expected {list(o.blocks)}"
            if k == "TS" and o.ecr is not None and len(data) >= 8:
                ecr = int.from_bytes(data[4:8], "big")
                if ecr != o.ecr:
                    return f"TS ecr {ecr}, expected {o.ecr}"
        return None

    @staticmethod
    def _ts_of(p: packets.Sent) -> tuple[int, int] | None:
        for k, data in p.options:
            if k == 8 and len(data) >= 8:
                return int.from_bytes(data[:4], "big"), int.from_bytes(data[4:8], "big")
        return None

    # Sequence-space mapping (script numbers are relative to the ISNs).
    def _local(self, n: int) -> int:
        return ((self.flow.local_isn or 0) + n) & _MASK

    def _remote(self, n: int) -> int:
        return (PEER_ISN + n) & _MASK

    def _rel_seq(self, n: int) -> int:
        return (n - (self.flow.local_isn or 0)) & _MASK

    def _rel_ack(self, n: int) -> int:
        return (n - PEER_ISN) & _MASK

    def _render(self, p: packets.Sent) -> str:
        if p.proto == 1:
            return f"icmp type {p.icmp_type} code {p.icmp_code}"
        s = f"{_flags(p.flags)} {self._rel_seq(p.seq)}:{self._rel_seq(p.seq + p.payload_len)}"
        s += f"({p.payload_len})"
        if p.flags & _ACK:
            s += f" ack {self._rel_ack(p.ack)}"
        return s + f" win {p.win}"

    # -- inbound packets ---------------------------------------------------------------------

    def _inject_tcp(self, ev: Event, a: PacketEvent) -> None:
        if a.udp_encap is not None:
            raise _Mismatch(ev.line, "UDP encapsulation (/udp) is not supported by ustack")
        if a.seq_start is None:
            raise ScriptError(self.script.path, ev.line, "an inbound segment needs a sequence "
                                                         "number, not '...'")
        flow = self.flow
        seq = a.seq_start if a.absolute_seq else self._remote(a.seq_start)
        ack = self._local(a.ack) if a.ack is not None else 0
        # A TS echo reply names one of the stack's TSvals as the script wrote
        # it; the stack's clock is its own, so shift it by what the first
        # outbound TSval showed (not in a SYN: its ecr is 0, RFC 7323 3.2).
        offset = 0 if self.ts_offset is None or a.flag_bits & (_SYN | _ACK) == _SYN else (
            self.ts_offset)
        try:
            opts = b"" if not isinstance(a.options, list) else packets.encode_options(
                a.options, self._local, lambda ecr: (ecr + offset) & _MASK)
        except ValueError as e:
            raise ScriptError(self.script.path, ev.line, str(e)) from None
        tos = {"ect0": 2, "ect1": 1, "ect01": 3, "ce": 3}.get(a.ecn or "", 0)
        self._ident = (self._ident + 1) & 0xFFFF
        frame = packets.tcp_frame(self.ep, flow.remote_port, flow.local_port, seq, ack,
                                  a.flag_bits, 65535 if a.win is None else a.win, opts,
                                  bytes(a.length), ttl=64 if a.ttl is None else a.ttl,
                                  tos=tos, ident=self._ident)
        self._inject(frame)

    def _inject_icmp(self, ev: Event, a: IcmpEvent) -> None:
        flow = self.flow
        seq = self._local(a.seq_start or 0)
        rest = 0
        if a.mtu is not None:
            rest = a.mtu & 0xFFFF  # RFC 1191: next-hop MTU in the low 16 bits
        elif a.type_number == 5:
            rest = int.from_bytes(self.ep.peer_ip, "big")  # redirect: the gateway
        self._ident = (self._ident + 1) & 0xFFFF
        quote = packets.quoted_tcp_header(flow.local_port, flow.remote_port, seq)
        self._inject(packets.icmp_frame(self.ep, a.type_number, a.code_number, rest, quote,
                                        ident=self._ident))

    def _inject(self, frame: bytes) -> None:
        if self.wire.send_batch([frame], self.now) != 1:  # pragma: no cover - 4096-deep queue
            raise RuntimeError("the link refused a frame")
        self._step()

    # -- system calls ------------------------------------------------------------------------

    def _syscall(self, ev: Event, a: SyscallEvent, lo: float) -> None:
        call = self.sys.start(a, ev.line)
        end_lo = end_hi = None
        if a.end_time is not None:
            end_lo, end_hi = self._window(a.end_time, lo)
        result = call.attempt()
        if result is None:
            self.pending = _Pending(ev, call, self.now, end_lo, end_hi)
            return
        self._check_result(ev, a, result, end_lo, end_hi)

    def _retry_pending(self) -> bool:
        """Try the blocked call again; True when it returned (and was checked)."""
        p = self.pending
        assert p is not None
        result = p.call.attempt()
        if result is None:
            return False
        self.pending = None
        assert isinstance(p.event.action, SyscallEvent)
        self._check_result(p.event, p.event.action, result, p.end_lo, p.end_hi)
        return True

    def _finish_pending(self, limit: float) -> None:
        """Wait for the blocked call to return, at the latest by ``limit``."""
        p = self.pending
        assert p is not None
        if p.end_hi is not None:
            limit = p.end_hi + self.tol
        self._advance_until(limit, lambda: self.pending is None)
        if self.pending is not None:
            a = p.event.action
            name = a.name if isinstance(a, SyscallEvent) else "call"
            raise _Mismatch(p.event.line, f"{name}() blocked from {p.started:.6f}s and had "
                                          f"not returned by {limit:.6f}s")

    def _check_result(self, ev: Event, a: SyscallEvent, r: SysResult, end_lo: float | None,
                      end_hi: float | None) -> None:
        line = ev.line
        got = f"{r.ret}" + (f" {errno_name(r.err)}" if r.err else "")
        if self.opts.trace:
            self._trace(ev, self.now, f"{a.name}() = {got}")
        exp = a.expect
        want_ret = exp.value if isinstance(exp, Int) else None
        if not isinstance(exp, (Int, Wildcard)):
            raise ScriptError(self.script.path, line, f"the expected return value of {a.name}() "
                                                      f"must be a number or '...', not {exp}")
        want = f"{exp}" + (f" {a.errno}" if a.errno else "")
        if want_ret is not None and r.ret != want_ret:
            raise _Mismatch(line, f"{a.name}() returned {got}, expected {want}")
        if a.errno is not None and r.err != self.sys.errno_value(a.errno, line):
            raise _Mismatch(line, f"{a.name}() returned {got}, expected {want}")
        if r.detail is not None:
            raise _Mismatch(line, r.detail)
        if end_lo is not None and end_hi is not None:
            t = self.now
            if not end_lo - self.tol <= t <= end_hi + self.tol:
                raise _Mismatch(line, f"{a.name}() returned at {t:.6f}s, the script expects "
                                      f"{end_lo:.6f}s")

    # -- %{ }% ----------------------------------------------------------------------------

    def _code(self, ev: Event, a: CodeEvent) -> None:
        body = a.code.strip()
        if body.startswith("%{"):
            body = body[2:]
        if body.endswith("}%"):
            body = body[:-2]
        for stmt in filter(None, (s.strip() for s in re.split(r"[\n;]", body))):
            m = _TCPI.fullmatch(stmt)
            if m is None:
                raise ScriptError(self.script.path, ev.line,
                                  f"unsupported code block statement {stmt!r} (only "
                                  "'assert tcpi_state == TCPI_...')")
            name = _TCPI_ALIASES.get(m.group(1), m.group(1))
            try:
                want = State[name]
            except KeyError:
                raise ScriptError(self.script.path, ev.line,
                                  f"unknown TCP state TCPI_{m.group(1)}") from None
            got = self.sys.tcp_state()
            if got is not want:
                shown = "no socket" if got is None else f"TCPI_{got.name}"
                raise _Mismatch(ev.line, f"tcpi_state is {shown}, expected TCPI_{want.name}")


_KIND_NAMES = {v: k for k, v in TCP_OPTION_KINDS.items()}


def _kind_names(kinds: list[int]) -> str:
    return ",".join(_KIND_NAMES.get(k, str(k)) for k in kinds)


def _flags(bits: int) -> str:
    s = "".join(ch for ch, b in _FLAG_LETTERS if bits & b and ch != ".")
    return s + "." if bits & _ACK else (s or "-")


def _render_event(a: object) -> str:
    if isinstance(a, PacketEvent):
        seq = "..." if a.seq_start is None else f"{a.seq_start}:{a.seq_end}"
        s = f"{a.flags} {seq}({a.length})"
        return s + (f" ack {a.ack}" if a.ack is not None else "")
    if isinstance(a, IcmpEvent):
        return f"icmp {a.icmp_type} {a.code or ''}".rstrip()
    return type(a).__name__  # pragma: no cover


def run_script(script: Script, opts: RunOptions | None = None) -> Outcome:
    """Play one parsed script against a fresh stack; never raises.

    An exception from the stack itself (a ustack bug) is an ``error`` at the
    line being played, so one broken script does not stop a run.
    """
    o = opts or RunOptions()
    try:
        ex = Execution(script, o)
    except ScriptError as e:
        return Outcome(script.path, "error", e.line, e.message)
    except Exception as e:
        return Outcome(script.path, "error", 0, f"internal error: {type(e).__name__}: {e}")
    try:
        ex.run()
    except _Mismatch as m:
        return Outcome(script.path, "fail", m.line, m.message)
    except ScriptError as e:
        return Outcome(script.path, "error", e.line, e.message)
    except Exception as e:
        return Outcome(script.path, "error", ex.line,
                       f"internal error: {type(e).__name__}: {e}")
    finally:
        ex.close()
    return Outcome(script.path, "pass")
