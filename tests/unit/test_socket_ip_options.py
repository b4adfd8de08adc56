"""``ustack.socket``: IP_TTL and IP_TOS per socket (RFC 9293 3.9.1.9 MUST-48/49).

The stack runs in its own Runtime thread on one end of an in-memory link;
the test holds the other end and reads the frames the stack sends, decoded
by scapy (an independent judge).  The values and errors of setsockopt and
getsockopt are compared with a kernel socket's (no traffic: the kernel
socket is never connected).
"""

from __future__ import annotations

import socket as std
import time
from collections.abc import Iterator

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

import ustack.socket as us
from ustack.api.socket.runtime import Runtime
from ustack.link.threadpipe import ThreadPipeDevice, thread_pipe_pair
from ustack.stack import Stack

STACK_IP, PEER_IP = "198.18.0.1", "198.18.0.2"
PEER_MAC = bytes.fromhex("020000000102")


class Link:
    def __init__(self) -> None:
        dev, self.peer = thread_pipe_pair()
        self.stack = Stack()
        iface = self.stack.add_interface(dev, f"{STACK_IP}/24")
        iface.arp.add_static(std.inet_aton(PEER_IP), PEER_MAC)
        self.mac = iface.mac
        self.rt = Runtime(self.stack, name="stack").start()

    def next_ip(self, proto: type[TCP] | type[UDP], timeout: float = 5.0) -> IP:
        """The next IPv4 packet of ``proto`` the stack sends (ARP and the rest skipped)."""
        deadline = time.monotonic() + timeout
        dev: ThreadPipeDevice = self.peer
        while time.monotonic() < deadline:
            for f in dev.recv_batch(64, time.monotonic()):
                pkt = Ether(bytes(f))
                if IP in pkt and proto in pkt:
                    ip: IP = pkt[IP]
                    return ip
            time.sleep(0.002)
        raise AssertionError(f"the stack sent no {proto.__name__} packet")

    def inject(self, pkt: IP) -> None:
        frame = bytes(Ether(src=PEER_MAC, dst=self.mac) / pkt)
        assert self.peer.send_batch([frame], time.monotonic()) == 1

    def close(self) -> None:
        self.rt.close()
        self.stack.close()


@pytest.fixture
def link() -> Iterator[Link]:
    lk = Link()
    try:
        yield lk
    finally:
        lk.close()


def test_udp_datagrams_carry_the_socket_ttl_and_tos(link: Link) -> None:
    s = us.socket(us.AF_INET, us.SOCK_DGRAM, runtime=link.rt)
    try:
        s.sendto(b"a", (PEER_IP, 9000))
        ip = link.next_ip(UDP)
        assert (ip.ttl, ip.tos) == (64, 0)  # the defaults, Linux's
        s.setsockopt(us.IPPROTO_IP, std.IP_TTL, 3)
        s.setsockopt(us.IPPROTO_IP, std.IP_TOS, 0xB9)  # EF, ECT(1): a datagram keeps ECN
        s.sendto(b"b", (PEER_IP, 9000))
        ip = link.next_ip(UDP)
        assert (ip.ttl, ip.tos) == (3, 0xB9)
        assert s.getsockopt(us.IPPROTO_IP, std.IP_TTL) == 3
        assert s.getsockopt(us.IPPROTO_IP, std.IP_TOS) == 0xB9
    finally:
        s.close()


def test_tcp_segments_carry_the_socket_ttl_and_tos_also_after_a_change(link: Link) -> None:
    s = us.socket(runtime=link.rt)
    try:
        s.setsockopt(us.IPPROTO_IP, std.IP_TTL, 7)
        s.setsockopt(us.IPPROTO_IP, std.IP_TOS, 0x10)  # IPTOS_LOWDELAY
        s.setblocking(False)
        with pytest.raises(BlockingIOError):
            s.connect((PEER_IP, 9000))
        syn = link.next_ip(TCP)
        assert syn[TCP].flags == "S" and (syn.ttl, syn.tos) == (7, 0x10)
        link.inject(IP(src=PEER_IP, dst=STACK_IP, ttl=64)
                    / TCP(sport=9000, dport=syn[TCP].sport, flags="SA", seq=1000,
                          ack=syn[TCP].seq + 1, window=65535))
        ack = link.next_ip(TCP)
        assert ack[TCP].flags == "A" and (ack.ttl, ack.tos) == (7, 0x10)
        # Changed on the live connection: the next segment carries it (SHLD-21).
        s.setsockopt(us.IPPROTO_IP, std.IP_TTL, 200)
        s.setsockopt(us.IPPROTO_IP, std.IP_TOS, 0x2B)  # a stream socket's ECN bits are TCP's
        assert s.getsockopt(us.IPPROTO_IP, std.IP_TOS) == 0x28
        deadline = time.monotonic() + 5
        while True:
            try:
                s.send(b"x")
                break
            except BlockingIOError:
                assert time.monotonic() < deadline
                time.sleep(0.01)
        data = link.next_ip(TCP)
        assert bytes(data[TCP].payload) == b"x" and (data.ttl, data.tos) == (200, 0x28)
        s.setsockopt(us.IPPROTO_IP, std.IP_TTL, -1)  # back to the default
        assert s.getsockopt(us.IPPROTO_IP, std.IP_TTL) == 64
    finally:
        s.close()


@pytest.mark.parametrize("kind", [std.SOCK_STREAM, std.SOCK_DGRAM], ids=["tcp", "udp"])
@pytest.mark.parametrize(("opt", "value"), [
    (std.IP_TTL, 0), (std.IP_TTL, 256), (std.IP_TTL, -2), (std.IP_TTL, 1), (std.IP_TTL, 255),
    (std.IP_TTL, -1), (std.IP_TTL, b"\x05\x00\x00\x00"), (std.IP_TTL, b"\x09"),
    (std.IP_TOS, 0x10), (std.IP_TOS, 0x13), (std.IP_TOS, 0x1FF), (std.IP_TOS, -1),
    (std.IP_TOS, b"\xb8"),
])
def test_values_and_errors_are_the_kernel_s(link: Link, kind: int, opt: int,
                                            value: int | bytes) -> None:
    """What a Linux socket returns or raises, ustack.socket does too."""
    k = std.socket(std.AF_INET, kind)
    u = us.socket(std.AF_INET, kind, runtime=link.rt)
    try:
        outcome = []
        for s in (k, u):
            try:
                s.setsockopt(std.IPPROTO_IP, opt, value)
                outcome.append(("ok", s.getsockopt(std.IPPROTO_IP, opt)))
            except OSError as e:
                outcome.append(("error", e.errno))
        assert outcome[1] == outcome[0], (opt, value)
        assert u.getsockopt(std.IPPROTO_IP, opt, 4) == k.getsockopt(std.IPPROTO_IP, opt, 4)
    finally:
        k.close()
        u.close()
