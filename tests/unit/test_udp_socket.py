"""UDP socket API situations: the errors the standard ``socket`` module raises.

Where it needs no traffic beyond loopback, each error is compared with a real
``socket.socket(AF_INET, SOCK_DGRAM)``: same exception class, same errno.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Iterator

import pytest
from scapy.layers.inet import IP
from test_net_harness import OTHER_IP, OTHER_MAC, OUR_IP, PEER_IP, PEER_MAC, Harness, ipb

from ustack.net.ports import EPHEMERAL_HIGH, EPHEMERAL_LOW
from ustack.udp.socket import MAX_PAYLOAD, UdpSocket

# An address assigned to no interface of this host (checked before use).
FOREIGN = "198.19.254.253"


@pytest.fixture
def h() -> Iterator[Harness]:
    with Harness() as harness:
        yield harness


@pytest.fixture
def real() -> Iterator[Callable[[], socket.socket]]:
    """Real kernel UDP sockets, closed after the test."""
    made: list[socket.socket] = []

    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def raised(fn: Callable[[], object]) -> BaseException:
    try:
        fn()
    except Exception as e:  # the point is to capture whatever it raises
        return e
    raise AssertionError("no exception raised")


def same_error(ours: BaseException, theirs: BaseException) -> None:
    assert type(ours) is type(theirs), (ours, theirs)
    if isinstance(theirs, OSError):
        assert isinstance(ours, OSError)
        assert ours.errno == theirs.errno, (ours, theirs)


def test_bind_twice_same_port_is_eaddrinuse(h: Harness, real: Callable[[], socket.socket]) -> None:
    """Without SO_REUSEADDR a port is bound once per address (Linux udp_lib_get_port)."""
    a, b = h.stack.udp_socket(), h.stack.udp_socket()
    a.bind((OUR_IP, 5000))
    ours = raised(lambda: b.bind((OUR_IP, 5000)))
    ra, rb = real(), real()
    ra.bind(("127.0.0.1", 0))
    theirs = raised(lambda: rb.bind(ra.getsockname()))
    same_error(ours, theirs)
    assert isinstance(ours, OSError) and ours.errno == errno.EADDRINUSE == 98


@pytest.mark.parametrize(
    "first,second", [("0.0.0.0", OUR_IP), (OUR_IP, "0.0.0.0"), ("0.0.0.0", "0.0.0.0")]
)
def test_wildcard_and_specific_bind_conflict(h: Harness, first: str, second: str) -> None:
    """A wildcard bind covers every local address, so it conflicts both ways."""
    a, b = h.stack.udp_socket(), h.stack.udp_socket()
    a.bind((first, 5001))
    with pytest.raises(OSError) as ei:
        b.bind((second, 5001))
    assert ei.value.errno == errno.EADDRINUSE


def test_port_is_free_again_after_close(h: Harness) -> None:
    a = h.stack.udp_socket()
    a.bind(("0.0.0.0", 5002))
    a.close()
    b = h.stack.udp_socket()
    b.bind(("0.0.0.0", 5002))
    assert b.getsockname() == ("0.0.0.0", 5002)


def test_bind_foreign_address_is_eaddrnotavail(
    h: Harness, real: Callable[[], socket.socket]
) -> None:
    """Only a local address can be bound (Linux inet_bind without IP_FREEBIND)."""
    s = h.stack.udp_socket()
    ours = raised(lambda: s.bind((FOREIGN, 5000)))
    assert isinstance(ours, OSError) and ours.errno == errno.EADDRNOTAVAIL
    r = real()
    try:
        r.bind((FOREIGN, 0))
    except OSError as theirs:
        same_error(ours, theirs)
    else:
        pytest.skip(f"{FOREIGN} is configured on this host")


def test_bind_twice_same_socket_is_einval(h: Harness, real: Callable[[], socket.socket]) -> None:
    s = h.stack.udp_socket()
    s.bind(("0.0.0.0", 0))
    ours = raised(lambda: s.bind(("0.0.0.0", 0)))
    r = real()
    r.bind(("127.0.0.1", 0))
    same_error(ours, raised(lambda: r.bind(("127.0.0.1", 0))))


def test_ephemeral_ports_are_in_linux_range_and_distinct(h: Harness) -> None:
    """Linux ip_local_port_range 32768..60999, for bind(0), connect and sendto."""
    ports = []
    for i in range(300):
        s = h.stack.udp_socket()
        if i % 3 == 0:
            s.bind(("0.0.0.0", 0))
        elif i % 3 == 1:
            s.connect((PEER_IP, 9))
        else:
            s.sendto(b"", (PEER_IP, 9))
        ports.append(s.getsockname()[1])
    assert all(EPHEMERAL_LOW <= p <= EPHEMERAL_HIGH for p in ports)
    assert EPHEMERAL_LOW == 32768 and EPHEMERAL_HIGH == 60999
    assert len(set(ports)) == len(ports)


def test_ephemeral_allocation_skips_bound_ports(h: Harness) -> None:
    """An explicitly bound port is never handed out again while it is bound."""
    s = h.stack.udp_socket()
    s.bind(("0.0.0.0", 0))
    nxt = s.getsockname()[1] + 1
    if nxt > EPHEMERAL_HIGH:
        nxt = EPHEMERAL_LOW
    blocker = h.stack.udp_socket()
    blocker.bind(("0.0.0.0", nxt))
    t = h.stack.udp_socket()
    t.bind(("0.0.0.0", 0))
    assert t.getsockname()[1] != nxt


def test_recvfrom_on_empty_socket_would_block(
    h: Harness, real: Callable[[], socket.socket]
) -> None:
    """A non-blocking socket with nothing queued raises BlockingIOError (EAGAIN)."""
    s = h.stack.udp_socket()
    s.bind(("0.0.0.0", 0))
    r = real()
    r.bind(("127.0.0.1", 0))
    r.setblocking(False)
    same_error(raised(s.recvfrom), raised(lambda: r.recvfrom(100)))
    assert isinstance(raised(s.recv), BlockingIOError)


def test_send_over_max_payload_is_emsgsize(h: Harness, real: Callable[[], socket.socket]) -> None:
    """65535 - 20 - 8 = 65507 bytes is the largest UDP payload over IPv4."""
    assert MAX_PAYLOAD == 65507
    s = h.stack.udp_socket()
    ours = raised(lambda: s.sendto(b"x" * 65508, (PEER_IP, 9)))
    r = real()
    theirs = raised(lambda: r.sendto(b"x" * 65508, ("127.0.0.1", 9)))
    same_error(ours, theirs)
    assert h.stack.counters.UdpOutDatagrams == 0
    s.sendto(b"x" * 65507, (PEER_IP, 9))  # the limit itself is fine
    assert h.stack.counters.UdpOutDatagrams == 1


BAD_ADDRESSES: list[object] = [
    "198.18.0.2",
    ("198.18.0.2",),
    ("198.18.0.2", 9, 0),
    ("198.18.0.2", 70000),
    ("198.18.0.2", -1),
    ("198.18.0.2", "80"),
    ("198.18.0.2", 80.0),
    ("198.18.0.2", None),
    (None, 80),
    (1234, 80),
    ("198.18.0.2", 0),
]


@pytest.mark.parametrize("address", BAD_ADDRESSES, ids=repr)
def test_sendto_bad_address_raises_like_socket(
    h: Harness, real: Callable[[], socket.socket], address: object
) -> None:
    """Malformed addresses raise the standard types (TypeError, OverflowError,
    OSError(EINVAL) for port 0) before anything is sent."""
    s = h.stack.udp_socket()
    ours = raised(lambda: s.sendto(b"x", address))  # type: ignore[arg-type]
    # The real socket gets the same shape with a loopback host, so that a
    # mistake in this table could at worst send one datagram to loopback.
    if isinstance(address, tuple) and address and address[0] == PEER_IP:
        address = ("127.0.0.1", *address[1:])
    elif address == PEER_IP:
        address = "127.0.0.1"
    r = real()
    theirs = raised(lambda: r.sendto(b"x", address))  # type: ignore[arg-type]
    same_error(ours, theirs)
    assert h.recv() == []


@pytest.mark.parametrize("address", [("198.18.0.2", 70000), ("198.18.0.2", "x"), "x"], ids=repr)
def test_bind_and_connect_bad_address_raise_like_socket(
    h: Harness, real: Callable[[], socket.socket], address: object
) -> None:
    local = ("127.0.0.1", *address[1:]) if isinstance(address, tuple) else address
    for method in ("bind", "connect"):
        ours = raised(lambda m=method: getattr(h.stack.udp_socket(), m)(address))
        theirs = raised(lambda m=method: getattr(real(), m)(local))
        assert type(ours) is type(theirs), (method, ours, theirs)


def test_not_a_numeric_address_is_oserror(h: Harness) -> None:
    """The stack resolves no names (no DNS); the socket module raises gaierror,
    an OSError, for names it cannot resolve: callers catching OSError work."""
    s = h.stack.udp_socket()
    with pytest.raises(OSError):
        s.sendto(b"x", ("no.such.host.invalid", 9))


@pytest.mark.parametrize("host", [b"198.18.0.2", bytearray(b"198.18.0.2")])
def test_bytes_host_is_accepted_like_socket(h: Harness, host: bytes) -> None:
    s = h.stack.udp_socket()
    s.sendto(b"x", (host, 9))  # type: ignore[arg-type]


def test_send_unconnected_is_edestaddrreq(h: Harness, real: Callable[[], socket.socket]) -> None:
    s = h.stack.udp_socket()
    same_error(raised(lambda: s.send(b"x")), raised(lambda: real().send(b"x")))


def test_getpeername_unconnected_is_enotconn(h: Harness, real: Callable[[], socket.socket]) -> None:
    s = h.stack.udp_socket()
    same_error(raised(s.getpeername), raised(real().getpeername))


def test_connect_sets_peer_and_autobinds(h: Harness) -> None:
    s = h.stack.udp_socket()
    s.connect((PEER_IP, 53))
    assert s.getpeername() == (PEER_IP, 53)
    assert EPHEMERAL_LOW <= s.getsockname()[1] <= EPHEMERAL_HIGH


def test_sendto_without_route_is_enetunreach(h: Harness) -> None:
    """No route (the stack has no default gateway): ENETUNREACH like the kernel."""
    s = h.stack.udp_socket()
    with pytest.raises(OSError) as ei:
        s.sendto(b"x", ("198.19.1.1", 9))
    assert ei.value.errno == errno.ENETUNREACH
    assert h.stack.counters.IpOutNoRoutes == 1


CLOSED_CALLS: dict[str, Callable[[UdpSocket | socket.socket], object]] = {
    "send": lambda s: s.send(b"x"),
    "sendto": lambda s: s.sendto(b"x", ("127.0.0.1", 9)),
    "recv": lambda s: s.recv(10),
    "recvfrom": lambda s: s.recvfrom(10),
    "bind": lambda s: s.bind(("0.0.0.0", 0)),
    "connect": lambda s: s.connect(("127.0.0.1", 9)),
}


@pytest.mark.parametrize("call", list(CLOSED_CALLS))
def test_closed_socket_is_ebadf(h: Harness, real: Callable[[], socket.socket], call: str) -> None:
    """Every operation on a closed socket raises OSError(EBADF)."""
    s = h.stack.udp_socket()
    s.bind(("0.0.0.0", 0))
    s.close()
    s.close()  # closing twice is harmless, as with socket
    r = real()
    r.close()
    ours = raised(lambda: CLOSED_CALLS[call](s))
    same_error(ours, raised(lambda: CLOSED_CALLS[call](r)))
    assert isinstance(ours, OSError) and ours.errno == errno.EBADF


def test_getsockname_on_closed_socket_is_ebadf(h: Harness) -> None:
    s = h.stack.udp_socket()
    s.close()
    with pytest.raises(OSError):
        s.getsockname()


def test_send_raw_on_closed_socket_is_ebadf_and_binds_nothing(h: Harness) -> None:
    """The fast path refuses a closed socket as send does (EBADF); it used to
    autobind it again and send."""
    s = h.stack.udp_socket()
    s.close()
    with pytest.raises(OSError) as ei:
        s.send_raw(b"x", bytes([198, 18, 0, 2]), 9)
    assert ei.value.errno == errno.EBADF
    assert s.local_port == 0 and h.stack.udp.ports == {}
    h.poll()
    assert h.recv() == []
    assert h.stack.counters.UdpOutDatagrams == 0


def test_a_route_added_after_a_send_takes_effect_at_the_next_send(h: Harness) -> None:
    """The socket keeps the next hop of its last destination; a change of the
    routing table is seen by the next datagram (a host route via OTHER_IP)."""
    s = h.stack.udp_socket()
    s.bind(("0.0.0.0", 0))
    s.sendto(b"one", (PEER_IP, 9))
    h.poll()
    assert [f.dst for f in h.recv()] == [PEER_MAC]
    h.stack.routes.add(ipb(PEER_IP), 32, h.iface, gateway=ipb(OTHER_IP))
    s.sendto(b"two", (PEER_IP, 9))
    h.poll()
    (frame,) = h.recv()
    assert frame.dst == OTHER_MAC and frame[IP].dst == PEER_IP
