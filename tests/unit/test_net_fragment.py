"""Fragmentation on send (RFC 791 "Fragmentation and Reassembly", RFC 1122 3.3.3)."""

from __future__ import annotations

import os

import pytest
from scapy.layers.inet import IP, UDP, defragment
from scapy.packet import Packet
from test_net_harness import OUR_IP, OUR_MAC, PEER_IP, PEER_MAC, Harness, assert_ip_checksum


def send_and_collect(size: int, mtu: int) -> tuple[bytes, int, list[Packet]]:
    data = os.urandom(size)
    with Harness(mtu=mtu) as h:
        s = h.stack.udp_socket()
        s.bind(("0.0.0.0", 5555))
        s.sendto(data, (PEER_IP, 6666))
        h.poll()
        frames = h.recv()
        raw_lens = [len(bytes(f)) for f in frames]
        creates = h.stack.counters.IpFragCreates
    assert max(raw_lens) <= mtu + 14
    return data, creates, frames


@pytest.mark.parametrize(
    "size,mtu", [(3000, 1500), (8000, 1500), (65507, 1500), (3000, 1006), (600, 68)]
)
def test_large_udp_is_fragmented_and_reassembles(size: int, mtu: int) -> None:
    """RFC 791: every fragment fits the MTU; all but the last carry a multiple
    of 8 data bytes and MF; offsets are contiguous; all share the ident; each
    header has its own valid checksum.  Scapy's defragment (an independent
    reassembler) recovers the datagram with a valid UDP checksum."""
    data, creates, frames = send_and_collect(size, mtu)
    step = (mtu - 20) & ~7
    assert len(frames) == -(-(size + 8) // step) == creates
    ids = {f[IP].id for f in frames}
    assert len(ids) == 1
    expect_off = 0
    for i, f in enumerate(frames):
        ip = f[IP]
        assert (f.src, f.dst) == (OUR_MAC, PEER_MAC)
        assert (ip.src, ip.dst, ip.proto, ip.ihl) == (OUR_IP, PEER_IP, 17, 5)
        assert ip.len <= mtu
        assert_ip_checksum(f)
        assert ip.frag * 8 == expect_off
        last = i == len(frames) - 1
        assert bool(ip.flags.MF) is not last
        assert not ip.flags.DF
        body = len(ip) - 20
        if not last:
            assert body == step and body % 8 == 0
        expect_off += body
    assert expect_off == size + 8
    whole = defragment([f[IP] for f in frames])
    assert len(whole) == 1
    dgram = IP(bytes(whole[0]))
    assert bytes(dgram[UDP].payload) == data
    assert (dgram[UDP].sport, dgram[UDP].dport, dgram[UDP].len) == (5555, 6666, size + 8)
    fresh = dgram.copy()
    del fresh[UDP].chksum
    assert IP(bytes(fresh))[UDP].chksum == dgram[UDP].chksum


def test_datagram_that_fits_is_not_fragmented() -> None:
    """1472 bytes of UDP payload make exactly a 1500-byte datagram: one frame, no MF."""
    _, creates, frames = send_and_collect(1472, 1500)
    assert len(frames) == 1 and creates == 0
    ip = frames[0][IP]
    assert ip.len == 1500 and not ip.flags.MF and ip.frag == 0
    assert_ip_checksum(frames[0])


def test_successive_datagrams_use_different_idents() -> None:
    """RFC 791 / RFC 6864 4.1: fragments of different datagrams must not share
    (src, dst, proto, ident) while they may be in flight."""
    with Harness() as h:
        s = h.stack.udp_socket()
        for _ in range(3):
            s.sendto(b"x" * 2000, (PEER_IP, 9))
        h.poll()
        frames = h.recv()
    ids = [f[IP].id for f in frames]
    assert len(frames) == 6
    assert ids[0] == ids[1] and ids[2] == ids[3] and ids[4] == ids[5]
    assert len({ids[0], ids[2], ids[4]}) == 3
