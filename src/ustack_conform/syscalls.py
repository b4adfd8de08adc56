"""packetdrill's system calls, played on ustack's native TCP API.

A script speaks POSIX (``socket``, ``bind``, ``listen``, ``accept``,
``connect``, ``recv`` ...) with small integer file descriptors; ustack's
native API has listener and socket objects that never block.  ``Syscalls``
keeps the descriptor table between them and the little socket-layer state
the native API leaves to its caller: the bound port before ``listen`` or
``connect``, options set before the connection exists, ``O_NONBLOCK``,
``SO_LINGER``, ``shutdown(SHUT_RD)`` and the BSD rule that a pending error
(``so_error``) is reported once (then reads see EOF).  Descriptors from
``accept`` start blocking, as on Linux.

Each call returns an ``Invocation``: ``attempt()`` gives a ``SysResult``, or None
while a blocking call must wait (the runner moves the clock and tries again,
as packetdrill's system-call thread would sit in the kernel).  Arguments the
script gets wrong raise ``ScriptError``; what the stack does differently is
a ``SysResult`` the runner compares.

Symbols are looked up in ``symbols.CONSTANTS`` (Linux values).  Options
that ustack does not have (FreeBSD's ``TCP_KEEPINIT``, RFC 2385
``TCP_MD5SIG``) fail with ENOPROTOOPT, which the
script sees as a failed call at its own line.
"""

from __future__ import annotations

import errno
import os
import select
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ustack.stack import Stack
from ustack.tcp.socket import POLL_UNCONNECTED, TcpListener, TcpSocket
from ustack.tcp.states import State
from ustack_conform import tcpinfo
from ustack_conform.script import (
    Array,
    BitOr,
    Call,
    Expr,
    Int,
    ScriptError,
    Struct,
    Symbol,
    SyscallEvent,
    Wildcard,
)
from ustack_conform.symbols import (
    BUFFER_OPTIONS,
    CONFIG_FIELD,
    CONSTANTS,
    LEVEL_BY_NUMBER,
    LEVELS,
    OPTION_BY_NUMBER,
    OPTIONS,
    errno_name,
    poll_names,
)

__all__ = ["Flow", "Invocation", "SysResult", "Syscalls"]

# Where the script's peer lives: a listening socket is reached from
# PEER_CLIENT_PORT, and ``connect(fd, ..., ...)`` goes to PEER_SERVER_PORT
# (packetdrill's default port, 8080, is also what ``bind(fd, ..., ...)`` takes).
DEFAULT_PORT = 8080
PEER_SERVER_PORT = 8080
PEER_CLIENT_PORT = 40000
MAX_IO = 1 << 24  # the largest read/write length a script may ask for


