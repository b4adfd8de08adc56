"""What every part of ``Socket`` stands on: its state, its readiness, and
the two threads it spans.

``Socket`` is the standard library's socket object for AF_INET, on ustack
(``sock.py`` puts it together from the parts: ``connect.py`` sets
connections up, ``data.py`` moves bytes, ``close.py`` ends them,
``fileobj.py`` makes file objects).

Every method runs in the application's thread and does its stack work
through ``Runtime.call`` (the ``_s_*`` methods run in the stack thread; only
they touch native objects).  Blocking is done here, never in the stack
thread: a call that would block raises BlockingIOError over there, and this
side waits on the socket's own descriptor (``readiness.Mirror``), which the
stack thread makes readable or writable when the socket becomes so, then
tries again.  Timeouts therefore bound the waiting only, as in CPython's
socket module (``sock_call_ex``), and ``sendall`` has one deadline for all.
"""

from __future__ import annotations

import _socket
import errno
import select
import socket as _std
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ustack.api.socket import options as opt
from ustack.api.socket.errors import NotCoveredError, err, timeout_error
from ustack.api.socket.readiness import Mirror
from ustack.api.socket.resolve import numeric, resolve
from ustack.api.socket.runtime import Runtime
from ustack.net.sockaddr import parse as parse_addr
from ustack.tcp.socket import POLL_UNCONNECTED
from ustack.tcp.states import State

if TYPE_CHECKING:
    from ustack.tcp.ports import Binding
    from ustack.tcp.socket import TcpListener, TcpSocket
    from ustack.timers import Timer
    from ustack.udp.socket import UdpSocket

T = TypeVar("T")

AF_INET = _std.AddressFamily.AF_INET
MSG_DONTWAIT = _socket.MSG_DONTWAIT

SYNCHRONIZING = (State.SYN_SENT, State.SYN_RECEIVED)
OPEN = (State.ESTABLISHED, State.CLOSE_WAIT)
# Closed by the application, our FIN not yet acknowledged: what a lingering
# close() waits out (Linux's closing(): FIN-WAIT-1, CLOSING, LAST-ACK).
FIN_UNACKED = (State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK)

_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT
_monotonic = time.monotonic


class _Live:
    """Every live socket of one runtime, to wake when the stack stops."""

    def __init__(self, rt: Runtime) -> None:
        self.sockets: weakref.WeakSet[SocketBase] = weakref.WeakSet()
        rt.on_stop.append(self.wake_all)

    def wake_all(self) -> None:
        for s in list(self.sockets):
            m = s._mirror
            if m is not None:
                m.set(True, True)


_live: weakref.WeakKeyDictionary[Runtime, _Live] = weakref.WeakKeyDictionary()


def live_sockets(rt: Runtime) -> weakref.WeakSet[SocketBase]:
    """The sockets of ``rt`` that are open (``rt`` wakes them all when it stops)."""
    live = _live.get(rt)
    if live is None:
        live = _live[rt] = _Live(rt)
    return live.sockets


def weak_sync(ref: weakref.ReferenceType[SocketBase]) -> Callable[..., None]:
    """A native callback that re-syncs readiness without keeping the socket
    alive (an abandoned socket must still be collectable, and closed)."""

    def sync(*_: object) -> None:
        s = ref()
        if s is not None:
            s._s_sync()

    return sync


