"""The sending side: Nagle, sender SWS, fast retransmit, limited transmit, recovery.

RFC 896 / RFC 1122 4.2.3.4 (Nagle), RFC 9293 3.8.6.2.1 (sender SWS),
RFC 5681 3.2 (fast retransmit), RFC 3042 (limited transmit), RFC 6582
(NewReno partial ACKs), RFC 6675 (SACK-based recovery).  The peer loses
segments by simply not acknowledging them.
"""

from __future__ import annotations

from tcp_peer import Flow, Peer, Seg, peer, seq_add, seq_diff, state

from ustack.tcp.states import State

MSS = 1448  # 1460 less the 12 bytes of timestamps


def _established(p: Peer, **kw: object) -> Flow:
    f = p.accept(**kw)  # type: ignore[arg-type]
    assert state(f.s) is State.ESTABLISHED
    return f


def _offsets(f: Flow, segs: list[Seg]) -> list[int]:
    """Segment starts as byte offsets into the stack's stream."""
    return [seq_diff(s.seq, seq_add(f.irs, 1)) for s in segs]


def test_nagle_holds_small_segment_while_data_is_unacked() -> None:
    """RFC 896 / RFC 1122 4.2.3.4: a small segment waits while data is
    outstanding; the ACK releases it."""
    with peer() as p:
        f = _established(p)
        f.app_send(b"a" * 100)
        [s1] = f.take()
        assert s1.payload == b"a" * 100 and "P" in s1.flags
        f.app_send(b"b" * 100)
        f.app_send(b"c" * 100)
        assert f.take() == []
        p.advance(0.1)
        assert f.take() == []
        f.send("A")
        [s2] = f.take()
        assert s2.payload == b"b" * 100 + b"c" * 100  # coalesced while held


def test_nodelay_sends_small_segments_at_once() -> None:
    """RFC 1122 4.2.3.4: the application can disable Nagle (TCP_NODELAY)."""
    with peer() as p:
        f = _established(p)
        f.s.conn.cfg.nodelay = True
        f.app_send(b"a" * 100)
        f.app_send(b"b" * 100)
        assert [s.payload for s in f.take()] == [b"a" * 100, b"b" * 100]


def test_nagle_does_not_hold_full_segments() -> None:
    """RFC 1122 4.2.3.4: only segments shorter than the MSS are held."""
    with peer() as p:
        f = _established(p)
        f.app_send(b"a" * 100)
        f.take()
        f.app_send(bytes(3 * MSS + 10))
        assert [len(s.payload) for s in f.take()] == [MSS, MSS, MSS]


def test_sender_sws_does_not_fill_a_small_window() -> None:
    """RFC 9293 3.8.6.2.1: with queued data, send only a full segment, or at
    least half the largest window the peer offered; not a sliver."""
    with peer() as p:
        f = _established(p, wscale=None, win=20 * MSS)
        f.app_send(bytes(12 * MSS))
        first = f.take()
        assert len(first) == 10  # the initial congestion window (RFC 6928)
        # ACK everything but leave only 500 bytes of window: no 500-byte segment.
        f.send("A", ack=f.rcv_nxt, win=500)
        assert f.take() == []
        f.send("A", win=20 * MSS)
        assert [len(s.payload) for s in f.take()] == [MSS, MSS]


def test_sender_sws_override_sends_what_fits_and_times_it() -> None:
    """RFC 9293 3.8.6.2.1: when the persist timer overrides sender SWS
    avoidance, the segment is new data like any other: it fits the window,
    it is timed (RFC 6298 / Karn, here without timestamps) and an ACK of it
    gives an RTT sample."""
    with peer() as p:
        p.cfg.tlp = False  # the RTO alone (RFC 6298), no tail loss probe before it
        f = _established(p, wscale=None, ts=False, win=20 * MSS)
        f.app_send(bytes(12 * MSS))
        assert len(f.take()) == 10
        f.send("A", ack=f.rcv_nxt, win=500)
        assert f.take() == []
        p.run_to(p.stack.next_deadline() or 0.0)  # the persist timer
        [seg] = f.take()
        assert len(seg.payload) == 500 and seg.t == p.now
        srtt = f.s.stats()["srtt"]
        assert isinstance(srtt, float)
        p.advance(0.1)  # within the RTO (200 ms): no retransmission
        f.send("A", win=500)
        after = f.s.stats()["srtt"]
        assert isinstance(after, float) and after > srtt + 0.01  # 7/8 srtt + 1/8 * 0.1 s


def _lose_first_and_dupack(f: Flow, p: Peer, n_segs: int, sack: bool
                           ) -> tuple[list[Seg], list[list[Seg]]]:
    """Send ``n_segs`` MSS of data; the peer loses segment 0 and answers each of
    three later arrivals with a duplicate ACK.  Returns the first flight and
    the stack's answer to each duplicate ACK."""
    f.app_send(bytes(n_segs * MSS))
    flight = f.take()
    una = flight[0].seq
    f.rcv_nxt = una  # segment 0 is lost: the peer keeps acknowledging its start
    answers = []
    for i in range(1, 4):
        blocks = [(flight[1].seq, flight[i].end)] if sack else None
        f.send("A", ack=una, sack=blocks)
        answers.append(f.take())
    return flight, answers


def test_three_dup_acks_trigger_fast_retransmit() -> None:
    """RFC 5681 3.2: on the third duplicate ACK, retransmit the segment at
    SND.UNA at once (no timeout) and set ssthresh to about half the flight."""
    with peer() as p:
        f = _established(p, sack=False)
        flight, answers = _lose_first_and_dupack(f, p, 10, sack=False)
        assert len(flight) == 10
        rtx = [s for s in answers[2] if s.seq == flight[0].seq]
        assert len(rtx) == 1
        assert rtx[0].payload == flight[0].payload and rtx[0].t == flight[0].t
        st = f.s.stats()
        assert isinstance(st["ssthresh"], int) and st["ssthresh"] < 10 * MSS
        assert p.stack.counters.TcpRetransSegs == 1


