"""Many addresses on one interface (``Stack.add_address``) and connections
from a chosen one (``Stack.tcp_connect(..., source=...)``): every layer
takes each address as ours, and each address has the whole ephemeral range
towards a destination.

ARP, ICMP and UDP against frames crafted and read by scapy (the harness);
TCP between two in-memory stacks.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import ARP, Ether
from test_net_harness import (
    BCAST_MAC,
    OUR_IP,
    OUR_MAC,
    PEER_IP,
    PEER_MAC,
    Harness,
    ipb,
)

from ustack.link.pipe import pipe_pair
from ustack.net.ports import EphemeralPorts
from ustack.stack import Stack
from ustack.tcp.socket import TcpListener, TcpSocket
from ustack.tcp.states import State

SECOND, THIRD = "198.18.0.10", "198.18.0.11"
FOREIGN = "198.18.0.12"


@pytest.fixture
def h() -> Iterator[Harness]:
    with Harness(arp=False) as harness:
        harness.stack.add_address(harness.iface, SECOND)
        harness.stack.add_address(harness.iface, THIRD)
        harness.poll()
        harness.recv()  # their announcements (test_each_address_is_announced)
        yield harness


def arp_request(pdst: str) -> Ether:
    return Ether(src=PEER_MAC, dst=BCAST_MAC) / ARP(
        op=1, hwsrc=PEER_MAC, psrc=PEER_IP, hwdst="00:00:00:00:00:00", pdst=pdst)


# -- ARP ------------------------------------------------------------------------


@pytest.mark.parametrize("ip", [OUR_IP, SECOND, THIRD])
def test_a_request_for_each_address_is_answered_from_it(h: Harness, ip: str) -> None:
    """RFC 826: the reply's sender is the address asked for, with our MAC."""
    h.send(arp_request(ip))
    (f,) = h.recv()
    a = f[ARP]
    assert (f.dst, a.op, a.hwsrc, a.psrc, a.hwdst, a.pdst) == (
        PEER_MAC, 2, OUR_MAC, ip, PEER_MAC, PEER_IP)


def test_a_request_for_a_foreign_address_is_not_answered(h: Harness) -> None:
    h.send(arp_request(FOREIGN))
    assert h.recv() == []
    assert ipb(PEER_IP) not in h.iface.arp.entries


def test_a_claim_of_a_secondary_address_is_a_conflict(h: Harness) -> None:
    """RFC 5227 2.4 holds for every address of ours, not only the first."""
    h.send(Ether(src="02:00:00:00:00:66", dst=BCAST_MAC) / ARP(
        op=1, hwsrc="02:00:00:00:00:66", psrc=SECOND, pdst=SECOND))
    assert h.drops.get("arp_address_conflict") == 1
    assert ipb(SECOND) not in h.iface.arp.entries
    assert h.recv() == []


def test_each_address_is_announced() -> None:
    """RFC 5227 2.3: gratuitous ARP for every address, at start and when one
    is added to a running stack."""
    with Harness(arp=False, start=False) as h:
        h.stack.add_address(h.iface, SECOND)
        h.poll()
        sent = [(f[ARP].op, f[ARP].psrc, f[ARP].pdst) for f in h.recv()]
        assert sent == [(1, OUR_IP, OUR_IP), (1, SECOND, SECOND)]
        h.stack.add_address(h.iface, THIRD)
        h.poll()
        (f,) = h.recv()
        assert (f.dst, f[ARP].op, f[ARP].psrc, f[ARP].pdst) == (BCAST_MAC, 1, THIRD, THIRD)


def test_a_resolution_asks_from_the_datagram_source(h: Harness) -> None:
    """A request to resolve the next hop carries the source of the datagram
    that waits (Linux's arp_announce=0), so the neighbour learns it."""
    s = h.stack.udp_socket()
    s.bind((SECOND, 0))
    s.sendto(b"x", (PEER_IP, 9))
    h.poll()
    (req,) = h.recv()
    assert (req[ARP].op, req[ARP].psrc, req[ARP].pdst) == (1, SECOND, PEER_IP)


# -- IPv4, ICMP, UDP --------------------------------------------------------------


