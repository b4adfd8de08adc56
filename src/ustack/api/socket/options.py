"""Socket options of ``ustack.socket`` and what they do to a connection.

Covered: SOL_SOCKET SO_REUSEADDR, SO_KEEPALIVE, SO_RCVBUF, SO_SNDBUF,
SO_LINGER, SO_TYPE (and SO_ERROR, SO_ACCEPTCONN, answered by the socket);
IPPROTO_TCP TCP_NODELAY, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT; IPPROTO_IP
IP_TTL and IP_TOS, the IPv4 header of what the socket sends, TCP or UDP
(RFC 9293 3.9.1.9 MUST-48/49, RFC 1122 3.2.1.6-7), also on a live
connection, checked as Linux checks them (ip(7)).  Values
read back as Linux reports them: booleans as 0/1, buffer sizes doubled
(``socket(7)``: the kernel doubles the value to allow for bookkeeping).
Any other option raises ENOPROTOOPT with a message naming it.

Options set on a listening socket, before or after listen(), are the
starting options of the sockets it accepts (Linux clones the listener): the
listener's connections are built with them from the SYN on.  SO_LINGER with
a timeout makes close() wait for the FIN to be acknowledged (``close.py``).
"""

from __future__ import annotations

import _socket
import errno
import struct
from typing import TYPE_CHECKING, Any

from ustack.tcp.connection import TcpConfig
from ustack.udp.socket import DEFAULT_RCVBUF

if TYPE_CHECKING:
    from ustack.stack import Stack
    from ustack.tcp.socket import TcpListener, TcpSocket

SOL_SOCKET = _socket.SOL_SOCKET
IPPROTO_TCP = _socket.IPPROTO_TCP
IPPROTO_IP = _socket.IPPROTO_IP
_IP_TTL = (IPPROTO_IP, _socket.IP_TTL)
_IP_TOS = (IPPROTO_IP, _socket.IP_TOS)
_ECN_MASK = 0x03  # the TOS byte's ECN field (RFC 3168 5): the stack's, not the application's
_LINGER = struct.Struct("ii")
_INT = struct.Struct("i")
_DEFAULTS = TcpConfig()
MIN_RCVBUF, MIN_SNDBUF = 2304, 4608  # Linux SOCK_MIN_RCVBUF / SOCK_MIN_SNDBUF

_BOOL = {
    (SOL_SOCKET, _socket.SO_REUSEADDR): "reuseaddr",
    (SOL_SOCKET, _socket.SO_KEEPALIVE): "keepalive",
    (IPPROTO_TCP, _socket.TCP_NODELAY): "nodelay",
}
_INTS = {
    (IPPROTO_TCP, _socket.TCP_KEEPIDLE): "keepidle",
    (IPPROTO_TCP, _socket.TCP_KEEPINTVL): "keepintvl",
    (IPPROTO_TCP, _socket.TCP_KEEPCNT): "keepcnt",
}


def _name(level: int, optname: int) -> str:
    levels = {SOL_SOCKET: "SOL_SOCKET", IPPROTO_TCP: "IPPROTO_TCP", IPPROTO_IP: "IPPROTO_IP"}
    return f"setsockopt/getsockopt({levels.get(level, level)}, {optname})"


def _int(value: int | bytes | None, byte_ok: bool = False) -> int:
    if isinstance(value, int):
        return int(value)
    if isinstance(value, (bytes, bytearray)) and len(value) >= 4:
        return int(_INT.unpack_from(value)[0])
    if byte_ok and isinstance(value, (bytes, bytearray)) and len(value) >= 1:
        return value[0]  # Linux's IPv4 options also take a single byte (ip_setsockopt)
    raise OSError(errno.EINVAL, "Invalid argument")


