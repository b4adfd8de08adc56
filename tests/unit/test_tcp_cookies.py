"""SYN cookies at the listener (tcp/cookies.py in the layer), per situation.

The scripted peer (tcp_peer.py) plays the client with a fake clock: the
cookie SYN-ACK is checked against Linux's formula and the stack's secret,
the returning ACK completes the handshake with nothing stored in between,
the options the cookie carried in our TSval are the ones the connection
then uses on the wire (window scale, SACK, timestamps, the MSS rounded
down to Linux's table), and every cookie that is not ours, not for this
4-tuple or too old is refused, answered with a reset and counted.
"""

from __future__ import annotations

import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tcp_peer import MASK, OUR_IP, PEER_IP, PEER_ISN, Flow, Peer, peer, seq_add

from ustack.tcp import cookies
from ustack.tcp import syncookies as sc
from ustack.tcp.states import State

OURS = socket.inet_aton(OUR_IP)
THEIRS = socket.inet_aton(PEER_IP)


def cookie_syn(p: Peer, *, mss: int | None = 1460, sack: bool = True, ts: bool = True,
               wscale: int | None = 7, port: int | None = None) -> tuple[Flow, int]:
    """A SYN to port 80 answered with a cookie: the flow, having adopted the
    SYN-ACK, and the cookie's ISS."""
    f = Flow(p, port or p.new_port(), 80, PEER_ISN)
    f.send_syn(mss=mss, sack=sack, ts=ts, wscale=wscale, win=65535)
    sa = f.expect1("SA")
    f.adopt_syn(sa, offered_ts=ts, offered_ws=wscale)
    f.synack = sa
    return f, sa.seq


def test_always_answers_every_syn_with_linuxs_cookie_and_keeps_nothing() -> None:
    with peer() as p:
        lst = p.stack.tcp_listen(("0.0.0.0", 80), 16, syncookies="always")
        f, iss = cookie_syn(p, mss=1400)
        want = sc.make_cookie(p.stack.tcp.cookie_secret, THEIRS, OURS, f.sport, 80, PEER_ISN,
                              sc.mss_index(1400), sc.counter(p.now))
        assert iss == want
        assert sc.mss_index(1400) == 1  # 1300: the table's, rounded down
        assert not p.stack.tcp.conns and lst.syn_received == 0
        c = p.stack.counters
        assert c.TcpExtSyncookiesSent == 1 and c.TcpPassiveOpens == 0
        # The client's options ride in our TSval's low bits.
        assert f.synack is not None and f.synack.tsval is not None
        assert sc.ts_decode(f.synack.tsval) == (7, True, False)


@pytest.mark.parametrize(("sack", "ts", "wscale"), [
    (False, False, None), (True, False, 7), (False, True, None), (True, True, None),
    (False, True, 3), (True, True, 7), (True, True, 14)])
def test_the_handshake_completes_with_the_options_the_cookie_carried(
        sack: bool, ts: bool, wscale: int | None) -> None:
    """Window scale and SACK come back only through the timestamp: without
    timestamps the SYN-ACK offers neither and the connection has neither
    (as on Linux); with them the connection has what the SYN offered."""
    with peer() as p:
        lst = p.stack.tcp_listen(("0.0.0.0", 80), 16, syncookies="always")
        f, iss = cookie_syn(p, sack=sack, ts=ts, wscale=wscale)
        assert f.synack is not None
        offered = {"ts": f.synack.tsval is not None, "ws": f.synack.option("WScale"),
                   "sack": f.synack.option("SAckOK") is not None}
        assert offered["ts"] == ts
        assert offered["sack"] == (sack and ts)
        assert (offered["ws"] is not None) == (wscale is not None and ts)
        f.send("A")
        assert not f.take()
        s = lst.accept()
        conn = s.conn
        assert s.state is State.ESTABLISHED and conn.iss == iss
        assert conn.ts_ok == ts and conn.sack_ok == (sack and ts)
        assert conn.snd_wscale == (min(wscale, 14) if wscale is not None and ts else 0)
        assert p.stack.counters.TcpExtSyncookiesRecv == 1
        assert p.stack.counters.TcpPassiveOpens == 1
        # On the wire: the stack's data carries timestamps that continue
        # from the cookie's TSval, its window field is scaled as offered.
        f.sock = s
        p.advance(0.05)
        f.app_send(b"x" * 100)
        [d] = f.take()
        assert d.payload == b"x" * 100 and d.seq == seq_add(iss, 1)
        if ts:
            assert d.tsval is not None and f.synack.tsval is not None
            assert 0 < (d.tsval - f.synack.tsval) & MASK < 200  # 50 ms on, 63 ms of option bits
        else:
            assert d.tsval is None
        # The window field: scaled by the shift the SYN-ACK offered (RFC
        # 7323 2.3) when the client offered one, the whole 16 bits if not.
        if wscale is not None and ts:
            assert conn.rcv_wscale == 7 and d.win == p.cfg.rcvbuf >> 7
        else:
            assert conn.rcv_wscale == 0 and d.win == 0xFFFF


