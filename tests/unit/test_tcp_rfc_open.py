"""Opening a connection, segment by segment, against a scripted peer.

Each test is one situation of RFC 9293 3.5 / 3.10.7 (plus RFC 7323, 2018,
6691, 6298 where the handshake carries them), with a fake clock so the
timing of SYN retransmissions is checked exactly.
"""

from __future__ import annotations

import errno
import struct

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tcp_peer import PEER_IP, PEER_ISN, Flow, Peer, Seg, peer, seq_add, state

from ustack.tcp.connection import Event
from ustack.tcp.states import State


def _syn_options(tsval: int, tsecr: int, ws: int) -> bytes:
    # Linux's layout (tcp_options_write): MSS, SACK-permitted packed with
    # timestamps, then NOP + window scale.
    return (struct.pack("!BBH", 2, 4, 1460) + bytes((4, 2, 8, 10))
            + struct.pack("!II", tsval, tsecr) + bytes((1, 3, 3, ws)))


def test_active_open_syn_carries_mss_sack_ts_ws_in_linux_order() -> None:
    """RFC 9293 3.7.1 (MSS), RFC 2018 2 (SACK-permitted only in a SYN), RFC 7323
    2.2/3.2 (WS and TS in the SYN, TSecr 0); the window field of a SYN is not scaled."""
    with peer() as p:
        sock = p.stack.tcp_connect((PEER_IP, 80))
        p.flush()
        [syn] = p.take()
        assert syn.flags == "S" and syn.ack == 0
        assert state(sock) is State.SYN_SENT
        ws = syn.option("WScale")
        assert isinstance(ws, int) and syn.tsval is not None
        assert syn.raw_options == _syn_options(syn.tsval, 0, ws)
        # RFC 7323 2.3: the smallest shift that covers the receive buffer
        # (as large as autotuning may grow it).
        rcvbuf = max(p.cfg.rcvbuf, p.cfg.rcvbuf_max)
        assert 65535 << ws >= rcvbuf and (ws == 0 or 65535 << (ws - 1) < rcvbuf)
        assert syn.win == min(p.cfg.rcvbuf, 65535)
        assert syn.tcp.dport == 80 and 32768 <= syn.tcp.sport <= 60999  # ephemeral range


@pytest.mark.parametrize(
    ("offer", "want"),
    [
        ({"mss": None, "sack": False, "ts": False, "wscale": None}, "mss"),
        ({"mss": 1460, "sack": False, "ts": False, "wscale": None}, "mss"),
        ({"mss": 1460, "sack": True, "ts": False, "wscale": None}, "mss+sack"),
        ({"mss": 1460, "sack": False, "ts": True, "wscale": None}, "mss+ts"),
        ({"mss": 1460, "sack": False, "ts": False, "wscale": 7}, "mss+ws"),
        ({"mss": 1460, "sack": True, "ts": True, "wscale": 7}, "all"),
    ],
    ids=["none", "mss", "sack", "ts", "ws", "all"],
)
def test_passive_open_syn_ack_answers_only_offered_options(offer: dict[str, object],
                                                           want: str) -> None:
    """RFC 7323 1.3/2.2 (WS and TS only if the SYN had them), RFC 2018 2
    (SACK-permitted only if offered), RFC 9293 3.7.1 (our MSS always); the
    SYN-ACK acknowledges the peer's ISN + 1, its window field is unscaled."""
    with peer() as p:
        p.listen(80)
        f = Flow(p, p.new_port(), 80, PEER_ISN)
        f.send_syn(win=65535, **offer)  # type: ignore[arg-type]
        sa = f.expect1("SA")
        assert sa.ack == seq_add(PEER_ISN, 1)
        assert sa.win == 65535
        mss = struct.pack("!BBH", 2, 4, 1460)
        ts = struct.pack("!II", sa.tsval or 0, f.tsval())
        ws = sa.option("WScale")
        expected = {
            "mss": mss,
            "mss+sack": mss + bytes((1, 1, 4, 2)),
            "mss+ts": mss + bytes((1, 1, 8, 10)) + ts,
            "mss+ws": mss + bytes((1, 3, 3, ws if isinstance(ws, int) else 255)),
            "all": mss + bytes((4, 2, 8, 10)) + ts
            + bytes((1, 3, 3, ws if isinstance(ws, int) else 255)),
        }[want]
        assert sa.raw_options == expected


