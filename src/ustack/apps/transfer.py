"""Stream a file to or from a TCP server over a ustack Stack (``ustack tcp``).

``send`` connects, writes the whole stream, half-closes and waits until the
peer has acknowledged everything including our FIN; ``recv`` connects and
writes what arrives until the peer's FIN.  Both fail with the socket error
(ConnectionRefusedError, ConnectionResetError, TimeoutError ...) and time
out when nothing moves for ``timeout`` seconds.
"""

from __future__ import annotations

import errno
import time
from typing import BinaryIO

from ustack.stack import Stack
from ustack.tcp.connection import Event
from ustack.tcp.socket import TcpSocket, os_error
from ustack.tcp.states import State
from ustack.wire import ipv4

CHUNK = 256 * 1024


def parse_endpoint(text: str) -> tuple[str, int]:
    """``"198.18.0.1:5001"`` -> ``("198.18.0.1", 5001)``; ValueError if malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdecimal() or not 0 < int(port) < 65536:
        raise ValueError(f"expected IP:PORT, got {text!r}")
    ipv4.addr_from_str(host)
    return host, int(port)


class Transfer:
    def __init__(self, stack: Stack, endpoint: tuple[str, int], direction: str,
                 stream: BinaryIO, *, timeout: float = 30.0) -> None:
        if direction not in ("send", "recv"):
            raise ValueError(f"direction must be send or recv, not {direction!r}")
        self.stack = stack
        self.endpoint = endpoint
        self.direction = direction
        self.stream = stream
        self.timeout = timeout
        self.nbytes = 0
        self.seconds = 0.0
        self._pending = b""
        self._eof_in = False
        self._done = False
        self._error: OSError | None = None
        self._last_progress = 0.0
        self._start = 0.0

    def run(self) -> None:
        stack = self.stack
        self._start = self._last_progress = time.monotonic()
        stack.start(self._start)
        sock = stack.tcp_connect(self.endpoint)
        sock.on_event = self._on_event
        stack.run(until=self._finished, max_wait=0.2)
        self.seconds = time.monotonic() - self._start
        if self._error is not None:
            sock.abort()
            stack.flush()
            raise self._error
        conn = sock.conn
        sock.close()
        # Our FIN must be acknowledged (RFC 9293 3.10.4: it is retransmitted
        # like data); keep the stack running until it is, within the timeout.
        deadline = time.monotonic() + self.timeout
        stack.run(until=lambda: conn.fin_acked or conn.state in (State.TIME_WAIT, State.CLOSED)
                  or time.monotonic() > deadline, max_wait=0.2)

    def _finished(self) -> bool:
        if self._done or self._error is not None:
            return True
        if time.monotonic() - self._last_progress > self.timeout:
            self._error = os_error(errno.ETIMEDOUT, "no progress for "
                                   f"{self.timeout:g} s")
            return True
        return False

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

    def _pump_send(self, sock: TcpSocket) -> None:
        conn = sock.conn
        if conn.state is State.SYN_SENT:
            return
        while not self._eof_in:
            if not self._pending:
                self._pending = self.stream.read(CHUNK)
                if not self._pending:
                    self._eof_in = True
                    sock.shutdown_write()
                    break
            try:
                n = sock.send(self._pending)
            except BlockingIOError:
                return
            self._pending = self._pending[n:]
            self._progress(n)
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
                self.stream.flush()
                self._done = True
                return
            self.stream.write(data)
            self._progress(len(data))
