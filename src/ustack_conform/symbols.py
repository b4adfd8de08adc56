"""The symbolic constants of packetdrill scripts and the socket options the runner knows.

Values are Linux's (from the ``socket``, ``os``, ``select`` and ``errno``
modules): the same table reads a script and writes the results, so the
numbers never reach a comparison that could tell platforms apart.
"""

from __future__ import annotations

import errno
import os
import select
import socket

from ustack_conform.script import IPTOS_NAMES

__all__ = [
    "BUFFER_OPTIONS",
    "CONFIG_FIELD",
    "CONSTANTS",
    "LEVELS",
    "LEVEL_BY_NUMBER",
    "OPTIONS",
    "OPTION_BY_NUMBER",
    "errno_name",
    "poll_names",
]


def _c(mod: object, name: str, default: int) -> int:
    v = getattr(mod, name, default)
    return v if isinstance(v, int) else default


# Symbolic constants a script may use, Linux values.
CONSTANTS: dict[str, int] = {
    "AF_INET": socket.AF_INET, "AF_INET6": socket.AF_INET6, "PF_INET": socket.AF_INET,
    "PF_INET6": socket.AF_INET6,
    "SOCK_STREAM": socket.SOCK_STREAM, "SOCK_DGRAM": socket.SOCK_DGRAM,
    "SOCK_NONBLOCK": _c(socket, "SOCK_NONBLOCK", 0o4000),
    "SOCK_CLOEXEC": _c(socket, "SOCK_CLOEXEC", 0o2000000),
    "IPPROTO_IP": socket.IPPROTO_IP, "IPPROTO_TCP": socket.IPPROTO_TCP,
    "IPPROTO_UDP": socket.IPPROTO_UDP, "SOL_SOCKET": socket.SOL_SOCKET,
    "SOL_TCP": socket.IPPROTO_TCP, "SOL_IP": socket.IPPROTO_IP,
    "SO_ERROR": socket.SO_ERROR, "SO_RCVBUF": socket.SO_RCVBUF, "SO_SNDBUF": socket.SO_SNDBUF,
    "SO_REUSEADDR": socket.SO_REUSEADDR, "SO_REUSEPORT": _c(socket, "SO_REUSEPORT", 15),
    "SO_LINGER": socket.SO_LINGER, "SO_KEEPALIVE": socket.SO_KEEPALIVE,
    "SO_TYPE": socket.SO_TYPE,
    "TCP_NODELAY": socket.TCP_NODELAY, "TCP_MAXSEG": socket.TCP_MAXSEG,
    "TCP_KEEPIDLE": _c(socket, "TCP_KEEPIDLE", 4), "TCP_KEEPINTVL": _c(socket, "TCP_KEEPINTVL", 5),
    "TCP_KEEPCNT": _c(socket, "TCP_KEEPCNT", 6), "TCP_INFO": _c(socket, "TCP_INFO", 11),
    "IP_TTL": socket.IP_TTL, "IP_TOS": socket.IP_TOS,
    "MSG_PEEK": socket.MSG_PEEK, "MSG_DONTWAIT": socket.MSG_DONTWAIT,
    "MSG_WAITALL": socket.MSG_WAITALL, "MSG_NOSIGNAL": _c(socket, "MSG_NOSIGNAL", 0x4000),
    "SHUT_RD": socket.SHUT_RD, "SHUT_WR": socket.SHUT_WR, "SHUT_RDWR": socket.SHUT_RDWR,
    "F_GETFL": 3, "F_SETFL": 4, "F_GETFD": 1, "F_SETFD": 2, "FD_CLOEXEC": 1,
    "O_RDONLY": os.O_RDONLY, "O_WRONLY": os.O_WRONLY, "O_RDWR": os.O_RDWR,
    "O_NONBLOCK": os.O_NONBLOCK,
    "POLLIN": select.POLLIN, "POLLPRI": select.POLLPRI, "POLLOUT": select.POLLOUT,
    "POLLERR": select.POLLERR, "POLLHUP": select.POLLHUP, "POLLNVAL": select.POLLNVAL,
    "POLLRDNORM": _c(select, "POLLRDNORM", 0x40), "POLLWRNORM": _c(select, "POLLWRNORM", 0x100),
    "POLLRDHUP": _c(select, "POLLRDHUP", 0x2000),
    "INADDR_ANY": 0,
    **IPTOS_NAMES,
}

# Socket options ustack has, by level; the runner dispatches on these names.
LEVELS = {"SOL_SOCKET": "SOL_SOCKET", "IPPROTO_TCP": "IPPROTO_TCP", "SOL_TCP": "IPPROTO_TCP",
           "IPPROTO_IP": "IPPROTO_IP", "SOL_IP": "IPPROTO_IP"}
OPTIONS: dict[str, tuple[str, ...]] = {
    "SOL_SOCKET": ("SO_ERROR", "SO_RCVBUF", "SO_SNDBUF", "SO_REUSEADDR", "SO_REUSEPORT",
                   "SO_LINGER", "SO_KEEPALIVE", "SO_TYPE"),
    "IPPROTO_TCP": ("TCP_NODELAY", "TCP_MAXSEG", "TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT",
                    "TCP_INFO"),
    "IPPROTO_IP": ("IP_TTL", "IP_TOS"),
}
OPTION_BY_NUMBER = {(lvl, CONSTANTS[n]): n for lvl, names in OPTIONS.items() for n in names}
LEVEL_BY_NUMBER = {socket.SOL_SOCKET: "SOL_SOCKET", socket.IPPROTO_TCP: "IPPROTO_TCP",
                    socket.IPPROTO_IP: "IPPROTO_IP"}
# Options that are a TcpConfig field of the connection (seconds for the timers).
CONFIG_FIELD = {"SO_RCVBUF": "rcvbuf", "SO_SNDBUF": "sndbuf", "SO_KEEPALIVE": "keepalive",
                 "TCP_NODELAY": "nodelay", "TCP_MAXSEG": "mss", "TCP_KEEPIDLE": "keepalive_idle",
                 "TCP_KEEPINTVL": "keepalive_interval", "TCP_KEEPCNT": "keepalive_probes",
                 "IP_TTL": "ttl", "IP_TOS": "tos"}
# Options whose value is a buffer size: the relaxed mode does not compare
# the value a getsockopt returns (FreeBSD rounds and grows them its own way).
BUFFER_OPTIONS = frozenset({"SO_RCVBUF", "SO_SNDBUF"})
_POLL_REPORTED = (select.POLLIN | select.POLLOUT | select.POLLERR | select.POLLHUP
                  | select.POLLNVAL)


def errno_name(code: int) -> str:
    """``ECONNRESET`` for 104."""
    return errno.errorcode.get(code, str(code))


def poll_names(v: int) -> str:
    """``POLLIN|POLLOUT`` for revents as a script would write them."""
    names = [n for n in ("POLLIN", "POLLOUT", "POLLERR", "POLLHUP", "POLLNVAL")
             if v & CONSTANTS[n]]
    rest = v & ~_POLL_REPORTED
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "0"
