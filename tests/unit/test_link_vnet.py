"""The virtio-net header: partial checksums completed exactly as scapy computes them."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from ustack.link import vnet
from ustack.wire.checksum import fold, pseudo_header_sum

ETH = 14


def partial(pkt: Ether, l4_off: int) -> tuple[bytes, int]:
    """The frame as a kernel with checksum offload hands it over: the
    transport checksum field holds the folded pseudo-header sum (not
    complemented).  Returns the frame and the offset of that field."""
    raw = bytearray(bytes(pkt))
    proto, field = (6, 16) if TCP in pkt else (17, 6)
    src, dst = bytes(raw[ETH + 12 : ETH + 16]), bytes(raw[ETH + 16 : ETH + 20])
    s = fold(pseudo_header_sum(src, dst, proto, len(raw) - ETH - l4_off))
    struct.pack_into("!H", raw, ETH + l4_off + field, s)
    return bytes(raw), field


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=1500), tcp=st.booleans(), hlen=st.sampled_from([10, 12]))
def test_completed_checksum_matches_scapy(payload: bytes, tcp: bool, hlen: int) -> None:
    l4 = TCP(sport=80, dport=4321, flags="PA") if tcp else UDP(sport=53, dport=4321)
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    pkt = eth / IP(src="198.18.0.1", dst="198.18.0.2") / l4 / payload
    expected = bytes(pkt)  # scapy fills in the full checksum
    frame, field = partial(Ether(expected), 20)
    hdr = vnet.gso_header(hlen, csum_start=ETH + 20, csum_offset=field)
    got, completed = vnet.strip_rx(hdr + frame, hlen)
    assert completed
    c = struct.unpack_from("!H", expected, ETH + 20 + field)[0]
    if c == 0:  # scapy may leave 0 where the rule is 0xFFFF; equal in one's complement
        expected = expected[: ETH + 20 + field] + b"\xff\xff" + expected[ETH + 22 + field :]
    assert got == expected


def test_plain_frames_pass_unchanged() -> None:
    frame = bytes(range(60))
    for hlen in (10, 12):
        got, completed = vnet.strip_rx(vnet.zero_header(hlen) + frame, hlen)
        assert (got, completed) == (frame, False)


def test_bad_offsets_are_refused_not_raised() -> None:
    frame = bytes(60)
    hdr = vnet.gso_header(10, csum_start=50, csum_offset=9)  # field ends past the frame
    assert vnet.strip_rx(hdr + frame, 10) == (None, False)
    assert vnet.strip_rx(b"\x01\x00", 10) == (None, False)  # shorter than a header


def test_header_layout() -> None:
    h = vnet.gso_header(
        12, csum_start=34, csum_offset=16, gso_type=vnet.GSO_TCPV4, gso_size=1448, hdr_len=66
    )
    assert len(h) == 12
    assert struct.unpack("<BBHHHHH", h) == (1, 1, 66, 1448, 34, 16, 0)
    assert len(vnet.gso_header(10, csum_start=0, csum_offset=0)) == 10
    with pytest.raises(ValueError):
        vnet.gso_header(11, csum_start=0, csum_offset=0)
