"""Timers, checked to the millisecond with the fake clock.

RFC 6298 (RTO computation, minimum, backoff, maximum), RFC 9293 3.8.3
(R1/R2: the connection gives up with ETIMEDOUT), RFC 9293 3.8.6.1 (zero
window probing), RFC 1122 4.2.3.6 (keepalive).
"""

from __future__ import annotations

import errno

import pytest
from tcp_peer import PEER_ISN, Flow, Peer, Seg, peer, seq_add, state

from ustack.tcp.connection import Event
from ustack.tcp.states import State

MSS = 1448


def _established(p: Peer, **kw: object) -> Flow:
    f = p.accept(**kw)  # type: ignore[arg-type]
    assert state(f.s) is State.ESTABLISHED
    return f


def _times(segs: list[Seg], t0: float) -> list[float]:
    return [round(s.t - t0, 6) for s in segs]


def test_rto_minimum_backoff_maximum_and_r2_timeout() -> None:
    """RFC 6298 2.4 (200 ms minimum, Linux's), 5.5 (double on each expiry),
    2.5 (a maximum: 120 s); RFC 9293 3.8.3 MUST-20: after R2 (15 retries,
    Linux tcp_retries2) the connection is closed with ETIMEDOUT, 924.6 s after
    the first transmission like Linux; the application heard at R1 first."""
    with peer() as p:
        f = _established(p)  # RTT sample 0: RTO = the 200 ms floor
        ev = p.events(f.s)
        f.app_send(b"lost")
        [first] = f.take()
        t0 = first.t
        p.run_to(t0 + 2000)
        segs = f.take()
        gaps = [0.2 * 2**k for k in range(10)] + [120.0] * 5
        want = [round(sum(gaps[:i + 1]), 6) for i in range(len(gaps))]
        assert _times(segs, t0) == pytest.approx(want, abs=1e-6)
        assert all(s.seq == first.seq and s.payload == b"lost" for s in segs)
        assert state(f.s) is State.CLOSED
        assert f.s.error == errno.ETIMEDOUT
        assert Event.SOFT_ERROR in ev and Event.TIMED_OUT in ev
        assert ev.index(Event.SOFT_ERROR) < ev.index(Event.TIMED_OUT)
        with pytest.raises(TimeoutError):
            f.s.recv()
        assert not p.stack.tcp.conns
        assert p.stack.counters.TcpRetransSegs == 15


def test_r2_timeout_comes_924_6_seconds_after_first_send() -> None:
    """RFC 9293 3.8.3 SHLD-11: R2 at least 100 s; the moment of failure."""
    with peer() as p:
        f = _established(p)
        f.app_send(b"lost")
        t0 = p.now
        p.run_to(t0 + 924.599)
        assert state(f.s) is State.ESTABLISHED
        p.run_to(t0 + 924.6 + 1e-6)
        assert state(f.s) is State.CLOSED


def test_rto_follows_measured_rtt() -> None:
    """RFC 6298 2.2: first sample R: SRTT = R, RTTVAR = R/2, RTO = SRTT + 4 RTTVAR;
    2.3: later samples with alpha 1/8, beta 1/4.  The RTT is measured from
    timestamps (RFC 7323 4)."""
    with peer() as p:
        p.cfg.tlp = False  # the RTO alone (a loss probe would go at 1.5 SRTT + 200 ms)
        f = p.connect(80, delay=0.1)  # handshake RTT 100 ms: RTO = 0.1 + 4*0.05 = 0.3
        f.app_send(b"one")
        [s1] = f.take()
        p.advance(0.299)
        assert f.take() == []
        p.advance(0.001)
        [r1] = f.take()
        assert r1.seq == s1.seq and round(r1.t - s1.t, 6) == 0.3
        # An ACK whose TSecr is the first transmission's: an RTT of 0.3 s
        # (timestamps tell which copy is acknowledged, so Karn's rule is moot).
        f.send("A", tsecr=s1.tsval)
        # RTTVAR = 3/4*0.05 + 1/4*|0.1-0.3| = 0.0875; SRTT = 7/8*0.1 + 1/8*0.3 = 0.125
        f.app_send(b"two")
        [s2] = f.take()
        p.advance(0.474)
        assert f.take() == []
        p.advance(0.002)
        [r2] = f.take()
        assert r2.seq == s2.seq and abs((r2.t - s2.t) - 0.475) < 1e-6


def test_rto_restarts_when_new_data_is_acked() -> None:
    """RFC 6298 5.3: when an ACK acknowledges new data, restart the timer."""
    with peer() as p:
        p.cfg.tlp = False  # the RTO alone (RFC 6298), no tail loss probe before it
        f = _established(p)
        f.app_send(b"a" * MSS)
        f.app_send(b"b" * MSS)
        [a, b] = f.take()
        p.advance(0.15)
        f.send("A", ack=a.end)
        p.advance(0.19)
        assert f.take() == []  # 0.34 s after b was sent, but only 0.19 s after the ACK
        p.advance(0.01)
        [r] = f.take()
        assert r.seq == b.seq