def test_peer_without_mss_option_gets_536_byte_segments() -> None:
    """RFC 9293 3.7.1 MUST-15: without an MSS option, assume 536 (RFC 6691 too)."""
    with peer() as p:
        f = p.accept(mss=None, sack=False, ts=False, wscale=None)
        f.app_send(bytes(2000))
        segs = f.take()
        assert [len(s.payload) for s in segs] == [536, 536, 536]  # Nagle holds the rest
        f.send("A")
        assert [len(s.payload) for s in f.take()] == [392]


def test_send_mss_is_peer_mss_less_timestamp_option() -> None:
    """RFC 6691 / RFC 9293 3.7.1 MUST-16: segments fit the peer's MSS including
    the 12 bytes of timestamps every segment carries."""
    with peer() as p:
        f = p.accept(mss=1000)
        f.app_send(bytes(5000))
        sizes = [len(s.payload) for s in f.take()]
        assert sizes and max(sizes) == 1000 - 12
        assert p.stack.tcp.conns and f.s.stats()["mss"] == 988


@pytest.mark.parametrize(
    ("flags", "payload", "want_flags", "want_seq", "want_ack"),
    [
        ("A", b"", "R", 12345, 0),  # <SEQ=SEG.ACK><CTL=RST>
        ("PA", b"data", "R", 12345, 0),
        ("S", b"", "RA", 0, seq_add(PEER_ISN, 1)),  # <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>
        ("PF", b"0123456789", "RA", 0, seq_add(PEER_ISN, 11)),
        ("F", b"", "RA", 0, seq_add(PEER_ISN, 1)),
    ],
    ids=["ack", "data+ack", "syn", "data+fin", "fin"],
)
def test_segment_to_closed_port_is_answered_with_reset(
        flags: str, payload: bytes, want_flags: str, want_seq: int, want_ack: int) -> None:
    """RFC 9293 3.10.7.1: both forms of the reset for a CLOSED port, and
    their sequence numbers; SEG.LEN counts SYN, FIN and data."""
    with peer() as p:
        f = Flow(p, p.new_port(), 81, PEER_ISN)
        f.send(flags, payload, ack=12345)
        rst = f.expect1(want_flags)
        assert (rst.seq, rst.ack, rst.win, rst.payload) == (want_seq, want_ack, 0, b"")
        assert p.stack.counters.TcpOutRsts == 1


def test_reset_to_closed_port_is_not_answered() -> None:
    """RFC 9293 3.10.7.1: an incoming RST to a closed port is discarded."""
    with peer() as p:
        f = Flow(p, p.new_port(), 81, PEER_ISN)
        f.send("R")
        f.send("RA", ack=1)
        assert f.take() == []
        assert p.stack.counters.TcpOutRsts == 0


def test_listen_answers_an_ack_with_reset() -> None:
    """RFC 9293 3.10.7.2, LISTEN, second check: any ACK is bad, <SEQ=SEG.ACK><CTL=RST>;
    a RST is ignored; a segment without SYN or ACK is dropped."""
    with peer() as p:
        lst = p.listen(80)
        f = Flow(p, p.new_port(), 80, PEER_ISN)
        f.send("A", ack=0xDEADBEEF)
        rst = f.expect1("R")
        assert (rst.seq, rst.ack) == (0xDEADBEEF, 0)
        f.send("R")
        f.send("P", b"no flags")
        assert f.take() == []
        assert not lst.accept_queue and lst.syn_received == 0


@pytest.mark.parametrize("ack_off", [0, 2, -1000], ids=["iss", "beyond-snd-nxt", "old"])
def test_syn_sent_with_unacceptable_ack_sends_reset(ack_off: int) -> None:
    """RFC 9293 3.10.7.3, SYN-SENT, first check: SEG.ACK =< ISS or SEG.ACK > SND.NXT
    gets <SEQ=SEG.ACK><CTL=RST> and the connection stays in SYN-SENT; the same
    segment with RST set is dropped; the real SYN-ACK then completes the open."""
    with peer() as p:
        sock = p.stack.tcp_connect((PEER_IP, 80))
        p.flush()
        [syn] = p.take()
        f = Flow(p, 80, syn.tcp.sport, PEER_ISN)
        f.rcv_nxt = seq_add(syn.seq, 1)
        bad = seq_add(syn.seq, ack_off)
        f.send("SA", seq=PEER_ISN, ack=bad)
        rst = f.expect1("R")
        assert (rst.seq, rst.ack) == (bad, 0)
        assert state(sock) is State.SYN_SENT
        f.send("RA", seq=PEER_ISN, ack=bad)
        assert f.take() == [] and state(sock) is State.SYN_SENT
        f.send("SA")
        ack = f.expect1("A")
        assert ack.ack == seq_add(PEER_ISN, 1)
        assert state(sock) is State.ESTABLISHED


