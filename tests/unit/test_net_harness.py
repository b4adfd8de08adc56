"""Shared harness for the network-layer unit tests (collected, but holds no tests).

The stack under test sits on one end of an in-memory pipe; the test is the
other end.  Frames are crafted with scapy (an independent oracle), pushed
with ``send``, the stack is polled at an explicit fake time, and what it sent
is read back with ``recv`` and parsed with scapy again.

``RawDevice`` is a second, even simpler link for the robustness tests: the
pipe refuses runt (< 14 bytes) and oversize frames on send, so frames of
every length can only reach the stack through a device that passes them on
unchanged.
"""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType

from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet

from ustack.link.base import Capabilities, Frame
from ustack.link.pipe import PipeDevice, pipe_pair
from ustack.net.interface import Interface
from ustack.stack import Stack

OUR_IP = "198.18.0.1"
OUR_MAC = "02:00:00:00:00:01"
PEER_IP = "198.18.0.2"
PEER_MAC = "02:00:00:00:00:02"
OTHER_IP = "198.18.0.3"
OTHER_MAC = "02:00:00:00:00:03"
SUBNET_BCAST = "198.18.0.255"
PREFIX = 24
BCAST_MAC = "ff:ff:ff:ff:ff:ff"


def ipb(text: str) -> bytes:
    """Dotted quad -> 4 bytes (socket's parser, not the stack's)."""
    return socket.inet_aton(text)


