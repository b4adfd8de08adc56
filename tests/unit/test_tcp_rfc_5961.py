"""Blind-attack mitigations and segment acceptability on an established connection.

RFC 5961 (RST and SYN challenge ACKs, ACK validation, the rate limit),
RFC 9293 3.10.7.4 (the fifth check: an ACK of data never sent), RFC 7323 5
(PAWS).  The peer plays both the honest end and the off-path attacker.
"""

from __future__ import annotations

import errno

import pytest
from tcp_peer import Flow, Peer, Seg, peer, seq_add, state

from ustack.tcp.connection import Event
from ustack.tcp.states import State


def _established(p: Peer) -> Flow:
    f = p.accept()
    assert state(f.s) is State.ESTABLISHED
    return f


def _is_challenge_ack(seg: Seg, f: Flow) -> bool:
    # RFC 5961 3.2: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>
    return (seg.flags == "A" and seg.seq == f.rcv_nxt and seg.ack == f.snd_nxt
            and not seg.payload)


def test_rst_in_window_but_not_at_rcv_nxt_gets_challenge_ack() -> None:
    """RFC 5961 3.2: a RST inside the window but not exactly at RCV.NXT is answered
    with a challenge ACK and the connection stays up."""
    with peer() as p:
        f = _established(p)
        for off in (1, 100, 60_000):
            f.send("R", seq=seq_add(f.snd_nxt, off))
            [ack] = f.take()
            assert _is_challenge_ack(ack, f), ack
        f.send("RA", seq=seq_add(f.snd_nxt, 5))
        [ack] = f.take()
        assert _is_challenge_ack(ack, f)
        assert state(f.s) is State.ESTABLISHED
        assert p.stack.counters.TcpExtTCPChallengeACK == 4


@pytest.mark.parametrize("flags", ["R", "RA"])
def test_rst_exactly_at_rcv_nxt_resets(flags: str) -> None:
    """RFC 5961 3.2 / RFC 9293 3.10.7.4 second check: a RST at exactly RCV.NXT
    resets the connection (ECONNRESET), and is never answered."""
    with peer() as p:
        f = _established(p)
        ev = p.events(f.s)
        f.send(flags, seq=f.snd_nxt)
        assert f.take() == []
        assert state(f.s) is State.CLOSED
        assert Event.RESET in ev and f.s.error == errno.ECONNRESET
        with pytest.raises(ConnectionResetError):
            f.s.recv()
        assert not p.stack.tcp.conns


@pytest.mark.parametrize("off", [-1, -70_000, 1 << 21], ids=["below-by-1", "below", "above"])
def test_rst_outside_window_is_silently_dropped(off: int) -> None:
    """RFC 5961 3.2 / RFC 9293 3.10.7.4 first check: a RST outside the receive
    window is dropped without an answer."""
    with peer() as p:
        f = _established(p)
        f.send("R", seq=seq_add(f.snd_nxt, off))
        assert f.take() == []
        assert state(f.s) is State.ESTABLISHED


@pytest.mark.parametrize("off", [0, 1000, -5, 1 << 22], ids=["rcv-nxt", "in-window", "old",
                                                              "beyond"])
@pytest.mark.parametrize("flags", ["S", "SA"])
def test_syn_in_established_gets_challenge_ack(flags: str, off: int) -> None:
    """RFC 5961 4.2 (RFC 9293 3.10.7.4 fourth check): a SYN in a synchronized
    state, wherever its sequence number, is answered with an ACK and never
    resets the connection or creates a new one."""
    with peer() as p:
        f = _established(p)
        f.send(flags, seq=seq_add(f.snd_nxt, off), ack=seq_add(f.rcv_nxt, 0))
        [ack] = f.take()
        assert _is_challenge_ack(ack, f), ack
        assert state(f.s) is State.ESTABLISHED
        assert len(p.stack.tcp.conns) == 1


