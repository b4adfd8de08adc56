"""Undoing a spurious congestion window reduction (RFC 2883 D-SACK, RFC 3522
Eifel detection, RFC 4015 response): one test per situation.

The stack sends, the test plays the peer on a fake clock (``tcp_peer``):
SRTT = min_RTT = 0.1 s, RTO = 0.3 s, IW = 10 segments.  In each test a
segment is only late, not lost: the stack cuts cwnd, then learns the cut
was for nothing and takes it back.
"""

from __future__ import annotations

from tcp_peer import Flow, Peer, Seg, peer, sending_flow

MSS = 1448
IW = 10 * MSS


_flow = sending_flow


def _fast_retransmit(p: Peer, f: Flow, flight: list[Seg]) -> Seg:
    """Segments 1-3 SACKed above segment 0: RACK marks it lost at once (no
    reordering seen yet) and fast recovery resends it; cwnd is cut."""
    una = flight[0].seq
    p.advance(0.1)
    for i in (1, 2, 3):
        f.send("A", ack=una, sack=[(flight[1].seq, flight[i].end)])
    [rtx] = [s for s in f.take() if s.seq == una]
    assert f.s.conn.in_recovery
    assert f.s.conn.cc.cwnd < IW
    return rtx


def test_every_retransmission_dsacked_undoes_the_reduction() -> None:
    """RFC 2883 (Linux's TCPDSACKUndo): the recovery ends with the ACK that
    the retransmission triggered (its TSval echoed: no Eifel verdict); then
    the original's duplicate is reported in a D-SACK.  The only
    retransmission was not needed: cwnd and ssthresh come back."""
    with peer() as p:
        f, flight = _flow(p, 10)
        rtx = _fast_retransmit(p, f, flight)
        p.advance(0.1)
        f.send("A", ack=flight[-1].end, tsecr=rtx.tsval)
        conn = f.s.conn
        assert not conn.in_recovery
        assert conn.cc.cwnd < IW
        f.send("A", ack=flight[-1].end, sack=[(flight[0].seq, flight[0].end)])
        assert p.stack.counters.TcpExtTCPDSACKUndo == 1
        assert conn.cc.cwnd == IW
        assert conn.cc.ssthresh > IW  # back in slow start, as before the cut


def test_eifel_undoes_a_fast_recovery_the_original_ended() -> None:
    """RFC 3522: the ACK that covers the retransmitted segment echoes the
    original's TSval, older than the retransmission's: the original filled
    the hole.  The reduction is undone at that ACK (TcpExtTCPFullUndo) and
    the hole counts as reordering (TcpExtTCPSACKReorder, RFC 8985 6.2 step
    4), so the next late segment gets a reordering window."""
    with peer() as p:
        f, flight = _flow(p, 10)
        rtx = _fast_retransmit(p, f, flight)
        assert flight[0].tsval is not None and rtx.tsval is not None
        assert flight[0].tsval < rtx.tsval
        p.advance(0.05)
        f.send("A", ack=flight[-1].end, tsecr=flight[0].tsval)
        conn = f.s.conn
        c = p.stack.counters
        assert c.TcpExtTCPFullUndo == 1
        assert c.TcpExtTCPSACKReorder == 1
        assert not conn.in_recovery
        assert conn.cc.cwnd >= IW
        assert conn.rack.reordering_seen


def test_eifel_undoes_a_spurious_timeout() -> None:
    """RFC 3522 after an RTO (Linux's TCPLossUndo): the ACK of the resent
    first segment echoes the original's TSval.  cwnd returns from one
    segment to the window before the timeout, and the rest of the flight is
    not resent (the go-back-N of RFC 5681 3.1 stops)."""
    with peer() as p:
        p.cfg.tlp = False
        f, flight = _flow(p, 4)
        p.advance(0.31)
        [rto] = f.take()
        assert rto.seq == flight[0].seq
        conn = f.s.conn
        assert conn.cc.cwnd == MSS
        f.send("A", ack=flight[0].end, tsecr=flight[0].tsval)
        out = f.take()
        c = p.stack.counters
        assert c.TcpExtTCPTimeouts == 1
        assert c.TcpExtTCPLossUndo == 1
        assert conn.cc.cwnd >= IW
        assert [s for s in out if s.seq in (flight[1].seq, flight[2].seq)] == []


def test_a_real_loss_is_not_undone() -> None:
    """The retransmission filled the hole (its TSval echoed) and no D-SACK
    comes: the reduction stands."""
    with peer() as p:
        f, flight = _flow(p, 10)
        rtx = _fast_retransmit(p, f, flight)
        p.advance(0.1)
        f.send("A", ack=flight[-1].end, tsecr=rtx.tsval)
        c = p.stack.counters
        assert c.TcpExtTCPFullUndo + c.TcpExtTCPDSACKUndo + c.TcpExtTCPPartialUndo == 0
        assert f.s.conn.cc.cwnd < IW
