"""``Socket``: the standard library's socket object for AF_INET, on ustack.

The class is put together from its parts, each in a module of its own:
``base`` (state, readiness, the plumbing between the application's thread
and the stack thread: read its docstring first), ``connect`` (bind, listen,
accept, connect), ``data`` (recv and send), ``close`` (shutdown, close,
SO_LINGER), ``fileobj`` (makefile).  Here: the constructor, the options,
and the calls that are not covered.
"""

from __future__ import annotations

import _socket
import errno
import struct
from collections.abc import Callable
from typing import NoReturn

from ustack.api.socket import options as opt
from ustack.api.socket.connect import ConnectionSetup
from ustack.api.socket.data import DataPath
from ustack.api.socket.errors import NotCoveredError
from ustack.api.socket.fileobj import FileObjects
from ustack.api.socket.runtime import Runtime, default_runtime

_TYPE_FLAGS = _socket.SOCK_NONBLOCK | _socket.SOCK_CLOEXEC


class Socket(ConnectionSetup, DataPath, FileObjects):
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
            runtime = default_runtime()
        timeout = 0.0 if type & _socket.SOCK_NONBLOCK else _socket.getdefaulttimeout()
        self._setup(runtime, kind, proto, timeout, opt.Options(kind == _socket.SOCK_STREAM))
        runtime.call(self._s_open)

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
        elif self._udp is not None:
            if (level, optname) == (_socket.SOL_SOCKET, _socket.SO_RCVBUF):
                self._udp.rcvbuf = self._opts.rcvbuf
            self._udp.ttl = self._opts.ttl  # the next datagram's IPv4 header
            self._udp.tos = self._opts.tos
        if self._bound is not None:
            # Linux reads SO_REUSEADDR when another socket binds (sk_reuse),
            # so one set after bind() still lets the port be shared.
            self._bound.reuse = bool(self._opts.reuseaddr)

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
