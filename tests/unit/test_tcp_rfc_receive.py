"""The receiving side: when the stack acknowledges, what it SACKs, how its window opens.

RFC 1122 4.2.3.2 and RFC 5681 4.2 (delayed and immediate ACKs), RFC 2018
(SACK blocks), RFC 9293 3.8.6.2.2 (receiver silly-window avoidance).
"""

from __future__ import annotations

from itertools import pairwise

from tcp_peer import Flow, Peer, peer, seq_add, state

from ustack.tcp.states import State

MSS = 1448  # 1460 less the 12 bytes of timestamps


def _established(p: Peer, **kw: object) -> Flow:
    f = p.accept(**kw)  # type: ignore[arg-type]
    assert state(f.s) is State.ESTABLISHED
    return f


def test_out_of_order_segment_gets_immediate_dup_ack_with_sack() -> None:
    """RFC 5681 4.2: an out-of-order segment is acknowledged at once (a duplicate
    ACK); RFC 2018 4: it carries SACK blocks, the most recently received
    block first; a segment that fills the hole is acknowledged at once too."""
    with peer() as p:
        f = _established(p)
        base = f.snd_nxt
        f.send("PA", b"b" * 500, seq=seq_add(base, 1000))
        [a1] = f.take()
        assert a1.flags == "A" and a1.ack == base and a1.t == p.now
        assert a1.sack == [(seq_add(base, 1000), seq_add(base, 1500))]
        f.send("PA", b"c" * 500, seq=seq_add(base, 2000))
        [a2] = f.take()
        assert a2.ack == base
        assert a2.sack == [(seq_add(base, 2000), seq_add(base, 2500)),
                           (seq_add(base, 1000), seq_add(base, 1500))]
        # Fill the first hole: an immediate ACK up to the next hole.
        f.send("PA", b"a" * 1000, seq=base)
        [a3] = f.take()
        assert a3.ack == seq_add(base, 1500) and a3.t == p.now
        assert a3.sack == [(seq_add(base, 2000), seq_add(base, 2500))]
        f.send("PA", b"x" * 500, seq=seq_add(base, 1500))
        [a4] = f.take()
        assert a4.ack == seq_add(base, 2500) and a4.sack == []
        assert f.app_recv() == b"a" * 1000 + b"b" * 500 + b"x" * 500 + b"c" * 500


def test_no_sack_blocks_when_sack_was_not_negotiated() -> None:
    """RFC 2018 2: SACK options only if the peer sent SACK-permitted."""
    with peer() as p:
        f = _established(p, sack=False)
        f.send("PA", b"z" * 100, seq=seq_add(f.snd_nxt, 500))
        [a] = f.take()
        assert a.ack == f.snd_nxt and a.sack == [] and a.option("SAck") is None


def test_single_segment_is_acked_after_the_delayed_ack_timeout() -> None:
    """RFC 1122 4.2.3.2: ACKs may be delayed, by less than 0.5 s (40 ms here,
    Linux's minimum); nothing goes out before the timer."""
    with peer() as p:
        f = _established(p)
        t0 = p.now
        f.send("PA", b"hello")
        assert f.take() == []
        p.advance(0.039)
        assert f.take() == []
        p.advance(0.1)
        [ack] = f.take()
        assert ack.ack == f.snd_nxt
        assert abs(ack.t - (t0 + 0.040)) < 1e-9


def test_two_full_segments_are_acked_at_once() -> None:
    """RFC 5681 4.2 / RFC 1122 4.2.3.2: an ACK at least for every second
    full-sized segment, without waiting for the timer."""
    with peer() as p:
        f = _established(p)
        f.send("A", b"1" * MSS)
        assert f.take() == []
        f.send("PA", b"2" * MSS)
        [ack] = f.take()
        assert ack.ack == f.snd_nxt and ack.t == p.now
        # The counter restarts: the third segment waits for the timer again.
        f.send("PA", b"3" * MSS)
        assert f.take() == []