@pytest.mark.parametrize("ip", [SECOND, THIRD])
def test_an_echo_to_a_secondary_address_is_answered_from_it(h: Harness, ip: str) -> None:
    h.iface.arp.add_static(ipb(PEER_IP), bytes.fromhex(PEER_MAC.replace(":", "")))
    h.send(h.icmp_in(b"ping", dst=ip, type=8, id=7, seq=1))
    (f,) = h.recv()
    assert (f[IP].src, f[IP].dst, f[ICMP].type, f[ICMP].id, bytes(f[ICMP].payload)) == (
        ip, PEER_IP, 0, 7, b"ping")


def test_an_echo_to_a_foreign_address_is_dropped(h: Harness) -> None:
    h.send(h.icmp_in(b"ping", dst=FOREIGN, type=8, id=7, seq=1))
    assert h.recv() == []
    assert h.drops.get("ipv4_not_for_us") == 1


def test_udp_to_a_secondary_address_reaches_a_wildcard_socket(h: Harness) -> None:
    h.iface.arp.add_static(ipb(PEER_IP), bytes.fromhex(PEER_MAC.replace(":", "")))
    s = h.stack.udp_socket()
    s.bind(("0.0.0.0", 7))
    h.send(h.udp_in(b"hello", dst=THIRD, dport=7))
    assert s.recvfrom(100) == (b"hello", (PEER_IP, 40000))
    t = h.stack.udp_socket()
    t.bind((THIRD, 7000))
    t.sendto(b"back", (PEER_IP, 40000))
    h.poll()
    (f,) = h.recv()
    assert (f[IP].src, f[UDP].sport, bytes(f[UDP].payload)) == (THIRD, 7000, b"back")


# -- adding addresses -------------------------------------------------------------


@pytest.mark.parametrize(("ip", "reason"), [
    ("198.18.1.5", r"198\.18\.1\.5 is not on the subnet of 198\.18\.0\.1/24"),
    ("198.18.0.255", "the broadcast address of the subnet"),
    (OUR_IP, "already on an interface"),
    (SECOND, "already on an interface"),
    ("198.18.0.300", "not an IPv4 address"),
])
def test_an_address_off_the_subnet_or_ours_already_is_refused(
        h: Harness, ip: str, reason: str) -> None:
    before = set(h.stack.local_addrs)
    with pytest.raises(ValueError, match=reason):
        h.stack.add_address(h.iface, ip)
    assert set(h.stack.local_addrs) == before


def test_an_address_goes_on_an_interface_of_the_same_stack(h: Harness) -> None:
    other = Stack()
    dev, _ = pipe_pair()
    iface = other.add_interface(dev, "198.18.0.1/24")
    with pytest.raises(ValueError, match="not an interface of this stack"):
        h.stack.add_address(iface, FOREIGN)


# -- TCP ----------------------------------------------------------------------------

A_IP, B_IP = "198.18.0.1", "198.18.0.2"
A_MORE = ["198.18.0.20", "198.18.0.21"]


class Net:
    """Stack A (three addresses) and stack B on one link, fake clock."""

    def __init__(self) -> None:
        a_dev, b_dev = pipe_pair(1500, queue_len=100_000)
        self.a, self.b = Stack(), Stack()
        self.a_if = self.a.add_interface(a_dev, f"{A_IP}/24")
        for ip in A_MORE:
            self.a.add_address(self.a_if, ip)
        self.b.add_interface(b_dev, f"{B_IP}/24")
        self.now = 0.0

    def run_until(self, cond: object, limit: float = 10.0) -> None:
        end = self.now + limit
        while not cond() and self.now < end:  # type: ignore[operator]
            self.now += 0.001
            self.a.poll(self.now)
            self.b.poll(self.now)
        assert cond(), "condition not reached in simulated time"  # type: ignore[operator]

    def recv(self, sock: TcpSocket) -> bytes:
        got: list[bytes] = []

        def ready() -> bool:
            if got:
                return True
            try:
                got.append(sock.recv(100))
            except BlockingIOError:
                return False
            return True

        self.run_until(ready)
        return got[0]

    def accept_all(self, listener: TcpListener, n: int) -> list[TcpSocket]:
        got: list[TcpSocket] = []

        def take() -> bool:
            while listener.accept_queue:
                got.append(listener.accept())
            return len(got) >= n

        self.run_until(take)
        return got


