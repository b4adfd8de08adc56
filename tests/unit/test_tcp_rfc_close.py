"""Closing: the FIN in every state that can see one, TIME-WAIT and its reuse.

RFC 9293 3.6 and 3.10.7.4 (eighth check, the FIN bit; figures 12 and 13),
3.10.4 (CLOSE), RFC 9293 3.4.2 / RFC 1122 4.2.2.13 (2 MSL), RFC 6191
(reusing a TIME-WAIT 4-tuple with timestamps or a higher sequence number).
"""

from __future__ import annotations

import pytest
from tcp_peer import Flow, Peer, peer, seq_add, state

from ustack.tcp.connection import Event
from ustack.tcp.states import State

TWO_MSL = 60.0  # MSL = 30 s, as Linux
MSS = 1448


def _established(p: Peer, **kw: object) -> Flow:
    f = p.accept(**kw)  # type: ignore[arg-type]
    assert state(f.s) is State.ESTABLISHED
    return f


def _app_close(f: Flow) -> None:
    f.s.close()
    f.peer.flush()


def test_peer_fin_moves_to_close_wait_then_last_ack_then_closed() -> None:
    """RFC 9293 3.10.7.4 eighth: a FIN in ESTABLISHED is acknowledged at once
    (CLOSE-WAIT, EOF for the application); our CLOSE sends FIN (LAST-ACK);
    its ACK deletes the connection.  An unacknowledged FIN is retransmitted."""
    with peer() as p:
        f = _established(p)
        f.send("FA")
        ack = f.expect1("A")
        assert ack.ack == f.snd_nxt and ack.t == p.now
        assert state(f.s) is State.CLOSE_WAIT
        assert f.app_recv() == b""
        _app_close(f)
        fin = f.expect1("FA")
        assert fin.seq == seq_add(f.irs, 1) and fin.ack == f.snd_nxt
        assert state(f.s) is State.LAST_ACK
        p.advance(0.2)  # RTO: the FIN again
        again = f.expect1("FA")
        assert again.seq == fin.seq
        f.send("A")
        assert state(f.s) is State.CLOSED
        assert not p.stack.tcp.conns
        assert f.take() == []


def test_data_and_fin_in_one_segment_make_one_readable_event() -> None:
    """A readiness event is queued once until the application has it: the
    text and the FIN of one segment (RFC 9293 3.10.7.4 seventh and eighth)
    are one READABLE, after which the data and then EOF are read."""
    with peer() as p:
        f = _established(p)
        got = p.events(f.s)
        f.send("FPA", b"last words")
        assert got == [Event.READABLE]
        assert f.app_recv() == b"last words"
        assert f.app_recv() == b""


def test_close_sends_fin_then_fin_wait_1_fin_wait_2_time_wait() -> None:
    """RFC 9293 figure 12: CLOSE -> FIN (FIN-WAIT-1); its ACK -> FIN-WAIT-2; the
    peer's FIN is acknowledged -> TIME-WAIT."""
    with peer() as p:
        f = _established(p)
        _app_close(f)
        fin = f.expect1("FA")
        assert state(f.s) is State.FIN_WAIT_1
        f.send("A", ack=fin.end)
        assert f.take() == [] and state(f.s) is State.FIN_WAIT_2
        f.send("FA")
        ack = f.expect1("A")
        assert ack.ack == f.snd_nxt and ack.seq == fin.end
        assert state(f.s) is State.TIME_WAIT


def test_fin_and_ack_of_our_fin_together_go_straight_to_time_wait() -> None:
    """RFC 9293 3.10.7.4 eighth, FIN-WAIT-1: "If our FIN has been ACKed ...
    enter TIME-WAIT" when the FIN arrives with that ACK."""
    with peer() as p:
        f = _established(p)
        _app_close(f)
        f.expect1("FA")
        f.send("FA")
        f.expect1("A")
        assert state(f.s) is State.TIME_WAIT


def test_simultaneous_close_passes_through_closing() -> None:
    """RFC 9293 figure 13: a FIN that does not acknowledge ours moves FIN-WAIT-1
    to CLOSING (and is acknowledged); the ACK of our FIN then gives TIME-WAIT."""
    with peer() as p:
        f = _established(p)
        _app_close(f)
        fin = f.expect1("FA")
        f.send("FA", ack=fin.seq)  # the peer's FIN crossed ours
        ack = f.expect1("A")
        assert ack.ack == f.snd_nxt
        assert state(f.s) is State.CLOSING
        f.send("A", ack=fin.end)
        assert state(f.s) is State.TIME_WAIT


