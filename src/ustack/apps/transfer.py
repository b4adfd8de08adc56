"""Stream a file to or from a TCP server over a ustack Stack (``ustack tcp``).

``send`` connects, writes the whole stream, half-closes and waits until the
peer has acknowledged everything including our FIN; ``recv`` connects and
writes what arrives until the peer's FIN.  Both fail with the socket error
(ConnectionRefusedError, ConnectionResetError, TimeoutError ...) and time
out when nothing moves for ``timeout`` seconds.  A next hop that never
answers ARP while connecting fails as the kernel's connect() does: with
EHOSTUNREACH, "No route to host" (after ``ArpTable.TRIES`` requests).

The stream to send is read without ever blocking the stack's loop: a
pipe, a terminal or a socket is read when the loop sees it readable
(``Stack.add_reader``), one ``os.read`` per readiness (which then returns
at once), at most ``HIGH_WATER`` bytes ahead of what TCP took; a blocking
read there would stall ACKs, timers and signals for as long as the writer
on the other end of the pipe takes.  Its O_NONBLOCK flag is left alone: it
belongs to the open file description, which the shell's terminal often
shares between stdin, stdout and stderr (others would see it change, and a
process killed would leave it set).  A regular file is read directly (it
never blocks for long).

What arrives is written to the output stream; a write that fails (stdout a
closed pipe: ``| head``) ends the transfer like a network error, the
connection reset, the error naming the stream (``stdout: Broken pipe``).

``stop()`` of the stack (SIGINT, SIGTERM, by ``ustack.cli.common.
stop_on_signals``) ends the transfer early: ``interrupted`` is then True,
the connection is reset, and ``nbytes`` says how far it got.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable
from typing import BinaryIO

from ustack.stack import Stack
from ustack.tcp.connection import Event
from ustack.tcp.socket import TcpSocket, os_error
from ustack.tcp.states import State
from ustack.wire import ipv4

CHUNK = 256 * 1024
# Read ahead of TCP from a non-blocking stream at most this much: the
# reader is paused above it (flow control reaches the pipe's writer).
HIGH_WATER = 4 * CHUNK


def parse_endpoint(text: str) -> tuple[str, int]:
    """``"198.18.0.1:5001"`` -> ``("198.18.0.1", 5001)``; ValueError if malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdecimal() or not 0 < int(port) < 65536:
        raise ValueError(f"expected IP:PORT, got {text!r}")
    ipv4.addr_from_str(host)
    return host, int(port)


def stream_size(stream: BinaryIO) -> int | None:
    """The bytes left to read in ``stream`` when it is a regular file, else None."""
    try:
        fd = stream.fileno()
        st = os.fstat(fd)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    try:
        return max(0, st.st_size - os.lseek(fd, 0, os.SEEK_CUR))
    except OSError:
        return st.st_size


def _pollable_fd(stream: BinaryIO) -> int | None:
    """``stream``'s descriptor when reading it may block (a pipe, terminal,
    socket), so it is read when readable; None for a regular file or a
    stream without one (read directly)."""
    try:
        fd = stream.fileno()
        mode = os.fstat(fd).st_mode
    except (OSError, ValueError):
        return None
    return None if stat.S_ISREG(mode) or stat.S_ISBLK(mode) else fd


