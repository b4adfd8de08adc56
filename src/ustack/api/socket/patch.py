"""Route the standard ``socket`` module's AF_INET through ustack (``ustack run``).

``patch(runtime)`` replaces attributes of the real ``socket`` module, so
code that looks them up at call time (socketserver, http.client, urllib,
asyncio, smtplib ... all do ``socket.socket(...)``, ``socket.getaddrinfo``)
gets ustack for AF_INET, while AF_UNIX and other families, and sockets made
from an existing descriptor, stay the kernel's.  AF_INET6 raises
NotCoveredError: a program must never silently reach the host's network.

``socket.socket`` becomes a class whose constructor picks the
implementation; ``isinstance(x, socket.socket)`` holds for both kinds.
``ssl`` is imported first so that its SSLSocket keeps subclassing the
kernel's socket class (TLS over ustack sockets is not covered: wrapping one
fails in ``detach()``, naming it).
"""

from __future__ import annotations

import _socket
import socket as _std
from typing import Any

from ustack.api.socket import functions, resolve
from ustack.api.socket.errors import NotCoveredError
from ustack.api.socket.runtime import Runtime
from ustack.api.socket.sock import Socket

_real_socket = _std.socket
_saved: dict[str, Any] = {}
_runtime: Runtime | None = None


class _SocketMeta(type):
    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, (_real_socket, Socket))

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, (_real_socket, Socket))


class PatchedSocket(metaclass=_SocketMeta):
    """``socket.socket`` while patched: ustack for AF_INET, the kernel otherwise."""

    def __new__(cls, family: int = -1, type: int = -1, proto: int = -1,
                fileno: int | None = None) -> Any:
        if fileno is None:
            fam = _socket.AF_INET if family == -1 else family
            if fam == _socket.AF_INET:
                return Socket(fam, type, proto, runtime=_runtime)
            if fam == _socket.AF_INET6:
                raise NotCoveredError("socket(AF_INET6)", "ustack is IPv4 only")
        return _real_socket(family, type, proto, fileno)


def _fromfd(fd: int, family: int, type: int, proto: int = 0) -> Any:
    if family in (_socket.AF_INET, _socket.AF_INET6):
        raise NotCoveredError("socket.fromfd(AF_INET)", "a kernel socket")
    return _real_socket(family, type, proto, _socket.dup(fd))


def _create_connection(address: tuple[str, int],
                       timeout: Any = functions.GLOBAL_DEFAULT_TIMEOUT,
                       source_address: tuple[str, int] | None = None, *,
                       all_errors: bool = False) -> Socket:
    return functions.create_connection(address, timeout, source_address,
                                       all_errors=all_errors, runtime=_runtime)


def _create_server(address: tuple[str, int], *, family: int = _socket.AF_INET,
                   backlog: int | None = None, reuse_port: bool = False,
                   dualstack_ipv6: bool = False) -> Socket:
    return functions.create_server(address, family=family, backlog=backlog,
                                   reuse_port=reuse_port, dualstack_ipv6=dualstack_ipv6,
                                   runtime=_runtime)


REPLACEMENTS: dict[str, Any] = {
    "socket": PatchedSocket,
    "SocketType": PatchedSocket,
    "create_connection": _create_connection,
    "create_server": _create_server,
    "has_dualstack_ipv6": functions.has_dualstack_ipv6,
    "fromfd": _fromfd,
    "getaddrinfo": resolve.getaddrinfo,
    "gethostbyname": resolve.gethostbyname,
    "gethostbyname_ex": resolve.gethostbyname_ex,
    "gethostbyaddr": resolve.gethostbyaddr,
    "getnameinfo": resolve.getnameinfo,
}


def patch(runtime: Runtime) -> None:
    """Make the standard ``socket`` module use ``runtime`` for AF_INET."""
    global _runtime
    import ssl  # noqa: F401  (before patching; see the module docstring)

    if _saved:
        raise RuntimeError("socket module is already patched")
    _runtime = runtime
    for name, value in REPLACEMENTS.items():
        _saved[name] = getattr(_std, name)
        setattr(_std, name, value)
    # The stdlib's SocketIO catches errors by these names; they stay the same.


def unpatch() -> None:
    global _runtime
    for name, value in _saved.items():
        setattr(_std, name, value)
    _saved.clear()
    _runtime = None
