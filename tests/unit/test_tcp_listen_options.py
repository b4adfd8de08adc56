"""Per-listener TCP options and the public keep-alive call, with the fake clock.

A listener's options (``TcpLayer.listen(**options)``, ``set_options``) are
the starting configuration of every connection it accepts, as Linux clones
the listening socket: the receive buffer already decides the window scale
the SYN-ACK offers (RFC 7323 2.2).  ``TcpSocket.set_keepalive`` turns RFC
1122 4.2.3.6 keep-alives on and off on a live connection, with Linux's
timing: on = idle from now; a new idle time = from the last segment received.
"""

from __future__ import annotations

import errno

import pytest
from tcp_peer import Flow, Peer, peer, seq_add, state

from ustack.tcp.states import State


def _listen(p: Peer, port: int = 80, **options: object) -> Flow:
    lst = p.stack.tcp.listen(("0.0.0.0", port), 16, **options)
    return p.accept(port, listener=lst)


def test_listen_rejects_an_unknown_option_and_does_not_listen() -> None:
    with peer() as p:
        with pytest.raises(TypeError, match="bogus"):
            p.stack.tcp.listen(("0.0.0.0", 80), 16, bogus=1)
        assert p.stack.tcp.listeners == {}
        lst = p.stack.tcp.listen(("0.0.0.0", 80), 16)
        with pytest.raises(TypeError, match="rcvbuff"):
            lst.set_options(rcvbuff=1)
        assert lst.options == {}


def test_listener_rcvbuf_picks_the_synack_window_and_scale() -> None:
    """RFC 7323 2.2/2.3: the shift is fixed in the SYN-ACK, so a listener's
    receive buffer must be the connection's before the SYN is answered."""
    with peer() as p:
        default = _listen(p, 80)
        assert default.synack is not None
        # 1 MB autotuned up to 6 MB (rcvbuf_max) needs 65535 << 7.
        assert default.synack.option("WScale") == 7
        # A buffer the application sets is fixed (SO_RCVBUF's lock on Linux).
        small = _listen(p, 81, rcvbuf=16384)
        assert small.synack is not None
        assert small.synack.option("WScale") == 0
        assert small.synack.win == 16384
        assert small.s.conn.cfg.rcvbuf == 16384 and small.s.conn.rcv_wscale == 0
        assert small.s.conn.cfg.rcvbuf_max == 0
        # The peer can fill exactly that window, and then it is closed.
        for off in range(0, 16384, 1448):
            small.send("A", b"x" * min(1448, 16384 - off))
        p.advance(1.0)
        last = small.take()[-1]
        assert last.ack == small.snd_nxt and last.win == 0


def test_options_set_after_listen_reach_only_later_connections() -> None:
    with peer() as p:
        lst = p.stack.tcp.listen(("0.0.0.0", 80), 16)
        first = p.accept(80, listener=lst)
        lst.set_options(nodelay=True, sndbuf=8192, rcvbuf=200_000)
        second = p.accept(80, listener=lst)
        assert not first.s.conn.cfg.nodelay and first.s.conn.cfg.sndbuf == 1 << 20
        cfg = second.s.conn.cfg
        assert cfg.nodelay and cfg.sndbuf == 8192 and cfg.rcvbuf == 200_000
        assert second.s.conn.rcv_wscale == 2  # 65535 << 2 >= 200 000
        # The layer's defaults are untouched.
        assert p.stack.tcp.config.sndbuf == 1 << 20 and not p.stack.tcp.config.nodelay


def test_listener_mss_stays_within_the_interface_mtu() -> None:
    """RFC 9293 3.7.1: the MSS we offer is at most the MTU minus 40."""
    with peer() as p:
        f = _listen(p, 80, mss=9000)
        assert f.synack is not None and f.synack.option("MSS") == 1460
        g = _listen(p, 81, mss=1000)
        assert g.synack is not None and g.synack.option("MSS") == 1000


def test_listener_keepalive_arms_at_establishment() -> None:
    """RFC 1122 4.2.3.6 with the listener's timings: probes after 60 s idle,
    5 s apart, 2 of them, then ETIMEDOUT."""
    with peer() as p:
        f = _listen(p, 80, keepalive=True, keepalive_idle=60.0, keepalive_interval=5.0,
                    keepalive_probes=2)
        t0 = p.now
        p.run_to(t0 + 59.9)
        assert f.take() == []
        p.run_to(t0 + 100)
        probes = f.take()
        assert [round(s.t - t0, 6) for s in probes] == [60.0, 65.0]
        assert all(s.seq == seq_add(f.rcv_nxt, -1) and s.payload == b"" for s in probes)
        assert state(f.s) is State.CLOSED and f.s.error == errno.ETIMEDOUT


# -- TcpSocket.set_keepalive ------------------------------------------------------


def test_set_keepalive_on_counts_the_idle_time_from_now() -> None:
    """Linux tcp_set_keepalive: turning keep-alives on arms the timer one idle
    time from the call, however long the connection has been quiet."""
    with peer() as p:
        f = p.accept()
        t0 = p.now
        p.run_to(t0 + 100)
        f.s.set_keepalive(True, idle=30.0, interval=10.0, probes=3)
        p.flush()
        p.run_to(t0 + 129.9)
        assert f.take() == []
        p.run_to(t0 + 200)
        probes = f.take()
        assert [round(s.t - t0, 6) for s in probes] == [130.0, 140.0, 150.0]
        assert state(f.s) is State.CLOSED and f.s.error == errno.ETIMEDOUT


def test_set_keepalive_off_stops_the_probes() -> None:
    with peer() as p:
        f = p.accept()
        t0 = p.now
        f.s.set_keepalive(True, idle=10.0, interval=5.0, probes=2)
        p.flush()
        p.run_to(t0 + 10)
        [probe] = f.take()
        assert probe.seq == seq_add(f.rcv_nxt, -1)
        f.s.set_keepalive(False)
        p.flush()
        p.run_to(t0 + 3 * 3600)
        assert f.take() == []
        assert state(f.s) is State.ESTABLISHED and not f.s.conn.cfg.keepalive
        # On again: the unanswered probe was forgotten, the count starts over.
        f.s.set_keepalive(True)
        p.flush()
        t1 = p.now
        p.run_to(t1 + 19)
        assert [round(s.t - t1, 6) for s in f.take()] == [10.0, 15.0]
        assert state(f.s) is State.ESTABLISHED
        p.run_to(t1 + 20.1)
        assert state(f.s) is State.CLOSED


def test_a_new_idle_time_counts_from_the_last_segment_received() -> None:
    """Linux TCP_KEEPIDLE (keepalive_time_elapsed): the connection has been
    idle since the peer last sent; a shorter idle time already passed fires now."""
    with peer() as p:
        f = p.accept()
        t0 = p.now
        f.s.set_keepalive(True)  # 7200 s
        p.flush()
        p.run_to(t0 + 100)
        f.send("A", b"hi")  # last segment received at t0 + 100
        p.run_to(t0 + 500)
        assert [s.payload for s in f.take()] == [b""]  # the (delayed) ACK
        f.s.set_keepalive(True, idle=600.0)
        p.flush()
        p.run_to(t0 + 699.9)
        assert f.take() == []
        p.run_to(t0 + 700)
        assert [round(s.t - t0, 6) for s in f.take()] == [700.0]
        f.send("A")  # answered: idle again from here
        t1 = p.now
        p.run_to(t1 + 50)
        f.s.set_keepalive(True, idle=20.0)  # 50 s idle already: probe at once
        p.flush()
        p.run_to(p.now)
        assert [round(s.t - t1, 6) for s in f.take()] == [50.0]