def test_rto_resends_only_the_short_segment_that_was_sent() -> None:
    """RFC 6298 5.4 ("retransmit the earliest segment that has not been
    acknowledged"): a retransmission carries bytes that were sent, never
    the unsent ones queued behind SND.NXT.  Here the last segment sent is
    short (the persist timer's override of sender SWS avoidance, RFC 9293
    3.8.6.2.1, filling an 80-byte window) with more data queued: resent as
    one MSS from SND.UNA, it reached 1368 bytes past SND.NXT, the peer
    acknowledged them, and that ACK was dropped as acknowledging unsent
    data (RFC 5961 5.2), every one after it too: the connection stalled
    for good (ustack.socket's 4 MB sendall through a 16 KB buffer, one CI
    run in five)."""
    with peer() as p:
        f = _established(p, wscale=None, win=65535)
        f.app_send(bytes(40 * MSS))
        burst = f.take()  # the initial window
        assert burst and all(len(s.payload) == MSS for s in burst)
        f.send("A", win=80)  # all acknowledged; the window's right edge stays
        assert f.take() == []  # 80 bytes: sender SWS avoidance waits
        p.advance(0.2)  # the persist timer
        [short] = f.take()
        assert len(short.payload) == 80
        c = f.s.conn
        assert (c.snd_una, c.snd_nxt) == (short.seq, short.end)
        p.advance(0.2)  # the retransmission timer (the peer's ACK was lost)
        [rtx] = f.take()
        assert (rtx.seq, rtx.end) == (short.seq, short.end)
        assert rtx.payload == short.payload
        # The peer acknowledges what it holds, its window open again:
        # sending resumes (before the fix this ACK was dropped, and so
        # were all that followed).
        f.send("A", ack=rtx.end, win=65535)
        assert c.snd_una == rtx.end
        assert p.stack.counters.snapshot().get("DropTcpAckUnsentData", 0) == 0
        more = f.take()
        assert more and more[0].seq == rtx.end and len(more[0].payload) == MSS


def test_resent_last_segment_carries_no_fin_that_was_not_sent() -> None:
    """The FIN, too, goes in a retransmission only once it was sent: queued
    (shutdown) while the resend after an RTO holds the congestion window,
    it follows the resent data once, as new data (Linux: a FIN behind data
    already sent is a segment of its own), not with the resent last segment
    as well (which put it on the wire before SND.NXT counted it)."""
    with peer() as p:
        p.cfg.tlp = False  # the RTO alone
        f = _established(p)
        f.app_send(bytes(3 * MSS))
        a, b, last = f.take()
        p.advance(0.2)  # RTO: cwnd is one segment (RFC 5681 3.1)
        [ra] = f.take()
        assert ra.seq == a.seq and "F" not in ra.flags
        f.s.shutdown_write()  # the FIN waits behind the resend
        p.flush()
        assert f.take() == []
        f.send("A", ack=a.end)  # cwnd two segments: the rest is resent
        segs = f.take()
        assert [(s.seq, len(s.payload), "F" in s.flags) for s in segs] == [
            (b.seq, MSS, False), (last.seq, MSS, False), (last.end, 0, True)]
        c = f.s.conn
        assert c.snd_nxt == seq_add(last.end, 1)


def _zero_window(p: Peer) -> tuple[Flow, float]:
    f = _established(p, wscale=None, win=2 * MSS)
    f.app_send(bytes(10 * MSS))
    assert [len(s.payload) for s in f.take()] == [MSS, MSS]
    f.send("A", win=0)
    return f, p.now


def test_zero_window_is_probed_with_backoff_until_the_window_opens() -> None:
    """RFC 9293 3.8.6.1 (MUST-36), RFC 1122 4.2.2.17: a zero window is probed,
    at intervals that back off exponentially (like the RTO, capped at 120 s);
    the probe is Linux's: SEG.SEQ = SND.UNA - 1 with no data, which the peer
    must answer with its current window; its answers do not stop the probing;
    a window update restarts transmission at once."""
    with peer() as p:
        f, t0 = _zero_window(p)
        probes: list[Seg] = []
        while p.now < t0 + 700:
            p.advance(0.05)
            for s in f.take():
                probes.append(s)
                f.send("A", win=0)  # still closed
        gaps = [0.2 * 2**k for k in range(10)] + [120.0] * 4  # up to t0 + 684.6
        want = [round(sum(gaps[:i + 1]), 6) for i in range(len(gaps))]
        assert _times(probes, t0) == pytest.approx(want, abs=1e-6)
        una = f.s.conn.snd_una
        for s in probes:
            assert s.seq == (una - 1) & 0xFFFFFFFF and len(s.payload) == 0
        assert state(f.s) is State.ESTABLISHED
        f.send("A", win=4 * MSS)
        resumed = f.take()
        assert [len(s.payload) for s in resumed] == [MSS] * 4
        assert resumed[0].seq == una


