"""ICMP errors about our TCP segments.

RFC 9293 3.9.2.2, RFC 1122 4.2.3.9 and RFC 5461 (protocol and port unreachable
abort an opening connection; other errors are soft: reported, not fatal, the
error the application sees if the connection later times out), RFC 1191
(fragmentation needed lowers the MSS), RFC 5927 4.1 (an error must quote a
sequence number in SND.UNA..SND.NXT or it is ignored).
"""

from __future__ import annotations

import errno

import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.packet import Packet
from tcp_peer import OUR_IP, PEER_IP, PEER_ISN, Flow, Peer, Seg, peer, seq_add, state

from ustack.tcp.connection import Event
from ustack.tcp.states import State

MSS = 1448


def _icmp_about(p: Peer, seg: Seg, code: int, mtu: int = 0) -> Packet:
    """A destination unreachable from the peer quoting ``seg`` (header + 8 bytes and more)."""
    quote = bytes(seg.pkt[IP])[:20 + 20 + 8]
    pkt: Packet = p.ip() / ICMP(type=3, code=code, nexthopmtu=mtu) / quote
    return pkt


def _icmp_quoting_seq(p: Peer, f: Flow, seq: int, code: int, mtu: int = 0) -> Packet:
    quoted = IP(src=OUR_IP, dst=PEER_IP) / TCP(sport=f.dport, dport=f.sport, seq=seq,
                                               ack=f.snd_nxt, flags="A")
    pkt: Packet = p.ip() / ICMP(type=3, code=code, nexthopmtu=mtu) / bytes(quoted)[:28]
    return pkt


@pytest.mark.parametrize(("code", "err", "exc"), [(2, errno.ENOPROTOOPT, OSError),
                                                (3, errno.ECONNREFUSED, ConnectionRefusedError)],
                         ids=["protocol", "port"])
def test_hard_error_in_syn_sent_aborts_at_once(code: int, err: int, exc: type) -> None:
    """RFC 9293 3.9.2.2 SHLD-26 / RFC 5461 4, as Linux: protocol or port
    unreachable while the connection opens means nothing will answer:
    abort at once with that error (no more SYNs), counted TcpAttemptFails."""
    with peer() as p:
        sock = p.stack.tcp_connect((PEER_IP, 80))
        ev = p.events(sock)
        p.flush()
        [syn] = p.take()
        p.inject(_icmp_about(p, syn, code=code))
        assert state(sock) is State.CLOSED
        assert sock.conn.error == err and sock.error == err
        assert Event.CLOSED in ev and Event.SOFT_ERROR not in ev
        assert p.stack.counters.TcpAttemptFails == 1
        assert not p.stack.tcp.connections()
        p.run_to(300.0)
        assert p.take() == []  # the SYN is not retransmitted
        with pytest.raises(exc) as e:
            sock.recv()
        assert e.value.errno == err


@pytest.mark.parametrize(("code", "err"), [(0, errno.ENETUNREACH), (1, errno.EHOSTUNREACH),
                                           (13, errno.EHOSTUNREACH)],
                         ids=["net", "host", "prohibited"])
def test_soft_error_in_syn_sent_is_reported_at_timeout(code: int, err: int) -> None:
    """RFC 9293 3.9.2.2 MUST-56 / RFC 1122 4.2.3.9: net or host unreachable
    (and the codes that are not hard errors) are soft: the SYN keeps being
    retransmitted, and when the open finally times out the application
    gets that error, not ETIMEDOUT."""
    with peer() as p:
        sock = p.stack.tcp_connect((PEER_IP, 80))
        ev = p.events(sock)
        p.flush()
        [syn] = p.take()
        p.inject(_icmp_about(p, syn, code=code))
        assert state(sock) is State.SYN_SENT
        assert Event.SOFT_ERROR in ev
        assert sock.error == err  # SO_ERROR shows the soft error
        p.run_to(300.0)
        assert [round(s.t, 6) for s in p.take()] == [1, 3, 7, 15, 31, 63, 127]
        assert state(sock) is State.CLOSED
        assert sock.conn.error == err
        assert Event.TIMED_OUT in ev
        with pytest.raises(OSError) as e:
            sock.recv()
        assert e.value.errno == err


def test_soft_error_in_established_is_reported_at_timeout() -> None:
    """RFC 5461 4: in a synchronized state even port unreachable is soft;
    when the retransmissions then run out, the connection fails with it."""
    with peer() as p:
        p.cfg.retries2 = 3
        f = p.accept()
        f.app_send(b"x" * 100)
        [seg] = f.take()
        p.inject(_icmp_about(p, seg, code=3))
        assert state(f.s) is State.ESTABLISHED
        p.run_to(p.now + 120.0)
        assert state(f.s) is State.CLOSED
        assert f.s.conn.error == errno.ECONNREFUSED
        assert p.stack.counters.TcpAttemptFails == 0


