"""Kernel interface settings through the classic ``SIOC*`` ioctls.

The kernel side of a TAP (or a veth end) needs an address and the UP flag
before it talks.  ``ip addr``/``ip link`` would do, but a subprocess per
setting is slow and needs iproute2; the ioctls on any AF_INET datagram socket
(netdevice(7)) are in the standard library's reach.  All functions act in the
network namespace of the calling thread.

Every ``OSError`` comes out as a ``LinkError`` naming the interface.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import socket
import struct

from ustack.link.errors import LinkError, from_os_error

# linux/sockios.h
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFADDR = 0x8916
SIOCSIFBRDADDR = 0x891A
SIOCSIFNETMASK = 0x891C
SIOCGIFMTU = 0x8921
SIOCSIFMTU = 0x8922
SIOCGIFHWADDR = 0x8927

IFF_UP = 0x1
IFNAMSIZ = 16

# struct ifreq is the 16-byte name followed by a 24-byte union.
_IFREQ_SIZE = 40
_IFR_NAME = struct.Struct("16s")
_IFR_FLAGS = struct.Struct("16sh")
_IFR_INT = struct.Struct("16si")
# sockaddr_in inside the union: family (host order), port, address.
_IFR_ADDR = struct.Struct("16sH2s4s")
_IFR_HWADDR_OFF = 16 + 2  # sa_family, then sa_data holds the MAC


def check_ifname(name: str) -> bytes:
    """``name`` as bytes for an ifreq; LinkError unless it is a valid name."""
    raw = name.encode()
    if not raw or len(raw) >= IFNAMSIZ or b"/" in raw or b"\0" in raw:
        raise LinkError(f"bad interface name {name!r} (1..15 bytes, no '/')")
    return raw


def _req(layout: struct.Struct, *values: object) -> bytes:
    return layout.pack(*values).ljust(_IFREQ_SIZE, b"\0")


def _ioctl(name: str, what: str, request: int, ifreq: bytes) -> bytes:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            return fcntl.ioctl(s.fileno(), request, ifreq)
    except OSError as exc:
        if exc.errno in (errno.ENODEV, errno.ENXIO):
            raise LinkError(f"{what}: no such interface {name}", exc.errno) from exc
        raise from_os_error(f"{what} {name}", exc) from exc


def interface_index(name: str, what: str = "interface") -> int:
    """The kernel's ifindex for ``name``; ``what`` prefixes the error."""
    check_ifname(name)
    try:
        return socket.if_nametoindex(name)
    except OSError as exc:
        raise LinkError(f"{what}: no such interface {name}", exc.errno) from exc


def interface_mac(name: str) -> bytes:
    """The six-byte hardware address of ``name`` (SIOCGIFHWADDR)."""
    res = _ioctl(name, "interface", SIOCGIFHWADDR, _req(_IFR_NAME, check_ifname(name)))
    return res[_IFR_HWADDR_OFF : _IFR_HWADDR_OFF + 6]


def interface_mtu(name: str) -> int:
    """The MTU of ``name`` (SIOCGIFMTU)."""
    res = _ioctl(name, "interface", SIOCGIFMTU, _req(_IFR_INT, check_ifname(name), 0))
    return int(_IFR_INT.unpack_from(res)[1])


def set_mtu(name: str, mtu: int) -> None:
    """Set the MTU of ``name`` (SIOCSIFMTU)."""
    _ioctl(name, "interface", SIOCSIFMTU, _req(_IFR_INT, check_ifname(name), mtu))


def interface_flags(name: str) -> int:
    """``name``'s interface flags (IFF_UP, ...); LinkError if it cannot be asked."""
    res = _ioctl(name, "interface", SIOCGIFFLAGS, _req(_IFR_FLAGS, check_ifname(name), 0))
    flags: int = _IFR_FLAGS.unpack_from(res)[1]
    return flags


def set_up(name: str, up: bool = True) -> None:
    """Set or clear IFF_UP on ``name``, keeping its other flags."""
    raw = check_ifname(name)
    flags = interface_flags(name)
    flags = (flags | IFF_UP) if up else (flags & ~IFF_UP)
    _ioctl(name, "interface", SIOCSIFFLAGS, _req(_IFR_FLAGS, raw, flags))


def _addr_req(raw: bytes, addr: ipaddress.IPv4Address) -> bytes:
    return _req(_IFR_ADDR, raw, socket.AF_INET, b"\0\0", addr.packed)


def configure_host_side(name: str, cidr: str, *, mtu: int | None = None) -> None:
    """Give the kernel's side of ``name`` the address ``cidr`` and bring it up.

    ``cidr`` is "198.18.0.1/24": the kernel gets 198.18.0.1 and, from the
    mask, a connected route to 198.18.0.0/24 through ``name``.  This replaces
    the interface's primary IPv4 address if it has one.
    """
    try:
        iface = ipaddress.IPv4Interface(cidr)
    except ValueError as exc:
        raise LinkError(f"interface {name}: bad address {cidr!r} (want A.B.C.D/LEN)") from exc
    raw = check_ifname(name)
    what = "interface"
    if mtu is not None:
        set_mtu(name, mtu)
    _ioctl(name, what, SIOCSIFADDR, _addr_req(raw, iface.ip))
    # The kernel first derives a classful mask from the address; the netmask
    # and broadcast ioctls then correct it and re-insert the prefix route.
    _ioctl(name, what, SIOCSIFNETMASK, _addr_req(raw, iface.netmask))
    if iface.network.prefixlen < 31:
        _ioctl(name, what, SIOCSIFBRDADDR, _addr_req(raw, iface.network.broadcast_address))
    set_up(name)
