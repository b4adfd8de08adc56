"""Interface.transmit on an offloading device: which frames go to send_gso."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from test_net_harness import OUR_IP, OUR_MAC, PEER_IP, PEER_MAC, ipb, macb

from ustack.link.base import Capabilities, Frame
from ustack.stack import Stack

VNET_LEN = 12


class OffloadDevice:
    """A device with virtio-net headers and TSO that records every send call."""

    name = "offload0"

    def __init__(self) -> None:
        self._caps = Capabilities(mtu=1500, max_frame=65535, vnet_hdr=True,
                                  vnet_hdr_len=VNET_LEN, csum_tx=True, tso=True)
        self.rx: deque[bytes] = deque()
        self.calls: list[tuple[str, list[tuple[bytes, bytes]]]] = []

    @property
    def caps(self) -> Capabilities:
        return self._caps

    @property
    def hwaddr(self) -> bytes | None:
        return None

    def fileno(self) -> int:
        raise OSError("driven with Stack.poll")

    def recv_batch(self, max_frames: int, now: float) -> list[bytes]:
        return [self.rx.popleft() for _ in range(min(max_frames, len(self.rx)))]

    def send_batch(self, frames: Sequence[Frame], now: float) -> int:
        self.calls.append(("batch", [(b"", bytes(f)) for f in frames]))
        return len(frames)

    def send_gso(self, items: Sequence[tuple[bytes, Frame]], now: float) -> int:
        self.calls.append(("gso", [(bytes(h), bytes(f)) for h, f in items]))
        return len(items)

    def next_deadline(self) -> float | None:
        return None

    def stats(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        pass


def test_frames_released_by_arp_keep_their_offload_headers_in_order() -> None:
    """A batch of plain frames goes to send_batch; one that holds a TCP frame
    asking for checksum offload goes to send_gso, every frame in order, the
    TCP one with its own header and the others with one that claims nothing
    -- also when the frames waited for ARP and were released by its reply."""
    dev = OffloadDevice()
    stack = Stack()
    iface = stack.add_interface(dev, f"{OUR_IP}/24", mac=macb(OUR_MAC))
    stack.poll(0.0)
    assert [kind for kind, _ in dev.calls] == ["batch"]  # the gratuitous ARP
    dev.calls.clear()
    udp = stack.udp_socket()
    udp.sendto(b"before the SYN", (PEER_IP, 9))  # leaves at once: first in the queue
    stack.tcp_connect((PEER_IP, 80))  # its SYN leaves from the flush
    stack.flush()
    (call,) = dev.calls
    assert call[0] == "batch" and ARP in Ether(call[1][0][1])  # the SYN and datagram wait
    dev.calls.clear()
    dev.rx.append(bytes(Ether(src=PEER_MAC, dst=OUR_MAC) / ARP(
        op=2, hwsrc=PEER_MAC, psrc=PEER_IP, hwdst=OUR_MAC, pdst=OUR_IP)))
    stack.poll(0.1)
    (call,) = dev.calls
    kind, items = call
    assert kind == "gso"
    (udp_hdr, dgram), (syn_hdr, syn) = items
    assert bytes(Ether(dgram)[UDP].payload) == b"before the SYN"
    assert udp_hdr == bytes(VNET_LEN)
    assert Ether(syn)[TCP].flags == "S" and Ether(syn)[IP].dst == PEER_IP
    assert syn_hdr == iface.tcp_csum_vnet and syn_hdr != bytes(VNET_LEN)
    assert iface.arp.entries[ipb(PEER_IP)].mac == macb(PEER_MAC)
    stack.close()
