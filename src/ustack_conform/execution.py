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
  ``--tolerance_usecs`` (default 4 ms), and the IP TTL and TOS when the
  line writes ``(ttl N)`` or ``(tos N)``.  ``strict`` mode also compares
  the window in bytes (each side's window scale applied; FreeBSD's buffer,
  rounded up to a multiple of the MSS, may make it larger by less than an
  MSS) and the options by kind and value, NOP/EOL padding and order aside
  (MSS, SACK blocks, the timestamp echo; a TSval follows the stack's clock
  and the window-scale shift is the receiver's choice: neither is
  compared), and the buffer sizes getsockopt reports.  ``--non_fatal``
  (packetdrill's; the option or a script's header) notes the mismatches of
  the kinds it names (``packet``, ``syscall``) in ``Outcome.notes`` and
  goes on.
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
* ``sysctl`` lines set the layer's TCP defaults (``sysctl.apply``: the ones
  ustack has an equivalent for; the others and any other shell command are
  noted in ``Outcome.notes``).  ``%{ assert tcpi_... }%`` blocks
  (``tcpinfo``: ``tcpi_state``, ``tcpi_options`` ...) are checked against
  the last socket a call used, even after close() (the orphan's state: an
  extension of ours).
"""

from __future__ import annotations

import math
import socket
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

from ustack.link.pipe import PipeDevice, pipe_pair
from ustack.stack import Stack
from ustack.wire import tcp as wtcp
from ustack_conform import packets, sysctl, tcpinfo
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
NON_FATAL_KINDS = frozenset({"packet", "syscall"})  # packetdrill's --non_fatal values
MAX_WAIT = 3600.0  # how far past the script a `*` or blocked event may wait (script seconds)
_MASK = 0xFFFFFFFF
_SYN, _ACK = wtcp.SYN, wtcp.ACK
_FLAG_LETTERS = (("F", wtcp.FIN), ("S", wtcp.SYN), ("R", wtcp.RST), ("P", wtcp.PSH),
                 (".", wtcp.ACK), ("U", wtcp.URG), ("E", wtcp.ECE), ("W", wtcp.CWR))
_ECN_BITS = {"noecn": 0, "ect0": 2, "ect1": 1, "ect01": 3, "ce": 3}



@dataclass(frozen=True)
class RunOptions:
    strict: bool = False
    defines: frozenset[str] = DEFAULT_DEFINES
    tolerance_usecs: int | None = None  # overrides the scripts' own
    trace: bool = False  # print every event as it runs (stderr)
    # packetdrill's --non_fatal: the kinds of mismatch ("packet", "syscall")
    # that are noted (Outcome.notes) instead of failing the script; a script's
    # own --non_fatal header adds to these.
    non_fatal: frozenset[str] = frozenset()


class Outcome(NamedTuple):
    """How one script went: ``status`` pass/fail/error, where (``line``) and why."""

    path: str
    status: Literal["pass", "fail", "error"]
    line: int = 0
    message: str = ""
    # What the runner left out or let pass on the way (sysctls it could not
    # honour, shell commands it did not run, non-fatal mismatches).
    notes: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.status == "pass":
            soft = sum(1 for n in self.notes if "non-fatal" in n)
            return f"pass  {self.path}" + (f" ({soft} non-fatal mismatches)" if soft else "")
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
        kinds = {k.strip() for k in script.options.get("non_fatal", "").split(",") if k.strip()}
        unknown = kinds - NON_FATAL_KINDS
        if unknown:
            raise ScriptError(script.path, 0, f"--non_fatal={','.join(sorted(unknown))}: "
                                              f"expected {' or '.join(sorted(NON_FATAL_KINDS))}")
        self.non_fatal = opts.non_fatal | kinds
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
        if "mtu" in script.options:
            # The MSS a host advertises is its interface's MTU less the IPv4
            # and TCP headers (RFC 9293 3.7.1); TcpConfig.mss, Ethernet's by
            # default, caps it, so --mtu sets it too.
            self.stack.tcp.config.mss = mtu - 40
        iface.arp.add_static(socket.inet_aton(PEER_IP), PEER_MAC)
        self.ep = packets.Endpoints(STACK_MAC, PEER_MAC, socket.inet_aton(STACK_IP),
                                    socket.inet_aton(PEER_IP))
        self.flow = Flow()
        self.sys = Syscalls(self.stack, PEER_IP, self.flow, script.path, lambda: self.now,
                            strict=opts.strict)
        self.out: deque[packets.Sent] = deque()
        self.pending: _Pending | None = None
        self.ts_offset: int | None = None  # stack TSval - script TSval
        # Window scale shifts (RFC 7323 2): the stack's SYN's, the script's
        # line for it, the script peer's SYN's; None: no option.
        self.ws_stack: int | None = None
        self.ws_script: int | None = None
        self.ws_peer: int | None = None
        self.mss_peer = 0  # the MSS option of the script peer's SYN (0: none yet)
        self.stack_mtu = mtu
        self.line = 0  # the event being played
        self.notes: list[str] = []  # what the runner left out or let pass (see Outcome)
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
            self._shell(ev, a)
        # What the event made the stack send leaves now (the flush after an
        # application call), and a blocked call may have become ready.
        self._step()

    def _shell(self, ev: Event, a: ShellEvent) -> None:
        """A backtick command: ``sysctl`` sets the layer's defaults; others are noted."""
        cmd = a.command.strip()
        if not cmd:
            return
        if sysctl.is_sysctl(cmd):
            for n in sysctl.apply(cmd, self.stack.tcp.config):
                self.note(ev, n)
        else:
            self.note(ev, f"`{cmd}` not run (the runner plays sysctl lines only)")

    def note(self, ev: Event, text: str) -> None:
        self.notes.append(f"{ev.line}: {text}")
        self._trace(ev, self.now, "note: " + text)

    # -- outbound packets ------------------------------------------------------------------

    def _outbound(self, ev: Event, lo: float, hi: float) -> float:
        try:
            return self._take_outbound(ev, lo, hi)
        except _Mismatch as m:
            if "packet" not in self.non_fatal:
                raise
            # --non_fatal=packet: noted; the packet (if any) is consumed and
            # the script goes on, as packetdrill does.
            self.note(ev, f"non-fatal packet mismatch: {m.message}")
            return self.now

    def _take_outbound(self, ev: Event, lo: float, hi: float) -> float:
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
        if p.proto == 6 and p.flags & _SYN:
            self.ws_stack = next((d[0] for k, d in p.options if k == 3 and d), None)
            self.ws_script = (next((o.value for o in a.options if o.kind == "wscale"), None)
                              if isinstance(a.options, list) else self.ws_stack)
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
        if a.ttl is not None and p.ttl != a.ttl:
            return f"TTL {p.ttl}, expected {a.ttl}"
        if a.tos is not None and p.tos != a.tos:
            # (ttl N) and (tos N) are written on the line for a reason, so both
            # modes compare them, as packetdrill does.
            return f"TOS {p.tos:#04x}, expected {a.tos:#04x}"
        if a.ecn is not None and a.ecn != "ect01" and p.tos & 3 != _ECN_BITS[a.ecn]:
            return f"ECN bits {p.tos & 3}, expected [{a.ecn}]"
        if a.ecn == "ect01" and p.tos & 3 not in (1, 2):
            return f"ECN bits {p.tos & 3}, expected [ect01] (ECT(0) or ECT(1))"
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
        problem = self._window_differs(a, p)
        if problem is not None:
            return problem
        problem = self._options_differ(a, p)
        return None if problem is None else f"options: {problem}"

    def _options_differ(self, a: PacketEvent, p: packets.Sent) -> str | None:
        """Strict mode: the options of ``p`` are those of ``a``, by kind and value.

        NOP and EOL are padding (RFC 9293 3.1) and the order of the options
        is the sender's choice, so neither is compared: each kind written
        must be sent once, none other, with the value written.  The window
        scale shift is not compared: it is the receiver's choice from its
        buffer limit (RFC 7323 2.3; FreeBSD sizes it from kern.ipc.maxsockbuf,
        ustack from the socket's buffer), and what it does shows in the
        windows, which strict mode compares in bytes (``_window_differs``).
        A TSval follows the stack's clock and is not compared either.
        """
        if isinstance(a.options, Wildcard):
            return None
        want = [o for o in a.options or [] if o.kind not in ("nop", "eol")]
        got = [(k, d) for k, d in p.options if k not in (0, 1)]
        kinds_w = sorted(o.kind_number for o in want)
        kinds_g = sorted(k for k, _ in got)
        if kinds_w != kinds_g:
            return (f"<{_kind_names([k for k, _ in got])}>, expected "
                    f"<{_kind_names([o.kind_number for o in want])}> (padding and order aside)")
        by_kind = {k: d for k, d in got}
        for o in want:
            data = by_kind[o.kind_number]
            k = o.kind
            if k == "mss" and o.value is not None and data[:2] != o.value.to_bytes(2, "big"):
                return f"mss {int.from_bytes(data[:2], 'big')}, expected {o.value}"
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

    def _mss(self) -> int:
        """The connection's MSS: the peer's offer capped by our MTU (RFC 9293 3.7.1)."""
        own = self.stack_mtu - 40
        return min(own, self.mss_peer) if self.mss_peer else own

    def _window_differs(self, a: PacketEvent, p: packets.Sent) -> str | None:
        """Strict mode: the window of ``p`` is the one ``a`` writes, in bytes.

        Both sides' windows are taken with their own scale: the shift the
        stack sent in its SYN, and the one the script wrote on that line,
        once both SYNs carried the option (RFC 7323 2.2; never in a SYN).
        """
        if a.win is None:
            return None
        scaled = not p.flags & _SYN and self.ws_peer is not None and self.ws_stack is not None
        got = p.win << (self.ws_stack or 0 if scaled else 0)
        want = a.win << (self.ws_script or 0 if scaled else 0)
        if got == want:
            return None
        if 0 < want - got < self._mss():
            # FreeBSD rounds its receive buffer up to a multiple of the MSS
            # when the connection is set up (tcp_input.c, tcp_mss()), so its
            # window is larger than one from the size the script set by less
            # than an MSS; ustack keeps the size it was given.
            return None
        return f"window {p.win} ({got} bytes), expected {a.win} ({want} bytes)"

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
        if a.flag_bits & _SYN:
            listed = a.options if isinstance(a.options, list) else []
            self.ws_peer = next((o.value for o in listed if o.kind == "wscale"), None)
            self.mss_peer = next((o.value or 0 for o in listed if o.kind == "mss"), 536)
        tos = a.tos or 0
        if a.ecn is not None:  # the ECN field is the TOS byte's two low bits (RFC 3168 5)
            tos = (tos & ~3) | _ECN_BITS[a.ecn]
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
            if "syscall" in self.non_fatal:
                self.pending = None
                self.note(p.event, f"non-fatal syscall mismatch: {name}() blocked from "
                                   f"{p.started:.6f}s and had not returned by {limit:.6f}s")
                return
            raise _Mismatch(p.event.line, f"{name}() blocked from {p.started:.6f}s and had "
                                          f"not returned by {limit:.6f}s")

    def _check_result(self, ev: Event, a: SyscallEvent, r: SysResult, end_lo: float | None,
                      end_hi: float | None) -> None:
        try:
            self._compare_result(ev, a, r, end_lo, end_hi)
        except _Mismatch as m:
            if "syscall" not in self.non_fatal:
                raise
            self.note(ev, f"non-fatal syscall mismatch: {m.message}")

    def _compare_result(self, ev: Event, a: SyscallEvent, r: SysResult, end_lo: float | None,
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
        """``%{ assert tcpi_... }%``: checked against the last socket a call used,
        even after close() (the orphan's state: an extension of ours)."""
        body = a.code.strip()
        if body.startswith("%{"):
            body = body[2:]
        if body.endswith("}%"):
            body = body[:-2]
        names = tcpinfo.info(self.sys.last_socket(), self.sys.tcp_state())
        try:
            tcpinfo.check_block(body.replace(";", "\n"), names)
        except tcpinfo.UnsupportedCode as e:
            raise ScriptError(self.script.path, ev.line, str(e)) from None
        except tcpinfo.AssertFailed as e:
            raise _Mismatch(ev.line, str(e)) from None


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
        return Outcome(script.path, "fail", m.line, m.message, tuple(ex.notes))
    except ScriptError as e:
        return Outcome(script.path, "error", e.line, e.message)
    except Exception as e:
        return Outcome(script.path, "error", ex.line,
                       f"internal error: {type(e).__name__}: {e}")
    finally:
        ex.close()
    return Outcome(script.path, "pass", notes=tuple(ex.notes))