def test_data_is_acked_by_outgoing_data_without_a_pure_ack() -> None:
    """RFC 1122 4.2.3.2: the ACK rides on data the application sends before the timer."""
    with peer() as p:
        f = _established(p)
        f.send("PA", b"ping")
        f.app_send(b"pong")
        [seg] = f.take()
        assert seg.payload == b"pong" and seg.ack == f.snd_nxt
        f.send("A")  # acknowledges "pong"; carries no data, so needs no ACK itself
        p.advance(0.5)
        assert f.take() == []  # no delayed pure ACK for "ping" follows


def test_receiver_window_opens_only_by_mss_or_half_the_buffer() -> None:
    """RFC 9293 3.8.6.2.2 (receiver SWS avoidance): once the window has closed,
    it is reopened only when it can grow by min(RCV.BUFF/2, MSS); a read of a
    few bytes offers no window."""
    with peer() as p:
        p.cfg.rcvbuf = 8192
        f = _established(p, wscale=None)
        assert f.ws_in == 0
        data = bytes(range(256)) * 32  # exactly the buffer
        for off in range(0, 8192, 1024):
            f.send("A", data[off:off + 1024])
        p.advance(0.05)
        acks = f.take()
        assert acks[-1].ack == f.snd_nxt and acks[-1].win == 0
        got = f.app_recv(100)
        assert got == data[:100]
        assert f.take() == []  # 100 bytes free: no window update
        # A probe of the zero window is answered with a window of zero, not 100.
        f.send("A", b"?", seq=f.snd_nxt)
        p.advance(0.05)
        [a] = f.take()
        assert a.win == 0 and a.ack == f.snd_nxt
        got += f.app_recv(MSS - 101)  # free: MSS - 1 < min(4096, MSS)
        assert f.take() == []
        got += f.app_recv(1)  # free: MSS: the window opens, at once
        [upd] = f.take()
        assert upd.win == MSS and upd.ack == f.snd_nxt
        assert got == data[:MSS]


def test_window_never_shrinks() -> None:
    """RFC 9293 3.8.6: the right edge of the offered window does not move left."""
    with peer() as p:
        p.cfg.rcvbuf = 8192
        f = _established(p, wscale=None)
        edges = []
        for i in range(8):
            f.send("PA", bytes(1000))
            p.advance(0.05)
            for a in f.take():
                edges.append(seq_add(a.ack, a.win))
            if i == 3:
                f.app_recv(50)
        assert all(((b - a) & 0xFFFFFFFF) < 1 << 31 for a, b in pairwise(edges))


def test_delayed_ack_echoes_the_timestamp_of_the_first_unacked_segment() -> None:
    """RFC 7323 4.3, example (A) delayed ACKs: "the TSecr field in the ACK will
    be the TSval of the first segment", so the peer's RTT includes the delay."""
    with peer() as p:
        f = _established(p)
        p.advance(1.0)
        f.send("PA", b"a" * 100)
        t1 = f.tsval()
        p.advance(0.01)
        f.send("PA", b"b" * 100)
        p.advance(0.1)
        [ack] = f.take()
        assert ack.ack == f.snd_nxt
        assert ack.tsecr == t1


def test_fin_beyond_a_hole_is_taken_when_the_hole_fills() -> None:
    """RFC 9293 3.10.7.4 eighth check (the FIN is processed in sequence order):
    a FIN after a gap is not consumed until the gap is filled."""
    with peer() as p:
        f = _established(p)
        base = f.snd_nxt
        f.send("FPA", b"tail", seq=seq_add(base, 4))
        [a1] = f.take()
        assert a1.ack == base and state(f.s) is State.ESTABLISHED
        f.send("PA", b"head", seq=base)
        [a2] = f.take()
        assert a2.ack == seq_add(base, 9)  # 8 bytes and the FIN
        assert state(f.s) is State.CLOSE_WAIT
        assert f.app_recv() == b"headtail"
        assert f.app_recv() == b""


def test_data_beyond_the_window_is_trimmed() -> None:
    """RFC 9293 3.10.7.4 first check: only the part of a segment inside the
    receive window is kept; the ACK covers exactly that."""
    with peer() as p:
        p.cfg.rcvbuf = 4096
        f = _established(p, wscale=None)
        f.send("A", bytes(MSS))
        f.send("A", bytes(MSS))
        f.send("PA", bytes(MSS))  # 4096 - 2 * 1448 = 1200 bytes fit
        p.advance(0.05)
        acks = f.take()
        assert acks[-1].ack == seq_add(f.snd_nxt, -(MSS - 1200))
        assert acks[-1].win == 0
        assert len(f.app_recv()) == 4096