def macb(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


@contextmanager
def multihomed() -> Iterator[tuple[Stack, PipeDevice]]:
    """A stack with two interfaces: OUR_IP/24 (MAC OUR_MAC, the peer's MAC
    known) and 198.18.1.1/24; yields the stack and the first one's far end,
    after the start-up frames are read off it."""
    a, peer_a = pipe_pair()
    b, peer_b = pipe_pair()
    stack = Stack()
    try:
        stack.add_interface(a, f"{OUR_IP}/24", mac=macb(OUR_MAC))
        stack.add_interface(b, "198.18.1.1/24")
        stack.interfaces[0].arp.add_static(ipb(PEER_IP), macb(PEER_MAC))
        yield stack, peer_a
    finally:
        stack.close()
        peer_a.close()
        peer_b.close()


class RawDevice:
    """A link that hands the stack exactly the frames the test queued, any length."""

    name = "raw0"

    def __init__(self, mtu: int = 1500) -> None:
        self._caps = Capabilities(mtu=mtu, max_frame=mtu + 14)
        self.rx: deque[bytes] = deque()
        self.tx: list[bytes] = []

    @property
    def caps(self) -> Capabilities:
        return self._caps

    @property
    def hwaddr(self) -> bytes | None:
        return None

    def fileno(self) -> int:
        raise OSError("RawDevice has no descriptor; drive it with Stack.poll")

    def recv_batch(self, max_frames: int, now: float) -> list[bytes]:
        rx = self.rx
        n = min(max_frames, len(rx))
        return [rx.popleft() for _ in range(n)]

    def send_batch(self, frames: Sequence[Frame], now: float) -> int:
        self.tx.extend(bytes(f) for f in frames)
        return len(frames)

    def next_deadline(self) -> float | None:
        return None

    def stats(self) -> dict[str, int]:
        return {"rx_queued": len(self.rx), "tx_frames": len(self.tx)}

    def close(self) -> None:
        self.rx.clear()


class Harness:
    """One Stack (198.18.0.1/24) whose only neighbour is the test itself.

    With ``arp=True`` the peer addresses have static ARP entries, so ARP
    stays out of tests where it is not the point.  With ``start=True`` the
    stack is polled once at t=0 and its gratuitous ARP is read and discarded.
    """

    def __init__(
        self, *, mtu: int = 1500, arp: bool = True, start: bool = True, queue_len: int = 8192
    ) -> None:
        self.now = 0.0
        self.dev: PipeDevice
        self.peer: PipeDevice
        self.dev, self.peer = pipe_pair(mtu, queue_len=queue_len)
        self.stack = Stack()
        self.iface: Interface = self.stack.add_interface(
            self.dev, f"{OUR_IP}/{PREFIX}", mac=macb(OUR_MAC)
        )
        if arp:
            self.iface.arp.add_static(ipb(PEER_IP), macb(PEER_MAC))
            self.iface.arp.add_static(ipb(OTHER_IP), macb(OTHER_MAC))
        if start:
            self.poll()
            self.recv_raw()

    # -- driving ------------------------------------------------------------

    def poll(self) -> None:
        """Poll at ``self.now`` until the stack has taken every queued frame."""
        self.stack.poll(self.now)
        while self.dev.queued():
            self.stack.poll(self.now)

    def advance(self, dt: float) -> None:
        self.now += dt
        self.poll()

    def send(self, *frames: Packet | bytes) -> None:
        """Put frames on the wire towards the stack, then poll it."""
        raw = [f if isinstance(f, bytes) else bytes(f) for f in frames]
        taken = self.peer.send_batch(raw, self.now)
        assert taken == len(raw), "the pipe refused frames: queue_len too small?"
        self.poll()

    def recv_raw(self) -> list[bytes]:
        out: list[bytes] = []
        while True:
            got = self.peer.recv_batch(4096, self.now)
            if not got:
                return out
            out.extend(got)

    def recv(self) -> list[Packet]:
        """Everything the stack sent since the last call, parsed by scapy."""
        return [Ether(f) for f in self.recv_raw()]

    @property
    def counters(self) -> dict[str, int]:
        return self.stack.counters.snapshot()

    @property
    def drops(self) -> dict[str, int]:
        return self.stack.counters.drops

    # -- frames from the peer ------------------------------------------------

    def udp_in(
        self,
        payload: bytes = b"hello",
        *,
        sport: int = 40000,
        dport: int = 7,
        src: str = PEER_IP,
        dst: str = OUR_IP,
        eth_dst: str = OUR_MAC,
        eth_src: str = PEER_MAC,
        **ip_fields: object,
    ) -> Packet:
        pkt: Packet = (
            Ether(src=eth_src, dst=eth_dst)
            / IP(src=src, dst=dst, **ip_fields)
            / UDP(sport=sport, dport=dport)
            / payload
        )
        return pkt

    def icmp_in(
        self,
        payload: bytes = b"",
        *,
        src: str = PEER_IP,
        dst: str = OUR_IP,
        eth_dst: str = OUR_MAC,
        **icmp_fields: object,
    ) -> Packet:
        pkt: Packet = (
            Ether(src=PEER_MAC, dst=eth_dst) / IP(src=src, dst=dst) / ICMP(**icmp_fields) / payload
        )
        return pkt

    # -- lifetime -------------------------------------------------------------

    def close(self) -> None:
        self.stack.close()
        self.peer.close()

    def __enter__(self) -> Harness:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# -- checksum oracles (scapy recomputes, we compare) ---------------------------


def assert_ip_checksum(pkt: Packet) -> None:
    ip = pkt[IP]
    fresh = ip.copy()
    del fresh.chksum
    assert IP(bytes(fresh)).chksum == ip.chksum, "bad IPv4 header checksum"


def assert_udp_checksum(pkt: Packet) -> None:
    """Scapy recomputes the UDP checksum over the pseudo-header (whole datagrams only)."""
    ip = pkt[IP]
    fresh = ip.copy()
    del fresh[UDP].chksum
    assert IP(bytes(fresh))[UDP].chksum == ip[UDP].chksum, "bad UDP checksum"


def assert_icmp_checksum(pkt: Packet) -> None:
    ip = pkt[IP]
    fresh = ip.copy()
    del fresh[ICMP].chksum
    assert IP(bytes(fresh))[ICMP].chksum == ip[ICMP].chksum, "bad ICMP checksum"


def assert_accounted(h: Stack) -> None:
    """Every frame the stack took in ends in exactly one counted outcome.

    Ethernet: dropped by an ``eth_*`` reason, or handed to ARP or IPv4.
    ARP: a request, a reply, or a parse drop.  IPv4: a header error, an
    address error, a fragment (IpReasmReqds; a completed datagram is then
    delivered once: minus IpReasmOKs), an unknown protocol, or delivered.
    Delivered: to ICMP, or to UDP as a datagram, no port, or an error.
    ICMP: a parse error, one of the types it handles, or an ignored type.
    """
    c = h.counters
    d = c.drops
    eth_drops = sum(n for r, n in d.items() if r.startswith("eth_"))
    arp_parse = sum(d.get(r, 0) for r in ("arp_short", "arp_format", "arp_op"))
    arp_in = c.ArpInRequests + c.ArpInReplies + arp_parse
    assert c.EthInFrames == eth_drops + arp_in + c.IpInReceives, c.snapshot(nonzero=True)
    assert c.IpInReceives == (
        c.IpInHdrErrors
        + c.IpInAddrErrors
        + c.IpReasmReqds
        - c.IpReasmOKs
        + c.IpInUnknownProtos
        + c.IpInDelivers
    ), c.snapshot(nonzero=True)
    # Every datagram handed to a transport is counted by that transport:
    # ICMP, UDP (delivered, no port, error) and TCP (accepted or in error).
    assert c.IpInDelivers == (
        c.IcmpInMsgs + c.UdpInDatagrams + c.UdpNoPorts + c.UdpInErrors
        + c.TcpInSegs + c.TcpInErrs
    ), c.snapshot(nonzero=True)
    icmp_parse = d.get("icmp_short", 0) + d.get("icmp_checksum", 0)
    assert c.IcmpInMsgs == (
        icmp_parse
        + c.IcmpInEchos
        + c.IcmpInEchoReps
        + c.IcmpInDestUnreachs
        + c.IcmpInTimeExcds
        + d.get("icmp_type_ignored", 0)
    ), c.snapshot(nonzero=True)
