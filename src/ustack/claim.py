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

``interface_warnings`` says what about a ``packet:`` interface will
surprise: it is down (nothing passes), or the kernel has an IPv4 address
on it too (both stacks answer on it; the kernel resets our connections'
segments it sees as its own only when the addresses are equal, which the
probe catches, but its ARP and routes still act on the link).
"""

from __future__ import annotations

import errno
import fcntl
import random
import select
import socket
import struct
import time
from collections.abc import Callable, Sequence
from typing import Final

from ustack.link.base import Device
from ustack.link.errors import LinkError
from ustack.net import arp
from ustack.wire import ethernet, ipv4

# A probe round is one frame per address: with --sources up to 65536 the
# first MAX_PROBED are probed (a conflict on a later one still shows as
# the stack's arp_address_conflict drop counter).
MAX_PROBED: Final = 1024

_SIOCGIFFLAGS: Final = 0x8913
_SIOCGIFADDR: Final = 0x8915
_IFF_UP: Final = 0x1
_IFNAMSIZ: Final = 16


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


def _ifreq(name: str) -> bytes:
    return struct.pack(f"{_IFNAMSIZ}s{40 - _IFNAMSIZ}x", name.encode()[:_IFNAMSIZ - 1])


def interface_warnings(name: str) -> list[str]:
    """What to warn about before attaching AF_PACKET to ``name``: one line
    each (empty when all is as expected, or when the interface cannot be
    asked: opening it will say why)."""
    warnings = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            res = fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, _ifreq(name))
        except OSError:
            return []
        (flags,) = struct.unpack_from("H", res, _IFNAMSIZ)
        if not flags & _IFF_UP:
            warnings.append(f"interface {name} is down: no frame passes until it is up "
                            f"(ip link set {name} up)")
        try:
            res = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, _ifreq(name))
        except OSError:
            return warnings  # EADDRNOTAVAIL: no IPv4 address, as expected
        addr = socket.inet_ntoa(res[_IFNAMSIZ + 4:_IFNAMSIZ + 8])
        warnings.append(f"interface {name} has an IPv4 address of its own ({addr}): the "
                        "kernel answers ARP and takes traffic on it beside ustack (to leave "
                        f"the link to ustack: ip addr flush dev {name})")
    return warnings