def test_syn_sent_reset_with_acceptable_ack_refuses_connection() -> None:
    """RFC 9293 3.10.7.3, SYN-SENT, second check: a RST is acceptable only with an
    acceptable ACK ("error: connection reset", ECONNREFUSED); without ACK it is dropped."""
    with peer() as p:
        sock = p.stack.tcp_connect((PEER_IP, 80))
        ev = p.events(sock)
        p.flush()
        [syn] = p.take()
        f = Flow(p, 80, syn.tcp.sport, PEER_ISN)
        f.send("R", seq=0)
        assert state(sock) is State.SYN_SENT
        f.send("RA", seq=0, ack=seq_add(syn.seq, 1))
        assert state(sock) is State.CLOSED
        assert Event.RESET in ev and sock.error == errno.ECONNREFUSED
        with pytest.raises(ConnectionRefusedError):
            sock.recv()
        assert f.take() == []  # never answer a RST


def _syn_times(p: Peer, until: float) -> list[Seg]:
    p.run_to(until)
    return p.take()


def test_syn_retransmissions_back_off_from_one_second_then_time_out() -> None:
    """RFC 6298 2.1 (initial RTO 1 s) and 5.5 (doubling); RFC 9293 3.8.3 MUST-20:
    seven SYN retries at 1, 3, 7, 15, 31, 63, 127 s (MUST-23: at least 3
    minutes), then the open fails with ETIMEDOUT at 247 s (the last RTO is
    capped at 120 s); every copy is the
    same SYN."""
    with peer() as p:
        sock = p.stack.tcp_connect((PEER_IP, 80))
        ev = p.events(sock)
        p.flush()
        [first] = p.take()
        segs = _syn_times(p, 300.0)
        assert [s.t for s in segs] == pytest.approx([1, 3, 7, 15, 31, 63, 127], abs=1e-9)
        for s in segs:
            assert s.flags == "S" and s.seq == first.seq and s.ack == 0
            ws = s.option("WScale")
            assert isinstance(ws, int) and s.tsval is not None
            assert s.raw_options == _syn_options(s.tsval, 0, ws)
        assert state(sock) is State.CLOSED
        assert sock.error == errno.ETIMEDOUT
        assert Event.TIMED_OUT in ev and ev[-1] is Event.CLOSED
        assert p.stack.counters.TcpRetransSegs == 7  # (as Linux counts them)
        # RFC 9293 3.8.3 SHLD-9: the application heard of the trouble at R1 first.
        assert Event.SOFT_ERROR in ev and ev.index(Event.SOFT_ERROR) < ev.index(Event.TIMED_OUT)
        with pytest.raises(TimeoutError):
            sock.recv()
        assert not p.stack.tcp.conns


def test_syn_timeout_moment_is_247_seconds() -> None:
    """RFC 9293 3.8.3: the failure comes one (backed-off) RTO after the last retry."""
    with peer() as p:
        sock = p.stack.tcp_connect((PEER_IP, 80))
        p.flush()
        p.run_to(246.999)
        assert state(sock) is State.SYN_SENT
        p.run_to(247.0)
        assert state(sock) is State.CLOSED


def test_syn_is_retransmitted_for_at_least_three_minutes() -> None:
    """RFC 9293 3.8.3 MUST-23: "R2 for a SYN segment MUST be set large enough to
    provide retransmission of the segment for at least 3 minutes"."""
    with peer() as p:
        sock = p.stack.tcp_connect((PEER_IP, 80))
        p.flush()
        p.run_to(180.0)
        assert state(sock) is State.SYN_SENT


def test_syn_retries_are_settable_per_connection() -> None:
    """RFC 9293 3.8.3 MUST-21: the application can set R2 for a connection."""
    with peer() as p:
        sock = p.stack.tcp_connect((PEER_IP, 80))
        sock.conn.cfg.syn_retries = 2
        other = p.stack.tcp_connect((PEER_IP, 81))
        p.flush()
        p.take()
        segs = [s for s in _syn_times(p, 20.0) if s.tcp.dport == 80]
        assert [s.t for s in segs] == pytest.approx([1, 3], abs=1e-9)
        assert state(sock) is State.CLOSED and sock.error == errno.ETIMEDOUT
        assert state(other) is State.SYN_SENT  # the other connection kept the default


