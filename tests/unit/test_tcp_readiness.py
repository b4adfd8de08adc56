"""TCP readiness (``TcpSocket.poll`` / ``TcpListener.poll``) against Linux's.

Every front end reads readiness from one rule, the native sockets' ``poll()``
(``ustack.socket``'s descriptors show it as select(2) does, ``ustack.aio``
delivers data or end of stream by it).  The rule claims to be Linux's
``tcp_poll``, so the kernel is the judge: for each situation the same steps
are taken on kernel sockets over loopback, polled with ``select.poll``, and
on ustack sockets (two Stacks on the in-memory link, fake clock), and the
masks must be equal; so must select(2)'s view of the kernel socket and of
a ``ustack.socket`` descriptor showing ustack's mask (``Mirror.show``).
Where Linux differs for a reason, the situation says so and both masks are
pinned.

Not compared, on purpose:

- POLLERR after the error was read.  Linux clears ``sk_err`` when SO_ERROR
  or a failing recv reports it, and POLLERR goes with it; a native ustack
  socket keeps ``error`` (nothing reads it destructively), and the sockets
  layer keeps track of what it reported (HUP keeps select(2)'s view the same).
- The send-buffer threshold.  Linux reports POLLOUT only while a third of
  the send buffer is free (``sk_stream_is_writeable``), ustack while any of
  it is; only the extremes (room, none) are situations here.
"""

from __future__ import annotations

import errno
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial

import pytest
from test_tcp_stack import B_IP, Net, pair

from ustack.api.socket.readiness import SELECT_READABLE, SELECT_WRITABLE, Mirror
from ustack.tcp.socket import TcpListener, TcpSocket
from ustack.tcp.states import State

POLLIN, POLLOUT = select.POLLIN, select.POLLOUT
POLLERR, POLLHUP, POLLRDHUP = select.POLLERR, select.POLLHUP, select.POLLRDHUP
# What is asked of the kernel; POLLERR and POLLHUP are always reported.
EVENTS = POLLIN | POLLOUT | POLLRDHUP
LOOPBACK = "127.0.0.1"
# A kernel socket in a situation, and the bits to wait for before polling it.
Polled = tuple[socket.socket, int]
PORT = 5000


def names(mask: int) -> str:
    bits = [("IN", POLLIN), ("OUT", POLLOUT), ("ERR", POLLERR), ("HUP", POLLHUP),
            ("RDHUP", POLLRDHUP)]
    return "|".join(n for n, b in bits if mask & b) or "0"


# -- the kernel's side -----------------------------------------------------------


class Kernel:
    """Kernel sockets over loopback, closed at the end of the test."""

    def __init__(self, closing: ExitStack) -> None:
        self._closing = closing

    def sock(self) -> socket.socket:
        return self._closing.enter_context(socket.socket())

    def listener(self, backlog: int = 8) -> socket.socket:
        s = self.sock()
        s.bind((LOOPBACK, 0))
        s.listen(backlog)
        return s

    def pair(self) -> tuple[socket.socket, socket.socket]:
        """(client, accepted server), both established."""
        lst = self.listener()
        client = self.sock()
        client.connect(lst.getsockname())
        server, _ = lst.accept()
        self._closing.enter_context(server)
        return client, server

    @staticmethod
    def mask(s: socket.socket, wait_for: int = 0) -> int:
        """The mask ``s`` polls with, once what was just done has arrived:
        up to 2 s for any of ``wait_for``, then a short settle (loopback
        delivers in the sender's system call; the settle covers a loaded
        machine for the bits that appear without being waited for)."""
        p = select.poll()
        p.register(s, EVENTS)
        if wait_for:
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                got = p.poll(100)
                if got and got[0][1] & wait_for:
                    break
        time.sleep(0.02)
        got = p.poll(0)
        return got[0][1] if got else 0


# -- ustack's side ---------------------------------------------------------------


def u_pair(net: Net, **client_options: object) -> tuple[TcpSocket, TcpSocket]:
    if not client_options:
        return pair(net, PORT)
    lst = net.b.tcp_listen(("0.0.0.0", PORT), rcvbuf=4096)
    client = net.a.tcp_connect((B_IP, PORT), **client_options)
    server = net.accept(lst)
    net.run_until(lambda: client.state is State.ESTABLISHED, 5)
    return client, server


def fill(send: Callable[[bytes], int], settle: Callable[[], None]) -> None:
    """Send until the send buffer stays full after the network settles."""
    chunk = bytes(65536)
    for _ in range(1000):
        try:
            while send(chunk):
                pass
        except BlockingIOError:
            pass
        settle()
        try:
            send(chunk)
        except BlockingIOError:
            return
    raise AssertionError("the send buffer never filled")