def _roundup(n: int, unit: int) -> int:
    return -(-n // unit) * unit if unit > 0 else n


class SysResult(NamedTuple):
    """What a call returned: ``ret``, ``err`` (errno, 0 for none), and
    ``detail``: the first difference in an output argument (a getsockopt
    value, poll revents), or None when they match."""

    ret: int
    err: int = 0
    detail: str | None = None


class Invocation(NamedTuple):
    """A call under way: ``attempt()`` again until it gives a result.

    ``wake_at`` is the time at which a waiting call returns on its own (a
    poll timeout); None when only the stack can end the wait.
    """

    attempt: Callable[[], SysResult | None]
    wake_at: float | None = None


@dataclass
class Flow:
    """The one connection the script's packets belong to (packetdrill's model).

    ``local_port`` is the stack's port, ``remote_port`` the peer's.
    ``local_isn`` is the stack's initial sequence number, learned from the
    first SYN it sends; None until then (numbers are then taken as written).
    """

    local_port: int = DEFAULT_PORT
    remote_port: int = PEER_CLIENT_PORT
    local_isn: int | None = None

    def passive(self, port: int) -> None:
        self.local_port, self.remote_port, self.local_isn = port, PEER_CLIENT_PORT, None

    def active(self, port: int) -> None:
        self.local_port, self.remote_port, self.local_isn = port, PEER_SERVER_PORT, None


@dataclass
class _Fd:
    """One socket descriptor of the script."""

    nonblock: bool = False
    port: int | None = None  # bound, not yet listening or connected
    listener: TcpListener | None = None
    sock: TcpSocket | None = None
    # TcpConfig fields set before the connection exists (values of any
    # field's type: Stack.tcp_connect takes them as its options).
    config: dict[str, Any] = field(default_factory=dict)
    reuseaddr: int = 0
    linger: tuple[int, int] | None = None
    shut_rd: bool = False
    reported: int = 0  # the error already given to the application (so_error is read once)


class Syscalls:
    """The descriptor table and the system calls of one script run."""

    def __init__(self, stack: Stack, peer_ip: str, flow: Flow, path: str,
                 now: Callable[[], float], *, strict: bool = False) -> None:
        self.stack = stack
        self.peer_ip = peer_ip
        self.flow = flow
        self.path = path
        self.now = now
        self.strict = strict
        self.fds: dict[int, _Fd] = {}
        # The socket TCP_INFO questions are about: the last one a call used.
        # It outlives close(): an orphaned connection still has a state.
        self.last: _Fd | None = None
        self._line = 0

    # -- entry point ------------------------------------------------------------

    def start(self, ev: SyscallEvent, line: int) -> Invocation:
        """Begin the call ``ev``; the runner attempts it now and while it blocks."""
        self._line = line
        handler = getattr(self, "_sys_" + ev.name, None)
        if handler is None:
            raise self._error(f"system call {ev.name}() is not supported by the runner")
        call: Invocation = handler(ev.args)
        return call

    # -- argument helpers -------------------------------------------------------------

    def _error(self, message: str) -> ScriptError:
        return ScriptError(self.path, self._line, message)

    def _nargs(self, args: list[Expr], name: str, *counts: int) -> None:
        if len(args) not in counts:
            want = " or ".join(map(str, counts))
            raise self._error(f"{name}() takes {want} arguments, the script passes {len(args)}")

    def value(self, e: Expr) -> int | None:
        """An argument as an integer; None for ``...``."""
        if isinstance(e, Wildcard):
            return None
        if isinstance(e, Int):
            return e.value
        if isinstance(e, Symbol):
            v = CONSTANTS.get(e.name)
            if v is None:
                v = getattr(errno, e.name, None) if e.name.startswith("E") else None
            if not isinstance(v, int):
                raise self._error(f"unknown symbol {e.name}")
            return v
        if isinstance(e, BitOr):
            acc = 0
            for term in e.terms:
                v = self.value(term)
                if v is None:
                    raise self._error("'...' inside a bitwise or")
                acc |= v
            return acc
        if isinstance(e, Array) and len(e.items) == 1:
            return self.value(e.items[0])  # [4]: an int passed by pointer
        if isinstance(e, Call) and e.name in ("htons", "htonl", "ntohs", "ntohl") and e.args:
            return self.value(e.args[0])
        raise self._error(f"expected a number, found {e}")

    def errno_value(self, name: str, line: int) -> int:
        """The number of an errno name a script expects (``EINPROGRESS``)."""
        v = getattr(errno, name, None)
        if not isinstance(v, int):
            raise ScriptError(self.path, line, f"unknown errno {name}")
        return v

    def _int(self, e: Expr, what: str) -> int:
        v = self.value(e)
        if v is None:
            raise self._error(f"{what} must be given, not '...'")
        return v

    def _fd(self, e: Expr) -> tuple[int, _Fd | None]:
        n = self._int(e, "the file descriptor")
        entry = self.fds.get(n)
        if entry is not None:
            self.last = entry
        return n, entry

    def _new_fd(self, entry: _Fd) -> int:
        # POSIX: the lowest descriptor not in use; 0-2 are stdio.
        n = 3
        while n in self.fds:
            n += 1
        self.fds[n] = entry
        self.last = entry
        return n

    def _port_of(self, e: Expr) -> int | None:
        """The port of a sockaddr argument, None for ``...`` or no port."""
        if isinstance(e, Struct):
            p = e.get("sin_port") or e.get("sin6_port")
            port = None if p is None else self.value(p)
            if port is not None and not 0 <= port <= 0xFFFF:
                raise self._error(f"port {port} out of range")
            return port
        if isinstance(e, Wildcard):
            return None
        raise self._error(f"expected a sockaddr {{...}} or '...', found {e}")

    @staticmethod
    def _done(r: SysResult) -> Invocation:
        return Invocation(lambda: r)

    @staticmethod
    def _fail(code: int) -> Invocation:
        r = SysResult(-1, code)
        return Invocation(lambda: r)

    def _config_value(self, entry: _Fd, name: str) -> float:
        """A numeric TcpConfig field as the socket sees it (bools as 0/1)."""
        if entry.sock is not None:
            v = getattr(entry.sock.conn.cfg, name)
        elif name in entry.config:
            v = entry.config[name]
        else:
            v = getattr(self.stack.tcp.config, name)
        return float(v) if isinstance(v, (int, float)) else 0.0

    def _set_config(self, entry: _Fd, name: str, value: object) -> None:
        if entry.sock is not None:
            setattr(entry.sock.conn.cfg, name, value)
            return
        entry.config[name] = value
        if entry.listener is not None:
            # Passive opens take the layer's defaults (one listener per script).
            setattr(self.stack.tcp.config, name, value)

    # -- socket, bind, listen, accept, connect ------------------------------------------

    def _sys_socket(self, args: list[Expr]) -> Invocation:
        self._nargs(args, "socket", 3)
        kind = self.value(args[1])
        proto = self.value(args[2])
        nonblock_bit = CONSTANTS["SOCK_NONBLOCK"]
        flags = CONSTANTS["SOCK_CLOEXEC"] | nonblock_bit
        if kind is not None and kind & ~flags != socket.SOCK_STREAM:
            raise self._error("only SOCK_STREAM sockets are supported by the runner")
        if proto not in (None, 0, socket.IPPROTO_TCP):
            return self._fail(errno.EPROTONOSUPPORT)
        entry = _Fd(nonblock=kind is not None and bool(kind & nonblock_bit))
        return self._done(SysResult(self._new_fd(entry)))

    def _sys_bind(self, args: list[Expr]) -> Invocation:
        self._nargs(args, "bind", 3)
        _, entry = self._fd(args[0])
        if entry is None:
            return self._fail(errno.EBADF)
        if entry.port is not None or entry.listener is not None or entry.sock is not None:
            return self._fail(errno.EINVAL)
        port = self._port_of(args[1])
        entry.port = DEFAULT_PORT if port is None else port
        # Segments to the bound port reach it (and are refused: nothing listens yet).
        self.flow.passive(entry.port)
        return self._done(SysResult(0))

    def _sys_listen(self, args: list[Expr]) -> Invocation:
        self._nargs(args, "listen", 2)
        _, entry = self._fd(args[0])
        if entry is None:
            return self._fail(errno.EBADF)
        backlog = self._int(args[1], "the backlog")
        if entry.sock is not None:
            return self._fail(errno.EINVAL)
        if entry.listener is not None:
            entry.listener.backlog = max(1, backlog)
            return self._done(SysResult(0))
        cfg = self.stack.tcp.config
        for name, v in entry.config.items():
            setattr(cfg, name, v)
        try:
            entry.listener = self.stack.tcp_listen(("0.0.0.0", entry.port or 0), backlog)
        except OSError as e:
            return self._fail(e.errno or errno.EINVAL)
        self.flow.passive(entry.listener.port)
        return self._done(SysResult(0))

    def _sys_accept(self, args: list[Expr]) -> Invocation:
        self._nargs(args, "accept", 3)
        _, entry = self._fd(args[0])
        if entry is None:
            return self._fail(errno.EBADF)
        listener = entry.listener
        if listener is None:
            return self._fail(errno.EINVAL)
        nonblock = entry.nonblock

        def attempt() -> SysResult | None:
            try:
                sock = listener.accept()
            except BlockingIOError:
                return SysResult(-1, errno.EAGAIN) if nonblock else None
            except OSError as e:
                return SysResult(-1, e.errno or errno.EINVAL)
            return SysResult(self._new_fd(_Fd(sock=sock)))

        return Invocation(attempt)

    def _sys_connect(self, args: list[Expr]) -> Invocation:
        self._nargs(args, "connect", 3)
        _, entry = self._fd(args[0])
        if entry is None:
            return self._fail(errno.EBADF)
        if entry.listener is not None:
            return self._fail(errno.EINVAL)
        sock = entry.sock
        if sock is not None:
            # A second connect() on a non-blocking socket asks how the first went.
            if sock.state in (State.SYN_SENT, State.SYN_RECEIVED):
                return self._fail(errno.EALREADY)
            err = self._take_error(entry)
            if err:
                return self._fail(err)
            return self._fail(errno.EISCONN)
        port = self._port_of(args[1])
        try:
            sock = self.stack.tcp_connect(
                (self.peer_ip, PEER_SERVER_PORT if port is None else port),
                local_port=entry.port or 0, **entry.config)
        except OSError as e:
            return self._fail(e.errno or errno.EINVAL)
        entry.sock = sock
        self.flow.active(sock.conn.local[1])
        if entry.nonblock:
            # The SYN goes out with the flush after this call (RFC 9293 3.10.1).
            return self._fail(errno.EINPROGRESS)
        connected = sock

        def attempt() -> SysResult | None:
            if connected.state in (State.SYN_SENT, State.SYN_RECEIVED):
                return None
            err = self._take_error(entry)
            return SysResult(-1, err) if err else SysResult(0)

        return Invocation(attempt)

    # -- data -------------------------------------------------------------------------------

    def _sys_read(self, args: list[Expr]) -> Invocation:
        self._nargs(args, "read", 3)
        return self._recv(args[0], args[2], 0)

    def _sys_recv(self, args: list[Expr]) -> Invocation:
        self._nargs(args, "recv", 4)
        return self._recv(args[0], args[2], self._int(args[3], "the flags"))

    def _sys_recvfrom(self, args: list[Expr]) -> Invocation:
        self._nargs(args, "recvfrom", 6)
        return self._recv(args[0], args[2], self._int(args[3], "the flags"))

    def _io_target(self, fd_arg: Expr, len_arg: Expr,
                   what: str) -> tuple[_Fd, TcpSocket, int] | Invocation:
        """The entry, connected socket and length of a read or write call,
        or the failing Invocation (EBADF, ENOTCONN)."""
        _, entry = self._fd(fd_arg)
        n = self._int(len_arg, "the length")
        if not 0 <= n <= MAX_IO:
            raise self._error(f"{what} length {n} out of range (0..{MAX_IO})")
        if entry is None:
            return self._fail(errno.EBADF)
        sock = entry.sock
        if sock is None:
            return self._fail(errno.ENOTCONN)
        return entry, sock, n

    def _recv(self, fd_arg: Expr, len_arg: Expr, flags: int) -> Invocation:
        target = self._io_target(fd_arg, len_arg, "read")
        if isinstance(target, Invocation):
            return target
        entry, sock, n = target
        peek = bool(flags & socket.MSG_PEEK)
        nonblock = entry.nonblock or bool(flags & socket.MSG_DONTWAIT)

        def attempt() -> SysResult | None:
            if entry.shut_rd:
                return SysResult(0)
            avail = sock.conn.readable_bytes
            if peek and avail:
                # MSG_PEEK: report what is there, take nothing (the length is
                # all a script can check; the bytes stay in the buffer).
                return SysResult(min(n, avail))
            try:
                data = sock.recv(n)
            except BlockingIOError:
                return SysResult(-1, errno.EAGAIN) if nonblock else None
            except OSError as e:
                code = e.errno or errno.EIO
                if code == entry.reported:
                    return SysResult(0)  # the error was reported once; now it is EOF
                entry.reported = code
                return SysResult(-1, code)
            return SysResult(len(data))

        return Invocation(attempt)

    def _sys_write(self, args: list[Expr]) -> Invocation:
        self._nargs(args, "write", 3)
        return self._send(args[0], args[2], 0)

    def _sys_send(self, args: list[Expr]) -> Invocation:
        self._nargs(args, "send", 4)
        return self._send(args[0], args[2], self._int(args[3], "the flags"))

    def _sys_sendto(self, args: list[Expr]) -> Invocation:
        self._nargs(args, "sendto", 6)
        return self._send(args[0], args[2], self._int(args[3], "the flags"))

    def _send(self, fd_arg: Expr, len_arg: Expr, flags: int) -> Invocation:
        target = self._io_target(fd_arg, len_arg, "write")
        if isinstance(target, Invocation):
            return target
        entry, sock, n = target
        nonblock = entry.nonblock or bool(flags & socket.MSG_DONTWAIT)
        data = memoryview(bytes(n))
        sent = [0]

        def attempt() -> SysResult | None:
            # A blocking send on a stream socket returns when all of it is queued.
            while sent[0] < n:
                try:
                    sent[0] += sock.send(data[sent[0]:])
                except BlockingIOError:
                    if not nonblock:
                        return None
                    break
                except OSError as e:
                    if sent[0]:
                        break
                    code = e.errno or errno.EIO
                    if entry.reported and code != errno.EPIPE:
                        code = errno.EPIPE  # the error was reported; the socket is dead
                    entry.reported = entry.reported or code
                    return SysResult(-1, code)
            if n and not sent[0]:
                return SysResult(-1, errno.EAGAIN)
            return SysResult(sent[0])

        return Invocation(attempt)

    # -- shutdown, close --------------------------------------------------------------------

    def _sys_shutdown(self, args: list[Expr]) -> Invocation:
        self._nargs(args, "shutdown", 2)
        _, entry = self._fd(args[0])
        how = self._int(args[1], "how")
        if entry is None:
            return self._fail(errno.EBADF)
        if how not in (socket.SHUT_RD, socket.SHUT_WR, socket.SHUT_RDWR):
            return self._fail(errno.EINVAL)
        sock = entry.sock
        if sock is None:
            return self._fail(errno.ENOTCONN)
        if how != socket.SHUT_WR:
            entry.shut_rd = True
            if sock.conn.state is not State.CLOSED:
                sock.shutdown_read()
        if how != socket.SHUT_RD:
            try:
                sock.shutdown_write()
            except OSError as e:
                return self._fail(e.errno or errno.EINVAL)
        return self._done(SysResult(0))

    def _sys_close(self, args: list[Expr]) -> Invocation:
        self._nargs(args, "close", 1)
        n, entry = self._fd(args[0])
        if entry is None:
            return self._fail(errno.EBADF)
        self._close(n)
        return self._done(SysResult(0))

    def _close(self, n: int) -> None:
        entry = self.fds.pop(n)
        if entry.listener is not None:
            entry.listener.close()
        if entry.sock is not None:
            if entry.linger is not None and entry.linger[0] and entry.linger[1] == 0:
                # SO_LINGER with a zero timeout: close() resets (RFC 9293 3.10.5 ABORT).
                entry.sock.abort()
            else:
                entry.sock.close()

    # -- fcntl, options -----------------------------------------------------------------------

    def _sys_fcntl(self, args: list[Expr]) -> Invocation:
        self._nargs(args, "fcntl", 2, 3)
        _, entry = self._fd(args[0])
        cmd = self._int(args[1], "the command")
        if entry is None:
            return self._fail(errno.EBADF)
        if cmd == CONSTANTS["F_GETFL"]:
            return self._done(SysResult(os.O_RDWR | (os.O_NONBLOCK if entry.nonblock else 0)))
        if cmd == CONSTANTS["F_SETFL"]:
            if len(args) != 3:
                raise self._error("fcntl(F_SETFL) needs the flags")
            entry.nonblock = bool(self._int(args[2], "the flags") & os.O_NONBLOCK)
            return self._done(SysResult(0))
        if cmd in (CONSTANTS["F_GETFD"], CONSTANTS["F_SETFD"]):
            return self._done(SysResult(0))
        return self._fail(errno.EINVAL)

    def _option(self, level_arg: Expr, name_arg: Expr) -> str | None:
        """The option's name, or None when ustack has no such option."""
        if isinstance(level_arg, Symbol):
            level = LEVELS.get(level_arg.name)
        else:
            lv = self.value(level_arg)
            level = None if lv is None else LEVEL_BY_NUMBER.get(lv)
        if level is None:
            return None
        if isinstance(name_arg, Symbol):
            return name_arg.name if name_arg.name in OPTIONS[level] else None
        nv = self.value(name_arg)
        return None if nv is None else OPTION_BY_NUMBER.get((level, nv))

    def _sys_getsockopt(self, args: list[Expr]) -> Invocation:
        self._nargs(args, "getsockopt", 5)
        _, entry = self._fd(args[0])
        if entry is None:
            return self._fail(errno.EBADF)
        name = self._option(args[1], args[2])
        if name is None:
            return self._fail(errno.ENOPROTOOPT)
        want = args[3]

        def attempt() -> SysResult:
            if name == "TCP_INFO":
                return self._check_tcp_info(entry, want)
            if name == "SO_LINGER":
                got_l = entry.linger or (0, 0)
                if isinstance(want, Struct):
                    for fname, v in (("l_onoff", got_l[0]), ("onoff", got_l[0]),
                                     ("l_linger", got_l[1]), ("linger", got_l[1])):
                        w = want.get(fname)
                        exp = None if w is None else self.value(w)
                        if exp is not None and exp != v:
                            return SysResult(0, 0, f"getsockopt(SO_LINGER): {fname} is {v}, "
                                                   f"the script expects {exp}")
                return SysResult(0)
            got = self._get(entry, name)
            exp = self.value(want)
            if exp is None or exp == got:
                return SysResult(0)
            if name in BUFFER_OPTIONS and not self.strict:
                return SysResult(0)  # relaxed: buffer sizes are the platform's choice
            if name in BUFFER_OPTIONS and entry.sock is not None and exp == _roundup(
                    got, entry.sock.conn.mss):
                # FreeBSD rounds a connection's buffers up to a multiple of
                # the MSS once it is known (tcp_input.c, tcp_mss()); ustack
                # keeps the size it was given.  Strict mode takes either.
                return SysResult(0)
            shown = errno_name(got) if name == "SO_ERROR" and got else str(got)
            return SysResult(0, 0, f"getsockopt({name}) gives [{shown}], the script "
                                   f"expects {want}")

        return Invocation(attempt)

    def _check_tcp_info(self, entry: _Fd, want: Expr) -> SysResult:
        """``getsockopt(fd, SOL_TCP, TCP_INFO, {tcpi_state=..., tcpi_options=...}, ...)``:
        each field the script names is compared (``...``: the call only)."""
        if isinstance(want, Wildcard):
            return SysResult(0)
        if not isinstance(want, Struct):
            raise self._error("TCP_INFO takes {tcpi_field=value, ...} or '...'")
        have = tcpinfo.info(entry.sock, self._state_of(entry))
        for f in want.fields:
            if f.name is None or f.name not in have:
                raise self._error(f"TCP_INFO field {f.name or f.value} is not known to the "
                                  f"runner (known: {', '.join(sorted(have))})")
            got = have[f.name]
            if isinstance(f.value, Symbol) and f.value.name in tcpinfo.CONSTANTS:
                exp: object = tcpinfo.CONSTANTS[f.value.name]
            else:
                exp = self._tcpi_value(f.value)
            if exp is not None and exp != got:
                shown = f"TCPI_{got.name}" if isinstance(got, State) else str(got)
                return SysResult(0, 0, f"getsockopt(TCP_INFO): {f.name} is {shown}, the "
                                       f"script expects {f.value}")
        return SysResult(0)

    def _tcpi_value(self, e: Expr) -> int | None:
        if isinstance(e, BitOr):
            acc = 0
            for term in e.terms:
                v = self._tcpi_value(term)
                acc |= v or 0
            return acc
        if isinstance(e, Symbol) and e.name in tcpinfo.TCPI_OPT:
            return tcpinfo.TCPI_OPT[e.name]
        return self.value(e)

    def _get(self, entry: _Fd, name: str) -> int:
        if name == "SO_ERROR":
            return self._take_error(entry)
        if name in ("SO_REUSEADDR", "SO_REUSEPORT"):
            return entry.reuseaddr
        if name == "SO_TYPE":
            return socket.SOCK_STREAM
        sock = entry.sock
        if name == "TCP_MAXSEG" and sock is not None and sock.state is not State.SYN_SENT:
            return sock.conn.mss
        return round(self._config_value(entry, CONFIG_FIELD[name]))

    def _take_error(self, entry: _Fd) -> int:
        """SO_ERROR: the pending error, reported once (BSD ``so_error`` is cleared on read)."""
        if entry.sock is None:
            return 0
        code = entry.sock.error
        if not code or code == entry.reported:
            return 0
        entry.reported = code
        return code

    def _sys_setsockopt(self, args: list[Expr]) -> Invocation:
        self._nargs(args, "setsockopt", 5)
        _, entry = self._fd(args[0])
        if entry is None:
            return self._fail(errno.EBADF)
        name = self._option(args[1], args[2])
        if name is None:
            return self._fail(errno.ENOPROTOOPT)
        arg = args[3]
        if name == "SO_LINGER":
            if not isinstance(arg, Struct):
                raise self._error("SO_LINGER takes {onoff=..., linger=...}")
            on = arg.get("l_onoff") or arg.get("onoff")
            secs = arg.get("l_linger") or arg.get("linger")
            entry.linger = (0 if on is None else self._int(on, "onoff"),
                            0 if secs is None else self._int(secs, "linger"))
            return self._done(SysResult(0))
        v = self._int(arg, f"the value of {name}")
        if name in ("SO_RCVBUF", "SO_SNDBUF"):
            if v <= 0:
                return self._fail(errno.EINVAL)
            self._set_config(entry, "rcvbuf" if name == "SO_RCVBUF" else "sndbuf", v)
        elif name in ("SO_REUSEADDR", "SO_REUSEPORT"):
            entry.reuseaddr = 1 if v else 0
        elif name == "SO_KEEPALIVE":
            self._set_config(entry, "keepalive", bool(v))
        elif name == "TCP_NODELAY":
            self._set_config(entry, "nodelay", bool(v))
        elif name in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"):
            if v <= 0:
                return self._fail(errno.EINVAL)
            self._set_config(entry, CONFIG_FIELD[name], float(v) if name != "TCP_KEEPCNT" else v)
        elif name == "IP_TTL":
            if v == -1:
                v = 64  # ip(7): -1 is the default (ustack.net.ipv4.DEFAULT_TTL)
            if not 1 <= v <= 255:
                return self._fail(errno.EINVAL)
            self._set_config(entry, "ttl", v)
        elif name == "IP_TOS":
            self._set_config(entry, "tos", v & 0xFC)  # the ECN bits are TCP's (Linux)
        elif name == "TCP_MAXSEG":
            if not 64 <= v <= 65535 or entry.sock is not None:
                return self._fail(errno.EINVAL)
            self._set_config(entry, "mss", v)
        else:  # SO_ERROR, SO_TYPE, TCP_INFO: read-only
            return self._fail(errno.ENOPROTOOPT)
        return self._done(SysResult(0))

    # -- poll ---------------------------------------------------------------------------------

    def _sys_poll(self, args: list[Expr]) -> Invocation:
        self._nargs(args, "poll", 3)
        if not isinstance(args[0], Array):
            raise self._error("poll() takes an array of {fd=..., events=..., revents=...}")
        polls: list[tuple[int, int, int | None]] = []
        for item in args[0].items:
            if not isinstance(item, Struct):
                raise self._error("poll() takes an array of {fd=..., events=..., revents=...}")
            fd_e, ev_e, rev_e = item.get("fd"), item.get("events"), item.get("revents")
            if fd_e is None or ev_e is None:
                raise self._error("a pollfd needs fd= and events=")
            polls.append((self._int(fd_e, "fd"), self._int(ev_e, "events"),
                          None if rev_e is None else self.value(rev_e)))
        timeout = self._int(args[2], "the timeout")
        wake = None if timeout < 0 else self.now() + timeout / 1000.0

        def attempt() -> SysResult | None:
            got = [self._revents(fd, events) for fd, events, _ in polls]
            ready = sum(1 for r in got if r)
            if not ready and wake is not None and self.now() < wake:
                return None
            if not ready and wake is None:
                return None
            for (fd, _, want), r in zip(polls, got, strict=True):
                if want is not None and want != r:
                    return SysResult(ready, 0, f"poll: fd {fd} revents {poll_names(r)}, the "
                                               f"script expects {poll_names(want)}")
            return SysResult(ready)

        return Invocation(attempt, wake_at=wake)

    def _revents(self, fd: int, events: int) -> int:
        entry = self.fds.get(fd)
        if entry is None:
            return select.POLLNVAL
        if entry.listener is not None:
            return entry.listener.poll() & (events | select.POLLERR | select.POLLHUP)
        sock = entry.sock
        if sock is None:
            return POLL_UNCONNECTED & (events | select.POLLERR | select.POLLHUP)
        # The stack's one readiness rule (TcpSocket.poll, Linux's tcp_poll);
        # an error the script has read (SO_ERROR, a failed call) is cleared,
        # as Linux clears sk_err once it is reported.
        r = sock.poll()
        if sock.error and sock.error == entry.reported:
            r &= ~select.POLLERR
        return r & (events | select.POLLERR | select.POLLHUP | select.POLLNVAL)

    # -- TCP_INFO ---------------------------------------------------------------------------------

    def last_socket(self) -> TcpSocket | None:
        """The connection of the last descriptor a call used (None: a listener, none)."""
        return None if self.last is None else self.last.sock

    def tcp_state(self) -> State | None:
        """The state of the last socket a call used (what TCP_INFO's tcpi_state reports).

        Unlike a kernel's TCP_INFO, which needs an open descriptor, this
        still answers after close(): the state of the orphaned connection
        (the hidden close states are what our own scripts check).
        """
        entry = self.last
        return None if entry is None else self._state_of(entry)

    def _state_of(self, entry: _Fd) -> State:
        if entry.listener is not None:
            return State.CLOSED if entry.listener.closed else State.LISTEN
        sock = entry.sock
        if sock is None:
            return State.CLOSED
        if sock.closed:
            # Closed in TIME-WAIT, the layer keeps a record of the 4-tuple
            # and lets the connection go (tcp/timewait.py).
            tcp = self.stack.tcp
            key = (*sock.conn.local, *sock.conn.remote)
            if key in tcp.tw.records:
                return State.TIME_WAIT
            if sock.state is State.TIME_WAIT and tcp.conns.get(key) is not sock:
                return State.CLOSED
        return sock.state
