"""Name resolution for ustack sockets: numeric IPv4 addresses and /etc/hosts.

A program on ustack has no resolver of its own, and asking the kernel's
(glibc, DNS over the host's network) would leak the program's traffic past
its own stack, which ``ustack run`` promises never to do.  So names resolve
from /etc/hosts (IPv4 entries) only; anything else fails the way an unknown
name does (``gaierror`` EAI_NONAME), with a message saying why.  Service
names come from /etc/services (a file, no network).
"""

from __future__ import annotations

import _socket
import contextlib
import os
from socket import AddressFamily, SocketKind, gaierror, herror

HOSTS = "/etc/hosts"
_NONAME = "Name or service not known (ustack.socket resolves numeric IPv4 and /etc/hosts only)"

AddrInfo = tuple[AddressFamily, SocketKind, int, str, tuple[str, int]]

_cache: tuple[float, dict[str, list[str]], dict[str, list[str]]] | None = None


def _hosts() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(name -> addresses, address -> names) from /etc/hosts, IPv4 only;
    re-read when the file changes."""
    global _cache
    try:
        mtime = os.stat(HOSTS).st_mtime
    except OSError:
        return {}, {}
    if _cache is not None and _cache[0] == mtime:
        return _cache[1], _cache[2]
    by_name: dict[str, list[str]] = {}
    by_addr: dict[str, list[str]] = {}
    try:
        with open(HOSTS, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.partition("#")[0].split()
                if len(fields) < 2:
                    continue
                addr = numeric(fields[0])
                if addr is None:
                    continue  # IPv6 or garbage
                for name in fields[1:]:
                    by_name.setdefault(name.lower(), []).append(addr)
                    by_addr.setdefault(addr, []).append(name)
    except OSError:
        return {}, {}
    _cache = (mtime, by_name, by_addr)
    return by_name, by_addr


def numeric(host: str) -> str | None:
    """The dotted-quad form of a numeric IPv4 address (inet_aton rules, as
    glibc's getaddrinfo accepts), or None."""
    if not host or not (host[0].isdigit()):
        return None
    try:
        return _socket.inet_ntoa(_socket.inet_aton(host))
    except OSError:
        return None


def _host_str(host: str | bytes | None) -> str | None:
    if isinstance(host, bytes):
        return host.decode("idna")
    return host


def resolve(host: str | bytes | None, *, passive: bool = False, numeric_only: bool = False
            ) -> list[str]:
    """IPv4 addresses for ``host``; gaierror(EAI_NONAME) when there are none."""
    h = _host_str(host)
    if h is None:
        return ["0.0.0.0" if passive else "127.0.0.1"]
    if h == "":
        return ["0.0.0.0"]
    addr = numeric(h)
    if addr is not None:
        return [addr]
    if not numeric_only:
        addrs = _hosts()[0].get(h.lower().rstrip("."))
        if addrs:
            return list(dict.fromkeys(addrs))
    raise gaierror(_socket.EAI_NONAME, _NONAME)


def _port(port: str | bytes | int | None, proto: str) -> int:
    if port is None:
        return 0
    if isinstance(port, int):
        if not 0 <= port <= 0xFFFF:
            raise OverflowError("getaddrinfo(): port must be 0-65535.")
        return port
    p = port.decode() if isinstance(port, bytes) else port
    if p.isdigit():
        return int(p)
    try:
        return _socket.getservbyname(p, proto)
    except OSError:
        raise gaierror(_socket.EAI_SERVICE, "Servname not supported for ai_socktype") from None


_KINDS = ((_socket.SOCK_STREAM, _socket.IPPROTO_TCP, "tcp"),
          (_socket.SOCK_DGRAM, _socket.IPPROTO_UDP, "udp"))


def getaddrinfo(host: str | bytes | None, port: str | bytes | int | None, family: int = 0,
                type: int = 0, proto: int = 0, flags: int = 0) -> list[AddrInfo]:
    """``socket.getaddrinfo`` for AF_INET (family 0 means AF_INET here)."""
    if family not in (0, _socket.AF_INET):
        raise gaierror(_socket.EAI_FAMILY,
                       "ai_family not supported (ustack.socket: getaddrinfo() is AF_INET only)")
    kinds = [k for k in _KINDS if (not type or k[0] == type) and (not proto or k[1] == proto)]
    if not kinds:
        raise gaierror(_socket.EAI_SOCKTYPE, "ai_socktype not supported")
    addrs = resolve(host, passive=bool(flags & _socket.AI_PASSIVE),
                    numeric_only=bool(flags & _socket.AI_NUMERICHOST))
    canon = ""
    if flags & _socket.AI_CANONNAME:
        canon = _host_str(host) or ""
    out: list[AddrInfo] = []
    for addr in addrs:
        for kind, pr, name in kinds:
            out.append((AddressFamily.AF_INET, SocketKind(kind), pr, canon,
                        (addr, _port(port, name))))
            canon = ""  # glibc: only the first entry carries it
    return out


def gethostbyname(hostname: str) -> str:
    return resolve(hostname)[0]


def gethostbyname_ex(hostname: str) -> tuple[str, list[str], list[str]]:
    addrs = resolve(hostname)
    names = _hosts()[1].get(addrs[0], [])
    name = names[0] if names else hostname
    return name, [n for n in names[1:]], addrs


def gethostbyaddr(ip_address: str) -> tuple[str, list[str], list[str]]:
    """Reverse lookup in /etc/hosts (a name is resolved first, as glibc does)."""
    try:
        addr = resolve(ip_address)[0]
    except gaierror:
        raise herror(1, "Unknown host") from None
    names = _hosts()[1].get(addr)
    if not names:
        raise herror(1, "Unknown host")
    return names[0], names[1:], [addr]


def getnameinfo(sockaddr: tuple[str, int], flags: int) -> tuple[str, str]:
    if not isinstance(sockaddr, tuple) or len(sockaddr) < 2:
        raise TypeError("getnameinfo() argument 1 must be a tuple")
    host, port = sockaddr[0], sockaddr[1]
    addr = resolve(host, numeric_only=True)[0]
    name = addr
    if not flags & _socket.NI_NUMERICHOST:
        names = _hosts()[1].get(addr)
        if names:
            name = names[0] if not flags & _socket.NI_NOFQDN else names[0].split(".")[0]
        elif flags & _socket.NI_NAMEREQD:
            raise gaierror(_socket.EAI_NONAME, _NONAME)
    serv = str(port)
    if not flags & _socket.NI_NUMERICSERV:
        with contextlib.suppress(OSError):
            serv = _socket.getservbyport(port, "udp" if flags & _socket.NI_DGRAM else "tcp")
    return name, serv