class Transfer:
    def __init__(self, stack: Stack, endpoint: tuple[str, int], direction: str,
                 stream: BinaryIO, *, timeout: float = 30.0, stream_name: str = "") -> None:
        if direction not in ("send", "recv"):
            raise ValueError(f"direction must be send or recv, not {direction!r}")
        self.stack = stack
        self.endpoint = endpoint
        self.direction = direction
        self.stream = stream
        # What an error of the stream's names: "stdin", "stdout" or the file.
        self.stream_name = stream_name or getattr(stream, "name", "") or "the stream"
        self.timeout = timeout
        self.nbytes = 0
        self.seconds = 0.0
        # Ended by the stack's stop() (a signal) before the stream was whole.
        self.interrupted = False
        # Called with the byte count every ``progress_every`` seconds while
        # the transfer runs (a progress display).
        self.on_progress: Callable[[int], None] | None = None
        self.progress_every = 0.2
        # Read from the stream, not yet taken by TCP (bytes, not a buffer
        # cut in place: the send queue may keep views of what it took).
        self._pending = b""
        self._eof_in = False
        self._shut = False  # our FIN is queued (shutdown_write)
        self._done = False
        self._error: OSError | None = None
        self._last_progress = 0.0
        self._start = 0.0
        self._sock: TcpSocket | None = None
        self._fd: int | None = None  # a stream read when readable
        self._reading = False  # the fd is registered with the stack
        self._arp_failed = 0

    def run(self) -> None:
        stack = self.stack
        self._start = self._last_progress = time.monotonic()
        stack.start(self._start)
        self._arp_failed = stack.counters.ArpResolveFailed
        sock = self._sock = stack.tcp_connect(self.endpoint)
        sock.on_event = self._on_event
        if self.direction == "send":
            self._fd = _pollable_fd(self.stream)
            if self._fd is not None:
                self._resume_reading()
        if self.on_progress is not None:
            stack.call_at(self._start + self.progress_every, self._tick)
        try:
            stack.run(until=self._finished, max_wait=0.2)
        finally:
            self._pause_reading()
        self.seconds = time.monotonic() - self._start
        if self._error is not None or not self._done:
            # Failed, or interrupted (stack.stop() by a signal): the peer
            # learns at once, as from a process killed on the kernel.
            self.interrupted = self._error is None
            sock.abort()
            stack.flush()
            if self._error is not None:
                if self._error.filename is None:  # say which peer
                    self._error.filename = f"{self.endpoint[0]}:{self.endpoint[1]}"
                raise self._error
            return
        conn = sock.conn
        sock.close()
        # Our FIN must be acknowledged (RFC 9293 3.10.4: it is retransmitted
        # like data); keep the stack running until it is, within the timeout.
        deadline = time.monotonic() + self.timeout
        stack.run(until=lambda: conn.fin_acked or conn.state in (State.TIME_WAIT, State.CLOSED)
                  or time.monotonic() > deadline, max_wait=0.2)

    def _tick(self, now: float) -> None:
        if self._done or self._error is not None or self.on_progress is None:
            return
        self.on_progress(self.nbytes)
        self.stack.call_at(now + self.progress_every, self._tick)

    def _finished(self) -> bool:
        if self._done or self._error is not None:
            return True
        sock = self._sock
        connecting = sock is not None and sock.conn.state is State.SYN_SENT
        if connecting and self.stack.counters.ArpResolveFailed > self._arp_failed:
            # The next hop never answered ARP: the SYN cannot leave.  The
            # kernel fails connect() so, rather than retrying until it
            # times out.
            return self._fail(os_error(errno.EHOSTUNREACH))
        if self._waiting_for_input():
            # Nothing owed to the network: a slow writer is no stall.
            self._last_progress = time.monotonic()
        elif time.monotonic() - self._last_progress > self.timeout:
            if connecting and not self._next_hop_known():
                # Timed out before ARP gave up: the same cause.
                return self._fail(os_error(errno.EHOSTUNREACH))
            return self._fail(os_error(errno.ETIMEDOUT, f"no progress for {self.timeout:g} s"))
        return False

    def _fail(self, error: OSError) -> bool:
        self._error = error
        return True

    def _next_hop_known(self) -> bool:
        """Whether ARP has resolved the next hop towards the peer."""
        hop = self.stack.routes.lookup(ipv4.addr_from_str(self.endpoint[0]))
        return hop is not None and hop.addr in hop.iface.arp.entries

    def _waiting_for_input(self) -> bool:
        sock = self._sock
        return (self._fd is not None and not self._eof_in and not self._pending
                and sock is not None and sock.conn.state is State.ESTABLISHED
                and sock.conn.snd_una == sock.conn.snd_nxt)

    def _progress(self, n: int) -> None:
        if n:
            self.nbytes += n
            self._last_progress = time.monotonic()

    def _on_event(self, sock: TcpSocket, ev: Event) -> None:
        if ev in (Event.RESET, Event.TIMED_OUT) or (ev is Event.CLOSED and sock.conn.error):
            self._error = os_error(sock.conn.error or errno.ECONNRESET)
            return
        if self.direction == "send":
            self._pump_send(sock)
        else:
            self._pump_recv(sock)

    # -- reading the stream to send -----------------------------------------

    def _resume_reading(self) -> None:
        if self._fd is not None and not self._reading and not self._eof_in:
            self.stack.add_reader(self._fd, self._on_readable)
            self._reading = True

    def _pause_reading(self) -> None:
        if self._fd is not None and self._reading:
            self.stack.remove_reader(self._fd)
            self._reading = False

    def _on_readable(self) -> None:
        """One read of what the stream has now: the loop saw it readable, so
        the read returns at once (a second one could wait)."""
        assert self._fd is not None
        try:
            data = os.read(self._fd, CHUNK)
        except BlockingIOError:  # (someone else took it first)
            data = None
        except OSError as e:
            self._error = self._named(e)
            return
        if data is not None:
            if data:
                self._pending += data
            else:
                self._eof_in = True
        if self._eof_in or len(self._pending) >= HIGH_WATER:
            self._pause_reading()
        if self._sock is not None:
            self._pump_send(self._sock)

    def _named(self, e: OSError) -> OSError:
        """``e`` naming the stream (``stdin``, ``stdout`` or the file), not the peer."""
        if e.filename is None:
            e.filename = self.stream_name
        return e

    def _fill(self) -> None:
        """More to send from a stream read directly (a regular file)."""
        try:
            data = self.stream.read(CHUNK)
        except OSError as e:
            self._error = self._named(e)
            self._eof_in = True
            return
        if data:
            self._pending += data
        else:
            self._eof_in = True

    def _pump_send(self, sock: TcpSocket) -> None:
        conn = sock.conn
        if conn.state is State.SYN_SENT:
            return
        while True:
            if not self._pending:
                if self._eof_in:
                    break
                if self._fd is not None:
                    self._resume_reading()  # more when the stream has it
                    return
                self._fill()
                if self._error is not None:
                    return
                continue
            try:
                n = sock.send(self._pending)
            except BlockingIOError:
                return
            self._pending = self._pending[n:]
            self._progress(n)
        if not self._shut:
            self._shut = True
            sock.shutdown_write()
        # Done when the peer acknowledged every byte and our FIN.
        if conn.fin_acked or conn.state in (State.TIME_WAIT, State.CLOSED):
            self._done = True

    def _pump_recv(self, sock: TcpSocket) -> None:
        while True:
            try:
                data = sock.recv(CHUNK)
            except BlockingIOError:
                return
            if not data:
                try:
                    self.stream.flush()
                except OSError as e:
                    self._error = self._named(e)
                    return
                self._done = True
                return
            try:
                self.stream.write(data)
            except OSError as e:  # stdout a closed pipe, a full disk
                self._error = self._named(e)
                return
            self._progress(len(data))
