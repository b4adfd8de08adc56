"""An interface: one device, one MAC, one IPv4 address/prefix."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ustack.link import vnet
from ustack.link.base import Device, Frame
from ustack.wire import ethernet as weth
from ustack.wire import ipv4 as wip
from ustack.wire.tcp import CHECKSUM_OFFSET as TCP_CSUM_OFFSET

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
        "tcp_csum_vnet",
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
        # With offloads on, every TCP frame asks the device to finish its
        # checksum (NEEDS_CSUM): this header, the same for all of them.
        self.tcp_csum_vnet = vnet.gso_header(
            caps.vnet_hdr_len, csum_start=weth.HEADER_LEN + wip.MIN_HEADER_LEN,
            csum_offset=TCP_CSUM_OFFSET) if self.gso else b""
        self.arp: ArpTable  # set by the Stack right after construction

    def on_link(self, addr: bytes) -> bool:
        """True when ``addr`` is in this interface's subnet (directly reachable)."""
        return (int.from_bytes(addr, "big") & self.netmask) == self.network