def test_syn_ack_window_is_not_scaled_later_windows_are() -> None:
    """RFC 7323 2.2: the window field of a SYN or SYN-ACK is never scaled; every
    later window is shifted by the peer's announced scale."""
    with peer() as p:
        f = p.connect(80, mss=1460, sack=False, ts=False, wscale=2, win=2920)
        assert f.s.stats()["snd_wnd"] == 2920
        f.app_send(bytes(20_000))
        segs = f.take()
        assert [len(s.payload) for s in segs] == [1460, 1460]  # 2920, not 2920 << 2
        f.send("A", win=1460)  # 1460 << 2 = 5840 bytes beyond the new SND.UNA
        segs = f.take()
        assert [len(s.payload) for s in segs] == [1460] * 4
        assert f.s.stats()["snd_wnd"] == 5840


def test_our_window_field_is_scaled_after_the_syn() -> None:
    """RFC 7323 2.3: after the handshake our window field is the buffer >> our shift."""
    with peer() as p:
        f = p.accept()
        f.send("PA", b"x")
        p.advance(0.2)
        ack = f.expect1("A")
        ws = f.ws_in
        assert ws > 0
        assert abs((ack.win << ws) - (p.cfg.rcvbuf - 1)) < 1 << ws


def test_window_scale_above_14_is_used_as_14() -> None:
    """RFC 7323 2.3: a shift count above 14 MUST be used as 14."""
    with peer() as p:
        f = p.connect(80, wscale=15, win=1000)
        f.send("A", win=1)
        assert f.s.stats()["snd_wnd"] == 1 << 14


def test_simultaneous_open_completes_on_the_peers_syn_ack() -> None:
    """RFC 9293 3.5 figure 7: SYN-SENT + SYN -> SYN-RECEIVED (send SYN,ACK);
    the peer's SYN,ACK acknowledging our SYN then gives ESTABLISHED."""
    with peer() as p:
        sock = p.stack.tcp_connect((PEER_IP, 80))
        p.flush()
        [syn] = p.take()
        f = Flow(p, 80, syn.tcp.sport, PEER_ISN)
        f.send_syn(mss=1460, sack=True, ts=False, wscale=7, win=65535)
        sa = f.expect1("SA")
        assert (sa.seq, sa.ack) == (syn.seq, seq_add(PEER_ISN, 1))
        assert state(sock) is State.SYN_RECEIVED
        f.rcv_nxt = seq_add(syn.seq, 1)
        f.send("SA", seq=PEER_ISN, options=[("MSS", 1460), ("SAckOK", b""), ("NOP", None),
                                            ("WScale", 7)])
        assert state(sock) is State.ESTABLISHED


def test_rst_in_syn_received_frees_the_backlog_slot() -> None:
    """RFC 9293 3.10.7.4 second check, SYN-RECEIVED: a RST of a passively
    opened connection returns it to LISTEN: the listener's queue is not used up."""
    with peer() as p:
        lst = p.listen(80, backlog=2)
        for _ in range(3):
            f = Flow(p, p.new_port(), 80, PEER_ISN)
            f.send_syn(mss=1460, sack=False, ts=False, wscale=None, win=65535)
            sa = f.expect1("SA")
            f.rcv_nxt = seq_add(sa.seq, 1)
            f.send("R")
            assert f.take() == []
        assert lst.syn_received == 0 and not p.stack.tcp.conns
        f = p.accept(listener=lst)
        assert state(f.s) is State.ESTABLISHED


def test_syn_ack_is_retransmitted_then_the_half_open_connection_dropped() -> None:
    """RFC 6298 2.1/5.5 and RFC 9293 3.8.3: the SYN-ACK is retransmitted with
    backoff from 1 s; when the retries are used up the embryonic connection is
    deleted and its backlog slot freed."""
    with peer() as p:
        lst = p.listen(80, backlog=1)
        f = Flow(p, p.new_port(), 80, PEER_ISN)
        f.send_syn(mss=1460, sack=True, ts=True, wscale=7, win=65535)
        first = f.expect1("SA")
        p.run_to(200.0)
        segs = f.take()
        assert [round(s.t, 6) for s in segs] == [1, 3, 7, 15, 31, 63]
        assert all(s.flags == "SA" and s.seq == first.seq for s in segs)
        assert p.stack.counters.TcpRetransSegs == 6  # (Linux's tcp_rtx_synack counts them)
        assert not p.stack.tcp.conns and lst.syn_received == 0
        assert state(p.accept(listener=lst).s) is State.ESTABLISHED