class SocketBase:
    """The state of a ``Socket`` and the plumbing every part uses."""

    _rt: Runtime
    _kind: _std.SocketKind
    _proto: int
    _stream: bool
    _timeout: float | None
    _closed: bool  # close() was called
    _dead: bool  # ... and the socket is released (no makefile() left)
    _io_refs: int
    _mirror: Mirror | None
    _fd: int
    _tcp: TcpSocket | None
    _listener: TcpListener | None
    _udp: UdpSocket | None
    # TCP, bound before listen/connect: the port reserved in the TCP layer.
    _bound: Binding | None
    _err_taken: bool  # the connection's error was reported once
    _opts: opt.Options
    _lingering: bool  # close() waits for the FIN's ACK (SO_LINGER)
    _linger_timer: Timer | None
    # Bytes handed to the stack thread without waiting (see DataPath._post_send);
    # each counter has one writer, so neither needs a lock.
    _posted: int  # application side
    _posted_done: int  # stack thread
    _posted_shut_wr: bool  # shutdown(SHUT_WR) was posted

    def _setup(self, rt: Runtime, kind: int, proto: int, timeout: float | None,
               opts: opt.Options, tcp: TcpSocket | None = None) -> None:
        """Every field's starting value (a new socket, or an accepted one)."""
        self._rt = rt
        self._kind = _std.SocketKind(kind)
        self._proto = proto
        self._stream = kind == _socket.SOCK_STREAM
        self._timeout = timeout
        self._closed = False
        self._dead = False
        self._io_refs = 0
        self._mirror = None
        self._fd = -1
        self._tcp = tcp
        self._listener = None
        self._udp = None
        self._bound = None
        self._err_taken = False
        self._opts = opts
        self._lingering = False
        self._linger_timer = None
        self._posted = self._posted_done = 0
        self._posted_shut_wr = False

    # -- stack thread: life and readiness ------------------------------------

    def _s_open(self) -> None:
        self._mirror = m = Mirror()
        self._fd = m.fileno()
        sync = weak_sync(weakref.ref(self))
        if self._tcp is not None:
            self._tcp.on_event = sync
        elif not self._stream:
            self._udp = self._rt.stack.udp_socket()
            self._udp.on_readable = sync
        live_sockets(self._rt).add(self)
        self._s_sync()

    def _s_sync(self, *_: object) -> None:
        """Make the descriptor's readiness the socket's: the native socket's
        ``poll()`` mask (Linux's tcp_poll/udp_poll rule), shown as select(2)
        shows it (``Mirror.show``)."""
        m = self._mirror
        if m is None:
            return
        t = self._tcp
        if t is not None:
            if self._lingering:
                # Not readiness but the close: a lingering close() sleeps
                # until the descriptor is readable, i.e. the FIN was acked.
                m.set(t.state not in FIN_UNACKED, m.writable)
                return
            m.show(t.poll())
        elif self._listener is not None:
            m.show(self._listener.poll())
        elif self._udp is not None:
            m.show(self._udp.poll())
        else:
            # Neither listening nor connected: no native socket to ask
            # (select() shows it readable and writable; calls fail at once).
            m.show(POLL_UNCONNECTED)

    def _s_unbind(self) -> None:
        b = self._bound
        if b is not None:
            self._bound = None
            self._rt.stack.tcp.unbind(b)

    # -- application side: plumbing ----------------------------------------

    def _check(self) -> None:
        if self._dead:
            raise err(errno.EBADF)

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._dead:
            raise err(errno.EBADF)
        return self._rt.call(fn, *args)

    def _wait(self, write: bool, deadline: float | None) -> None:
        """Sleep until the descriptor is ready (or the deadline: TimeoutError)."""
        fd = self._fd
        if self._dead or fd < 0:
            raise err(errno.EBADF)
        p = select.poll()
        p.register(fd, _POLLOUT if write else _POLLIN)
        if deadline is None:
            p.poll()
            return
        left = deadline - _monotonic()
        if (left <= 0 or not p.poll(max(1, int(left * 1000 + 0.999)))) and \
                _monotonic() >= deadline:
            raise timeout_error()

    def _io(self, fn: Callable[..., T], args: tuple[Any, ...], write: bool,
            flags: int = 0) -> T:
        """Call ``fn`` in the stack thread until it does not raise
        BlockingIOError, waiting per the timeout in between."""
        timeout = 0.0 if flags & MSG_DONTWAIT else self._timeout
        deadline = None if not timeout else _monotonic() + timeout
        call = self._rt.call
        m = self._mirror
        # Blocking and not ready: wait first, saving a round trip to the stack.
        if timeout != 0.0 and m is not None and not (m.writable if write else m.readable):
            self._wait(write, deadline)
        while True:
            if self._dead:
                raise err(errno.EBADF)
            try:
                return call(fn, *args)
            except BlockingIOError:
                if timeout == 0.0:
                    raise
            self._wait(write, deadline)

    @staticmethod
    def _flags(flags: int, call: str) -> int:
        if flags & ~MSG_DONTWAIT:
            raise NotCoveredError(f"socket.{call}(flags={flags:#x})", "only MSG_DONTWAIT")
        return flags

    def _address(self, address: object) -> tuple[bytes, int]:
        """(host, port) -> wire form; host names resolve like getaddrinfo."""
        if isinstance(address, tuple) and len(address) == 2 and isinstance(address[0], str):
            host = address[0]
            if host and host != "0.0.0.0" and numeric(host) is None:
                address = (resolve(host)[0], address[1])
            elif host and numeric(host) != host:
                address = (numeric(host), address[1])
        return parse_addr(address)

    # -- attributes -----------------------------------------------------------

    @property
    def family(self) -> _std.AddressFamily:
        return AF_INET

    @property
    def type(self) -> _std.SocketKind:
        return self._kind

    @property
    def proto(self) -> int:
        return self._proto

    @property
    def timeout(self) -> float | None:
        return self._timeout

    def fileno(self) -> int:
        """The descriptor that polls as this socket (-1 once closed)."""
        return -1 if self._dead else self._fd

    def __repr__(self) -> str:
        state = " [closed]" if self._dead else ""
        return (f"<ustack.socket{state} fd={self.fileno()}, family={AF_INET.name}, "
                f"type={self._kind.name}, proto={self._proto}>")

    # -- timeouts ---------------------------------------------------------------

    def settimeout(self, value: float | None) -> None:
        if value is not None:
            value = float(value)
            if value < 0 or value != value:
                raise ValueError("Timeout value out of range")
        self._timeout = value

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        return self._timeout != 0.0