def test_challenge_acks_are_rate_limited() -> None:
    """RFC 5961 7: challenge ACKs are limited (Linux tcp_challenge_ack_limit,
    1000 per second); the excess is counted and the budget refills with time."""
    with peer() as p:
        f = _established(p)
        rst = bytes(f.build("R", seq=seq_add(f.snd_nxt, 10)))
        p.inject(*[rst] * 1100)
        acks = f.take()
        assert len(acks) == 1000
        assert all(_is_challenge_ack(a, f) for a in acks)
        c = p.stack.counters
        assert (c.TcpExtTCPChallengeACK, c.TcpExtTCPChallengeACKLimited) == (1000, 100)
        p.advance(0.1)  # 100 more tokens
        p.inject(*[rst] * 150)
        assert len(f.take()) == 100
        assert state(f.s) is State.ESTABLISHED


def test_ack_of_unsent_data_is_acked_and_dropped() -> None:
    """RFC 9293 3.10.7.4 fifth check: "If the ACK acks something not yet sent
    (SEG.ACK > SND.NXT), then send an ACK, drop the segment, and return"
    (RFC 5961 5.2: the ACK is a challenge ACK); its data is not delivered."""
    with peer() as p:
        f = _established(p)
        f.send("PA", b"bogus", seq=f.snd_nxt, ack=seq_add(f.rcv_nxt, 1000))
        [ack] = f.take()
        assert ack.flags == "A" and ack.ack == f.snd_nxt and ack.seq == f.rcv_nxt
        assert f.s.conn.readable_bytes == 0
        f.send("PA", b"good")
        p.advance(0.1)
        assert f.app_recv() == b"good"


def test_ack_older_than_the_max_send_window_is_dropped() -> None:
    """RFC 5961 5.2: SEG.ACK < SND.UNA - MAX.SND.WND is dropped with an ACK;
    an old ACK within that bound is ignored but its text is accepted
    (RFC 9293 3.10.7.4: "If the ACK is a duplicate, it can be ignored")."""
    with peer() as p:
        f = _established(p)
        max_wnd = 65535 << f.ws_out
        f.send("PA", b"too-old", seq=f.snd_nxt,
               ack=seq_add(f.rcv_nxt, -max_wnd - 10))
        [ack] = f.take()
        assert ack.ack == f.snd_nxt
        assert f.s.conn.readable_bytes == 0
        f.send("PA", b"old-ack", ack=seq_add(f.rcv_nxt, -10))
        p.advance(0.1)
        assert f.app_recv() == b"old-ack"


def test_paws_drops_segment_with_old_timestamp() -> None:
    """RFC 7323 5.3 R1: a segment whose TSval is older than TS.Recent is not
    acceptable: send an ACK (echoing TS.Recent, not the old TSval) and drop it."""
    with peer() as p:
        f = _established(p)
        p.advance(1.0)
        f.send("PA", b"fresh")
        fresh_ts = f.tsval()
        p.advance(0.1)
        f.take()
        assert f.app_recv() == b"fresh"
        f.send("PA", b"stale", tsval=fresh_ts - 500)
        [ack] = f.take()
        assert ack.flags == "A" and ack.ack == seq_add(f.snd_nxt, -5)
        assert ack.tsecr == fresh_ts
        assert f.s.conn.readable_bytes == 0
        # The same bytes with a current timestamp are accepted.
        f.send("PA", b"again", seq=seq_add(f.snd_nxt, -5))
        p.advance(0.1)
        assert f.app_recv() == b"again"


def test_paws_does_not_apply_to_rst() -> None:
    """RFC 7323 5.3 R1 applies "if the RST bit is not set": an in-sequence RST
    with an old TSval still resets."""
    with peer() as p:
        f = _established(p)
        p.advance(1.0)
        f.send("A")
        f.send("R", tsval=1)
        assert state(f.s) is State.CLOSED and f.s.error == errno.ECONNRESET
