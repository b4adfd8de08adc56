"""RACK-TLP (RFC 8985) and PRR (RFC 6937): one test per situation.

The stack sends, the test plays the peer on a fake clock (``tcp_peer``):
the handshake takes 100 ms, so SRTT = min_RTT = 0.1 s and RTO = 0.3 s.
"""

from __future__ import annotations

import pytest
from tcp_peer import Flow, Seg, peer, sending_flow, seq_add, seq_diff

from ustack.tcp.recovery import Recovery
from ustack.tcp.sack import Scoreboard

MSS = 1448  # 1460 less the 12 bytes of timestamps


_flow = sending_flow


def _sack(f: Flow, una: int, blocks: list[tuple[int, int]]) -> None:
    f.send("A", ack=una, sack=blocks)


def _retransmitted(out: list[Seg], flight: list[Seg]) -> list[int]:
    """Which segments of ``flight`` (by index) went again in ``out``."""
    starts = [s.seq for s in flight]
    return [starts.index(s.seq) for s in out if s.seq in starts
            and seq_diff(s.seq, flight[-1].end) < 0]


def test_reordering_within_the_window_is_not_a_loss() -> None:
    """RFC 8985 6.2: with one segment SACKed above a hole, the hole is lost
    only min_RTT/4 after RACK.rtt; a hole filled before that was reordered
    (TcpExtTCPSACKReorder), nothing is resent and no recovery starts."""
    with peer() as p:
        f, flight = _flow(p, 10)
        una = flight[0].seq
        p.advance(0.1)
        _sack(f, una, [(flight[1].seq, flight[1].end)])
        p.advance(0.02)  # within the 25 ms window
        f.send("A", ack=flight[1].end)  # the first segment arrived late
        p.advance(0.05)
        out = f.take()
        assert _retransmitted(out, flight) == []
        assert not f.s.conn.in_recovery
        assert p.stack.counters.TcpExtTCPSACKReorder == 1
        assert p.stack.counters.TcpExtTCPSackRecovery == 0


def test_a_hole_past_the_reordering_window_is_lost_on_the_timer() -> None:
    """The same hole, not filled: the reordering timer (RFC 8985 6.3) finds
    it lost 25 ms later (min_RTT/4) and fast recovery resends it, long
    before the RTO."""
    with peer() as p:
        f, flight = _flow(p, 10)
        una = flight[0].seq
        p.advance(0.1)
        _sack(f, una, [(flight[1].seq, flight[1].end)])
        t_sack = p.now
        p.advance(0.024)
        assert _retransmitted(f.take(), flight) == []
        p.advance(0.002)
        [rtx] = [s for s in f.take() if s.seq == una]
        assert 0.0249 <= rtx.t - t_sack < 0.0265
        assert f.s.conn.in_recovery
        assert p.stack.counters.TcpExtTCPSackRecovery == 1
        assert p.stack.counters.TcpExtTCPTimeouts == 0


def test_a_lost_retransmission_is_found_without_a_timeout() -> None:
    """RFC 8985 6.2 step 5: a retransmission is lost when a segment sent
    after it is delivered and RACK.rtt has passed since it went; it goes
    again before the RTO (TcpExtTCPLostRetransmit).  RFC 6675 alone
    resends each hole once per recovery and leaves the rest to the RTO."""
    with peer() as p:
        f, flight = _flow(p, 10)
        una = flight[0].seq
        p.advance(0.1)
        # Segments 1-3 arrive: three SACKed above the hole, it is lost at once.
        for i in (1, 2, 3):
            _sack(f, una, [(flight[1].seq, flight[i].end)])
        [r1] = [s for s in f.take() if s.seq == una]
        p.advance(0.01)
        f.app_send(bytes(4 * MSS))  # new data, sent after the retransmission
        for i in range(4, 10):
            _sack(f, una, [(flight[1].seq, flight[i].end)])
        new = [s for s in f.take() if seq_diff(s.seq, flight[-1].end) >= 0]
        assert new, "PRR sends new data as the ACKs deliver"
        p.advance(0.1)  # the new data arrives; the retransmission did not
        _sack(f, una, [(flight[1].seq, new[0].end)])
        p.advance(0.001)
        again = [s for s in f.take() if s.seq == una]
        assert again, "the lost retransmission goes again"
        assert again[0].t - r1.t < 0.3  # before the RTO would have
        assert p.stack.counters.TcpExtTCPLostRetransmit == 1
        assert p.stack.counters.TcpExtTCPTimeouts == 0


