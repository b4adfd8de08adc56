"""Ethernet II receive dispatch: a batch of frames from one interface, up.

Called once per batch (the loop over the frames is here, not a call per
frame): each frame addressed to us (our MAC or broadcast) goes straight to
IPv4 or ARP by EtherType (direct dispatch, docs/architecture.md, principle 2); every
other one is dropped with a named counter.  The properties of the frame the
layers above need travel with it as ``rx`` flags (``net.host.RX_*``), never
as state: the kernel's word that the transport checksum is good (a
``CsumOkFrame`` from a device with virtio-net headers), and whether it was a
link-layer broadcast.
"""

from __future__ import annotations

from typing import Final

from ustack.counters import Counters
from ustack.link.vnet import CsumOkFrame
from ustack.net.arp import ArpLayer
from ustack.net.host import RX_CSUM_OK, Host
from ustack.net.interface import Interface
from ustack.net.ipv4 import Ipv4Layer
from ustack.wire import ethernet as weth

_BROADCAST: Final = weth.BROADCAST


class EthernetInput:
    __slots__ = ("arp", "host", "ip")

    def __init__(self, host: Host, ip: Ipv4Layer, arp: ArpLayer) -> None:
        self.host = host
        self.ip = ip
        self.arp = arp

    def input(self, iface: Interface, frames: list[bytes]) -> None:
        """Dispatch ``frames``, all received on ``iface``."""
        c = self.host.counters
        c.EthInFrames += len(frames)
        mac = iface.mac
        trusting = iface.device.caps.rx_csum_marks
        rx = 0
        for frame in frames:
            if trusting:
                rx = RX_CSUM_OK if type(frame) is CsumOkFrame else 0
            if len(frame) < 14:
                c.drop("eth_short")
                continue
            # EtherType and destination read in place (no slice copied out
            # per frame): the EtherType at 12 (IEEE 802.3 Ethernet II), the
            # destination MAC first.
            etype = (frame[12] << 8) | frame[13]
            if etype == weth.ETHERTYPE_IPV4:
                if frame.startswith(mac):  # the common frame first
                    self.ip.input(iface, frame[14:], rx)
                elif frame.startswith(_BROADCAST):
                    self.ip.input_link_broadcast(iface, frame[14:], rx)
                else:
                    self._not_for_us(c, frame)
            elif not frame.startswith(mac) and not frame.startswith(_BROADCAST):
                self._not_for_us(c, frame)
            elif etype == weth.ETHERTYPE_ARP:
                self.arp.input(iface, frame[14:])
            else:
                c.drop("eth_unknown_type")

    @staticmethod
    def _not_for_us(c: Counters, frame: bytes) -> None:
        if frame[0] & 1:
            c.drop("eth_multicast")
        else:
            c.drop("eth_not_for_us")