# -- the situations ----------------------------------------------------------------


@dataclass
class Situation:
    name: str
    kernel: Callable[[Kernel], Polled]
    ustack: Callable[[Net], int]
    # Where Linux differs for a reason: (Linux's mask, ustack's mask, why).
    differs: tuple[int, int, str] | None = None


def k_listener_idle(k: Kernel) -> Polled:
    return k.listener(), 0


def u_listener_idle(net: Net) -> int:
    return net.b.tcp_listen(("0.0.0.0", PORT)).poll()


def k_listener_pending(k: Kernel) -> Polled:
    lst = k.listener()
    k.sock().connect(lst.getsockname())
    return lst, POLLIN


def u_listener_pending(net: Net) -> int:
    lst = net.b.tcp_listen(("0.0.0.0", PORT))
    net.a.tcp_connect((B_IP, PORT))
    net.run_until(lambda: bool(lst.accept_queue), 5)
    return lst.poll()


def k_connecting(k: Kernel) -> Polled:
    # A SYN nobody answers: the listener's accept queue (backlog 0: one
    # connection) is full, so Linux drops the next SYN; the client stays
    # in SYN-SENT, retransmitting.
    lst = k.listener(backlog=0)
    k.sock().connect(lst.getsockname())
    s = k.sock()
    s.setblocking(False)
    assert s.connect_ex(lst.getsockname()) == errno.EINPROGRESS
    return s, 0


def u_connecting(net: Net) -> int:
    s = net.a.tcp_connect((B_IP, PORT))  # B never runs: nothing answers
    for i in range(1, 50):
        net.a.poll(i * 0.01)
    assert s.state is State.SYN_SENT
    return s.poll()


def k_established(k: Kernel) -> Polled:
    client, _ = k.pair()
    return client, 0


def u_established(net: Net) -> int:
    client, _ = u_pair(net)
    return client.poll()


def k_data_waiting(k: Kernel) -> Polled:
    client, server = k.pair()
    client.sendall(b"x")
    return server, POLLIN


def u_data_waiting(net: Net) -> int:
    client, server = u_pair(net)
    client.send(b"x")
    net.run_until(lambda: server.conn.readable_bytes > 0, 5)
    return server.poll()


def k_send_buffer_full(k: Kernel) -> Polled:
    client, server = k.pair()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and never reads
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client.setblocking(False)
    fill(client.send, lambda: time.sleep(0.01))
    return client, 0


def u_send_buffer_full(net: Net) -> int:
    client, _ = u_pair(net, sndbuf=8192)  # the server (rcvbuf 4096) never reads
    fill(client.send, lambda: net.step(50))
    return client.poll()


def k_peer_fin(k: Kernel) -> Polled:
    client, server = k.pair()
    server.shutdown(socket.SHUT_WR)
    return client, POLLRDHUP


def u_peer_fin(net: Net) -> int:
    client, server = u_pair(net)
    server.shutdown_write()
    net.run_until(lambda: client.conn.peer_fin, 5)
    return client.poll()


def k_shutdown(how: int, k: Kernel) -> Polled:
    client, _ = k.pair()
    client.shutdown(how)
    return client, 0


def u_shutdown(how: int, net: Net) -> int:
    client, _ = u_pair(net)
    if how in (socket.SHUT_RD, socket.SHUT_RDWR):
        client.shutdown_read()  # nothing is sent
    if how in (socket.SHUT_WR, socket.SHUT_RDWR):
        client.shutdown_write()
        net.run_until(lambda: client.state is State.FIN_WAIT_2, 5)  # our FIN acked
    net.step(10)
    return client.poll()


def k_both_fins(k: Kernel) -> Polled:
    client, server = k.pair()
    client.shutdown(socket.SHUT_WR)
    server.shutdown(socket.SHUT_WR)
    return client, POLLHUP


def u_both_fins(net: Net) -> int:
    client, server = u_pair(net)
    client.shutdown_write()
    server.shutdown_write()
    net.run_until(lambda: client.state is State.TIME_WAIT, 5)
    return client.poll()


def k_reset(k: Kernel) -> Polled:
    client, server = k.pair()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    server.close()  # SO_LINGER 0: RST
    return client, POLLERR


def u_reset(net: Net) -> int:
    client, server = u_pair(net)
    server.abort()
    net.run_until(lambda: client.state is State.CLOSED, 5)
    return client.poll()


def k_refused(k: Kernel) -> Polled:
    closed = k.sock()
    closed.bind((LOOPBACK, 0))  # a port of ours nobody listens on
    s = k.sock()
    s.setblocking(False)
    s.connect_ex(closed.getsockname())
    return s, POLLERR


