"""The native TCP API: listening and connected sockets on a Stack.

These objects live in the Stack's thread and never block.  A call never
runs application callbacks itself: it marks the socket for the Stack,
which transmits and delivers its events later in the same poll iteration,
so a callback is never re-entered from inside another call.  An application
either sets ``on_event`` (called from the poll loop with the socket and an
``Event``) or polls ``recv``/``send``; ``ustack.socket`` (api/socket/) and
``ustack.aio`` (api/aio/) are built on these.  Errors are the standard
library's exceptions with the same errno values (BlockingIOError,
ConnectionResetError, BrokenPipeError, TimeoutError, OSError(ENOTCONN) ...).
"""

from __future__ import annotations

import errno
import os
import select
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from ustack.net.host import Host
from ustack.net.sockaddr import Address
from ustack.tcp.config import OPTION_NAMES, TcpConfig
from ustack.tcp.connection import TcpConnection
from ustack.tcp.presegment import Presegmented
from ustack.tcp.segment import Event, TcpError
from ustack.tcp.states import SENDING, State
from ustack.wire import ipv4 as wip

if TYPE_CHECKING:
    from ustack.timers import Timer

# What a socket asks of its layer, handed over when the layer makes it
# (the layer's own tables, not the layer: tcp/layer.py imports this module).
Dirty = dict["TcpSocket", None]  # sockets to service before the next flush
OnTimer = Callable[["TcpSocket", float], None]  # the layer's timer handler


# poll(2) bits, as Linux reports them for a TCP socket.
POLLIN: Final = select.POLLIN
POLLOUT: Final = select.POLLOUT
POLLERR: Final = select.POLLERR
POLLHUP: Final = select.POLLHUP
POLLRDHUP: Final = 0x2000  # Linux's EPOLLRDHUP (not in the select module)
# A TCP socket neither connected nor listening (a fresh one, a closed
# listener): Linux's tcp_poll on TCP_CLOSE, "hung up" and writable (every
# call fails at once).  ustack.socket's and the packetdrill runner's
# unconnected sockets poll as this too.
POLL_UNCONNECTED: Final = POLLOUT | POLLHUP
_UNCONNECTED = frozenset({State.CLOSED, State.LISTEN})

_EXC: dict[int, type[OSError]] = {
    errno.ECONNRESET: ConnectionResetError,
    errno.ECONNREFUSED: ConnectionRefusedError,
    errno.ECONNABORTED: ConnectionAbortedError,
    errno.EPIPE: BrokenPipeError,
    errno.ETIMEDOUT: TimeoutError,
    errno.EAGAIN: BlockingIOError,
}


def os_error(code: int, message: str | None = None) -> OSError:
    """The exception the standard ``socket`` module raises for ``code``."""
    cls = _EXC.get(code, OSError)
    return cls(code, message or os.strerror(code))