def test_limited_transmit_sends_new_data_on_the_first_two_dup_acks() -> None:
    """RFC 3042 2: the first two duplicate ACKs each release new data (the
    window allowing), and nothing is retransmitted before the third."""
    with peer() as p:
        f = _established(p, sack=False)
        flight, answers = _lose_first_and_dupack(f, p, 20, sack=False)
        assert len(flight) == 10
        end = flight[-1].end
        assert answers[0] and answers[0][0].seq == end
        new = answers[0] + answers[1]
        assert all(seq_diff(s.seq, end) >= 0 and len(s.payload) == MSS for s in new)


def test_limited_transmit_sends_one_new_segment_per_early_dup_ack() -> None:
    """RFC 3042 2: "send a segment of previously unsent data in response to each
    of the first two duplicate acknowledgments", "provided ... the total
    FlightSize would remain less than or equal to cwnd plus 2*SMSS"."""
    with peer() as p:
        f = _established(p, sack=False)
        flight, answers = _lose_first_and_dupack(f, p, 20, sack=False)
        end = flight[-1].end
        assert [s.seq for s in answers[0]] == [end]
        assert [s.seq for s in answers[1]] == [seq_add(end, MSS)]


def test_newreno_partial_ack_retransmits_the_next_hole() -> None:
    """RFC 6582 3.2 step 5: in fast recovery, an ACK that covers new data but not
    "recover" retransmits the first unacknowledged segment at once; a full
    ACK ends recovery."""
    with peer() as p:
        f = _established(p, sack=False)
        flight, answers = _lose_first_and_dupack(f, p, 10, sack=False)
        assert any(s.seq == flight[0].seq for s in answers[2])
        # Segment 2 was lost too: the retransmission of 0 fills only up to it.
        f.send("A", ack=flight[2].seq)
        segs = f.take()
        assert segs and segs[0].seq == flight[2].seq
        assert segs[0].payload == flight[2].payload
        assert segs[0].t == flight[0].t  # no timer involved
        high = max((s.end for s in flight + answers[0] + answers[1] + answers[2] + segs),
                   key=lambda e: seq_diff(e, flight[0].seq))
        f.send("A", ack=high)
        assert f.s.conn.in_recovery is False


def test_sack_recovery_retransmits_only_the_holes() -> None:
    """RFC 6675 5: with SACK, enter recovery once the first segment is deemed
    lost, retransmit the holes (NextSeg rule 1) and never a SACKed segment."""
    with peer() as p:
        f = _established(p)
        assert f.sack_ok
        f.app_send(bytes(10 * MSS))
        flight = f.take()
        assert len(flight) == 10
        una = flight[0].seq
        f.rcv_nxt = una
        lost = {0, 2}
        got: list[int] = []
        out: list[Seg] = []
        for i in range(10):
            if i in lost:
                continue
            got.append(i)
            blocks: list[tuple[int, int]] = []
            # SACK blocks, the block with the newest segment first (RFC 2018 4).
            runs: list[list[int]] = []
            for k in got:
                if runs and runs[-1][-1] == k - 1:
                    runs[-1].append(k)
                else:
                    runs.append([k])
            runs.sort(key=lambda r: i not in r)
            for r in runs[:3]:
                blocks.append((flight[r[0]].seq, flight[r[-1]].end))
            f.send("A", ack=una, sack=blocks)
            out += f.take()
        rtx = [s for s in out if seq_diff(s.seq, flight[-1].end) < 0]
        assert sorted(_offsets(f, rtx)) == [0, 2 * MSS]
        assert all(s.t == flight[0].t for s in rtx)  # recovery, not a timeout
        assert f.s.conn.in_recovery


def test_after_rto_only_one_segment_is_resent_then_slow_start() -> None:
    """RFC 5681 3.1 / RFC 6298 5.4: on timeout retransmit the earliest segment
    with cwnd = 1 SMSS; each ACK then opens the window (slow start)."""
    with peer() as p:
        p.cfg.tlp = False  # the RTO alone (RFC 6298), no tail loss probe before it
        f = _established(p)
        f.app_send(bytes(5 * MSS))
        flight = f.take()
        assert len(flight) == 5
        f.rcv_nxt = flight[0].seq
        p.advance(0.2)
        [rtx] = f.take()
        assert rtx.seq == flight[0].seq and len(rtx.payload) == MSS
        f.send("A", ack=flight[1].seq)
        assert [s.seq for s in f.take()] == [flight[1].seq, flight[2].seq]


def test_window_update_from_an_older_segment_is_ignored() -> None:
    """RFC 9293 3.10.7.4 fifth check: SND.WND is taken only from a segment with
    SND.WL1 < SEG.SEQ, or SND.WL1 = SEG.SEQ and SND.WL2 =< SEG.ACK; a reordered
    older segment does not close the window."""
    with peer() as p:
        f = _established(p, wscale=None, win=8 * MSS)
        old_seq = f.snd_nxt
        f.send("PA", b"x" * 100)
        p.advance(0.1)
        f.take()
        f.send("A", seq=old_seq, win=0)
        assert f.s.stats()["snd_wnd"] == 8 * MSS
        f.app_send(bytes(3 * MSS))
        assert [len(s.payload) for s in f.take() if s.payload] == [MSS] * 3