def test_duplicate_segment_is_acknowledged_at_once() -> None:
    """RFC 9293 3.10.7.4 first check: a segment wholly below RCV.NXT is not
    acceptable; "an acknowledgment should be sent in reply" (no delay), and
    its data is not delivered twice."""
    with peer() as p:
        f = _established(p)
        old = f.snd_nxt
        f.send("PA", b"abc")
        p.advance(0.1)
        f.take()
        f.send("PA", b"abc", seq=old)
        [ack] = f.take()
        assert ack.ack == f.snd_nxt and ack.t == p.now
        assert f.app_recv() == b"abc"


def test_sack_option_holds_three_blocks_with_timestamps_four_without() -> None:
    """RFC 2018 3: the option space limits SACK to 3 blocks next to timestamps
    (and 4 without); the block with the latest segment comes first and the
    rest repeat the most recently reported blocks (RFC 2018 4)."""
    for ts, limit in ((True, 3), (False, 4)):
        with peer() as p:
            f = _established(p, ts=ts)
            base = f.snd_nxt
            starts = [200, 600, 1000, 1400, 1800]
            for k in starts:
                f.send("PA", b"z" * 100, seq=seq_add(base, k))
            last = f.take()[-1]
            want = [(seq_add(base, k), seq_add(base, k + 100)) for k in reversed(starts)]
            assert last.sack == want[:limit]
            assert len(last.raw_options) <= 40


def test_established_segments_carry_timestamps_echoing_ts_recent() -> None:
    """RFC 7323 3.2: once negotiated, every segment but a RST carries the
    timestamps option (here in the NOP NOP TS layout of RFC 7323 appendix A),
    TSecr echoing the peer's latest in-sequence TSval."""
    with peer() as p:
        f = _established(p)
        p.advance(2.0)
        f.send("PA", b"q")
        sent_ts = f.tsval()
        f.app_send(b"r")
        [seg] = f.take()
        assert seg.tsval is not None
        assert seg.raw_options == bytes((1, 1, 8, 10)) + seg.tsval.to_bytes(4, "big") + (
            sent_ts.to_bytes(4, "big"))


def test_out_of_order_train_in_one_batch_gets_three_dup_acks_then_one() -> None:
    """RFC 5681 4.2 (an out-of-order segment is ACKed at once) within one
    receive batch: the first three duplicate ACKs per RCV.NXT go one per
    segment (what a sender counting them needs, RFC 5681 3.2), the rest of
    the batch shares one ACK carrying the newest SACK block (RFC 2018 4), as
    Linux compresses SACKs.  A hole partly filled starts the count again."""
    with peer() as p:
        f = _established(p)
        base = f.snd_nxt
        # Segment 0 lost; segments 1..10 arrive in one batch.
        p.inject(*(f.build("A", bytes([k]) * MSS, seq=seq_add(base, k * MSS))
                   for k in range(1, 11)))
        acks = f.take()
        assert [a.ack for a in acks] == [base] * 4
        assert [a.sack[0] for a in acks] == [
            (seq_add(base, MSS), seq_add(base, k * MSS)) for k in (2, 3, 4, 11)]
        assert all(a.t == p.now for a in acks)
        # The next batch: segment 0 arrives, then 12..20 with 11 still missing.
        p.inject(f.build("A", bytes([0]) * MSS, seq=base),
                 *(f.build("A", bytes([k]) * MSS, seq=seq_add(base, k * MSS))
                   for k in range(12, 21)))
        acks = f.take()
        top = seq_add(base, 11 * MSS)
        assert acks[0].ack == top and acks[0].sack == []  # the hole filled: at once
        assert [a.ack for a in acks[1:]] == [top] * 4
        assert acks[-1].sack == [(seq_add(base, 12 * MSS), seq_add(base, 21 * MSS))]
        assert len(acks) == 5


