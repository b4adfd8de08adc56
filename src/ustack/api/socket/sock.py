"""``Socket``: the standard library's socket object for AF_INET, on ustack.

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
import contextlib
import errno
import io
import select
import socket as _std
import struct
import time
import warnings
import weakref
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

from ustack.api.socket import options as opt
from ustack.api.socket.errors import NotCoveredError, err, timeout_error
from ustack.api.socket.readiness import Mirror
from ustack.api.socket.resolve import numeric, resolve
from ustack.api.socket.runtime import Runtime
from ustack.net.sockaddr import ANY
from ustack.net.sockaddr import parse as parse_addr
from ustack.tcp.layer import Binding
from ustack.tcp.socket import TcpListener, TcpSocket
from ustack.tcp.states import State
from ustack.udp.socket import UdpSocket
from ustack.wire import ipv4 as wip

if TYPE_CHECKING:
    from ustack.timers import Timer

T = TypeVar("T")
Address = tuple[str, int]

AF_INET = _std.AddressFamily.AF_INET
SOCK_STREAM = _std.SocketKind.SOCK_STREAM
SOCK_DGRAM = _std.SocketKind.SOCK_DGRAM
_TYPE_FLAGS = _socket.SOCK_NONBLOCK | _socket.SOCK_CLOEXEC
_MSG_DONTWAIT = _socket.MSG_DONTWAIT

_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT
_monotonic = time.monotonic
_SYNCHRONIZING = (State.SYN_SENT, State.SYN_RECEIVED)
# A TCP socket that neither listens nor is connected has no native socket to
# ask; Linux's tcp_poll answers POLLOUT | POLLHUP for it (a fresh TCP_CLOSE
# socket: select() shows it readable and writable, and calls fail at once).
_UNCONNECTED = select.POLLOUT | select.POLLHUP
_OPEN = (State.ESTABLISHED, State.CLOSE_WAIT)
# Closed by the application, our FIN not yet acknowledged: what a lingering
# close() waits out (Linux's closing(): FIN-WAIT-1, CLOSING, LAST-ACK).
_FIN_UNACKED = (State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK)
# The ACK of a FIN that carries no data raises no connection event, so a
# lingering close() also looks this often (seconds, in the stack thread).
_LINGER_RECHECK = 0.005


class _Host:
    """What the sockets of one runtime share: every live socket, to wake
    when the stack stops."""

    def __init__(self, rt: Runtime) -> None:
        self.live: weakref.WeakSet[Socket] = weakref.WeakSet()
        rt.on_stop.append(self.wake_all)

    def wake_all(self) -> None:
        for s in list(self.live):
            m = s._mirror
            if m is not None:
                m.set(True, True)


_hosts: weakref.WeakKeyDictionary[Runtime, _Host] = weakref.WeakKeyDictionary()


def _host(rt: Runtime) -> _Host:
    h = _hosts.get(rt)
    if h is None:
        h = _hosts[rt] = _Host(rt)
    return h


def _weak_sync(ref: weakref.ReferenceType[Socket]) -> Callable[..., None]:
    """A native callback that re-syncs readiness without keeping the socket
    alive (an abandoned socket must still be collectable, and closed)."""

    def sync(*_: object) -> None:
        s = ref()
        if s is not None:
            s._s_sync()

    return sync


class Socket:
    """``socket.socket`` for AF_INET SOCK_STREAM / SOCK_DGRAM on a ustack Runtime."""

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1,
                 fileno: int | None = None, *, runtime: Runtime | None = None) -> None:
        if fileno is not None:
            raise NotCoveredError("socket(fileno=...)", "a ustack socket has no kernel socket")
        if family == -1:
            family = _socket.AF_INET
        if family != _socket.AF_INET:
            raise NotCoveredError(f"socket(family={family})", "ustack sockets are AF_INET")
        if type == -1:
            type = _socket.SOCK_STREAM
        kind = type & ~_TYPE_FLAGS
        if kind not in (_socket.SOCK_STREAM, _socket.SOCK_DGRAM):
            raise NotCoveredError(f"socket(type={type})", "SOCK_STREAM and SOCK_DGRAM only")
        if proto == -1:
            proto = 0
        want = _socket.IPPROTO_TCP if kind == _socket.SOCK_STREAM else _socket.IPPROTO_UDP
        if proto not in (0, want):
            raise OSError(errno.EPROTONOSUPPORT, "Protocol not supported")
        if runtime is None:
            from ustack.api.socket.functions import default_runtime

            runtime = default_runtime()
        self._rt = runtime
        self._kind = _std.SocketKind(kind)
        self._proto = proto
        self._stream = kind == _socket.SOCK_STREAM
        self._timeout: float | None = 0.0 if type & _socket.SOCK_NONBLOCK else \
            _socket.getdefaulttimeout()
        self._closed = False  # close() was called
        self._dead = False  # ... and the socket is released (no makefile() left)
        self._io_refs = 0
        self._mirror: Mirror | None = None
        self._fd = -1
        self._tcp: TcpSocket | None = None
        self._listener: TcpListener | None = None
        self._udp: UdpSocket | None = None
        # TCP, bound before listen/connect: the port reserved in the TCP layer.
        self._bound: Binding | None = None
        self._err_taken = False  # the connection's error was reported once
        self._opts = opt.Options()
        self._lingering = False  # close() waits for the FIN's ACK (SO_LINGER)
        self._linger_timer: Timer | None = None
        # Bytes handed to the stack thread without waiting (see _post_send);
        # each counter has one writer, so neither needs a lock.
        self._posted = 0  # application side
        self._posted_done = 0  # stack thread
        self._posted_shut_wr = False  # shutdown(SHUT_WR) was posted
        runtime.call(self._s_open)

    @classmethod
    def _adopt(cls, rt: Runtime, native: TcpSocket, parent: Socket) -> Socket:
        """A socket for an accepted connection (stack thread)."""
        s = cls.__new__(cls)
        s._rt = rt
        s._kind = SOCK_STREAM
        s._proto = parent._proto
        s._stream = True
        s._timeout = _socket.getdefaulttimeout()
        s._closed = False
        s._dead = False
        s._io_refs = 0
        s._tcp = native
        s._listener = None
        s._udp = None
        s._bound = None
        s._err_taken = False
        s._opts = parent._opts.inherited()
        s._lingering = False
        s._linger_timer = None
        s._posted = s._posted_done = 0
        s._posted_shut_wr = False
        s._s_open()
        opt.apply_to_connection(s._opts, native, rt.stack)
        return s

    # -- stack thread: life and readiness ------------------------------------

    def _s_open(self) -> None:
        self._mirror = m = Mirror()
        self._fd = m.fileno()
        sync = _weak_sync(weakref.ref(self))
        if self._tcp is not None:
            self._tcp.on_event = sync
        elif not self._stream:
            self._udp = self._rt.stack.udp_socket()
            self._udp.on_readable = sync
        _host(self._rt).live.add(self)
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
                m.set(t.state not in _FIN_UNACKED, m.writable)
                return
            m.show(t.poll())
        elif self._listener is not None:
            m.show(self._listener.poll())
        elif self._udp is not None:
            m.show(self._udp.poll())
        else:
            m.show(_UNCONNECTED)

    def _s_close(self) -> None:
        self._lingering = False
        timer, self._linger_timer = self._linger_timer, None
        if timer is not None:
            timer.cancel()
        t, li, u = self._tcp, self._listener, self._udp
        if t is not None:
            t.on_event = None
            if self._opts.linger_abort():
                t.abort()  # SO_LINGER with a zero timeout: RST (RFC 9293 3.10.5 ABORT)
            else:
                t.close()
        if li is not None:
            li.on_accept = None
            li.close()
        if u is not None:
            u.on_readable = None
            u.close()
        self._s_unbind()
        self._tcp = self._listener = self._udp = None
        m, self._mirror = self._mirror, None
        if m is not None:
            m.close()
        _host(self._rt).live.discard(self)

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
        timeout = 0.0 if flags & _MSG_DONTWAIT else self._timeout
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
        if flags & ~_MSG_DONTWAIT:
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

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_dead", True) or not hasattr(self, "_rt"):
            return
        if not self._closed:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2, source=self)
        self._dead = True
        self._rt.post(self._s_close)

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

    # -- addresses ----------------------------------------------------------------

    def bind(self, address: Address) -> None:
        ip, port = self._address(address)
        self._call(self._s_bind, ip, port)

    def _s_bind(self, ip: bytes, port: int) -> None:
        self._check()
        stack = self._rt.stack
        if ip != ANY and ip not in stack.local_addrs:
            raise err(errno.EADDRNOTAVAIL)
        if not self._stream:
            assert self._udp is not None
            self._udp.bind((wip.addr_to_str(ip), port))
            return
        if self._bound is not None or self._tcp is not None or self._listener is not None:
            raise err(errno.EINVAL)
        # The TCP layer keeps the port until listen() or connect() takes it
        # over (Linux's bind rules, SO_REUSEADDR; port 0 is an ephemeral one).
        self._bound = stack.tcp.bind(ip, port, reuse=bool(self._opts.reuseaddr))

    def getsockname(self) -> Address:
        return self._call(self._s_getsockname)

    def _s_getsockname(self) -> Address:
        self._check()
        if self._tcp is not None:
            return self._tcp.getsockname()
        if self._listener is not None:
            return self._listener.getsockname()
        if self._udp is not None:
            return self._udp.getsockname()
        if self._bound is not None:
            return wip.addr_to_str(self._bound.ip), self._bound.port
        return "0.0.0.0", 0

    def getpeername(self) -> Address:
        return self._call(self._s_getpeername)

    def _s_getpeername(self) -> Address:
        self._check()
        if self._tcp is not None:
            return self._tcp.getpeername()
        if self._udp is not None:
            return self._udp.getpeername()
        raise err(errno.ENOTCONN)

    # -- connection set-up --------------------------------------------------------

    def listen(self, backlog: int = min(_socket.SOMAXCONN, 128)) -> None:
        self._call(self._s_listen, max(0, backlog))

    def _s_listen(self, backlog: int) -> None:
        self._check()
        if not self._stream:
            raise err(errno.EOPNOTSUPP)
        if self._tcp is not None:
            raise err(errno.EINVAL)
        if self._listener is not None:
            self._listener.backlog = max(1, backlog)
            return
        if self._bound is None:
            self._s_bind(ANY, 0)
        assert self._bound is not None
        ip, port = self._bound.ip, self._bound.port
        li = self._rt.stack.tcp_listen((wip.addr_to_str(ip), port), backlog)
        opt.apply_to_listener(self._opts, li)  # set before listen(): accepted sockets inherit
        self._s_unbind()
        self._listener = li
        li.on_accept = _weak_sync(weakref.ref(self))
        self._s_sync()

    def accept(self) -> tuple[Socket, Address]:
        child, addr = self._io(self._s_accept, (), False)
        child._timeout = _socket.getdefaulttimeout()
        return child, addr

    def _s_accept(self) -> tuple[Socket, Address]:
        self._check()
        li = self._listener
        if li is None:
            raise err(errno.EINVAL)
        if li.closed:
            raise err(errno.EINVAL)
        try:
            native = li.accept()
        finally:
            self._s_sync()
        return Socket._adopt(self._rt, native, self), native.getpeername()

    def connect(self, address: Address) -> None:
        ip, port = self._address(address)
        self._connect(ip, port)

    def connect_ex(self, address: Address) -> int:
        ip, port = self._address(address)
        try:
            self._connect(ip, port)
        except OSError as e:
            if e.errno is None:  # a timeout: CPython's connect_ex returns EWOULDBLOCK
                return errno.EWOULDBLOCK
            return e.errno
        return 0

    def _connect(self, ip: bytes, port: int) -> None:
        started = self._call(self._s_connect, ip, port)
        if not self._stream or not started:
            return
        timeout = self._timeout
        if timeout == 0.0:
            raise BlockingIOError(errno.EINPROGRESS, "Operation now in progress")
        deadline = None if timeout is None else _monotonic() + timeout
        while True:
            self._wait(True, deadline)
            if self._call(self._s_connected):
                return

    def _s_connect(self, ip: bytes, port: int) -> bool:
        """Start the active open (True) or, for UDP, set the peer (False)."""
        self._check()
        if not self._stream:
            assert self._udp is not None
            self._udp.connect((wip.addr_to_str(ip), port))
            return False
        if self._listener is not None:
            raise err(errno.EISCONN)
        t = self._tcp
        if t is not None:
            st = t.conn.state
            if st in _SYNCHRONIZING and not t.conn.error:
                raise err(errno.EALREADY)
            if st is not State.CLOSED:
                raise err(errno.EISCONN)
            self._tcp = None  # a failed attempt: Linux lets connect() try again
        local_port = self._bound.port if self._bound is not None else 0
        options = self._opts.tcp_options()
        t = self._rt.stack.tcp_connect((wip.addr_to_str(ip), port), local_port=local_port,
                                       **options)
        self._s_unbind()
        self._tcp = t
        self._err_taken = False
        t.on_event = _weak_sync(weakref.ref(self))
        self._s_sync()
        return True

    def _s_connected(self) -> bool:
        """After a wake-up while connecting: done (True), not yet (False), or
        the connection's error raised (and taken, as SO_ERROR would)."""
        t = self._tcp
        if t is None:
            raise err(errno.EBADF if self._dead else errno.ENOTCONN)
        c = t.conn
        if c.error:
            self._err_taken = True
            raise err(c.error)
        return c.state not in _SYNCHRONIZING

    # -- data ----------------------------------------------------------------------

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        return self._io(self._s_recv, (bufsize,), False, self._flags(flags, "recv"))

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        view = memoryview(buffer).cast("B")
        if nbytes < 0:
            raise ValueError("negative buffersize in recv_into")
        if nbytes > len(view):
            raise ValueError("buffer too small for requested bytes")
        data = self.recv(nbytes or len(view), flags)
        view[:len(data)] = data
        return len(data)

    def _s_recv(self, n: int) -> bytes:
        self._check()
        t = self._tcp
        if t is None:
            if self._udp is not None:
                return self._s_recvfrom(n)[0]
            raise err(errno.ENOTCONN)
        if self._err_taken and t.conn.error:
            return b""
        try:
            return t.recv(n)  # end of stream after SHUT_RD (TcpSocket.shutdown_read)
        except OSError as e:
            if e.errno != errno.EAGAIN and t.conn.error:
                self._err_taken = True  # reported once, then EOF (Linux sock_error)
            raise
        finally:
            self._s_sync()

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Address | None]:
        if bufsize < 0:
            raise ValueError("negative buffersize in recvfrom")
        f = self._flags(flags, "recvfrom")
        if self._stream:
            return self._io(self._s_recv, (bufsize,), False, f), None
        return self._io(self._s_recvfrom, (bufsize,), False, f)

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0
                      ) -> tuple[int, Address | None]:
        view = memoryview(buffer).cast("B")
        if nbytes < 0:
            raise ValueError("negative buffersize in recvfrom_into")
        if nbytes > len(view):
            raise ValueError("nbytes is greater than the length of the buffer")
        data, addr = self.recvfrom(nbytes or len(view), flags)
        view[:len(data)] = data
        return len(data), addr

    def _s_recvfrom(self, n: int) -> tuple[bytes, Address]:
        self._check()
        u = self._udp
        assert u is not None
        try:
            return u.recvfrom(n)
        finally:
            self._s_sync()

    def send(self, data: Any, flags: int = 0) -> int:
        view = memoryview(data).cast("B")
        f = self._flags(flags, "send")
        if self._post_send(view):
            return len(view)
        return self._io(self._s_send, (view,), True, f)

    def _post_send(self, view: memoryview) -> bool:
        """Hand ``view`` to the stack thread without waiting for it, when the
        send buffer surely has room for all of it (application thread).

        A blocking call to the stack thread costs a round trip of two thread
        wake-ups; a send that fits the buffer cannot fail in a way the caller
        must hear from this call (the kernel, too, reports a reset that comes
        later on the next call), so it is queued like a finaliser and
        returns at once.  The calls queue is one FIFO: whatever the
        application does next runs after it.  Reading the connection's
        fields from this thread is safe under the GIL (each is one load);
        bytes posted but not yet queued count against the room.
        """
        t = self._tcp
        n = len(view)
        if t is None or not n or self._dead or self._err_taken or self._posted_shut_wr:
            return False
        rt = self._rt
        if rt.in_thread():
            return False  # calls run at once in the stack thread: posting would reorder
        c = t.conn
        st = c.state
        if (st is not State.ESTABLISHED and st is not State.CLOSE_WAIT) or c.error or \
                c.fin_queued:
            return False
        if n + self._posted - self._posted_done > c.send_space:
            return False
        data = bytes(view)  # the caller may reuse its buffer once we return
        self._posted += n
        if not rt.post(partial(self._s_send_posted, data)):
            self._posted -= n
            return False  # the runtime is down: the waiting path says so
        return True

    def _s_send_posted(self, data: bytes) -> None:
        self._posted_done += len(data)
        t = self._tcp
        if t is None or t.conn.error:
            return  # reset or closed meanwhile: the next call reports it
        try:
            # Room was checked; should another thread's send have taken it
            # meanwhile, the rest is queued anyway (a little over SO_SNDBUF)
            # rather than lost after we said it was sent.
            t.send(data, force=True)
        except OSError:
            pass  # the connection failed since: its error is the next call's
        finally:
            self._s_sync()

    def _s_send(self, view: memoryview) -> int:
        self._check()
        t = self._tcp
        if t is None:
            u = self._udp
            if u is not None:
                return u.send(view)
            raise err(errno.EPIPE)  # Linux: send on an unconnected TCP socket
        c = t.conn
        if c.error and self._err_taken:
            raise err(errno.EPIPE)
        if c.state in _SYNCHRONIZING and not c.error:
            raise err(errno.EAGAIN)  # the kernel waits for the handshake
        try:
            return t.send(view)
        except OSError as e:
            if e.errno != errno.EAGAIN and c.error:
                self._err_taken = True
            raise
        finally:
            self._s_sync()

    def sendall(self, data: Any, flags: int = 0) -> None:
        """All of ``data`` or an exception; one deadline for the whole call."""
        view = memoryview(data).cast("B")
        f = self._flags(flags, "sendall")
        timeout = 0.0 if f else self._timeout
        deadline = None if not timeout else _monotonic() + timeout
        total = len(view)
        if self._post_send(view):
            return
        off = 0
        call = self._rt.call
        while True:
            if self._dead:
                raise err(errno.EBADF)
            try:
                off += call(self._s_send, view[off:])
                if off >= total:
                    return
            except BlockingIOError:
                if timeout == 0.0:
                    raise
            self._wait(True, deadline)

    def sendto(self, data: Any, flags_or_address: Any, address: Any = None) -> int:
        if address is None:
            flags, address = 0, flags_or_address
        else:
            flags = flags_or_address
        f = self._flags(flags, "sendto")
        if self._stream:
            return self.send(data, f)  # Linux TCP ignores the address
        ip, port = self._address(address)
        view = memoryview(data).cast("B")
        return self._io(self._s_sendto, (view, ip, port), True, f)

    def _s_sendto(self, view: memoryview, ip: bytes, port: int) -> int:
        self._check()
        u = self._udp
        assert u is not None
        return u.sendto(view, (wip.addr_to_str(ip), port))

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """``socket.sendfile`` by reading and ``sendall`` (its documented fallback)."""
        if not self._stream:
            raise ValueError("only SOCK_STREAM type sockets are supported")
        if offset:
            file.seek(offset)
        sent = 0
        while count is None or sent < count:
            chunk = file.read(min(65536, count - sent) if count is not None else 65536)
            if not chunk:
                break
            self.sendall(chunk)
            sent += len(chunk)
        if sent and hasattr(file, "seek"):
            file.seek(offset + sent)
        return sent

    # -- shutdown and close ----------------------------------------------------

    def shutdown(self, how: int) -> None:
        if how not in (_socket.SHUT_RD, _socket.SHUT_WR, _socket.SHUT_RDWR):
            raise err(errno.EINVAL)
        t = self._tcp
        rt = self._rt
        if t is not None and not self._dead and t.conn.state in _OPEN and not rt.in_thread():
            # Connected: it cannot fail, so it need not wait (see _post_send).
            if how != _socket.SHUT_RD:
                self._posted_shut_wr = True  # later sends take the waiting path
            if rt.post(partial(self._s_shutdown_posted, how)):
                return
        self._call(self._s_shutdown, how)

    def _s_shutdown_posted(self, how: int) -> None:
        # Without _check: a close() that came after the shutdown was posted
        # marks the socket dead, and the shutdown must still happen first,
        # as it did for the application.
        with contextlib.suppress(OSError):
            self._s_shutdown_now(how)

    def _s_shutdown(self, how: int) -> None:
        self._check()
        self._s_shutdown_now(how)

    def _s_shutdown_now(self, how: int) -> None:
        t = self._tcp
        rd = how in (_socket.SHUT_RD, _socket.SHUT_RDWR)
        wr = how in (_socket.SHUT_WR, _socket.SHUT_RDWR)
        if t is not None:
            if t.conn.state in _SYNCHRONIZING or (t.conn.state is State.CLOSED
                                                  and not t.conn.error):
                raise err(errno.ENOTCONN)
            if rd:
                t.shutdown_read()
            if wr and t.conn.state is not State.CLOSED:
                t.shutdown_write()
            self._s_sync()
            return
        if self._listener is not None and rd:
            # Linux: shutting a listener down stops it and wakes accept().
            self._listener.close()
            self._s_sync()
            return
        if self._udp is not None and self._udp.remote_ip is not None:
            return  # accepted, as Linux does; datagrams still arrive
        raise err(errno.ENOTCONN)

    def close(self) -> None:
        """Close; with makefile() objects still open, when the last one closes."""
        if self._closed:
            return
        self._closed = True
        if self._io_refs <= 0:
            self._real_close()

    def _real_close(self) -> None:
        self._dead = True
        rt = self._rt
        if rt.alive:
            try:
                on, secs = self._opts.linger
                if on and secs > 0 and self._stream and not rt.in_thread():
                    self._linger(secs)
                    rt.call(self._s_close)
                    return
                # Nothing to report and nothing to wait for: no round trip
                # (in the stack thread itself it runs at once, in order).
                if rt.in_thread():
                    self._s_close()
                    return
                if rt.post(self._s_close):
                    return
            except OSError:
                pass
        m, self._mirror = self._mirror, None
        if m is not None:
            m.close()

    def _linger(self, secs: int) -> None:
        """SO_LINGER with a timeout (socket(7)): close() returns once everything
        sent, FIN included, is acknowledged, or after ``secs`` seconds.  Then,
        as on Linux (tcp_close, sk_stream_wait_close), the connection goes on
        without the application: no reset, data and FIN still retransmitted.
        Linux lingers for a non-blocking socket too, and so does this."""
        deadline = _monotonic() + secs
        if not self._rt.call(self._s_linger_start):
            return
        p = select.poll()
        p.register(self._fd, _POLLIN)
        while True:
            left = deadline - _monotonic()
            if left <= 0 or p.poll(max(1, int(left * 1000 + 0.999))):
                return

    def _s_linger_start(self) -> bool:
        """Close the connection, keeping the descriptor to wait on; False when
        there is nothing to wait for (not connected, reset, FIN acked)."""
        t = self._tcp
        if t is None or self._mirror is None:
            return False
        t.close()  # the FIN queues behind the data (a RST if data was left unread)
        if t.conn.state not in _FIN_UNACKED:
            return False
        self._lingering = True
        t.on_event = _weak_sync(weakref.ref(self))  # TcpSocket.close dropped it
        self._s_sync()
        stack = self._rt.stack
        self._linger_timer = stack.call_at(stack.now + _LINGER_RECHECK, self._s_linger_tick)
        return True

    def _s_linger_tick(self, now: float) -> None:
        self._linger_timer = None
        if not self._lingering:
            return
        self._s_sync()
        m = self._mirror
        if m is not None and not m.readable:
            self._linger_timer = self._rt.stack.call_at(now + _LINGER_RECHECK,
                                                        self._s_linger_tick)

    def _decref_socketios(self) -> None:
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed and self._io_refs <= 0:
            self._real_close()

    def makefile(self, mode: str = "r", buffering: int | None = None, *,
                 encoding: str | None = None, errors: str | None = None,
                 newline: str | None = None) -> Any:
        """File objects over the socket, as ``socket.socket.makefile``."""
        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError(f"invalid mode {mode!r} (only r, w, b allowed)")
        writing = "w" in mode
        reading = "r" in mode or not writing
        binary = "b" in mode
        rawmode: Any = ("r" if reading else "") + ("w" if writing else "")
        raw = _std.SocketIO(cast(Any, self), rawmode)
        self._io_refs += 1
        if buffering is None or buffering < 0:
            buffering = io.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            if not binary:
                raise ValueError("unbuffered streams must be binary")
            return raw
        buffer: Any
        if reading and writing:
            buffer = io.BufferedRWPair(raw, raw, buffering)
        elif reading:
            buffer = io.BufferedReader(raw, buffering)
        else:
            buffer = io.BufferedWriter(raw, buffering)
        if binary:
            return buffer
        text = io.TextIOWrapper(buffer, encoding, errors, newline)
        text.mode = mode  # type: ignore[misc]
        return text

    # -- options -----------------------------------------------------------------

    def setsockopt(self, level: int, optname: int, value: int | bytes | None,
                   optlen: int | None = None) -> None:
        self._call(self._s_setsockopt, level, optname, value)

    def _s_setsockopt(self, level: int, optname: int, value: int | bytes | None) -> None:
        self._check()
        self._opts.set(level, optname, value)
        if self._tcp is not None:
            opt.apply_to_connection(self._opts, self._tcp, self._rt.stack)
        elif self._listener is not None:
            opt.apply_to_listener(self._opts, self._listener)
        elif self._udp is not None and (level, optname) == (_socket.SOL_SOCKET,
                                                            _socket.SO_RCVBUF):
            self._udp.rcvbuf = self._opts.rcvbuf

    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> int | bytes:
        return self._call(self._s_getsockopt, level, optname, buflen)

    def _s_getsockopt(self, level: int, optname: int, buflen: int | None) -> int | bytes:
        self._check()
        if (level, optname) == (_socket.SOL_SOCKET, _socket.SO_ERROR):
            value = self._s_take_error()
        elif (level, optname) == (_socket.SOL_SOCKET, _socket.SO_ACCEPTCONN):
            value = int(self._listener is not None)
        else:
            return self._opts.get(level, optname, buflen, self._kind)
        return value if buflen is None else struct.pack("i", value)[:buflen]

    def _s_take_error(self) -> int:
        """SO_ERROR: the pending error, cleared by reading it (Linux sock_error)."""
        if self._tcp is not None:
            c = self._tcp.conn
            if c.error and not self._err_taken:
                self._err_taken = True
                return c.error
            e, c.soft_error = c.soft_error, 0
            return e
        if self._udp is not None:
            e, self._udp.error = self._udp.error, 0
            return e
        return 0


def _not_covered(name: str) -> Callable[..., NoReturn]:
    def method(self: Socket, *args: object, **kwargs: object) -> NoReturn:
        raise NotCoveredError(f"socket.{name}()")

    method.__name__ = name
    return method


# The rest of ``socket.socket``: each raises NotCoveredError naming itself,
# never reaching the kernel.
NOT_COVERED = ("detach", "dup", "get_inheritable", "set_inheritable", "ioctl", "share",
               "sendmsg", "recvmsg", "recvmsg_into", "sendmsg_afalg")
for _name in NOT_COVERED:
    setattr(Socket, _name, _not_covered(_name))
del _name
