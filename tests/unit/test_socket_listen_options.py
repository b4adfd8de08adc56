"""``ustack.socket``: options on a listening socket reach the sockets it
accepts (Linux clones the listener), and keep-alives set with setsockopt
work on a live connection.  Two Stacks, each in its own Runtime thread."""

from __future__ import annotations

import errno
import socket as std  # TCP_KEEP* (ustack.socket has them only at run time)
import time

import pytest
from socket_net import B_IP, Net

import ustack.socket as us
from ustack.tcp.socket import TcpSocket


def _native(rt_sock: us.Socket) -> TcpSocket:
    t = rt_sock._tcp
    assert t is not None
    return t


def _set_all(s: us.Socket) -> None:
    s.setsockopt(us.IPPROTO_TCP, us.TCP_NODELAY, 1)
    s.setsockopt(us.SOL_SOCKET, us.SO_KEEPALIVE, 1)
    s.setsockopt(us.IPPROTO_TCP, std.TCP_KEEPIDLE, 30)
    s.setsockopt(us.IPPROTO_TCP, std.TCP_KEEPINTVL, 7)
    s.setsockopt(us.IPPROTO_TCP, std.TCP_KEEPCNT, 4)
    s.setsockopt(us.SOL_SOCKET, us.SO_RCVBUF, 16384)
    s.setsockopt(us.SOL_SOCKET, us.SO_SNDBUF, 32768)


@pytest.mark.parametrize("when", ["before listen", "after listen"])
def test_listening_socket_options_reach_accepted_sockets(net: Net, when: str) -> None:
    lst = us.socket(runtime=net.b)
    lst.bind(("0.0.0.0", 5100))
    if when == "before listen":
        _set_all(lst)
        lst.listen()
    else:
        lst.listen()
        _set_all(lst)
    lst.settimeout(5)
    cli = us.create_connection((B_IP, 5100), timeout=5, runtime=net.a)
    srv, _ = lst.accept()
    try:
        # getsockopt on the accepted socket reports what it inherited ...
        assert srv.getsockopt(us.IPPROTO_TCP, us.TCP_NODELAY) == 1
        assert srv.getsockopt(us.SOL_SOCKET, us.SO_KEEPALIVE) == 1
        assert srv.getsockopt(us.IPPROTO_TCP, std.TCP_KEEPIDLE) == 30
        assert srv.getsockopt(us.IPPROTO_TCP, std.TCP_KEEPINTVL) == 7
        assert srv.getsockopt(us.IPPROTO_TCP, std.TCP_KEEPCNT) == 4
        assert srv.getsockopt(us.SOL_SOCKET, us.SO_RCVBUF) == 32768  # doubled, as Linux
        assert srv.getsockopt(us.SOL_SOCKET, us.SO_SNDBUF) == 65536
        # ... and the connection was built with it from the SYN on.
        cfg, wscale, armed = net.b.call(
            lambda: (_native(srv).conn.cfg, _native(srv).conn.rcv_wscale,
                     _native(srv).conn.next_timer()))
        assert cfg.nodelay and cfg.keepalive
        assert (cfg.keepalive_idle, cfg.keepalive_interval, cfg.keepalive_probes) == (30, 7, 4)
        assert cfg.rcvbuf == 16384 and cfg.sndbuf == 32768
        assert armed is not None  # the keep-alive timer runs
        # RFC 7323 2.2: the window scale the SYN-ACK offered came from that
        # receive buffer (1 MB, the default, would have needed a shift of 5).
        assert wscale == 0
        assert net.a.call(lambda: _native(cli).conn.snd_wscale) == 0
        # The listener itself still answers for what was set on it.
        assert lst.getsockopt(us.SOL_SOCKET, us.SO_RCVBUF) == 32768
    finally:
        for s in (cli, srv, lst):
            s.close()


def test_listener_options_do_not_leak_to_other_listeners(net: Net) -> None:
    a = us.socket(runtime=net.b)
    a.bind(("0.0.0.0", 5101))
    a.listen()
    a.setsockopt(us.SOL_SOCKET, us.SO_RCVBUF, 16384)
    b = us.socket(runtime=net.b)
    b.bind(("0.0.0.0", 5102))
    b.listen()
    b.settimeout(5)
    cli = us.create_connection((B_IP, 5102), timeout=5, runtime=net.a)
    srv, _ = b.accept()
    try:
        assert srv.getsockopt(us.SOL_SOCKET, us.SO_RCVBUF) == 2 * (1 << 20)
        assert net.b.call(lambda: _native(srv).conn.cfg.rcvbuf) == 1 << 20
        assert net.b.stack.tcp.config.rcvbuf == 1 << 20
    finally:
        for s in (cli, srv, a, b):
            s.close()


def test_keepalive_set_on_a_connection_finds_a_dead_peer(net: Net) -> None:
    """RFC 1122 4.2.3.6 through setsockopt on a live connection: after 1 s
    idle, probes 1 s apart, 2 unanswered ones: ETIMEDOUT (Linux's errno)."""
    lst = us.socket(runtime=net.b)
    lst.bind(("0.0.0.0", 5103))
    lst.listen()
    lst.settimeout(5)
    cli = us.create_connection((B_IP, 5103), timeout=5, runtime=net.a)
    srv, _ = lst.accept()
    srv.setsockopt(us.IPPROTO_TCP, std.TCP_KEEPIDLE, 1)
    srv.setsockopt(us.IPPROTO_TCP, std.TCP_KEEPINTVL, 1)
    srv.setsockopt(us.IPPROTO_TCP, std.TCP_KEEPCNT, 2)
    srv.setsockopt(us.SOL_SOCKET, us.SO_KEEPALIVE, 1)
    net.a.stop()  # the client's host goes silent: nobody answers the probes
    srv.settimeout(10)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError) as e:
        srv.recv(10)
    took = time.monotonic() - t0
    assert e.value.errno == errno.ETIMEDOUT
    assert 2.5 < took < 5.0, took  # idle 1 s + 2 probes 1 s apart, then it gives up
    for s in (srv, lst, cli):
        s.close()  # cli's runtime is stopped: that close releases its descriptor only


def test_keepalive_off_again_stops_the_timer(net: Net) -> None:
    lst = us.socket(runtime=net.b)
    lst.bind(("0.0.0.0", 5104))
    lst.setsockopt(us.SOL_SOCKET, us.SO_KEEPALIVE, 1)
    lst.listen()
    lst.settimeout(5)
    cli = us.create_connection((B_IP, 5104), timeout=5, runtime=net.a)
    srv, _ = lst.accept()
    try:
        assert net.b.call(lambda: _native(srv).conn.next_timer()) is not None
        srv.setsockopt(us.SOL_SOCKET, us.SO_KEEPALIVE, 0)
        assert srv.getsockopt(us.SOL_SOCKET, us.SO_KEEPALIVE) == 0
        assert net.b.call(lambda: (_native(srv).conn.cfg.keepalive,
                                   _native(srv).conn.next_timer())) == (False, None)
    finally:
        for s in (cli, srv, lst):
            s.close()