def test_connections_from_three_addresses_show_three_peers() -> None:
    net = Net()
    listener = net.b.tcp_listen(("0.0.0.0", 80))
    clients = [net.a.tcp_connect((B_IP, 80), source=(ip, 0)) for ip in [A_IP, *A_MORE]]
    servers = net.accept_all(listener, 3)
    assert {s.getpeername()[0] for s in servers} == {A_IP, *A_MORE}
    assert [c.getsockname()[0] for c in clients] == [A_IP, *A_MORE]
    net.run_until(lambda: all(c.conn.state is State.ESTABLISHED for c in clients))
    # Data flows on each (its segments leave from its source address).
    for c in clients:
        c.send(c.getsockname()[0].encode())
    for s in servers:
        assert net.recv(s) == s.getpeername()[0].encode()


def test_the_default_source_is_the_routes_address() -> None:
    net = Net()
    net.b.tcp_listen(("0.0.0.0", 80))
    assert net.a.tcp_connect((B_IP, 80)).getsockname()[0] == A_IP
    assert net.a.tcp_connect((B_IP, 80), source=("0.0.0.0", 0)).getsockname()[0] == A_IP


def test_spread_over_addresses_more_connections_than_one_range_holds() -> None:
    """The ephemeral range is per 4-tuple: four ports give four connections
    to one destination from one address, twelve from three."""
    net = Net()
    net.a.tcp.ephemeral = EphemeralPorts(40000, 40003)
    listener = net.b.tcp_listen(("0.0.0.0", 80))
    clients = [net.a.tcp_connect((B_IP, 80), source=(A_IP, 0)) for _ in range(4)]
    with pytest.raises(OSError) as e:
        net.a.tcp_connect((B_IP, 80), source=(A_IP, 0))
    assert e.value.errno == errno.EADDRNOTAVAIL
    clients += [net.a.tcp_connect((B_IP, 80), source=(ip, 0))
                for ip in A_MORE for _ in range(4)]
    servers = net.accept_all(listener, 12)
    assert sorted(s.getpeername() for s in servers) == sorted(
        (ip, port) for ip in [A_IP, *A_MORE] for port in range(40000, 40004))
    assert {c.getsockname() for c in clients} == {s.getpeername() for s in servers}


def test_a_source_not_ours_is_eaddrnotavail() -> None:
    net = Net()
    with pytest.raises(OSError) as e:
        net.a.tcp_connect((B_IP, 80), source=(FOREIGN, 0))
    assert e.value.errno == errno.EADDRNOTAVAIL
    with pytest.raises(OSError) as e:
        net.a.tcp_connect((B_IP, 80), source=(B_IP, 0))  # the peer's, not ours
    assert e.value.errno == errno.EADDRNOTAVAIL
    assert net.a.tcp.conns == {}


def test_a_source_port_in_use_is_eaddrinuse() -> None:
    net = Net()
    net.b.tcp_listen(("0.0.0.0", 80))
    net.b.tcp_listen(("0.0.0.0", 81))
    net.a.tcp_connect((B_IP, 80), source=(A_MORE[0], 45000))
    with pytest.raises(OSError) as e:
        net.a.tcp_connect((B_IP, 80), source=(A_MORE[0], 45000))  # the same 4-tuple
    assert e.value.errno == errno.EADDRINUSE
    # The same port from another address, or to another port, is another 4-tuple.
    net.a.tcp_connect((B_IP, 80), source=(A_MORE[1], 45000))
    net.a.tcp_connect((B_IP, 81), source=(A_MORE[0], 45000))
    # A port a listener holds is refused, as bind() would.
    net.a.tcp_listen((A_MORE[0], 8080))
    with pytest.raises(OSError) as e:
        net.a.tcp_connect((B_IP, 80), source=(A_MORE[0], 8080))
    assert e.value.errno == errno.EADDRINUSE


def test_the_peer_learns_each_source_from_our_arp_request() -> None:
    """The first datagram from a secondary address asks ARP from that
    address: the peer, asked for its own address, learns ours."""
    net = Net()
    listener = net.b.tcp_listen(("0.0.0.0", 80))
    net.a.tcp_connect((B_IP, 80), source=(A_MORE[1], 0))
    net.accept_all(listener, 1)
    assert ipb(A_MORE[1]) in net.b.interfaces[0].arp.entries
    assert ipb(A_IP) not in net.b.interfaces[0].arp.entries
