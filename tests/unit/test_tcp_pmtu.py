"""Path MTU discovery for TCP (RFC 1191), with RFC 5927's checks.

Every segment leaves with DF; a "fragmentation needed" that quotes a
segment in flight lowers the path MTU towards that peer: this connection's
segments shrink at once (what was in flight is resent in the new size) and
connections made later start with it; after 10 minutes the estimate
expires and the MSS comes back.
"""

from __future__ import annotations

from scapy.layers.inet import ICMP, IP
from scapy.packet import Packet
from tcp_peer import PEER_IP, Peer, Seg, peer

from ustack.net.pmtu import PathMtu
from ustack.wire import ipv4 as wip

MSS = 1448  # 1500 - 40 - 12 (timestamps)


def _too_big(p: Peer, seg: Seg, mtu: int) -> Packet:
    quote = bytes(seg.pkt[IP])[:48]
    pkt: Packet = p.ip() / ICMP(type=3, code=4, nexthopmtu=mtu) / quote
    return pkt


def test_every_segment_has_df() -> None:
    """As Linux: DF on TCP (so routers report instead of fragmenting)."""
    with peer() as p:
        f = p.accept()
        f.app_send(b"x" * 3000)
        segs = [f.synack, *f.take()]
        assert all(s.pkt[IP].flags == "DF" for s in segs)


def test_in_flight_data_is_resent_at_once_in_the_new_size() -> None:
    """RFC 1191 / Linux's tcp_simple_retransmit: the segments in flight were
    too big and dropped: they go again now, cut to the path MTU, with no
    wait for the retransmission timeout."""
    with peer() as p:
        f = p.accept()
        f.app_send(bytes(3 * MSS))
        first, *_ = sent = f.take()
        assert [len(s.payload) for s in sent] == [MSS] * 3
        p.inject(_too_big(p, first, 1000))
        rtx = f.take()
        assert rtx and all(s.t == p.now for s in rtx)
        assert all(len(s.payload) <= 1000 - 52 for s in rtx)
        assert rtx[0].seq == first.seq
        assert sum(len(s.payload) for s in rtx) == 3 * MSS  # all of it, in order
        assert f.s.stats()["mss"] == 1000 - 52
        # The peer acknowledges; nothing more needs resending.
        f.send("A")
        p.advance(5.0)
        assert [s for s in f.take() if s.payload] == []


def test_later_connections_start_with_the_path_mtu_until_it_expires() -> None:
    """The estimate is per destination (RFC 1191 5): a new connection to the
    same peer advertises and uses it; RFC 1191 6.3: after 10 minutes it is
    forgotten, and an existing connection's MSS comes back too."""
    with peer() as p:
        f = p.accept()
        f.app_send(bytes(MSS))
        [big] = f.take()
        p.inject(_too_big(p, big, 1280))
        f.take()
        f.send("A")
        g = p.accept(port=81)
        assert g.synack.option("MSS") == 1280 - 40
        g.app_send(bytes(4000))
        assert max(len(s.payload) for s in g.take()) == 1280 - 52
        assert p.stack.ipv4.pmtu.mtu(wip.addr_from_str(PEER_IP), 1500, p.now) == 1280
        p.run_to(p.now + PathMtu.EXPIRES + 1)
        assert f.s.stats()["mss"] == MSS
        h = p.accept(port=82)
        assert h.synack.option("MSS") == 1460


def test_an_error_outside_the_flight_changes_no_path_mtu() -> None:
    """RFC 5927 4.1 before RFC 1191: a "fragmentation needed" quoting a
    sequence number not in flight is ignored, and counted; no estimate is
    kept for the destination either."""
    with peer() as p:
        f = p.accept()
        f.app_send(bytes(MSS))
        [big] = f.take()
        f.send("A")  # acknowledged: no longer in flight
        p.inject(_too_big(p, big, 1000))
        assert f.s.stats()["mss"] == MSS
        assert p.stack.counters.TcpExtOutOfWindowIcmps == 1
        assert not p.stack.ipv4.pmtu.entries


def test_path_mtu_table_rules() -> None:
    t = PathMtu()
    d = b"\xc6\x12\x00\x02"
    assert t.mtu(d, 1500, 0.0) == 1500
    assert t.lower(d, 1400, 1500, 1500, 0.0) == 1400
    assert t.lower(d, 1450, 1500, 1500, 1.0) == 1400  # never raised (RFC 1191 6.3)
    assert t.lower(d, 100, 1500, 1500, 2.0) == 552  # the floor
    assert t.mtu(d, 1000, 3.0) == 552 and t.mtu(d, 500, 3.0) == 500  # the link caps it
    assert t.mtu(d, 1500, 2.0 + PathMtu.EXPIRES) == 1500  # expired
    assert t.lower(d, 0, 1500, 1500, 1000.0) == 1492  # plateau below 1500
    assert t.lower(d, 0, 1006, 1500, 1000.0) == 552  # 508, floored
    for i in range(PathMtu.MAX_ENTRIES + 10):
        t.lower(i.to_bytes(4, "big"), 1000, 1500, 1500, 2000.0)
    assert len(t.entries) == PathMtu.MAX_ENTRIES


def test_segments_carrying_sack_blocks_still_fit_the_mtu() -> None:
    """The MSS allows for the timestamps only: a data segment that also
    carries SACK blocks (we hold out-of-order data of the peer's) has that
    much less payload, as Linux's tcp_current_mss, so with DF it still fits
    the 1500-byte MTU (it was 1528 bytes, fragmented)."""
    with peer() as p:
        f = p.accept()
        for k in range(3):  # three holes: three SACK blocks
            f.send("PA", b"o" * 100, seq=(f.snd_nxt + 200 * (k + 1)) & 0xFFFFFFFF)
        acks = f.take()
        assert acks and len(acks[-1].sack) == 3
        f.app_send(bytes(5 * MSS))
        segs = f.take()
        assert len(segs) >= 5
        assert all(len(s.pkt[IP]) <= 1500 for s in segs), [len(s.pkt[IP]) for s in segs]
        assert all(s.pkt[IP].flags == "DF" for s in segs)
        assert max(len(s.payload) for s in segs) == MSS - 28  # NOP NOP SACK(3 blocks)


def test_segments_carrying_a_dsack_block_still_fit_the_mtu() -> None:
    """A D-SACK block (RFC 2883) rides on the next segment we send, data
    included, with no out-of-order data held: that segment too has less
    payload, and the block still goes (it was 1512 bytes: EMSGSIZE with DF,
    on the faulty-link interop echo)."""
    with peer() as p:
        f = p.accept()
        f.send("PA", b"a" * 100)
        f.take()
        # A duplicate, and the application writes before the stack takes
        # it: the answer is data, carrying the D-SACK.
        dup = f.build("PA", b"a" * 100, seq=(f.snd_nxt - 100) & 0xFFFFFFFF)
        assert p.wire.send_batch([bytes(dup)], p.now) == 1
        f.s.send(bytes(2 * MSS))
        p.poll()
        segs = f.take()
        assert all(len(s.pkt[IP]) <= 1500 for s in segs), [len(s.pkt[IP]) for s in segs]
        dsacked = [s for s in segs if s.sack]
        assert dsacked and len(dsacked[0].payload) == MSS - 12  # NOP NOP SACK(1 block)
