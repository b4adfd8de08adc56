"""An interface: one device, one MAC, one IPv4 address/prefix."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ustack.link.base import Device, Frame

if TYPE_CHECKING:
    from ustack.net.arp import ArpTable


def random_mac() -> bytes:
    """A locally administered unicast MAC (IEEE 802: bit 1 set, bit 0 clear)."""
    b = bytearray(os.urandom(6))
    b[0] = (b[0] & 0xFC) | 0x02
    return bytes(b)


class Interface:
    """Per-interface state the receive and transmit paths touch on every frame.

    ``txq`` collects the frames produced during one poll iteration; the Stack
    hands the whole list to the device at once (DESIGN.md principle 2).
    """

    __slots__ = (
        "arp",
        "broadcast",
        "device",
        "gso",
        "gso_pending",
        "ip",
        "mac",
        "mtu",
        "name",
        "netmask",
        "network",
        "prefix_len",
        "txq",
    )

    def __init__(self, device: Device, mac: bytes, ip: bytes, prefix_len: int) -> None:
        if len(mac) != 6:
            raise ValueError("an interface MAC is 6 bytes")
        if len(ip) != 4 or not 0 <= prefix_len <= 32:
            raise ValueError("an interface address is 4 bytes with a prefix of 0..32")
        self.device = device
        self.name = device.name
        self.mac = mac
        self.ip = ip
        self.prefix_len = prefix_len
        self.netmask = (0xFFFFFFFF << (32 - prefix_len)) & 0xFFFFFFFF
        self.network = int.from_bytes(ip, "big") & self.netmask
        bcast = self.network | (~self.netmask & 0xFFFFFFFF)
        self.broadcast = bcast.to_bytes(4, "big")
        self.mtu = device.caps.mtu
        self.txq: list[Frame] = []
        # Segmentation offload: the device cuts TCP super-frames (TSO).
        caps = device.caps
        self.gso = bool(caps.tso and caps.vnet_hdr_len and hasattr(device, "send_gso"))
        self.gso_pending = False  # a GsoFrame was queued since the last flush
        self.arp: ArpTable  # set by the Stack right after construction

    def on_link(self, addr: bytes) -> bool:
        """True when ``addr`` is in this interface's subnet (directly reachable)."""
        return (int.from_bytes(addr, "big") & self.netmask) == self.network
