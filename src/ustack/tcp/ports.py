"""Which local TCP ports are taken (Linux's bind hash, simplified).

A port is in use at an address when a listener, a bound socket, a
connection or a TIME-WAIT record holds it there (or at the wildcard);
``bind`` reserves one for a socket that will listen or connect later
(``bind()`` in the sockets API).
"""

from __future__ import annotations

import errno

from ustack.net.host import Host
from ustack.net.ports import EphemeralPorts
from ustack.net.sockaddr import ANY
from ustack.tcp.socket import TcpListener, TcpSocket, os_error
from ustack.tcp.timewait import TimeWaitRecord

Key = tuple[bytes, int, bytes, int]


class Binding:
    """A port reserved by ``TcpLayer.bind``; ``reuse`` (SO_REUSEADDR) may be
    changed while it is held, as on Linux, and counts at the next bind."""

    __slots__ = ("ip", "port", "reuse")

    def __init__(self, ip: bytes, port: int, reuse: bool) -> None:
        self.ip = ip
        self.port = port
        self.reuse = reuse


class PortTable:
    """The layer's tables, read to tell whether a port is free, and the
    ports bound by sockets that neither listen nor connect yet."""

    def __init__(self, host: Host, listeners: dict[tuple[bytes, int], TcpListener],
                 conns: dict[Key, TcpSocket], records: dict[Key, TimeWaitRecord]) -> None:
        self.local_addrs = host.local_addrs
        self.listeners = listeners
        self.conns = conns
        self.records = records
        self.bound: dict[int, list[Binding]] = {}

    def bind(self, ip: bytes, port: int, ephemeral: EphemeralPorts, *,
             reuse: bool = False) -> Binding:
        """Reserve ``(ip, port)`` for a socket that will listen or connect
        later (``bind()`` in the sockets API); port 0 picks an ephemeral
        one (from ``ephemeral``).  ``reuse`` is SO_REUSEADDR.  Release it with ``unbind`` once the
        socket listens, connects or closes."""
        if ip != ANY and ip not in self.local_addrs:
            raise os_error(errno.EADDRNOTAVAIL)
        if port == 0:
            port = ephemeral.pick(lambda p: self.in_use(ip, p, reuse),
                                       errno.EADDRINUSE)
        elif self.in_use(ip, port, reuse):
            raise os_error(errno.EADDRINUSE)
        b = Binding(ip, port, reuse)
        self.bound.setdefault(port, []).append(b)
        return b

    def unbind(self, b: Binding) -> None:
        lst = self.bound.get(b.port)
        if lst is not None and b in lst:
            lst.remove(b)
            if not lst:
                del self.bound[b.port]

    def in_use(self, ip: bytes, port: int, reuse: bool = False) -> bool:
        """Linux's bind rules, simplified: a listener on the port always
        conflicts; bound sockets and connections conflict unless
        SO_REUSEADDR lets both share it (TIME-WAIT included)."""
        if self.listening(ip, port):
            return True
        for other in self.bound.get(port, ()):
            if (other.ip == ip or other.ip == ANY or ip == ANY) and not (
                    reuse and other.reuse):
                return True
        if not reuse:
            for key in self.conns:
                if key[1] == port and (key[0] == ip or ip == ANY):
                    return True
            for key in self.records:
                if key[1] == port and (key[0] == ip or ip == ANY):
                    return True
        return False

    def listening(self, ip: bytes, port: int) -> bool:
        """Is a listener on ``port`` at ``ip``, or at an address that overlaps it
        (either is the wildcard)?"""
        listeners = self.listeners
        if ip != ANY:
            return (ip, port) in listeners or (ANY, port) in listeners
        return any(lport == port for (_, lport) in listeners)