def test_a_syn_repeated_per_port_cannot_use_up_the_listener_for_good() -> None:
    """Issue 11: a peer that never completes the handshake and sends each
    SYN three times (its SYN-ACKs lost, or a flood repeating tuples), from
    more ports than the backlog.  Once the half-open connections time out
    the backlog is free again: a new client is served, nothing is refused
    as a listen overflow afterwards."""
    with peer() as p:
        lst = p.listen(80, backlog=8)
        flows = [Flow(p, p.new_port(), 80, PEER_ISN) for _ in range(12)]
        for f in flows:
            for _ in range(3):
                f.send_syn(mss=1460, sack=True, ts=True, wscale=7, win=65535)
        p.take()
        assert lst.syn_received == 8  # the backlog, full
        p.run_to(300.0)  # past every SYN-ACK retransmission (127 s)
        p.take()
        assert not p.stack.tcp.conns and lst.syn_received == 0
        overflows = p.stack.counters.TcpExtListenOverflows
        assert state(p.accept(listener=lst).s) is State.ESTABLISHED
        assert p.stack.counters.TcpExtListenOverflows == overflows


def test_unacceptable_ack_in_syn_received_gets_reset() -> None:
    """RFC 9293 3.10.7.4 fifth check, SYN-RECEIVED: unless SND.UNA < SEG.ACK =<
    SND.NXT, send <SEQ=SEG.ACK><CTL=RST>; the half-open connection stays and
    the right ACK still completes it."""
    with peer() as p:
        lst = p.listen(80)
        f = Flow(p, p.new_port(), 80, PEER_ISN)
        f.send_syn(mss=1460, sack=True, ts=False, wscale=None, win=65535)
        sa = f.expect1("SA")
        f.rcv_nxt = seq_add(sa.seq, 1)
        f.send("A", ack=seq_add(sa.seq, 5))
        rst = f.expect1("R")
        assert (rst.seq, rst.ack) == (seq_add(sa.seq, 5), 0)
        f.send("A")
        assert f.take() == []
        assert state(lst.accept()) is State.ESTABLISHED


def test_advertised_mss_follows_the_interface_mtu() -> None:
    """RFC 9293 3.7.1 (SHLD-6 / MUST-14): the MSS we announce is the MTU less
    the fixed IP and TCP headers (40 bytes)."""
    with peer(mtu=1000) as p:
        p.stack.tcp_connect((PEER_IP, 80))
        p.flush()
        [syn] = p.take()
        assert syn.option("MSS") == 960


def _syn_ack_with(p: Peer, irs: int, payload: bytes = b"") -> Flow:
    """Active open by the stack answered by a SYN-ACK with ISN ``irs`` (and
    ``payload``, RFC 9293 3.10.7.3 fourth: text on a SYN-ACK is queued)."""
    sock = p.stack.tcp_connect((PEER_IP, 80))
    p.flush()
    [syn] = p.take()
    f = Flow(p, 80, syn.tcp.sport, irs)
    f.sock = sock
    f.rcv_nxt = seq_add(syn.seq, 1)
    ws = syn.option("WScale")
    assert isinstance(ws, int)
    f.ws_in = ws
    f.send("SA", payload, options=[("MSS", 1460), ("NOP", None), ("WScale", 7)])
    assert state(sock) is State.ESTABLISHED
    return f


@pytest.mark.parametrize("irs", [0x100000, 0x90000000, PEER_ISN])
def test_text_on_a_syn_ack_is_taken_whatever_the_peers_isn(irs: int) -> None:
    """RFC 9293 3.10.7.3 fourth check: text on the SYN-ACK is processed as in
    ESTABLISHED; our SYN offered a window from RCV.NXT, and that window holds
    once IRS is known (it was counted from RCV.NXT = 0 when the SYN left:
    a peer ISN far from 0 put its text past the right edge)."""
    with peer() as p:
        f = _syn_ack_with(p, irs, b"hello")
        [ack] = f.take()
        assert ack.ack == seq_add(irs, 1 + 5)
        assert f.s.recv(100) == b"hello"
        assert "DropTcpOverwindow" not in p.stack.counters.snapshot(nonzero=True)


