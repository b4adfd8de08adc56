"""ustack.wire.arp against scapy and dpkt."""

from __future__ import annotations

import socket

import dpkt  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.l2 import ARP

from ustack.wire import ParseError, arp, ethernet

SETTINGS = settings(max_examples=100, deadline=None)

macs = st.binary(min_size=6, max_size=6)
ips = st.binary(min_size=4, max_size=4)
ops = st.sampled_from([arp.OP_REQUEST, arp.OP_REPLY])


@SETTINGS
@given(ops, macs, ips, macs, ips)
def test_build_parses_in_scapy_and_dpkt(
    op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes
) -> None:
    pkt = arp.build(op, sha, spa, tha, tpa)
    assert len(pkt) == arp.LEN
    s = ARP(pkt)
    assert (s.hwtype, s.ptype, s.hwlen, s.plen, s.op) == (1, 0x0800, 6, 4, op)
    assert s.hwsrc == ethernet.mac_to_str(sha) and s.hwdst == ethernet.mac_to_str(tha)
    assert s.psrc == socket.inet_ntoa(spa) and s.pdst == socket.inet_ntoa(tpa)
    d = dpkt.arp.ARP(pkt)
    assert (d.hrd, d.pro, d.hln, d.pln, d.op) == (1, 0x0800, 6, 4, op)
    assert (d.sha, d.spa, d.tha, d.tpa) == (sha, spa, tha, tpa)


@SETTINGS
@given(ops, macs, ips, macs, ips, st.binary(max_size=18))
def test_scapy_packets_parse(
    op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes, padding: bytes
) -> None:
    pkt = bytes(ARP(op=op, hwsrc=ethernet.mac_to_str(sha), psrc=socket.inet_ntoa(spa),
                    hwdst=ethernet.mac_to_str(tha), pdst=socket.inet_ntoa(tpa)))
    # Trailing Ethernet padding is ignored.
    p = arp.parse(memoryview(pkt + padding))
    assert p == (op, sha, spa, tha, tpa)
    assert (p.op, p.sha, p.spa, p.tha, p.tpa) == (op, sha, spa, tha, tpa)


def _valid() -> bytearray:
    return bytearray(arp.build(1, b"\x02" * 6, b"\xc6\x12\x00\x01", bytes(6), b"\xc6\x12\x00\x02"))


@pytest.mark.parametrize(
    ("offset", "value", "reason"),
    [(1, 6, "arp_format"), (2, 0x86, "arp_format"), (4, 8, "arp_format"),
     (5, 16, "arp_format"), (7, 3, "arp_op"), (7, 0, "arp_op")],
)
def test_reasons(offset: int, value: int, reason: str) -> None:
    pkt = _valid()
    pkt[offset] = value
    with pytest.raises(ParseError) as e:
        arp.parse(pkt)
    assert e.value.reason == reason


def test_short() -> None:
    with pytest.raises(ParseError) as e:
        arp.parse(bytes(_valid())[:27])
    assert e.value.reason == "arp_short"
