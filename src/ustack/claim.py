"""Claiming our addresses on a real link: look before taking one.

A stack with its own address on a link shares it with the kernel and
other hosts; an address already in use breaks both owners, silently (each
answers ARP for it, the neighbours' caches flap).  Before the Stack starts
(and announces its addresses with gratuitous ARP), ``probe`` asks for each
of them with RFC 5227 ARP probes, straight on the device: any ARP packet
from the address's owner, or another host probing for it, is a conflict
(``AddressConflict``, naming the address and the MAC that holds it).  The
timing is ``ustack.net.arp``'s (``PROBE_NUM`` probes ``PROBE_MIN`` to
``PROBE_MAX`` seconds apart, ``ANNOUNCE_WAIT`` after the last: about 0.2 s).

The probe goes out on the device (AF_PACKET or a TAP), so the kernel of
our own namespace never sees it, and the kernel does not answer probes for
an address it holds on another interface: ``kernel_owned`` asks the kernel
itself first (its IPv4 addresses, every one of every interface, lo and
secondary ones included, in one netlink dump) and ``KernelOwnsAddress``
refuses an address it holds.  Both run when ``dad`` is on (``--no-dad``
skips them); the kernel check is one dump and a set lookup per address,
for up to 65536 of them.

``interface_warnings`` says what about a ``packet:`` interface will
surprise: it is down (nothing passes), or the kernel has IPv4 addresses
on it too (both stacks answer on it; the kernel resets our connections'
segments it sees as its own only when the addresses are equal, which the
kernel check refuses, but its ARP and routes still act on the link).
"""

from __future__ import annotations

import errno
import os
import random
import select
import socket
import struct
import time
from collections.abc import Callable, Sequence
from typing import Final

from ustack.link import netif
from ustack.link.base import Device
from ustack.link.errors import LinkError
from ustack.net import arp
from ustack.wire import ethernet, ipv4

# A probe round is one frame per address: with --sources up to 65536 the
# first MAX_PROBED are probed (a conflict on a later one still shows as
# the stack's arp_address_conflict drop counter).
MAX_PROBED: Final = 1024


class AddressConflict(LinkError):
    """An address we were to take belongs to someone else on the link."""

    def __init__(self, ip: bytes, mac: bytes, probing: bool) -> None:
        self.ip = ipv4.addr_to_str(ip)
        self.mac = ethernet.mac_to_str(mac)
        how = ("is wanted by another host: {mac} probes for it" if probing
               else "is already in use on the link by {mac}")
        super().__init__(f"{self.ip} {how.format(mac=self.mac)} (RFC 5227 ARP probe); "
                         "choose another --ip, or --no-dad to skip this check",
                         errno.EADDRINUSE)


def probe(device: Device, mac: bytes, addrs: Sequence[bytes], *,
          clock: Callable[[], float] = time.monotonic,
          rng: random.Random | None = None) -> None:
    """Probe for ``addrs`` from ``mac`` on ``device``; AddressConflict at the
    first sign that one of them is taken.  What else arrives meanwhile is
    dropped: none of the addresses is ours yet (RFC 5227 2.1.1)."""
    probed = list(addrs[:MAX_PROBED])
    wanted = set(probed)
    frames = [arp.probe_frame(mac, ip) for ip in probed]
    rng = rng or random.Random()
    poller = select.poll()
    poller.register(device.fileno(), select.POLLIN)
    now = clock()
    next_probe: float | None = now
    sent = 0
    end = now
    while True:
        now = clock()
        if next_probe is not None and now >= next_probe:
            device.send_batch(frames, now)
            sent += 1
            if sent < arp.PROBE_NUM:
                next_probe = now + rng.uniform(arp.PROBE_MIN, arp.PROBE_MAX)
            else:
                next_probe = None
                end = now + arp.ANNOUNCE_WAIT
        for frame in device.recv_batch(64, now):
            found = arp.probe_conflict(bytes(frame), mac, wanted)
            if found is not None:
                ip, owner = found
                probing = bytes(frame[28:32]) == bytes(4)  # its sender IP: 0.0.0.0
                raise AddressConflict(ip, owner, probing)
        if next_probe is None and now >= end:
            return
        wake = next_probe if next_probe is not None else end
        d = device.next_deadline()
        if d is not None:
            wake = min(wake, d)
        wait = max(0.0, wake - clock())
        poller.poll(int(wait * 1000) + 1)


