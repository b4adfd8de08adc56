"""``ustack.socket``: the standard ``socket`` module for AF_INET, on ustack.

Use it like ``socket``::

    import ustack.socket as usocket
    usocket.attach(stack)            # the stack runs in a background thread
    with usocket.create_connection(("198.18.0.1", 80), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        print(s.recv(4096))
    usocket.detach()

or run an unmodified program with ``ustack run`` (which replaces the
standard module's AF_INET parts with these).  Sockets are AF_INET
SOCK_STREAM or SOCK_DGRAM; ``fileno()`` is a real descriptor that polls like
the socket, so ``select``, ``selectors`` and asyncio work on it.  Errors are
the standard library's, with the same errno values.  What is covered, and
what raises ``NotCoveredError`` instead, is listed in README.md.  The
implementation lives in ``ustack.api.socket``.

Every constant of the standard module (AF_INET, SOL_SOCKET, TCP_NODELAY,
...) is available here too, as are the pure helpers (inet_aton, htons ...).
"""

from __future__ import annotations

import socket as _std
from socket import (
    AF_INET,
    AI_CANONNAME,
    AI_NUMERICHOST,
    AI_PASSIVE,
    IPPROTO_TCP,
    IPPROTO_UDP,
    MSG_DONTWAIT,
    SHUT_RD,
    SHUT_RDWR,
    SHUT_WR,
    SO_ERROR,
    SO_KEEPALIVE,
    SO_LINGER,
    SO_RCVBUF,
    SO_REUSEADDR,
    SO_SNDBUF,
    SO_TYPE,
    SOCK_DGRAM,
    SOCK_STREAM,
    SOL_SOCKET,
    SOMAXCONN,
    TCP_KEEPCNT,
    TCP_KEEPIDLE,
    TCP_KEEPINTVL,
    TCP_NODELAY,
    AddressFamily,
    SocketKind,
    error,
    gaierror,
    getdefaulttimeout,
    herror,
    htonl,
    htons,
    inet_aton,
    inet_ntoa,
    inet_ntop,
    inet_pton,
    ntohl,
    ntohs,
    setdefaulttimeout,
    timeout,
)

from ustack.api.socket.errors import NotCoveredError
from ustack.api.socket.functions import (
    attach,
    create_connection,
    create_server,
    default_runtime,
    detach,
    has_dualstack_ipv6,
    socket,
)
from ustack.api.socket.resolve import (
    getaddrinfo,
    gethostbyaddr,
    gethostbyname,
    gethostbyname_ex,
    getnameinfo,
)
from ustack.api.socket.runtime import Runtime, StackDown
from ustack.api.socket.sock import Socket

SocketType = Socket

# The remaining constants of the standard module, so code written against
# ``socket`` finds them here as well.
globals().update({k: v for k, v in vars(_std).items()
                  if k.isupper() and not k.startswith("_") and k not in globals()})

__all__ = [
    "AF_INET",
    "AI_CANONNAME",
    "AI_NUMERICHOST",
    "AI_PASSIVE",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "MSG_DONTWAIT",
    "SHUT_RD",
    "SHUT_RDWR",
    "SHUT_WR",
    "SOCK_DGRAM",
    "SOCK_STREAM",
    "SOL_SOCKET",
    "SOMAXCONN",
    "SO_ERROR",
    "SO_KEEPALIVE",
    "SO_LINGER",
    "SO_RCVBUF",
    "SO_REUSEADDR",
    "SO_SNDBUF",
    "SO_TYPE",
    "TCP_KEEPCNT",
    "TCP_KEEPIDLE",
    "TCP_KEEPINTVL",
    "TCP_NODELAY",
    "AddressFamily",
    "NotCoveredError",
    "Runtime",
    "Socket",
    "SocketKind",
    "SocketType",
    "StackDown",
    "attach",
    "create_connection",
    "create_server",
    "default_runtime",
    "detach",
    "error",
    "gaierror",
    "getaddrinfo",
    "getdefaulttimeout",
    "gethostbyaddr",
    "gethostbyname",
    "gethostbyname_ex",
    "getnameinfo",
    "has_dualstack_ipv6",
    "herror",
    "htonl",
    "htons",
    "inet_aton",
    "inet_ntoa",
    "inet_ntop",
    "inet_pton",
    "ntohl",
    "ntohs",
    "setdefaulttimeout",
    "socket",
    "timeout",
]
