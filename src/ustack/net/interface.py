"""An interface: one device, one MAC, its IPv4 addresses on one subnet (the
first, ``ip``, with its prefix; more with ``add_address``), its ARP table
and the frames it will transmit at the end of the poll iteration."""

from __future__ import annotations

import os
from typing import Final

from ustack.link import vnet
from ustack.link.base import Device, Frame
from ustack.link.vnet import GsoFrame
from ustack.net.neighbours import ArpTable
from ustack.wire import ethernet as weth
from ustack.wire import ipv4 as wip
from ustack.wire.tcp import CHECKSUM_OFFSET as TCP_CSUM_OFFSET

HEADROOM: Final = weth.HEADER_LEN + wip.MIN_HEADER_LEN  # 34: Ethernet + IPv4 without options


def random_mac() -> bytes:
    """A locally administered unicast MAC (IEEE 802: bit 1 set, bit 0 clear)."""
    b = bytearray(os.urandom(6))
    b[0] = (b[0] & 0xFC) | 0x02
    return bytes(b)


class Interface:
    """Per-interface state the receive and transmit paths touch on every frame.

    ``txq`` collects the frames produced during one poll iteration;
    ``transmit`` hands the whole list to the device at once
    (docs/architecture.md, principle 2).  On a device with offloads (``gso``), TCP frames are
    built here (``tcp_frame``) with the virtio-net header that asks the
    device to finish their checksum and, for a super-frame, to cut it
    (docs/architecture.md, principle 6).
    """

    __slots__ = (
        "addrs",
        "arp",
        "broadcast",
        "device",
        "gso",
        "ip",
        "mac",
        "mtu",
        "name",
        "netmask",
        "network",
        "prefix_len",
        "tcp_csum_vnet",
        "txq",
        "vnet_hdr_len",
        "vnet_zero",
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
        # Every address of ours on this interface, the primary (``ip``) first:
        # what ARP answers for and announces.  A dict as an ordered set (the
        # announcements go out in the order the addresses were given).
        self.addrs: dict[bytes, None] = {ip: None}
        self.mtu = device.caps.mtu
        self.arp = ArpTable(mac)
        self.txq: list[Frame] = []
        # Segmentation offload: the device cuts TCP super-frames (TSO).
        caps = device.caps
        self.vnet_hdr_len = caps.vnet_hdr_len
        self.gso = bool(caps.tso and caps.vnet_hdr_len)
        # The virtio-net header that claims nothing, for the frames that go
        # out in a batch with offloaded ones (``transmit``).
        self.vnet_zero = bytes(caps.vnet_hdr_len)
        # With offloads on, every TCP frame asks the device to finish its
        # checksum (NEEDS_CSUM): this header, the same for all of them.
        self.tcp_csum_vnet = vnet.gso_header(
            caps.vnet_hdr_len, csum_start=HEADROOM,
            csum_offset=TCP_CSUM_OFFSET) if self.gso else b""

    def add_address(self, addr: bytes) -> None:
        """One more address on this interface's subnet (Linux's secondary
        address: same prefix, same link).  ValueError if it is off the
        subnet, the subnet's broadcast address, or ours already."""
        if len(addr) != 4:
            raise ValueError("an IPv4 address is 4 bytes")
        text = wip.addr_to_str(addr)
        if not self.on_link(addr):
            raise ValueError(f"{text} is not on the subnet of {wip.addr_to_str(self.ip)}"
                             f"/{self.prefix_len}")
        if addr == self.broadcast and self.prefix_len < 31:
            # The directed broadcast (RFC 919; /31 has none, RFC 3021).
            raise ValueError(f"{text} is the broadcast address of the subnet")
        if addr in self.addrs:
            raise ValueError(f"{text} is already on {self.name}")
        self.addrs[addr] = None

    def on_link(self, addr: bytes) -> bool:
        """True when ``addr`` is in this interface's subnet (directly reachable)."""
        return (int.from_bytes(addr, "big") & self.netmask) == self.network

    def tcp_frame(self, size: int, hdr_len: int, gso_size: int) -> bytearray:
        """A zeroed frame buffer for a TCP segment of ``size`` bytes in all.

        On an offloading device it carries the virtio-net header that asks
        for the checksum to be finished; with ``gso_size`` (the MSS, for a
        payload longer than it) also for TCPv4 segmentation of the
        ``hdr_len`` bytes of headers plus payload.  The caller then writes
        the partial checksum (``wire.tcp.pack_header_into(partial=True)``).
        """
        if not self.gso:
            return bytearray(size)
        if gso_size:
            return GsoFrame(size, vnet.gso_header(
                self.vnet_hdr_len, csum_start=HEADROOM, csum_offset=TCP_CSUM_OFFSET,
                gso_type=vnet.GSO_TCPV4, gso_size=gso_size, hdr_len=hdr_len))
        return GsoFrame(size, self.tcp_csum_vnet)

    def transmit(self, now: float) -> int:
        """Hand the queued frames to the device in one batch; how many there were.

        The Stack calls it only when ``txq`` holds frames (a test of the
        list, cheaper than a call per idle interface and poll).
        """
        txq = self.txq
        self.txq = []
        # Only an offloading interface makes GsoFrames (``tcp_frame``); asked
        # here, once per batch (the scan runs in C), rather than flagged by
        # every path that queues a frame (IPv4, ARP releasing what waited).
        if self.gso and GsoFrame in map(type, txq):
            # Some frames carry a virtio-net header of their own; the
            # others get one that claims nothing.  Order is kept.
            zero = self.vnet_zero
            self.device.send_gso(
                [(f.vnet if type(f) is GsoFrame else zero, f) for f in txq], now)
        else:
            self.device.send_batch(txq, now)
        return len(txq)