def interface_warnings(name: str) -> list[str]:
    """What to warn about before attaching AF_PACKET to ``name``: one line
    each (empty when all is as expected, or when the interface cannot be
    asked: opening it will say why)."""
    warnings = []
    try:
        flags = netif.interface_flags(name)
    except LinkError:
        return []
    if not flags & netif.IFF_UP:
        warnings.append(f"interface {name} is down: no frame passes until it is up "
                        f"(ip link set {name} up)")
    try:
        held = [a for a, (dev, _) in kernel_addresses().items() if dev == name]
    except OSError:
        return warnings
    if held:
        shown = ", ".join(ipv4.addr_to_str(a) for a in sorted(held)[:3])
        more = f" and {len(held) - 3} more" if len(held) > 3 else ""
        its = "an IPv4 address" if len(held) == 1 else "IPv4 addresses"
        warnings.append(f"interface {name} has {its} of its own ({shown}{more}): the "
                        "kernel answers ARP and takes traffic on it beside ustack (to leave "
                        f"the link to ustack: ip addr flush dev {name})")
    return warnings


class KernelOwnsAddress(AddressConflict):
    """An address we were to take is the kernel's own, in this namespace."""

    def __init__(self, ip: bytes, dev: str, prefix: int, count: int) -> None:
        self.ip = ipv4.addr_to_str(ip)
        self.mac = ""
        self.dev = dev
        also = f" (and {count - 1} more of ours)" if count > 1 else ""
        LinkError.__init__(
            self, f"{self.ip} is the kernel's own address here, on {dev}{also}: both would "
            f"answer for it; choose another --ip, or take it from the kernel (ip addr del "
            f"{self.ip}/{prefix} dev {dev})", errno.EADDRINUSE)


def check_kernel_addresses(addrs: Sequence[bytes]) -> None:
    """KernelOwnsAddress for the first of ``addrs`` the kernel holds in this
    namespace (on any interface: lo, the link itself, a secondary address)."""
    try:
        owned = kernel_owned(addrs)
    except OSError:  # no rtnetlink (a sandbox): the probe is all there is
        return
    if owned:
        ip, (dev, prefix) = owned[0]
        raise KernelOwnsAddress(ip, dev, prefix, len(owned))


def kernel_owned(addrs: Sequence[bytes]) -> list[tuple[bytes, tuple[str, int]]]:
    """Those of ``addrs`` the kernel holds, with the interface holding each
    and the prefix length it has there."""
    held = kernel_addresses()
    return [(a, held[a]) for a in addrs if a in held]


# rtnetlink (linux/netlink.h, linux/rtnetlink.h, linux/if_addr.h).
_NETLINK_ROUTE: Final = 0
_RTM_GETADDR: Final = 22
_RTM_NEWADDR: Final = 20
_NLM_F_REQUEST: Final = 0x1
_NLM_F_DUMP: Final = 0x300
_NLMSG_ERROR: Final = 2
_NLMSG_DONE: Final = 3
_IFA_ADDRESS: Final = 1
_IFA_LOCAL: Final = 2
_NLMSG_HDR: Final = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFADDRMSG: Final = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTATTR: Final = struct.Struct("=HH")  # len, type


def kernel_addresses() -> dict[bytes, tuple[str, int]]:
    """Every IPv4 address the kernel holds in this namespace -> the name of
    its interface and its prefix length: one RTM_GETADDR dump (what ``ip -4 addr`` shows), where
    SIOCGIFADDR would give one per interface and miss secondary ones."""
    out: dict[bytes, tuple[str, int]] = {}
    names = dict(socket.if_nameindex())
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_ROUTE) as nl:
        req = _NLMSG_HDR.pack(_NLMSG_HDR.size + _IFADDRMSG.size, _RTM_GETADDR,
                              _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0)
        nl.send(req + _IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0))
        while True:
            data = nl.recv(1 << 16)
            off = 0
            while off + _NLMSG_HDR.size <= len(data):
                length, kind, _, _, _ = _NLMSG_HDR.unpack_from(data, off)
                if length < _NLMSG_HDR.size:
                    return out
                if kind == _NLMSG_DONE:
                    return out
                if kind == _NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", data, off + _NLMSG_HDR.size)
                    raise OSError(-code, os.strerror(-code))
                if kind == _RTM_NEWADDR:
                    _take_address(data[off + _NLMSG_HDR.size:off + length], names, out)
                off += (length + 3) & ~3


def _take_address(msg: bytes, names: dict[int, str],
                  out: dict[bytes, tuple[str, int]]) -> None:
    family, prefix, _, _, index = _IFADDRMSG.unpack_from(msg)
    if family != socket.AF_INET:
        return
    local = address = None
    off = _IFADDRMSG.size
    while off + _RTATTR.size <= len(msg):
        length, kind = _RTATTR.unpack_from(msg, off)
        if length < _RTATTR.size:
            break
        value = msg[off + _RTATTR.size:off + length]
        if kind == _IFA_LOCAL and len(value) == 4:
            local = value
        elif kind == _IFA_ADDRESS and len(value) == 4:
            address = value
        off += (length + 3) & ~3
    # IFA_LOCAL is the interface's own address; IFA_ADDRESS the peer's on a
    # point-to-point link, else the same.
    addr = local or address
    if addr is not None:
        out[addr] = (names.get(index, f"interface {index}"), prefix)
