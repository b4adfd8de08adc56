"""Connection set-up for ``Socket``: bind, listen, accept, connect, and the
addresses they give a socket.

A TCP port bound before listen() or connect() is reserved in the TCP layer
(``TcpLayer.bind``, Linux's bind rules and its one ephemeral allocator)
until listen() or connect() takes it over; UDP binds its native socket.
"""

from __future__ import annotations

import _socket
import errno
import time
import weakref
from typing import TYPE_CHECKING, Self

from ustack.api.socket import options as opt
from ustack.api.socket.base import SYNCHRONIZING, SocketBase, weak_sync
from ustack.api.socket.errors import err
from ustack.net.sockaddr import ANY, Address
from ustack.tcp.states import State
from ustack.wire import ipv4 as wip

if TYPE_CHECKING:
    from ustack.tcp.socket import TcpSocket


class ConnectionSetup(SocketBase):
    """bind/listen/accept/connect and getsockname/getpeername."""

    # -- addresses ----------------------------------------------------------------

    def bind(self, address: Address) -> None:
        ip, port = self._address(address)
        self._call(self._s_bind, ip, port)

    def _s_bind(self, ip: bytes, port: int) -> None:
        self._check()
        stack = self._rt.stack
        # The layers' bind checks this too, but after the socket's own
        # state (EINVAL: bound already); Linux's __inet_bind checks the
        # address first, so it is checked here, first.
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

    # -- listening and accepting --------------------------------------------------

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
        li.on_accept = weak_sync(weakref.ref(self))
        self._s_sync()

    def accept(self) -> tuple[Self, Address]:
        child, addr = self._io(self._s_accept, (), False)
        child._timeout = _socket.getdefaulttimeout()
        return child, addr

    def _s_accept(self) -> tuple[Self, Address]:
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
        return self._adopt(native), native.getpeername()

    def _adopt(self, native: TcpSocket) -> Self:
        """A socket of this listening socket's class for an accepted
        connection, with the listener's options (stack thread)."""
        s = type(self).__new__(type(self))
        s._setup(self._rt, _socket.SOCK_STREAM, self._proto, _socket.getdefaulttimeout(),
                 self._opts.inherited(), native)
        s._s_open()
        opt.apply_to_connection(s._opts, native, self._rt.stack)
        return s

    # -- connecting ---------------------------------------------------------------

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
        deadline = None if timeout is None else time.monotonic() + timeout
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
            if st in SYNCHRONIZING and not t.conn.error:
                raise err(errno.EALREADY)
            if st is not State.CLOSED:
                raise err(errno.EISCONN)
            self._tcp = None  # a failed attempt: Linux lets connect() try again
        # A bound socket connects from its address and port (RFC 1122
        # 4.1.3.5: the bound address is the source wherever the route leads).
        b = self._bound
        source = (wip.addr_to_str(b.ip), b.port) if b is not None else None
        options = self._opts.tcp_options()
        t = self._rt.stack.tcp_connect((wip.addr_to_str(ip), port), source=source, **options)
        self._s_unbind()
        self._tcp = t
        self._err_taken = False
        t.on_event = weak_sync(weakref.ref(self))
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
        return c.state not in SYNCHRONIZING