def test_sack_is_used_after_a_cookie_handshake() -> None:
    """Out-of-order data after the handshake is SACKed (RFC 2018), the
    option the cookie brought back."""
    with peer() as p:
        lst = p.stack.tcp_listen(("0.0.0.0", 80), 16, syncookies="always")
        f, _ = cookie_syn(p)
        f.send("A")
        f.sock = lst.accept()
        f.send("PA", b"b" * 100, seq=seq_add(f.snd_nxt, 100))
        [dup] = f.take()
        assert dup.sack == [(seq_add(f.snd_nxt, 100), seq_add(f.snd_nxt, 200))]


def test_the_mss_is_the_tables_rounded_down() -> None:
    with peer() as p:
        lst = p.stack.tcp_listen(("0.0.0.0", 80), 16, syncookies="always")
        f, _ = cookie_syn(p, mss=1400, ts=False)
        f.send("A")
        f.sock = lst.accept()
        f.app_send(b"y" * 3000)
        assert max(len(s.payload) for s in f.take()) == 1300


def test_the_request_in_the_handshakes_ack_is_delivered() -> None:
    """A client that sends its request with the ACK (or right after it):
    the text is the new connection's first bytes."""
    with peer() as p:
        lst = p.stack.tcp_listen(("0.0.0.0", 80), 16, syncookies="always")
        f, _ = cookie_syn(p)
        f.send("PA", b"GET / HTTP/1.1\r\n\r\n")
        s = lst.accept()
        assert s.recv(100) == b"GET / HTTP/1.1\r\n\r\n"


def test_a_cookie_is_good_for_two_minutes_then_refused() -> None:
    """The ACK is replayed: accepted within the minute of the counter it was
    made in and the next (MAX_AGE; made at the start of a minute, that is
    two minutes), refused with a reset and counted after that."""
    for wait, good in ((0.0, True), (119.0, True), (120.0, False), (3600.0, False)):
        with peer() as p:
            p.run_to(0.5)
            lst = p.stack.tcp_listen(("0.0.0.0", 80), 16, syncookies="always")
            f, _ = cookie_syn(p)
            p.advance(wait)
            f.send("A")
            c = p.stack.counters
            if good:
                assert not f.take() and lst.accept().state is State.ESTABLISHED, wait
                assert c.TcpExtSyncookiesRecv == 1 and c.TcpExtSyncookiesFailed == 0
            else:
                [rst] = f.take()
                assert rst.flags == "R" and rst.seq == f.rcv_nxt, wait
                assert c.TcpExtSyncookiesFailed == 1 and not p.stack.tcp.conns


@pytest.mark.parametrize("forge", ["random", "off by one", "other port", "other isn"])
def test_a_forged_cookie_is_refused_reset_and_counted(forge: str) -> None:
    with peer() as p:
        lst = p.stack.tcp_listen(("0.0.0.0", 80), 16, syncookies="always")
        f, iss = cookie_syn(p)
        ack = seq_add(iss, 1)
        if forge == "random":
            ack = 0x5EED1234
        elif forge == "off by one":
            ack = seq_add(ack, 1 << 24)  # another minute: the check reads the top byte
        elif forge == "other port":
            f.sport += 1
        else:
            f.snd_nxt = seq_add(f.snd_nxt, 1000)
        f.send("A", ack=ack)
        [rst] = f.take()
        assert rst.flags == "R"
        assert p.stack.counters.TcpExtSyncookiesFailed == 1
        assert not p.stack.tcp.conns and lst.syn_received == 0
        with pytest.raises(BlockingIOError):
            lst.accept()


def test_mode_on_answers_with_cookies_only_when_the_syn_queue_is_full() -> None:
    """Linux's tcp_syncookies=1: the backlog's half-open connections are
    kept as usual; the SYN beyond them gets a cookie, and its ACK a
    connection all the same."""
    with peer() as p:
        lst = p.stack.tcp_listen(("0.0.0.0", 80), 2)  # the layer's mode: on
        assert p.stack.tcp.syncookies == cookies.ON
        held = [Flow(p, p.new_port(), 80, PEER_ISN) for _ in range(2)]
        for h in held:
            h.send_syn(mss=1460, sack=True, ts=True, wscale=7, win=65535)
            h.expect1("SA")
        assert lst.syn_received == 2
        c = p.stack.counters
        assert c.TcpExtSyncookiesSent == 0
        f, _ = cookie_syn(p)
        assert c.TcpExtSyncookiesSent == c.TcpExtTCPReqQFullDoCookies == 1
        assert lst.syn_received == 2
        f.send("A")
        assert lst.accept().state is State.ESTABLISHED
        assert c.TcpExtSyncookiesRecv == 1


def test_mode_on_takes_no_cookie_it_has_not_sent_lately() -> None:
    """With no cookie sent in the last two minutes, mode on checks none: a
    stray ACK is reset as in LISTEN (RFC 9293 3.10.7.2), not counted as a
    failed cookie."""
    with peer() as p:
        p.listen(80)
        f = Flow(p, p.new_port(), 80, PEER_ISN)
        f.send("A", ack=12345)
        [rst] = f.take()
        assert rst.flags == "R" and p.stack.counters.TcpExtSyncookiesFailed == 0


