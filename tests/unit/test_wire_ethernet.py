"""ustack.wire.ethernet against scapy and dpkt."""

from __future__ import annotations

import dpkt  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from ustack.wire import ParseError, ethernet

SETTINGS = settings(max_examples=100, deadline=None)

macs = st.binary(min_size=6, max_size=6)
# Ethernet II types (>= 0x600) that neither oracle decodes further, so the
# payload comes back as raw bytes from both.
_DECODED = {*dpkt.ethernet.Ethernet._typesw, 0x8100, 0x88A8, 0x9100, 0x8847, 0x8848}
ethertypes = st.integers(0x0600, 0xFFFF).filter(lambda t: t not in _DECODED)
payloads = st.binary(max_size=200)


@SETTINGS
@given(macs, macs, ethertypes, payloads)
def test_build_parses_in_scapy_and_dpkt(dst: bytes, src: bytes, et: int, pl: bytes) -> None:
    frame = ethernet.build(dst, src, et, pl)
    assert len(frame) == ethernet.HEADER_LEN + len(pl)
    s = Ether(frame)
    assert (s.dst, s.src, s.type) == (ethernet.mac_to_str(dst), ethernet.mac_to_str(src), et)
    assert bytes(s.payload) == pl
    d = dpkt.ethernet.Ethernet(frame)
    assert (d.dst, d.src, d.type) == (dst, src, et)
    assert bytes(d.data) == pl


@SETTINGS
@given(macs, macs, ethertypes, payloads, st.integers(0, 8))
def test_pack_header_into_matches_build(
    dst: bytes, src: bytes, et: int, pl: bytes, off: int
) -> None:
    buf = bytearray(off + 14 + len(pl))
    ethernet.pack_header_into(buf, off, dst, src, et)
    buf[off + 14 :] = pl
    assert bytes(buf[off:]) == ethernet.build(dst, src, et, pl)


@SETTINGS
@given(macs, macs, ethertypes, payloads)
def test_scapy_frames_parse(dst: bytes, src: bytes, et: int, pl: bytes) -> None:
    frame = bytes(
        Ether(dst=ethernet.mac_to_str(dst), src=ethernet.mac_to_str(src), type=et) / Raw(pl)
    )
    for view in (frame, bytearray(frame), memoryview(frame)):
        h = ethernet.parse(view)
        assert h == (dst, src, et)
        assert (h.dst, h.src, h.ethertype) == (dst, src, et)


def test_short_frame() -> None:
    with pytest.raises(ParseError) as e:
        ethernet.parse(b"\x00" * 13)
    assert e.value.reason == "eth_short"


@SETTINGS
@given(macs)
def test_mac_str_round_trip(mac: bytes) -> None:
    text = ethernet.mac_to_str(mac)
    assert len(text) == 17
    assert ethernet.mac_from_str(text) == mac
    assert ethernet.mac_from_str(text.upper().replace(":", "-")) == mac
    assert ethernet.is_multicast(mac) == bool(mac[0] & 1)


@pytest.mark.parametrize(
    "bad", ["", "00:11:22:33:44", "00:11:22:33:44:55:66", "00:11:22:33:44:gg",
            "001:1:22:33:44:55", "+1:11:22:33:44:55", " 1:11:22:33:44:55", "0x:11:22:33:44:55"]
)
def test_mac_from_str_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="MAC"):
        ethernet.mac_from_str(bad)


def test_multicast_bits() -> None:
    assert ethernet.is_multicast(ethernet.BROADCAST)
    assert ethernet.is_multicast(bytes.fromhex("01005e000001"))
    assert not ethernet.is_multicast(bytes.fromhex("020000000001"))