def test_window_update_after_a_probe_resumes_sending() -> None:
    """RFC 9293 3.8.6.1: the answer to a probe that opens the window is an
    ordinary window update: sending resumes from SND.NXT, nothing is lost."""
    with peer() as p:
        f, t0 = _zero_window(p)
        p.run_to(t0 + 0.2)
        [probe] = f.take()
        assert len(probe.payload) == 0
        una = f.s.conn.snd_una
        f.send("A", win=4 * MSS)
        segs = f.take()
        assert segs and segs[0].seq == una and len(segs[0].payload) == MSS


def test_zero_window_probe_timer_starts_at_the_rto() -> None:
    """RFC 9293 3.8.6.1: the first probe comes one RTO (200 ms here) after the
    window closed, not at once."""
    with peer() as p:
        f, t0 = _zero_window(p)
        p.run_to(t0 + 0.199)
        assert f.take() == []
        p.run_to(t0 + 0.2)
        assert len(f.take()) == 1


def test_keepalive_is_off_by_default() -> None:
    """RFC 1122 4.2.3.6: keep-alives MUST default to off."""
    with peer() as p:
        f = _established(p)
        p.run_to(4 * 3600.0)
        assert f.take() == []
        assert state(f.s) is State.ESTABLISHED


def test_keepalive_probes_then_times_out() -> None:
    """RFC 1122 4.2.3.6: after at least two hours idle, send SEG.SEQ = SND.NXT-1
    with no data; Linux's 75 s interval and 9 probes, then ETIMEDOUT."""
    with peer() as p:
        p.cfg.keepalive = True
        f = _established(p)
        ev = p.events(f.s)
        t0 = p.now
        p.run_to(t0 + 7199.9)
        assert f.take() == []
        p.run_to(t0 + 8000)
        probes = f.take()
        assert _times(probes, t0) == pytest.approx([7200 + 75 * k for k in range(9)], abs=1e-6)
        for s in probes:
            assert s.flags == "A" and s.seq == seq_add(f.rcv_nxt, -1) and s.payload == b""
            assert s.ack == f.snd_nxt
        assert state(f.s) is State.CLOSED and f.s.error == errno.ETIMEDOUT
        assert Event.TIMED_OUT in ev
        assert p.stack.tcp.conns == {}


def test_answered_keepalive_restarts_the_idle_time() -> None:
    """RFC 1122 4.2.3.6: an answer to a probe shows the peer is alive: the
    connection stays and the next probe comes a full idle time later."""
    with peer() as p:
        p.cfg.keepalive = True
        f = _established(p)
        t0 = p.now
        p.run_to(t0 + 7200)
        [probe] = f.take()
        f.send("A")
        p.run_to(t0 + 7200 + 7199)
        assert f.take() == []
        p.run_to(t0 + 7200 + 7200)
        [again] = f.take()
        assert again.seq == probe.seq
        assert state(f.s) is State.ESTABLISHED


@pytest.mark.parametrize("side", ["active", "passive"])
def test_rto_is_three_seconds_after_a_handshake_timeout(side: str) -> None:
    """RFC 6298 5.7: "If the timer expires awaiting the ACK of a SYN segment and
    the TCP implementation is using an RTO less than 3 seconds, the RTO MUST be
    re-initialized to 3 seconds when data transmission begins"."""
    with peer() as p:
        p.cfg.tlp = False  # the RTO alone (without an RTT, a loss probe goes after 1 s)
        if side == "active":
            # The SYN-ACK comes after the first SYN retransmission, without
            # timestamps: Karn's rule leaves no RTT sample.
            f = p.connect(80, ts=False, delay=1.5)
        else:
            lst = p.listen(80)
            f = Flow(p, p.new_port(), 80, PEER_ISN)
            f.send_syn(mss=1460, sack=True, ts=False, wscale=None, win=65535)
            f.adopt_syn(f.expect1("SA"), offered_ts=False, offered_ws=None)
            p.advance(1.5)
            assert len(f.take()) == 1  # the SYN-ACK, retransmitted at 1 s
            f.send("A")
            f.sock = lst.accept()
        assert f.s.conn.rtt.srtt is None
        f.app_send(b"x")
        [sent] = f.take()
        p.advance(4.0)
        [rtx] = f.take()
        assert round(rtx.t - sent.t, 6) == 3.0