def test_tail_loss_probe_fires_after_pto() -> None:
    """RFC 8985 7.2-7.3: with no ACK, PTO = 2*SRTT after the last send the
    last segment goes again (nothing new to send), before the RTO; counted
    as TcpExtTCPLossProbes.  Its ACK ends the episode; the next ACK beyond
    it says the probe repaired a loss (TcpExtTCPLossProbeRecovery)."""
    with peer() as p:
        f, flight = _flow(p, 3)
        t0 = flight[-1].t
        p.advance(0.199)
        assert f.take() == []
        p.advance(0.002)
        [probe] = f.take()
        assert probe.seq == flight[-1].seq and probe.end == flight[-1].end
        assert abs(probe.t - t0 - 0.2) < 1e-3
        assert p.stack.counters.TcpExtTCPLossProbes == 1
        assert p.stack.counters.TcpExtTCPTimeouts == 0
        f.send("A", ack=flight[-1].end)
        f.app_send(bytes(MSS))
        [more] = f.take()
        p.advance(0.1)
        f.send("A", ack=more.end)
        assert p.stack.counters.TcpExtTCPLossProbeRecovery == 1


def test_probe_sends_new_data_when_there_is_some() -> None:
    """RFC 8985 7.3: a previously unsent segment goes as the probe if the
    peer's window allows it."""
    with peer() as p:
        f = p.connect(80, delay=0.1)
        f.app_send(bytes(20 * MSS))  # IW 10 goes, 10 wait for the window
        flight = f.take()
        assert len(flight) == 10
        p.advance(0.201)
        [probe] = f.take()
        assert probe.seq == flight[-1].end  # new data
        assert p.stack.counters.TcpExtTCPLossProbes == 1


def test_prr_follows_rfc_6937_on_a_worked_example() -> None:
    """RFC 6937 3 with MSS 1000: RecoverFS 20000, ssthresh 14000 (CUBIC's
    0.7).  While pipe > ssthresh, sndcnt = CEIL(prr_delivered * ssthresh /
    RecoverFS) - prr_out: of every 10 segments delivered, 7 go.  Once pipe
    <= ssthresh, PRR-SSRB: sndcnt = MIN(ssthresh - pipe, MAX(prr_delivered -
    prr_out, DeliveredData) + MSS)."""
    mss = 1000
    rec = Recovery(0, Scoreboard())
    rec.prr_start(20000, mss)
    assert rec.sndcnt == mss  # the fast retransmit
    rec.prr_sent(mss)
    sent = []
    pipe = 19000
    for _ in range(10):
        pipe -= mss  # one segment delivered per ACK
        rec.prr_ack(mss, pipe, 14000, mss)
        n = 0
        while rec.sndcnt >= mss:
            rec.prr_sent(mss)
            pipe += mss
            n += 1
        sent.append(n)
    # k segments delivered, pipe > ssthresh: sndcnt = ceil(700 k) - prr_out,
    # prr_out 1000 after the fast retransmit: k=3 (2100 - 1000) sends one,
    # k=5 and 6 one each.  At k=8 the pipe is down to ssthresh (19000 - 8000
    # + 3000 sent) and PRR-SSRB takes over: MIN(ssthresh - pipe, ...), one
    # segment per segment delivered from then on (k=9, 10).
    assert sent == [0, 0, 1, 0, 1, 1, 0, 0, 1, 1]
    assert rec.prr_out == 6 * mss
    # Below ssthresh: a 4-segment ACK with pipe 8000: MIN(14000 - 8000,
    # MAX(prr_delivered - prr_out = 14000 - 6000, 4000) + MSS) = 6000.
    rec.prr_ack(4 * mss, 8000, 14000, mss)
    assert rec.sndcnt == 6 * mss
    # Far below ssthresh the bound holds: pipe 2000 leaves room for 12000,
    # but MAX(15000 - 12000, 1000) + MSS = 4000 may go.
    rec.prr_sent(6 * mss)
    rec.prr_ack(mss, 2000, 14000, mss)
    assert rec.sndcnt == 4 * mss


def test_rack_off_falls_back_to_rfc_6675() -> None:
    """config.rack = False: no loss probe, the RTO alone after a tail loss."""
    with peer() as p:
        p.cfg.rack = False
        f, flight = _flow(p, 3)
        p.advance(0.25)
        assert f.take() == []
        p.advance(0.06)
        [rto] = f.take()
        assert rto.seq == flight[0].seq
        assert p.stack.counters.TcpExtTCPLossProbes == 0
        assert p.stack.counters.TcpExtTCPTimeouts == 1
        assert seq_add(flight[0].seq, 0) == rto.seq