@pytest.mark.parametrize("irs", [0x100000, 0x90000000, PEER_ISN])
def test_first_ack_of_an_active_open_offers_the_receive_buffer(irs: int) -> None:
    """RFC 9293 3.8.6: the window after the handshake is what the receive
    buffer holds (RFC 7323 2.3: scaled), whatever the peer's ISN (an IRS
    far from 0 left the right edge ~1.9 GB away, and the ACK offered more
    than the buffer)."""
    with peer() as p:
        f = _syn_ack_with(p, irs)
        ack = f.expect1("A")
        ws = f.ws_in
        assert p.cfg.rcvbuf - (1 << ws) < ack.win << ws <= p.cfg.rcvbuf
        assert f.s.stats()["rcv_wnd"] == ack.win << ws


_PORTS = 6
_BACKLOG = 4
_KINDS = ("syn", "syn", "ack", "bad_ack", "rst", "rst_outside", "data", "fin", "syn_fin",
          "accept", "close_accepted")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, _PORTS - 1), st.sampled_from(_KINDS),
                          st.sampled_from((0.0, 0.0, 0.3, 2.0, 40.0))),
                max_size=60))
# Found by hypothesis: a connection closed by the application stays in
# FIN-WAIT-1 (its FIN never acknowledged); the new client must not reuse its port.
@example([(1, "syn", 0.0), (1, "ack", 0.0), (0, "accept", 0.0), (0, "close_accepted", 0.0)])
def test_random_syn_ack_rst_mixes_never_use_up_the_listener(
        steps: list[tuple[int, str, float]]) -> None:
    """Issue 11, item 1, with hypothesis: whatever mix of SYNs (repeated),
    handshake ACKs (right and wrong), RSTs (in and out of the window), data,
    FINs and SYN+FINs peers send to a listener, and whatever the application
    accepts or closes, the SYN queue is exactly the listener's half-open
    sockets, it and the accept queue stay within the backlog, and once every
    half-open connection has timed out a new client is served."""
    with peer() as p:
        lst = p.listen(80, backlog=_BACKLOG)
        isns = [seq_add(PEER_ISN, 100_000 * i) for i in range(_PORTS)]
        # (Ports from the peer's counter: the new client at the end gets a
        # fresh one, not that of a connection still in FIN-WAIT-1.)
        flows = [Flow(p, p.new_port(), 80, isns[i]) for i in range(_PORTS)]
        accepted: list[object] = []
        for i, kind, dt in steps:
            f = flows[i]
            synack = [s for s in f.take() if s.flags == "SA"]
            if synack:
                f.rcv_nxt = seq_add(synack[-1].seq, 1)
            if kind == "syn":
                f.send("S", seq=f.iss, options=[("MSS", 1460)])
                f.snd_nxt = seq_add(f.iss, 1)
            elif kind == "syn_fin":
                f.send("SF", seq=f.iss, options=[("MSS", 1460)])
            elif kind == "ack":
                f.send("A")
            elif kind == "bad_ack":
                f.send("A", ack=seq_add(f.rcv_nxt, 5000))
            elif kind == "rst":
                f.send("R")
            elif kind == "rst_outside":
                f.send("R", seq=seq_add(f.snd_nxt, 1 << 30))
            elif kind == "data":
                f.send("PA", b"x" * 10)
            elif kind == "fin":
                f.send("FA")
            elif kind == "accept" and lst.accept_queue:
                accepted.append(lst.accept())
            elif kind == "close_accepted" and accepted:
                accepted.pop(0).close()  # type: ignore[attr-defined]
            if dt:
                p.advance(dt)
            half_open = lst.half_open
            assert lst.syn_received == len(half_open)
            assert all(state(s) is State.SYN_RECEIVED for s in half_open)
            assert all(p.stack.tcp.conns.get((*s.conn.local, *s.conn.remote)) is s
                       for s in half_open)
            assert lst.syn_received + len(lst.accept_queue) <= _BACKLOG
        for s in accepted:
            s.abort()  # type: ignore[attr-defined]
        while lst.accept_queue:
            lst.accept().abort()
        p.run_to(p.now + 400.0)  # past every SYN-ACK retransmission and TIME-WAIT
        p.take()
        assert lst.syn_received == 0
        overflows = p.stack.counters.TcpExtListenOverflows
        assert state(p.accept(listener=lst).s) is State.ESTABLISHED
        assert p.stack.counters.TcpExtListenOverflows == overflows