class TcpSocket:
    """One connection, as the application holds it."""

    def __init__(self, host: Host, dirty: Dirty, on_timer: OnTimer, conn: TcpConnection,
                 listener: TcpListener | None = None) -> None:
        self._host = host
        self._dirty = dirty
        self.conn = conn
        self.listener = listener
        self.on_event: Callable[[TcpSocket, Event], None] | None = None
        self.timer: Timer | None = None  # the one Stack timer (TcpLayer.service)
        self.retransmits_counted = 0
        self.counted_estab = False
        self.counted_tw = False  # counted in TcpLayer.time_wait
        self.closed = False  # the application called close()
        # The layer let the connection go (TIME-WAIT kept as a record,
        # tcp/timewait.py): nothing of it is serviced again.
        self.detached = False
        self.shut_rd = False  # shutdown(SHUT_RD): the application reads no more
        # The layer's timer handler, one bound method for every socket: a
        # partial per socket was 200 bytes of an idle connection (issue 12).
        self._on_timer = on_timer

    def timer_callback(self, now: float) -> None:
        """The Stack timer's callback (``TcpLayer.service`` arms it, bound
        then: only when the connection's earliest deadline moves earlier)."""
        self._on_timer(self, now)

    # -- introspection ------------------------------------------------------

    @property
    def state(self) -> State:
        return self.conn.state

    def getsockname(self) -> Address:
        ip, port = self.conn.local
        return wip.addr_to_str(ip), port

    def getpeername(self) -> Address:
        if self.conn.state in (State.CLOSED, State.SYN_SENT) and not self.conn.peer_fin:
            raise os_error(errno.ENOTCONN)
        ip, port = self.conn.remote
        return wip.addr_to_str(ip), port

    def stats(self) -> dict[str, object]:
        return self.conn.stats()

    @property
    def error(self) -> int:
        """SO_ERROR: the pending error (0 when none)."""
        return self.conn.error or self.conn.soft_error

    def poll(self) -> int:
        """Readiness: the poll(2) mask, by the rule of Linux's ``tcp_poll``.

        Every front end (native callers, ``ustack.socket``'s descriptors,
        ``ustack.aio``'s transports) reads readiness here and nowhere else:

        - POLLERR: the connection failed (``error``, SO_ERROR);
        - POLLHUP: it is CLOSED, or shut down both ways;
        - POLLIN | POLLRDHUP: the peer's FIN arrived, SHUT_RD, or CLOSED
          (a read returns at once: end of stream or the error);
        - until the handshake is done (SYN-SENT, SYN-RECEIVED) nothing
          else; then POLLIN when data waits, and POLLOUT when the send
          buffer has room or sending is over (a write fails at once).

        A connection that reached CLOSED counts as shut down both ways, as
        Linux's ``tcp_done`` marks it (``sk_shutdown = SHUTDOWN_MASK``): a
        reset or refused connection polls IN|OUT|ERR|HUP|RDHUP there, and
        here (``tests/unit/test_tcp_readiness.py`` holds the two side by side).
        """
        c = self.conn
        st = c.state
        closed = st is State.CLOSED
        mask = POLLERR if c.error else 0
        rd_shut = c.peer_fin or self.shut_rd or closed
        wr_shut = c.fin_queued or closed
        if rd_shut and wr_shut:
            mask |= POLLHUP
        if rd_shut:
            mask |= POLLIN | POLLRDHUP
        if st is not State.SYN_SENT and st is not State.SYN_RECEIVED:
            if c.readable_bytes:
                mask |= POLLIN
            if wr_shut or c.send_space > 0:
                mask |= POLLOUT
        return mask

    def send_room(self) -> int:
        """How many bytes ``send`` would queue now, in full: the send
        buffer's free space while the connection is open for sending
        (ESTABLISHED or CLOSE-WAIT, no error, no FIN queued); 0 when a send
        would block or fail (ask ``send`` for which).

        Not ``poll()``'s POLLOUT, which also holds when a write fails at
        once (after a FIN, once CLOSED): a caller that queues data without
        hearing ``send``'s answer (``ustack.socket``'s posted send) asks
        this.  Safe from another thread under the GIL: one read per field.
        """
        c = self.conn
        st = c.state
        if (st is not State.ESTABLISHED and st is not State.CLOSE_WAIT) or c.error or \
                c.fin_queued or self.closed:
            return 0
        return c.send_space

    # -- data ---------------------------------------------------------------

    def send(self, data: bytes | bytearray | memoryview, *, force: bool = False) -> int:
        """Queue bytes; returns how many were taken (BlockingIOError if none).

        ``force`` takes all of ``data`` even beyond the send buffer's size
        (for a layer that already told its caller the bytes were sent).
        """
        c = self._sendable()
        try:
            n = c.send(data, self._host.now, force=force)
        except TcpError as e:
            raise os_error(e.errno) from None
        if n == 0 and len(data):
            raise os_error(errno.EAGAIN)
        self._dirty[self] = None
        return n

    def _sendable(self) -> TcpConnection:
        """The connection, if a send may be asked of it; else the error
        ``send`` raises (closed socket, the connection's error, not
        connected)."""
        if self.closed:
            raise os_error(errno.EBADF)
        c = self.conn
        if c.error:
            raise os_error(c.error)
        if c.state in _UNCONNECTED:
            raise os_error(errno.ENOTCONN if not c.peer_fin else errno.EPIPE)
        return c

    @property
    def mss(self) -> int:
        """The effective send MSS: the payload bytes the output cuts segments
        at now (the smaller of the peer's MSS and the path's, less the
        timestamp option: ``Tcb.set_mss``), what a ``Presegmented`` for this
        connection is cut at.  It can change (path MTU discovery, RFC 1191)."""
        return self.conn.mss

    def send_presegmented(self, p: Presegmented, first: int = 0) -> int:
        """Queue segments ``first``, ``first + 1`` ... of ``p`` by reference
        (no copy), whole segments while the send buffer has room, and one
        at least when it has any (so a response always progresses); returns
        the index of the next segment not queued (``len(p.sums)`` when all
        are).  Segments that leave on ``p``'s boundaries take its stored
        bytes and sums (``SendQueue.peek``; counted as TcpPresegmentedOut).
        Raises as ``send`` does: BlockingIOError when the buffer is full,
        BrokenPipeError after a shutdown, the connection's error.
        """
        if first < 0:
            raise ValueError(f"negative segment index {first}")
        c = self._sendable()
        if c.state not in SENDING or c.fin_queued:
            raise os_error(errno.EPIPE)  # as TcpConnection.send
        if first >= len(p.sums):
            return first
        n = c.sendq.append_static(p, first, c.cfg.sndbuf)
        if n == first:
            raise os_error(errno.EAGAIN)
        self._dirty[self] = None
        return n

    def recv(self, max_bytes: int = 65536) -> bytes:
        """Up to ``max_bytes`` bytes; b"" at end of stream.

        Raises BlockingIOError when nothing is there yet, the connection's
        error (ConnectionResetError, TimeoutError ...) when it failed.
        """
        if self.closed:
            raise os_error(errno.EBADF)
        c = self.conn
        if max_bytes < 0:
            raise ValueError("negative buffersize in recv")
        if self.shut_rd:
            return b""
        if c.rcvq.buf:
            data = c.recv(max_bytes)
            self._dirty[self] = None
            return data
        if c.error:
            raise os_error(c.error)
        if c.peer_fin or c.state is State.CLOSED:
            return b""
        raise os_error(errno.EAGAIN)  # nothing yet (also while still connecting)

    def shutdown_read(self) -> None:
        """shutdown(SHUT_RD): from now on ``recv`` returns end of stream and
        ``poll`` reports POLLIN | POLLRDHUP.  Nothing is sent (RFC 9293 has
        no half-close of the receive side; Linux sends nothing either)."""
        self._check_open()
        if self.conn.state is State.CLOSED and not self.conn.error:
            raise os_error(errno.ENOTCONN)
        self.shut_rd = True

    def shutdown_write(self) -> None:
        self._check_open()
        if self.conn.state in (State.CLOSED, State.LISTEN) and not self.conn.error:
            raise os_error(errno.ENOTCONN)
        self.conn.shutdown_write(self._host.now)
        self._dirty[self] = None

    def close(self) -> None:
        """Graceful close; the stack keeps the connection until it is done."""
        if self.closed:
            return
        self.closed = True
        self.on_event = None
        self.conn.close(self._host.now)
        self._dirty[self] = None

    def abort(self) -> None:
        """Reset the connection now (SO_LINGER with a zero timeout)."""
        self.closed = True
        self.on_event = None
        self.conn.abort(self._host.now)
        self._dirty[self] = None

    def set_keepalive(self, enabled: bool, idle: float | None = None,
                      interval: float | None = None, probes: int | None = None) -> None:
        """Keep-alives on or off, with new timings where given (seconds, count):
        ``TcpConnection.set_keepalive`` (RFC 1122 4.2.3.6) at the stack's time."""
        self.conn.set_keepalive(enabled, self._host.now, idle, interval, probes)
        self._dirty[self] = None  # the connection's timer moved

    def _check_open(self) -> None:
        if self.closed:
            raise os_error(errno.EBADF)

    def dispatch(self, ev: Event) -> None:
        """Tell the application of ``ev`` (the layer calls it; ``on_event``)."""
        cb = self.on_event
        if cb is not None:
            cb(self, ev)