def test_a_retransmission_and_new_data_of_one_instant_are_ordered() -> None:
    """RFC 8985 6.2, RACK_sent_after(): a retransmission and the new data
    PRR sends after it in the same instant have the same transmit time; the
    order they went out in decides.  The new data delivered and the
    retransmission not: it was lost, and goes again at once, not at the RTO
    (by time alone neither was sent after the other, and no verdict came)."""
    with peer() as p:
        f, flight = _flow(p, 10)
        f.app_send(bytes(10 * MSS))
        una = flight[0].seq
        p.advance(0.1)
        for i in range(1, 10):  # no time passes: all of it goes at one instant
            _sack(f, una, [(flight[1].seq, flight[i].end)])
        out = f.take()
        [r1] = [s for s in out if s.seq == una]
        new = [s for s in out if seq_diff(s.seq, flight[-1].end) >= 0]
        assert new and new[0].t == r1.t
        p.advance(0.1)
        _sack(f, una, [(flight[1].seq, new[-1].end)])
        p.advance(0.001)
        again = [s for s in f.take() if s.seq == una]
        assert again, "the lost retransmission goes again"
        assert again[0].t - r1.t < 0.15
        assert p.stack.counters.TcpExtTCPLostRetransmit == 1
        assert p.stack.counters.TcpExtTCPTimeouts == 0


def test_sub_millisecond_reordering_is_not_a_loss() -> None:
    """On a 0.5 ms path the timestamps' 1 ms ticks say min_RTT 0 or 1 ms;
    RACK takes min_RTT from its own RACK.rtt samples (the clock's
    resolution), so the window is min_RTT/4 = 125 us, and once reordering
    was seen its timer fires REO_TIMER_SLACK (2 ms, Linux's
    TCP_TIMEOUT_MIN) after it: a hole filled 1 ms after the SACK was
    reordering, nothing is resent."""
    with peer() as p:
        f = p.connect(80, delay=0.0005)
        f.app_send(bytes(10 * MSS))
        flight = f.take()
        f.rcv_nxt = flight[0].seq
        una = flight[0].seq
        p.advance(0.0005)
        f.send("A", ack=flight[0].end)  # an RTT sample at RACK's resolution
        # A D-SACK (a duplicate of segment 0): reordering was seen (RFC 8985
        # 6.2 step 4), the window applies from now on.
        _sack(f, flight[0].end, [(flight[0].seq, flight[0].end)])
        assert f.s.conn.rack.reordering_seen
        p.advance(0.0002)
        _sack(f, flight[0].end, [(flight[2].seq, flight[2].end)])
        p.advance(0.001)
        f.send("A", ack=flight[2].end)  # segment 1 was only late
        p.advance(0.01)
        assert _retransmitted(f.take(), flight) == []
        assert not f.s.conn.in_recovery
        assert p.stack.counters.TcpExtTCPSackRecovery == 0
        assert una == flight[0].seq


@pytest.mark.parametrize("cwnd_segs", [4, 40], ids=["lasting-hole", "little-outstanding"])
def test_ssthresh_is_beta_times_cwnd_whatever_is_outstanding(cwnd_segs: int) -> None:
    """Ten segments are outstanding when the loss is found; ssthresh is
    0.7 x cwnd in both cases.

    lasting-hole (cwnd 4): RFC 5681 3.2 step 2 takes FlightSize, SND.NXT -
    SND.UNA; behind a hole that outlives a recovery it holds SACKed data of
    several windows (in the goodput sim, recovery after recovery raised
    cwnd from 72 to 356 segments in 0.3 s at 10 % loss): the reduction is
    from no more than cwnd.

    little-outstanding (cwnd 40): the reduction is from cwnd, as Linux's
    (CUBIC's beta x cwnd), not from what is outstanding when the loss is
    found: a loss is found while an ACK batch is taken, before the window
    it opened is refilled, and FlightSize then was a few segments of a
    larger window: on the relay at 1 % loss every recovery took ssthresh
    to its 2-segment floor."""
    with peer() as p:
        f, flight = _flow(p, 10)
        conn = f.s.conn
        conn.cc.cwnd = cwnd_segs * MSS
        una = flight[0].seq
        p.advance(0.1)
        for i in (1, 2, 3):
            _sack(f, una, [(flight[1].seq, flight[i].end)])
        assert conn.in_recovery
        assert conn.cc.ssthresh == int(cwnd_segs * MSS * 0.7)
