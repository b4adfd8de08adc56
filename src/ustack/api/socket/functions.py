"""The module-level functions of ``ustack.socket``.

``attach(stack)`` starts a Runtime for ``stack`` and makes it the default
(``runtime.default_runtime``) that ``socket()``, ``create_connection()`` ...
use when no ``runtime=`` is given; ``detach()`` stops it.  ``ustack run``
attaches the stack it brings up.
"""

from __future__ import annotations

import _socket
import socket as _std
from typing import TYPE_CHECKING, Any

from ustack.api.socket.errors import NotCoveredError
from ustack.api.socket.resolve import getaddrinfo
from ustack.api.socket.runtime import Runtime, current_default, default_runtime, set_default
from ustack.api.socket.sock import Socket

if TYPE_CHECKING:
    from ustack.stack import Stack

__all__ = ["attach", "create_connection", "create_server", "default_runtime", "detach",
           "has_dualstack_ipv6", "socket"]
GLOBAL_DEFAULT_TIMEOUT: Any = _std._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]


def attach(stack: Stack) -> Runtime:
    """Run ``stack`` in a background thread and make it the default for
    ``ustack.socket``; returns the runtime (``detach()`` stops it)."""
    old = current_default()
    if old is not None and old.alive:
        raise RuntimeError("a stack is already attached; detach() it first")
    rt = Runtime(stack).start()
    set_default(rt)
    return rt


def detach(linger: float = 0.0) -> None:
    """Stop the default runtime (after up to ``linger`` s for closing connections)."""
    rt = current_default()
    set_default(None)
    if rt is not None:
        rt.stop(linger)
        rt.close()


def socket(family: int = -1, type: int = -1, proto: int = -1, fileno: int | None = None,
           *, runtime: Runtime | None = None) -> Socket:
    return Socket(family, type, proto, fileno, runtime=runtime)


def create_connection(address: tuple[str, int], timeout: Any = GLOBAL_DEFAULT_TIMEOUT,
                      source_address: tuple[str, int] | None = None, *,
                      all_errors: bool = False, runtime: Runtime | None = None) -> Socket:
    """``socket.create_connection``: try each address of ``host`` in turn."""
    host, port = address
    errors: list[OSError] = []
    for _, kind, proto, _, sa in getaddrinfo(host, port, 0, _socket.SOCK_STREAM):
        sock = None
        try:
            sock = Socket(_socket.AF_INET, kind, proto, runtime=runtime)
            if timeout is not GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sa)
            return sock
        except OSError as e:
            errors.append(e)
            if sock is not None:
                sock.close()
    if not errors:
        raise OSError("getaddrinfo returns an empty list")
    if all_errors:
        raise ExceptionGroup("create_connection failed", errors)
    raise errors[0]


def create_server(address: tuple[str, int], *, family: int = _socket.AF_INET,
                  backlog: int | None = None, reuse_port: bool = False,
                  dualstack_ipv6: bool = False, runtime: Runtime | None = None) -> Socket:
    """``socket.create_server`` for AF_INET (SO_REUSEADDR set, as on POSIX)."""
    if family != _socket.AF_INET:
        raise NotCoveredError(f"create_server(family={family})", "AF_INET only")
    if reuse_port:
        raise NotCoveredError("create_server(reuse_port=True)", "no SO_REUSEPORT")
    if dualstack_ipv6:
        raise ValueError("dualstack_ipv6 requires AF_INET6 family")
    sock = Socket(_socket.AF_INET, _socket.SOCK_STREAM, runtime=runtime)
    try:
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        sock.bind(address)
        if backlog is None:
            sock.listen()
        else:
            sock.listen(backlog)
        return sock
    except BaseException:
        sock.close()
        raise


def has_dualstack_ipv6() -> bool:
    return False
