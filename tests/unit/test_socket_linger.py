"""SO_LINGER with a timeout on ``ustack.socket``: close() waits, as on Linux.

socket(7): with l_onoff set and l_linger > 0, close() returns once the data
sent (and the FIN) is acknowledged, or when l_linger seconds have passed.
What Linux does then, checked on this kernel over loopback: close() returns 0
after the timeout, sends no reset, and the connection goes on in FIN-WAIT-1
until everything is delivered; a non-blocking socket lingers too.  Two
Stacks, each in its own Runtime thread; the server's small receive buffer
(set on the listening socket) is what holds the client's data back.
"""

from __future__ import annotations

import errno
import hashlib
import struct
import threading
import time

import pytest
from socket_net import B_IP, Net

import ustack.socket as us
from ustack.tcp.socket import TcpSocket
from ustack.tcp.states import State


def _pair(net: Net, port: int, rcvbuf: int = 16384) -> tuple[us.Socket, us.Socket, us.Socket,
                                                              TcpSocket]:
    lst = us.socket(runtime=net.b)
    lst.setsockopt(us.SOL_SOCKET, us.SO_RCVBUF, rcvbuf)
    lst.bind(("0.0.0.0", port))
    lst.listen()
    lst.settimeout(5)
    cli = us.create_connection((B_IP, port), timeout=5, runtime=net.a)
    srv, _ = lst.accept()
    srv.settimeout(5)
    native = net.a.call(lambda: cli._tcp)
    assert native is not None
    return lst, cli, srv, native


def _linger(s: us.Socket, secs: int) -> None:
    s.setsockopt(us.SOL_SOCKET, us.SO_LINGER, struct.pack("ii", 1, secs))


def _read_all(s: us.Socket) -> bytes:
    got = bytearray()
    while chunk := s.recv(1 << 20):
        got += chunk
    return bytes(got)


def test_linger_close_returns_when_everything_is_acknowledged(net: Net) -> None:
    lst, cli, srv, native = _pair(net, 5200)
    data = bytes(range(256)) * 1200  # 300 KB: far more than the server's window
    cli.sendall(data)
    _linger(cli, 10)
    got: list[bytes] = []

    def reader() -> None:
        time.sleep(0.3)  # the client must be waiting in close() meanwhile
        got.append(_read_all(srv))

    t = threading.Thread(target=reader)
    t.start()
    t0 = time.monotonic()
    cli.close()
    took = time.monotonic() - t0
    t.join(10)
    assert 0.25 < took < 5.0, took
    # The FIN was acknowledged before close() returned.
    assert net.a.call(lambda: native.conn.state) in (State.FIN_WAIT_2, State.TIME_WAIT,
                                                     State.CLOSED)
    assert got and hashlib.sha256(got[0]).digest() == hashlib.sha256(data).digest()
    srv.close()
    lst.close()


def test_linger_timeout_returns_and_the_connection_goes_on(net: Net) -> None:
    """Nobody reads: close() returns after l_linger seconds, even on a
    non-blocking socket (Linux inet_release ignores O_NONBLOCK), with no reset;
    the data and the FIN still arrive once the server reads."""
    lst, cli, srv, native = _pair(net, 5201)
    data = bytes(range(256)) * 800  # 200 KB
    cli.sendall(data)
    _linger(cli, 1)
    cli.setblocking(False)
    t0 = time.monotonic()
    cli.close()
    took = time.monotonic() - t0
    assert 0.9 < took < 2.5, took
    assert net.a.call(lambda: native.conn.state) is State.FIN_WAIT_1  # not reset
    assert net.a.stack.counters.TcpOutRsts == 0
    got = _read_all(srv)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    srv.close()
    lst.close()


def test_linger_on_an_idle_connection_waits_only_for_the_fin(net: Net) -> None:
    lst, cli, srv, native = _pair(net, 5202)
    cli.sendall(b"hello")
    assert srv.recv(10) == b"hello"
    _linger(cli, 5)
    t0 = time.monotonic()
    cli.close()
    took = time.monotonic() - t0
    assert took < 0.5, took
    assert net.a.call(lambda: native.conn.state) in (State.FIN_WAIT_2, State.TIME_WAIT)
    assert srv.recv(10) == b""
    srv.close()
    lst.close()


def test_linger_with_unread_data_resets_at_once(net: Net) -> None:
    """Unread data at close() means a reset (RFC 2525 2.17, Linux), and there
    is nothing left to wait for."""
    lst, cli, srv, native = _pair(net, 5203)
    srv.sendall(b"never read")
    deadline = time.monotonic() + 5
    while not net.a.call(lambda: native.conn.readable_bytes):
        assert time.monotonic() < deadline
        time.sleep(0.005)
    _linger(cli, 5)
    t0 = time.monotonic()
    cli.close()
    assert time.monotonic() - t0 < 0.5
    with pytest.raises(ConnectionResetError) as e:
        srv.recv(10)
    assert e.value.errno == errno.ECONNRESET
    srv.close()
    lst.close()


def test_linger_survives_the_runtime_stopping(net: Net) -> None:
    """A close() lingering when the stack thread stops returns (it does not hang)."""
    lst, cli, srv, _native = _pair(net, 5204)
    cli.sendall(bytes(200_000))
    _linger(cli, 30)
    threading.Timer(0.3, net.a.stop).start()
    t0 = time.monotonic()
    cli.close()
    assert time.monotonic() - t0 < 5.0
    srv.close()
    lst.close()