def test_fin_wait_2_orphan_is_reaped() -> None:
    """Implicit state: an application that closed cannot read; an orphaned
    FIN-WAIT-2 is dropped after fin_timeout (Linux tcp_fin_timeout, 60 s)."""
    with peer() as p:
        f = _established(p)
        _app_close(f)
        fin = f.expect1("FA")
        f.send("A", ack=fin.end)
        t0 = p.now
        p.run_to(t0 + 59.9)
        assert state(f.s) is State.FIN_WAIT_2
        p.run_to(t0 + 60.0)
        assert state(f.s) is State.CLOSED and not p.stack.tcp.conns


# TIME-WAIT comes in two forms (tcp/timewait.py): after close() the layer
# keeps a record of the 4-tuple and lets the connection go; after
# shutdown(SHUT_WR) the application still holds the connection, whole.  Each
# test of TIME-WAIT runs against both.
HOW = pytest.mark.parametrize("how", ["close", "shutdown"])


def _time_wait(p: Peer, how: str = "close", **kw: object) -> tuple[Flow, float]:
    f = _established(p, **kw)
    if how == "close":
        _app_close(f)
    else:
        f.s.shutdown_write()
        p.flush()
    fin = f.expect1("FA")
    f.send("A", ack=fin.end)
    f.send("FA")
    f.expect1("A")
    assert tw_state(p, f) is State.TIME_WAIT
    assert (_key(f) in p.stack.tcp.tw.records) is (how == "close")
    return f, p.now


def _key(f: Flow) -> tuple[bytes, int, bytes, int]:
    return (*f.s.conn.local, *f.s.conn.remote)


def tw_state(p: Peer, f: Flow) -> State:
    """The state of ``f``'s 4-tuple in the stack: TIME-WAIT as a record, or
    the connection's own while the layer holds it, else CLOSED."""
    tcp = p.stack.tcp
    if _key(f) in tcp.tw.records:
        return State.TIME_WAIT
    if tcp.conns.get(_key(f)) is f.s:
        return state(f.s)
    return State.CLOSED


@HOW
def test_time_wait_lasts_two_msl_then_closed(how: str) -> None:
    """RFC 9293 3.4.2 / 3.10.7.4: TIME-WAIT holds the connection for 2 MSL
    (60 s), then deletes it; the 4-tuple is then answered like a closed port."""
    with peer() as p:
        f, t0 = _time_wait(p, how)
        p.run_to(t0 + TWO_MSL - 0.001)
        assert tw_state(p, f) is State.TIME_WAIT
        p.run_to(t0 + TWO_MSL)
        assert tw_state(p, f) is State.CLOSED and not p.stack.tcp.tw.records
        assert f.take() == []  # TIME-WAIT ends silently
        f.send("A", b"late")
        rst = f.expect1("R")
        assert rst.seq == f.rcv_nxt


@HOW
def test_retransmitted_fin_in_time_wait_is_acked_and_restarts_2msl(how: str) -> None:
    """RFC 9293 3.10.7.4 eighth, TIME-WAIT: "The only thing that can arrive in
    this state is a retransmission of the remote FIN.  Acknowledge it, and
    restart the 2 MSL timeout."""
    with peer() as p:
        f, t0 = _time_wait(p, how)
        p.run_to(t0 + 30)
        f.send("FA", seq=seq_add(f.snd_nxt, -1))
        ack = f.expect1("A")
        assert ack.ack == f.snd_nxt
        p.run_to(t0 + 30 + TWO_MSL - 0.001)
        assert tw_state(p, f) is State.TIME_WAIT
        p.run_to(t0 + 30 + TWO_MSL)
        assert tw_state(p, f) is State.CLOSED


@HOW
def test_rst_in_time_wait_is_ignored(how: str) -> None:
    """RFC 1337 (TIME-WAIT assassination hazards): a RST does not end TIME-WAIT early."""
    with peer() as p:
        f, t0 = _time_wait(p, how)
        f.send("R", seq=f.snd_nxt)
        assert tw_state(p, f) is State.TIME_WAIT
        p.run_to(t0 + 10)
        assert tw_state(p, f) is State.TIME_WAIT


def _new_syn(f: Flow, seq: int, tsval: int | None) -> None:
    opts: list[tuple[str, object]] = [("MSS", 1460), ("SAckOK", b"")]
    if tsval is not None:
        opts.append(("Timestamp", (tsval, 0)))
    opts += [("NOP", None), ("WScale", 7)]
    f.send("S", seq=seq, options=opts)


@HOW
def test_new_syn_with_higher_sequence_reuses_time_wait(how: str) -> None:
    """RFC 6191 / RFC 1122 4.2.2.13: a SYN for a 4-tuple in TIME-WAIT whose
    sequence number is above the old connection's (and, with timestamps,
    whose TSval is newer) opens a new connection."""
    with peer() as p:
        f, t0 = _time_wait(p, how)
        p.run_to(t0 + 5)
        new_isn = seq_add(f.snd_nxt, 100_000)
        _new_syn(f, new_isn, f.tsval())
        sa = f.expect1("SA")
        assert sa.ack == seq_add(new_isn, 1)
        [sock] = p.stack.tcp.conns.values()
        assert state(sock) is State.SYN_RECEIVED and sock is not f.s
        assert not p.stack.tcp.tw.records and p.stack.tcp.time_wait == 0