class Options:
    __slots__ = ("keepalive", "keepcnt", "keepidle", "keepintvl", "linger", "nodelay",
                 "rcvbuf", "reuseaddr", "sndbuf", "stream", "tos", "touched", "ttl")

    def __init__(self, stream: bool = True) -> None:
        self.stream = stream  # SOCK_STREAM (TCP), else a datagram socket
        self.reuseaddr = 0
        self.keepalive = 0
        self.nodelay = 0
        self.rcvbuf = 0  # 0: the stack's default
        self.sndbuf = 0
        self.linger = (0, 0)
        self.keepidle = int(_DEFAULTS.keepalive_idle)
        self.keepintvl = int(_DEFAULTS.keepalive_interval)
        self.keepcnt = _DEFAULTS.keepalive_probes
        self.ttl = _DEFAULTS.ttl
        self.tos = _DEFAULTS.tos
        self.touched: set[str] = set()

    def inherited(self) -> Options:
        """An accepted socket's options: Linux copies the listener's."""
        o = Options(self.stream)
        for f in self.__slots__:
            setattr(o, f, getattr(self, f))
        o.touched = set(self.touched)
        o.reuseaddr = 0
        return o

    def set(self, level: int, optname: int, value: int | bytes | None) -> None:
        key = (level, optname)
        field = _BOOL.get(key)
        if field is not None:
            setattr(self, field, int(_int(value) != 0))
        elif (field := _INTS.get(key)) is not None:
            v = _int(value)
            if v < 1:
                raise OSError(errno.EINVAL, "Invalid argument")
            setattr(self, field, v)
        elif key == (SOL_SOCKET, _socket.SO_RCVBUF):
            field = "rcvbuf"
            self.rcvbuf = max(_int(value), MIN_RCVBUF // 2)
        elif key == (SOL_SOCKET, _socket.SO_SNDBUF):
            field = "sndbuf"
            self.sndbuf = max(_int(value), MIN_SNDBUF // 2)
        elif key == _IP_TTL:
            # ip(7): 1..255, or -1 for the default; 0 and the rest are EINVAL
            # (RFC 1122 3.2.1.7: a host never sends a TTL of zero).
            v = _int(value, byte_ok=True)
            if v == -1:
                v = _DEFAULTS.ttl
            if not 1 <= v <= 255:
                raise OSError(errno.EINVAL, "Invalid argument")
            field = "ttl"
            self.ttl = v
        elif key == _IP_TOS:
            # Linux keeps the low byte and, on a stream socket, leaves the ECN
            # bits to TCP (ip_sock_set_tos); ustack negotiates no ECN.
            v = _int(value, byte_ok=True) & 0xFF
            field = "tos"
            self.tos = v & ~_ECN_MASK if self.stream else v
        elif key == (SOL_SOCKET, _socket.SO_LINGER):
            if not isinstance(value, (bytes, bytearray)) or len(value) < _LINGER.size:
                raise OSError(errno.EINVAL, "Invalid argument")
            onoff, secs = _LINGER.unpack_from(value)
            field = "linger"
            self.linger = (int(onoff != 0), max(0, secs))
        else:
            raise OSError(errno.ENOPROTOOPT,
                          f"Protocol not available (ustack.socket: {_name(level, optname)} "
                          "is not covered)")
        self.touched.add(field)

    def get(self, level: int, optname: int, buflen: int | None, kind: int) -> int | bytes:
        key = (level, optname)
        value: int
        if (field := _BOOL.get(key) or _INTS.get(key)) is not None:
            value = getattr(self, field)
        elif key == (SOL_SOCKET, _socket.SO_RCVBUF):
            dflt = _DEFAULTS.rcvbuf if kind == _socket.SOCK_STREAM else DEFAULT_RCVBUF // 2
            value = 2 * (self.rcvbuf or dflt)
        elif key == (SOL_SOCKET, _socket.SO_SNDBUF):
            value = 2 * (self.sndbuf or _DEFAULTS.sndbuf)
        elif key == (SOL_SOCKET, _socket.SO_TYPE):
            value = kind
        elif key == _IP_TTL:
            value = self.ttl
        elif key == _IP_TOS:
            value = self.tos
        elif key == (SOL_SOCKET, _socket.SO_LINGER):
            packed = _LINGER.pack(*self.linger)
            if buflen is None:
                return self.linger[0]
            return packed[:buflen]
        else:
            raise OSError(errno.ENOPROTOOPT,
                          f"Protocol not available (ustack.socket: {_name(level, optname)} "
                          "is not covered)")
        return value if buflen is None else _INT.pack(value)[:buflen]

    def linger_abort(self) -> bool:
        """SO_LINGER on with a zero timeout: close() resets the connection."""
        return self.linger == (1, 0)

    def tcp_options(self) -> dict[str, Any]:
        """TcpConfig fields from the options set so far, for ``TcpLayer.connect``
        and ``TcpLayer.listen`` / ``TcpListener.set_options``."""
        out: dict[str, Any] = {}
        t = self.touched
        if "nodelay" in t:
            out["nodelay"] = bool(self.nodelay)
        if "keepalive" in t:
            out["keepalive"] = bool(self.keepalive)
        if t & {"keepidle", "keepintvl", "keepcnt"}:
            out["keepalive_idle"] = float(self.keepidle)
            out["keepalive_interval"] = float(self.keepintvl)
            out["keepalive_probes"] = self.keepcnt
        if "rcvbuf" in t:
            out["rcvbuf"] = self.rcvbuf
        if "sndbuf" in t:
            out["sndbuf"] = self.sndbuf
        if "ttl" in t:
            out["ttl"] = self.ttl
        if "tos" in t:
            out["tos"] = self.tos
        return out


def apply_to_connection(opts: Options, sock: TcpSocket, stack: Stack) -> None:
    """Options that act on a live connection (stack thread).  The receive
    buffer is not among them: the window scale it implies was fixed by the
    handshake (RFC 7323 2.2), so SO_RCVBUF only affects connections opened
    later (connected, or accepted from a listener that has it)."""
    cfg = sock.conn.cfg
    t = opts.touched
    if "nodelay" in t:
        cfg.nodelay = bool(opts.nodelay)
    if "sndbuf" in t:
        cfg.sndbuf = opts.sndbuf
    cfg.ttl = opts.ttl  # the next segment carries them (SHLD-21)
    cfg.tos = opts.tos
    if t & {"keepalive", "keepidle", "keepintvl", "keepcnt"}:
        timings = bool(t & {"keepidle", "keepintvl", "keepcnt"})
        sock.set_keepalive(bool(opts.keepalive) if "keepalive" in t else cfg.keepalive,
                           float(opts.keepidle) if timings else None,
                           float(opts.keepintvl) if timings else None,
                           opts.keepcnt if timings else None)
    stack.tcp.kick(sock)  # Nagle or the send buffer may let data go now


def apply_to_listener(opts: Options, listener: TcpListener) -> None:
    """Options set on a listening socket, before or after listen(), reach the
    connections it accepts from then on: Linux clones the listener, so an
    accepted socket starts with its options (SO_RCVBUF included, which picks
    the window scale the SYN-ACK offers, RFC 7323 2.2)."""
    listener.set_options(**opts.tcp_options())