class TcpListener:
    """A listening endpoint with its accept queue (RFC 9293 LISTEN)."""

    def __init__(self, listeners: dict[tuple[bytes, int], TcpListener], ip: bytes, port: int,
                 backlog: int) -> None:
        self._listeners = listeners  # the layer's table, which this one leaves on close
        self.ip = ip
        self.port = port
        self.backlog = max(1, backlog)
        self.accept_queue: deque[TcpSocket] = deque()
        # The connections in SYN-RECEIVED (the "SYN queue"): the sockets
        # themselves, not a count kept beside them, so the backlog can never
        # drift from what is there (a count missed a decrement and a listener
        # was refused for good: issue 11).
        self.half_open: set[TcpSocket] = set()
        self.on_accept: Callable[[TcpListener], None] | None = None
        self.closed = False
        # TcpConfig fields by name that connections accepted from here take
        # over the layer's defaults (socket options set on a listening
        # socket: Linux clones the listener into each new connection).
        self.options: dict[str, object] = {}
        # Its SYN cookie mode (tcp/cookies.py), -1 for the layer's; when it
        # last answered with one (mode on checks returning ACKs for two
        # minutes after).
        self.syncookies = -1
        self.cookie_sent = -1e9
        # The settings its cookie SYN-ACKs are made with when it has options
        # (``cookies.listener_settings``), and the layer's they were made from.
        self.cookie_cfg: TcpConfig | None = None
        self.cookie_base: TcpConfig | None = None

    @property
    def syn_received(self) -> int:
        """How many connections are in SYN-RECEIVED (the "SYN queue")."""
        return len(self.half_open)

    def set_options(self, **options: object) -> None:
        """Options for connections whose SYN arrives from now on, by ``TcpConfig``
        field name, as ``TcpLayer.connect`` takes them (``nodelay=True``,
        ``rcvbuf=...``, ``keepalive=True`` ...).  ``rcvbuf`` also sets the
        window scale the SYN-ACK offers (RFC 7323 2.2)."""
        for name in options:
            if name not in OPTION_NAMES:
                raise TypeError(f"unknown TCP option {name!r}")
        self.options.update(options)
        self.cookie_cfg = None

    def getsockname(self) -> Address:
        return wip.addr_to_str(self.ip), self.port

    def poll(self) -> int:
        """Readiness (Linux ``inet_csk_listen_poll``): POLLIN while a connection
        waits to be accepted.  Once closed, what Linux answers for a listener
        stopped by shutdown(SHUT_RD), a fresh unconnected socket again
        (``tcp_disconnect``): POLLOUT | POLLHUP (accept() fails at once)."""
        if self.closed:
            return POLL_UNCONNECTED
        return POLLIN if self.accept_queue else 0

    def accept(self) -> TcpSocket:
        """The next established connection, or BlockingIOError."""
        if self.closed:
            raise os_error(errno.EBADF)
        if not self.accept_queue:
            raise os_error(errno.EAGAIN)
        return self.accept_queue.popleft()

    def close(self) -> None:
        """Stop listening; connections not yet accepted are reset."""
        if self.closed:
            return
        self.closed = True
        key = (self.ip, self.port)
        if self._listeners.get(key) is self:
            del self._listeners[key]
        while self.accept_queue:
            self.accept_queue.popleft().abort()

    def established(self, sock: TcpSocket) -> None:
        """``sock``'s handshake completed: queue it for ``accept`` and tell the
        application (the layer calls it; ``on_accept``)."""
        self.accept_queue.append(sock)
        cb = self.on_accept
        if cb is not None:
            cb(self)