def test_out_of_order_train_without_sack_gets_a_dup_ack_per_segment() -> None:
    """RFC 5681 4.2 without SACK: duplicate ACKs are all a sender learns
    (RFC 5681 3.2), so each out-of-order segment of a batch gets its own."""
    with peer() as p:
        f = _established(p, sack=False)
        base = f.snd_nxt
        p.inject(*(f.build("A", b"x" * MSS, seq=seq_add(base, k * MSS)) for k in range(1, 11)))
        acks = f.take()
        assert [a.ack for a in acks] == [base] * 10


def test_out_of_order_segments_in_other_blocks_are_each_acked() -> None:
    """RFC 2018 4: an option holds three blocks (with timestamps), the most
    recent first.  Within a batch only a segment extending the first block
    shares the batch's ACK; one opening or filling another block is ACKed as
    it comes, so no block changed since the last ACK drops out unreported
    (the sender would take its data for lost and send it again)."""
    with peer() as p:
        f = _established(p)
        base = f.snd_nxt

        def seg(k: int) -> bytes:
            return bytes(f.build("A", bytes([k]) * MSS, seq=seq_add(base, k * MSS)))

        p.inject(*(seg(k) for k in range(1, 6)))  # (the three dup ACKs and one)
        assert len(f.take()) == 4
        # One batch: five new blocks, each ACKed; then two segments extending
        # the last share one ACK.
        p.inject(*(seg(k) for k in (7, 9, 11, 13, 15, 16, 17)))
        acks = f.take()
        assert [a.sack[0] for a in acks] == [
            (seq_add(base, k * MSS), seq_add(base, (k + 1) * MSS)) for k in (7, 9, 11, 13, 15)
        ] + [(seq_add(base, 15 * MSS), seq_add(base, 18 * MSS))]
        reported = {b for a in acks for b in a.sack}
        for k in (7, 9, 11, 13):
            assert (seq_add(base, k * MSS), seq_add(base, (k + 1) * MSS)) in reported


def _rounds(p: Peer, f: Flow, rtt: float, rounds: int, read: bool) -> list[int]:
    """A sender filling the window we advertise once per round trip (its
    congestion window never the limit); the windows we advertised."""
    seg = 60_000
    wins = []
    last = f.take()[-1]
    for _ in range(rounds):
        last = ([last, *f.take()])[-1]  # (none when nothing was sent)
        wins.append(f.window(last))
        room = (last.ack + f.window(last) - f.snd_nxt) & 0xFFFFFFFF
        while seg <= room < 1 << 30:
            f.send("A", b"d" * seg)
            room -= seg
            if read:
                f.app_recv()
        p.advance(rtt)
    return wins


def test_receive_buffer_grows_while_the_application_keeps_up() -> None:
    """Receive buffer autotuning (Linux's dynamic right-sizing): a window
    fixed at the 1 MB buffer caps a sender at 1 MB per round trip (25 MB/s
    over 40 ms).  While the application reads what arrives, the buffer and
    the window grow, once per round trip, up to rcvbuf_max (the window scale
    chosen for it, RFC 7323 2.3); the right edge never moves left."""
    with peer(mtu=65000) as p:
        rtt = 0.04
        f = p.connect(delay=rtt)  # the stack's RTT sample: 40 ms
        assert f.ws_in == 7  # 6 MB needs 65535 << 7
        f.send("A", b"d" * 1000)
        p.advance(rtt)  # (its delayed ACK: the first window after data)
        wins = _rounds(p, f, rtt, 8, read=True)
        assert wins[1] <= 1 << 20 < wins[-1]
        assert wins[-1] > 4 << 20 and f.s.conn.cfg.rcvbuf <= 6 << 20
        assert all(b >= a - 60_000 for a, b in pairwise(wins))


def test_receive_buffer_stays_when_the_application_does_not_read() -> None:
    """Autotuning grows the buffer by what the application read: one that
    does not read keeps its 1 MB (the window closes as the buffer fills)."""
    with peer(mtu=65000) as p:
        rtt = 0.04
        f = p.connect(delay=rtt)
        f.send("A", b"d" * 1000)
        p.advance(rtt)
        _rounds(p, f, rtt, 4, read=False)
        assert f.s.conn.cfg.rcvbuf == 1 << 20
        assert f.s.conn.rcvq.free() < 60_000
