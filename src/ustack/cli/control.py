"""The control socket through which ``ustack stats`` reads a running stack.

A Unix stream socket at ``/run/ustack/NAME.sock``: each connection gets one
JSON document (counters, device statistics, interfaces) and is closed.  It
is served from the Stack's own loop (``Stack.add_reader``), so reading the
counters needs no lock and no thread.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
from collections.abc import Callable
from typing import Any

from ustack.stack import Stack
from ustack.wire import ethernet, ipv4

RUN_DIR = os.environ.get("USTACK_RUN_DIR", "/run/ustack")


class ControlError(Exception):
    """One human line: why the control socket could not be used."""


def check_name(name: str) -> str:
    """``name`` if it can name a control socket (a file in ``RUN_DIR``),
    else ControlError: checked before a stack is brought up under it."""
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        raise ControlError(f"--name {name!r}: a stack's name is a file name in {RUN_DIR} "
                           "(not empty, no '/')")
    return name


def socket_path(name: str) -> str:
    return os.path.join(RUN_DIR, f"{check_name(name)}.sock")


def report(stack: Stack) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "counters": stack.counters.snapshot(),
        "tcp": _tcp_states(stack),
        "interfaces": [
            {
                "name": i.name,
                "mac": ethernet.mac_to_str(i.mac),
                "ip": f"{ipv4.addr_to_str(i.ip)}/{i.prefix_len}",
                # How many addresses of ours (--sources): a count, the
                # list can be 65536 long.
                "addresses": len(i.addrs),
                "mtu": i.mtu,
                "arp": {ipv4.addr_to_str(ip): ethernet.mac_to_str(e.mac)
                        for ip, e in i.arp.entries.items()},
                "device": i.device.stats(),
            }
            for i in stack.interfaces
        ],
    }


def _tcp_states(stack: Stack) -> dict[str, int]:
    """How many TCP connections are in each state (like ``ss -s``)."""
    counts: dict[str, int] = {}
    for sock in stack.tcp.conns.values():
        name = sock.conn.state.value
        counts[name] = counts.get(name, 0) + 1
    if stack.tcp.tw:  # closed connections kept as TIME-WAIT records (tcp/timewait.py)
        counts["TIME-WAIT"] = counts.get("TIME-WAIT", 0) + len(stack.tcp.tw)
    listening = len(stack.tcp.listeners)
    if listening:
        counts["LISTEN"] = listening
    return counts


class ControlServer:
    """The listening control socket of the stack ``name``; ControlError,
    one line naming the socket's path, when it cannot be made."""

    def __init__(self, stack: Stack, name: str,
                 more_counters: Callable[[], dict[str, int]] | None = None) -> None:
        self.stack = stack
        # An application's own counters (``ustack serve``'s Http*), listed
        # with the stack's.
        self.more_counters = more_counters
        self.path = socket_path(name)
        try:
            os.makedirs(RUN_DIR, exist_ok=True)
            if os.path.exists(self.path):
                if _alive(self.path):
                    raise ControlError(f"a stack named {name!r} is already running "
                                       f"({self.path})")
                os.unlink(self.path)  # stale: its stack is gone
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self.sock.bind(self.path)
                self.sock.listen(8)
            except OSError:
                self.sock.close()
                raise
        except OSError as e:
            raise ControlError(f"control socket {self.path}: {e.strerror or e}") from None
        self.sock.setblocking(False)
        stack.add_reader(self.sock.fileno(), self._accept)

    def _accept(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return
        with conn:
            conn.settimeout(1.0)
            doc = report(self.stack)
            if self.more_counters is not None:
                doc["counters"].update(self.more_counters())
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(doc).encode())

    def close(self) -> None:
        self.stack.remove_reader(self.sock.fileno())
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def _alive(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def running_names() -> list[str]:
    """Names of the stacks whose control socket answers.

    A stack killed with SIGKILL leaves its socket file behind; nobody listens
    on it any more, so it is removed here rather than reported.
    """
    try:
        files = sorted(f for f in os.listdir(RUN_DIR) if f.endswith(".sock"))
    except FileNotFoundError:
        return []
    names = []
    for f in files:
        path = os.path.join(RUN_DIR, f)
        if _alive(path):
            names.append(f[:-5])
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)
    return names


def query(name: str | None) -> dict[str, Any]:
    """The report of the running stack ``name`` (or the only one running)."""
    if name is None:
        names = running_names()
        if not names:
            raise ControlError(f"no running stack found (no socket in {RUN_DIR})")
        if len(names) > 1:
            raise ControlError(f"several stacks are running ({', '.join(names)}): use --name")
        name = names[0]
    path = socket_path(name)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5.0)
    try:
        s.connect(path)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    except FileNotFoundError:
        raise ControlError(f"no running stack named {name!r} ({path} not found)") from None
    except OSError as e:
        if e.errno in (errno.ECONNREFUSED, errno.ENOENT):
            raise ControlError(f"stack {name!r} is not running (stale {path})") from None
        raise ControlError(f"cannot read stack {name!r}: {e.strerror or e}") from None
    finally:
        s.close()
    result: dict[str, Any] = json.loads(b"".join(chunks))
    return result