def test_syn_ack_after_icmp_error_still_connects() -> None:
    """RFC 5461: a soft error does not stop the handshake from completing."""
    with peer() as p:
        sock = p.stack.tcp_connect((PEER_IP, 80))
        p.flush()
        [syn] = p.take()
        p.inject(_icmp_about(p, syn, code=1))  # host unreachable
        f = Flow(p, 80, syn.tcp.sport, PEER_ISN)
        f.rcv_nxt = seq_add(syn.seq, 1)
        f.send("SA")
        assert state(sock) is State.ESTABLISHED


def test_icmp_error_in_established_does_not_abort() -> None:
    """RFC 5461 4 / RFC 1122 4.2.3.9: in a synchronized state, even a "hard"
    ICMP error (port unreachable) only sets the soft error."""
    with peer() as p:
        f = p.accept()
        f.app_send(b"x" * 100)
        [seg] = f.take()
        p.inject(_icmp_about(p, seg, code=3))
        assert state(f.s) is State.ESTABLISHED
        f.send("A")
        f.app_send(b"still up")
        assert f.take()[0].payload == b"still up"


def test_fragmentation_needed_lowers_the_mss() -> None:
    """RFC 1191 6.5 / RFC 1122 4.2.3.9: "fragmentation needed" with a next-hop
    MTU makes later segments fit it (MTU - 40 - the 12 bytes of timestamps);
    the retransmission of the too-big segment is cut to the new size."""
    with peer() as p:
        p.cfg.tlp = False  # the RTO alone (RFC 6298), no tail loss probe before it
        f = p.accept()
        f.app_send(bytes(MSS))
        [big] = f.take()
        p.inject(_icmp_about(p, big, code=4, mtu=1000))
        assert f.s.stats()["mss"] == 1000 - 40 - 12
        f.app_send(bytes(3000))
        sizes = [len(s.payload) for s in f.take()]
        assert sizes and max(sizes) <= 948
        p.run_to(p.now + 0.2)
        rtx = [s for s in f.take() if s.seq == big.seq]
        assert rtx and len(rtx[0].payload) == 948


@pytest.mark.parametrize("mtu", [1500, 9000], ids=["same", "larger"])
def test_fragmentation_needed_with_useless_mtu_changes_nothing(mtu: int) -> None:
    """RFC 1191 6.3: an MTU not below the current path MTU does not lower
    the MSS (and never raises it)."""
    with peer() as p:
        f = p.accept()
        f.app_send(bytes(100))
        [seg] = f.take()
        p.inject(_icmp_about(p, seg, code=4, mtu=mtu))
        assert f.s.stats()["mss"] == MSS


@pytest.mark.parametrize(("mtu", "size", "want"), [(40, 100, 552), (0, 100, 552),
                                                   (0, MSS, 1492), (300, MSS, 552)],
                         ids=["tiny", "none-small", "none-plateau", "below-floor"])
def test_fragmentation_needed_below_the_floor_or_without_mtu(mtu: int, size: int,
                                                              want: int) -> None:
    """An MTU below 552 is taken as 552 (Linux's ip_rt_min_pmtu: a forged
    error cannot shrink segments to nothing, RFC 5927 7); none at all (an
    old router, RFC 1191 7) is the plateau below the quoted datagram's
    length, within the same floor."""
    with peer() as p:
        f = p.accept()
        f.app_send(bytes(size))
        [seg] = f.take()
        p.inject(_icmp_about(p, seg, code=4, mtu=mtu))
        assert f.s.stats()["mss"] == want - 40 - 12


@pytest.mark.parametrize(("where", "code"), [(-1, 3), (0, 3), (100, 3), (1 << 20, 3), (-1, 4),
                                             (0, 4), (1 << 20, 4)],
                         ids=["below-una", "at-nxt", "above-nxt", "far", "pmtu-below",
                              "pmtu-at-nxt", "pmtu-far"])
def test_icmp_error_quoting_sequence_outside_flight_is_ignored(where: int, code: int) -> None:
    """RFC 5927 4.1: an ICMP error whose quoted sequence number is not in
    SND.UNA =< SEG.SEQ < SND.NXT cannot be about a segment in flight: ignore
    it (no soft error, no MSS change), counted as Linux does."""
    with peer() as p:
        f = p.accept()
        ev = p.events(f.s)
        f.app_send(bytes(50))
        [seg] = f.take()
        una, nxt = seg.seq, seg.end
        seq = seq_add(una, where) if where < 0 else seq_add(nxt, where)
        p.inject(_icmp_quoting_seq(p, f, seq, code, mtu=600))
        assert Event.SOFT_ERROR not in ev and f.s.error == 0
        assert f.s.stats()["mss"] == MSS
        assert p.stack.counters.TcpExtOutOfWindowIcmps == 1
        # The same error quoting SND.UNA is believed.
        p.inject(_icmp_quoting_seq(p, f, una, code, mtu=600))
        if code == 4:
            assert f.s.stats()["mss"] == 600 - 40 - 12
        else:
            assert Event.SOFT_ERROR in ev and f.s.error == errno.ECONNREFUSED