def test_mode_off_drops_syns_beyond_the_backlog() -> None:
    with peer() as p:
        lst = p.stack.tcp_listen(("0.0.0.0", 80), 1, syncookies="off")
        a = Flow(p, p.new_port(), 80, PEER_ISN)
        a.send_syn(mss=1460, sack=True, ts=True, wscale=7, win=65535)
        a.expect1("SA")
        b = Flow(p, p.new_port(), 80, PEER_ISN)
        b.send_syn(mss=1460, sack=True, ts=True, wscale=7, win=65535)
        assert not b.take()
        c = p.stack.counters
        assert c.TcpExtTCPReqQFullDrop == c.TcpExtListenDrops == 1
        assert c.TcpExtSyncookiesSent == 0 and lst.syn_received == 1


def test_a_cookie_ack_is_dropped_while_the_accept_queue_is_full() -> None:
    """A connection completed now would have nowhere to wait: dropped and
    counted as Linux does (ListenOverflows); the client's next segment
    brings the cookie back, and once the application accepts, it is served."""
    with peer() as p:
        lst = p.stack.tcp_listen(("0.0.0.0", 80), 1, syncookies="always")
        first, _ = cookie_syn(p)
        f, _ = cookie_syn(p)
        first.send("A")
        f.send("A")
        assert not f.take()
        c = p.stack.counters
        assert c.TcpExtListenOverflows == 1 and len(lst.accept_queue) == 1
        lst.accept()
        f.send("PA", b"hello")
        s = lst.accept()
        assert s.recv(10) == b"hello"


def test_any_stack_with_the_secret_finishes_the_handshake() -> None:
    """Workers share the secret's bytes: a cookie one stack made is good at
    another (the same address; the kernel spreads flows across workers)."""
    with peer() as p1, peer() as p2:
        p2.stack.tcp.cookie_secret = sc.SynCookieSecret(p1.stack.tcp.cookie_secret.raw)
        p1.stack.tcp_listen(("0.0.0.0", 80), 16, syncookies="always")
        lst2 = p2.stack.tcp_listen(("0.0.0.0", 80), 16, syncookies="always")
        f, iss = cookie_syn(p1)
        f.peer = p2
        f.send("A")
        s = lst2.accept()
        assert s.state is State.ESTABLISHED and s.conn.iss == iss


def test_the_listeners_options_and_the_layers_settings_reach_cookie_synacks() -> None:
    """A listener's options (its receive buffer: the window and its scale)
    are in its cookie SYN-ACKs, and a later change of the layer's defaults
    too (the settings are copied once, not kept stale)."""
    with peer() as p:
        lst = p.stack.tcp_listen(("0.0.0.0", 80), 16, syncookies="always", rcvbuf=20000)
        f, _ = cookie_syn(p)
        assert f.synack is not None
        assert f.synack.win == 20000 and f.synack.option("WScale") == 0
        p.cfg.timestamps = False
        g, _ = cookie_syn(p)
        assert g.synack is not None and g.synack.tsval is None
        lst.set_options(rcvbuf=400000)
        p.cfg.timestamps = True
        h, _ = cookie_syn(p)
        assert h.synack is not None and h.synack.option("WScale") == 3


def test_the_mode_is_checked() -> None:
    assert [cookies.parse_mode(m) for m in ("off", "on", "always", 0, 1, 2)] == [0, 1, 2] * 2
    for bad in ("yes", 3, -1, True, None):
        with pytest.raises(ValueError):
            cookies.parse_mode(bad)
    with peer() as p, pytest.raises(ValueError):
        p.stack.tcp_listen(("0.0.0.0", 80), 16, syncookies="sometimes")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(1024, 65535), st.integers(0, MASK),
                          st.integers(0, MASK), st.booleans()), min_size=1, max_size=300))
def test_a_flood_of_syns_and_forged_acks_leaves_nothing_behind(
        segs: list[tuple[int, int, int, bool]]) -> None:
    """Hostile input under mode always: any mix of SYNs and ACKs with
    random numbers is answered (SYN-ACK or RST) and stores nothing -- no
    connection, no SYN queue entry -- whatever their number."""
    with peer() as p:
        lst = p.stack.tcp_listen(("0.0.0.0", 80), 4, syncookies="always")
        for port, seqn, ackn, syn in segs:
            f = Flow(p, port, 80, seqn)
            if syn:
                f.send_syn(mss=1460, sack=True, ts=True, wscale=7, win=65535)
            else:
                f.send("A", ack=ackn)
        c = p.stack.counters
        assert not p.stack.tcp.conns and lst.syn_received == 0 and not lst.accept_queue
        assert c.TcpExtSyncookiesSent == sum(s for *_, s in segs)
        assert c.TcpExtSyncookiesFailed == sum(not s for *_, s in segs)
        assert c.TcpExtSyncookiesRecv == 0