@HOW
def test_new_syn_with_higher_sequence_reuses_time_wait_without_timestamps(how: str) -> None:
    """RFC 6191 2 (previous incarnation without timestamps): honour a SYN
    whose sequence number is greater than the last one seen."""
    with peer() as p:
        f, t0 = _time_wait(p, how, ts=False)
        p.run_to(t0 + 5)
        _new_syn(f, seq_add(f.snd_nxt, 1), None)
        assert f.expect1("SA").ack == seq_add(f.snd_nxt, 2)


@HOW
def test_old_syn_does_not_reuse_time_wait_with_a_specific_listener(how: str) -> None:
    """RFC 6191 2 / RFC 1122 4.2.2.13: a SYN below the old sequence space (and
    without a newer timestamp) leaves the connection in TIME-WAIT."""
    with peer() as p:
        lst = p.stack.tcp_listen(("198.18.0.1", 80))
        f, _ = _time_wait(p, how, ts=False, listener=lst)
        _new_syn(f, seq_add(f.snd_nxt, -5000), None)
        assert all(s.flags != "SA" for s in f.take())
        assert tw_state(p, f) is State.TIME_WAIT


@HOW
def test_old_syn_does_not_reuse_time_wait_with_a_wildcard_listener(how: str) -> None:
    """RFC 6191 2: "Otherwise, silently drop the incoming SYN segment, thus
    leaving the previous incarnation of the connection in the TIME-WAIT state"."""
    with peer() as p:
        f, _ = _time_wait(p, how, ts=False)  # listening on 0.0.0.0:80
        _new_syn(f, seq_add(f.snd_nxt, -5000), None)
        assert all(s.flags != "SA" for s in f.take())
        assert tw_state(p, f) is State.TIME_WAIT


@HOW
def test_syn_with_older_timestamp_does_not_reuse_time_wait(how: str) -> None:
    """RFC 6191 2: "If the previous incarnation of the connection used
    Timestamps, then: if TCP Timestamps would be enabled for the new
    incarnation of the connection, and the timestamp contained in the incoming
    SYN segment is greater than the last timestamp seen ..., honor the
    connection request ... Otherwise, silently drop the incoming SYN"."""
    with peer() as p:
        lst = p.stack.tcp_listen(("198.18.0.1", 80))
        f, t0 = _time_wait(p, how, listener=lst)
        p.run_to(t0 + 5)
        _new_syn(f, seq_add(f.snd_nxt, 100_000), 1)  # TSval far older than TS.Recent
        assert all(s.flags != "SA" for s in f.take())
        assert tw_state(p, f) is State.TIME_WAIT


def test_half_close_keeps_receiving() -> None:
    """RFC 9293 3.6 / 3.10.7.4 seventh check: after shutdown(SHUT_WR) the
    connection still receives in FIN-WAIT-2 (an open application, not an
    orphan: no RST), and the peer's FIN then leads to TIME-WAIT."""
    with peer() as p:
        f = _established(p)
        f.s.shutdown_write()
        p.flush()
        fin = f.expect1("FA")
        f.send("A", ack=fin.end)
        assert state(f.s) is State.FIN_WAIT_2
        f.send("PA", b"more data")
        p.advance(0.1)
        [ack] = f.take()
        assert ack.flags == "A" and ack.ack == f.snd_nxt
        assert f.app_recv() == b"more data"
        f.send("FA")
        f.expect1("A")
        assert state(f.s) is State.TIME_WAIT
        assert f.app_recv() == b""


def test_close_against_a_zero_window_sends_fin_after_the_data() -> None:
    """Implicit state (tcp/states.py, RFC 9293 3.10.4): close() with queued data and
    a zero window: FIN-WAIT-1 at once, the window is probed, and the FIN goes
    only behind the last byte once the window opens."""
    with peer() as p:
        f = _established(p, wscale=None, win=2 * MSS)
        f.app_send(bytes(3 * MSS))
        assert len(f.take()) == 2
        f.send("A", win=0)
        _app_close(f)
        assert state(f.s) is State.FIN_WAIT_1
        assert f.take() == []
        p.advance(0.25)
        [probe] = f.take()
        assert len(probe.payload) == 0 and "F" not in probe.flags  # SND.UNA - 1 probe
        nxt = f.s.conn.snd_nxt
        f.send("A", win=4 * MSS)
        [last] = f.take()
        assert last.seq == nxt and len(last.payload) == MSS and "F" in last.flags
        f.send("A", ack=last.end)
        assert state(f.s) is State.FIN_WAIT_2