def u_refused(net: Net) -> int:
    s = net.a.tcp_connect((B_IP, 9999))
    net.run_until(lambda: s.state is State.CLOSED, 5)
    return s.poll()


def k_closed_listener(k: Kernel) -> Polled:
    lst = k.listener()
    lst.shutdown(socket.SHUT_RD)  # what stops a listener short of close()
    return lst, 0


def u_closed_listener(net: Net) -> int:
    lst: TcpListener = net.b.tcp_listen(("0.0.0.0", PORT))
    lst.close()
    return lst.poll()


SITUATIONS = [
    Situation("listener, nothing pending", k_listener_idle, u_listener_idle),
    Situation("listener, a connection pending", k_listener_pending, u_listener_pending),
    Situation("connecting (SYN-SENT)", k_connecting, u_connecting),
    Situation("established, idle", k_established, u_established),
    Situation("data waiting", k_data_waiting, u_data_waiting),
    Situation("send buffer full", k_send_buffer_full, u_send_buffer_full),
    Situation("peer's FIN", k_peer_fin, u_peer_fin),
    *(Situation(name, partial(k_shutdown, how), partial(u_shutdown, how))
      for name, how in (("SHUT_RD", socket.SHUT_RD), ("SHUT_WR", socket.SHUT_WR),
                        ("SHUT_RDWR", socket.SHUT_RDWR))),
    Situation("FIN both ways", k_both_fins, u_both_fins),
    Situation("reset by the peer", k_reset, u_reset),
    Situation("connect refused", k_refused, u_refused),
    Situation("closed listener", k_closed_listener, u_closed_listener),
]


@pytest.fixture
def kernel() -> Iterator[Kernel]:
    with ExitStack() as closing:
        yield Kernel(closing)


def select_view(fd: socket.socket | Mirror) -> tuple[bool, bool]:
    r, w, _ = select.select([fd], [fd], [], 0)
    return bool(r), bool(w)


@pytest.mark.parametrize("situation", SITUATIONS, ids=[s.name for s in SITUATIONS])
def test_ustack_polls_as_linux(situation: Situation, kernel: Kernel) -> None:
    ksock, wait_for = situation.kernel(kernel)
    linux = kernel.mask(ksock, wait_for)
    ours = situation.ustack(Net())
    if situation.differs is not None:
        want_linux, want_ours, _why = situation.differs
        assert (names(linux), names(ours)) == (names(want_linux), names(want_ours))
        return
    assert names(ours) == names(linux)
    # ustack.socket's descriptor shows the mask as select(2) shows the
    # kernel socket's.
    mirror = Mirror()
    try:
        mirror.show(ours)
        assert select_view(mirror) == select_view(ksock)
    finally:
        mirror.close()


def test_readable_and_writable_are_the_select_view() -> None:
    """select(2)'s reading of the mask (POLLIN|POLLHUP|POLLERR,
    POLLOUT|POLLERR) is the one ``Mirror.show`` uses."""
    net = Net()
    client, server = u_pair(net)

    def view() -> tuple[bool, bool]:
        mask = client.poll()
        return bool(mask & SELECT_READABLE), bool(mask & SELECT_WRITABLE)

    assert view() == (False, True)
    server.abort()
    net.run_until(lambda: client.state is State.CLOSED, 5)
    assert view() == (True, True)


def test_send_room_is_what_send_takes_and_implies_pollout() -> None:
    """``send_room()`` (what ustack.socket's posted send asks): the free send
    buffer while sending is open, else 0; room always polls POLLOUT (the
    converse does not hold: a write that fails at once is POLLOUT too)."""
    net = Net()
    opening = net.a.tcp_connect((B_IP, PORT + 1))
    assert opening.send_room() == 0 and not opening.poll() & POLLOUT  # SYN-SENT
    opening.abort()
    client, server = u_pair(net)
    room = client.send_room()
    assert room == client.conn.send_space > 0 and client.poll() & POLLOUT
    assert client.send(bytes(room + 1000)) == room  # all of the room, no more
    assert client.send_room() == 0 and not client.poll() & POLLOUT
    net.run_until(lambda: client.send_room() > 0, 5)  # acknowledged: room again
    assert client.poll() & POLLOUT
    server.shutdown_write()
    net.run_until(lambda: client.state is State.CLOSE_WAIT, 5)
    assert client.send_room() > 0  # CLOSE-WAIT still sends
    client.shutdown_write()
    assert client.send_room() == 0 and client.poll() & POLLOUT  # fails at once: EPIPE
    with pytest.raises(BrokenPipeError):
        client.send(b"x")
