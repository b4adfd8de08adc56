"""ustack.wire.ipv4 against scapy and dpkt."""

from __future__ import annotations

import socket

import dpkt  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.inet import IP, IPOption_NOP, IPOption_RR
from scapy.packet import Raw

from ustack.wire import ParseError, ipv4

SETTINGS = settings(max_examples=100, deadline=None)

addrs = st.binary(min_size=4, max_size=4)
# Protocols neither oracle decodes, so the payload comes back as raw bytes.
protos = st.sampled_from([253, 254, 59])
payloads = st.binary(max_size=300)
flag_values = st.sampled_from([0, ipv4.FLAG_DF, ipv4.FLAG_MF, ipv4.FLAG_DF | ipv4.FLAG_MF])
frag_offsets = st.integers(0, ipv4.OFFSET_MASK).map(lambda u: u * 8)
# Option bytes: NOPs and a record-route option, padded by the builder.
options = st.one_of(
    st.just(b""),
    st.integers(1, 40).map(lambda n: b"\x01" * n),
    st.integers(1, 9).map(lambda n: bytes([7, 3 + 4 * n, 4]) + bytes(4 * n)),
)


def scapy_checksum_ok(frame: bytes) -> int:
    """The checksum scapy computes for ``frame`` with its checksum removed."""
    p = IP(frame)
    del p.chksum
    return int(IP(raw(p)).chksum)


@SETTINGS
@given(addrs, addrs, protos, payloads, st.integers(0, 0xFFFF), flag_values, frag_offsets,
       st.integers(0, 255), st.integers(0, 255), options)
def test_build_parses_in_scapy_and_dpkt(
    src: bytes, dst: bytes, proto: int, pl: bytes, ident: int, flags: int, frag: int,
    ttl: int, tos: int, opts: bytes,
) -> None:
    d = ipv4.build(src, dst, proto, pl, ident=ident, flags=flags, frag_offset=frag,
                   ttl=ttl, tos=tos, options=opts)
    hl = 20 + (len(opts) + 3) // 4 * 4
    assert len(d) == hl + len(pl)
    s = IP(d)
    assert (s.version, s.ihl * 4, s.tos, s.len, s.id) == (4, hl, tos, len(d), ident)
    assert (int(s.flags) << 13, s.frag * 8, s.ttl, s.proto) == (flags, frag, ttl, proto)
    assert (s.src, s.dst) == (socket.inet_ntoa(src), socket.inet_ntoa(dst))
    assert s.chksum == scapy_checksum_ok(d)
    assert bytes(s.payload) == pl
    dp = dpkt.ip.IP(d)
    assert (dp.v, dp.hl * 4, dp.tos, dp.len, dp.id, dp.ttl, dp.p) == (
        4, hl, tos, len(d), ident, ttl, proto)
    # dpkt counts the offset in 8-byte units.
    assert (dp.df, dp.mf, dp.offset * 8) == (bool(flags & 0x4000), bool(flags & 0x2000), frag)
    assert (dp.src, dp.dst) == (src, dst)
    assert dpkt.in_cksum(d[:hl]) == 0
    assert bytes(dp.data) == pl
    # And back through our own parser.
    h = ipv4.parse(d)
    assert (h.header_len, h.total_length, h.flags, h.frag_offset) == (hl, len(d), flags, frag)
    assert h.dont_fragment == bool(flags & ipv4.FLAG_DF)
    assert h.more_fragments == bool(flags & ipv4.FLAG_MF)
    assert h.options == d[20:hl]


@SETTINGS
@given(addrs, addrs, protos, payloads, st.integers(0, 0xFFFF), flag_values, frag_offsets,
       st.integers(0, 255), st.integers(0, 8))
def test_pack_header_into_matches_build(
    src: bytes, dst: bytes, proto: int, pl: bytes, ident: int, flags: int, frag: int,
    ttl: int, off: int,
) -> None:
    buf = bytearray(off + 20 + len(pl))
    hl = ipv4.pack_header_into(buf, off, src=src, dst=dst, proto=proto,
                               total_length=20 + len(pl), ident=ident, flags=flags,
                               frag_offset=frag, ttl=ttl)
    assert hl == 20
    buf[off + 20 :] = pl
    assert bytes(buf[off:]) == ipv4.build(src, dst, proto, pl, ident=ident, flags=flags,
                                          frag_offset=frag, ttl=ttl)


@SETTINGS
@given(addrs, addrs, st.integers(0, 255), payloads, st.integers(0, 0xFFFF),
       st.integers(0, 7), st.integers(0, ipv4.OFFSET_MASK), st.integers(0, 255),
       st.integers(0, 255), st.binary(max_size=20))
def test_scapy_packets_parse(
    src: bytes, dst: bytes, proto: int, pl: bytes, ident: int, sflags: int, frag: int,
    ttl: int, tos: int, padding: bytes,
) -> None:
    d = raw(IP(src=socket.inet_ntoa(src), dst=socket.inet_ntoa(dst), proto=proto, id=ident,
               flags=sflags, frag=frag, ttl=ttl, tos=tos) / Raw(pl))
    # Trailing link padding after total_length is allowed and ignored.
    h = ipv4.parse(bytearray(d + padding))
    assert (h.header_len, h.tos, h.total_length, h.ident) == (20, tos, 20 + len(pl), ident)
    assert (h.flags, h.frag_offset, h.ttl, h.proto) == ((sflags << 13) & 0xE000, frag * 8,
                                                       ttl, proto)
    assert (h.src, h.dst, h.options) == (src, dst, b"")
    assert h.checksum == IP(d).chksum


def test_options_record_route_payload_offset() -> None:
    pkt = IP(src="198.18.0.1", dst="198.18.0.2", proto=253,
             options=[IPOption_NOP(), IPOption_RR(routers=["198.18.0.9", "198.18.0.10"])])
    d = raw(pkt / Raw(b"PAYLOAD!"))
    h = ipv4.parse(memoryview(d))
    assert h.header_len == IP(d).ihl * 4 > 20
    assert d[h.header_len : h.total_length] == b"PAYLOAD!"
    assert h.options == d[20 : h.header_len]
    assert h.options[1] == 7  # record route after the NOP


def test_options_too_long() -> None:
    with pytest.raises(ValueError):
        ipv4.build(bytes(4), bytes(4), 253, b"", options=b"\x01" * 41)


def _valid() -> bytes:
    return ipv4.build(b"\xc6\x12\x00\x01", b"\xc6\x12\x00\x02", 253, b"x" * 20)


def _resum(d: bytearray) -> bytearray:
    hl = (d[0] & 15) * 4
    d[10:12] = b"\x00\x00"
    d[10:12] = dpkt.in_cksum(bytes(d[:hl])).to_bytes(2, "big")
    return d


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d[:19], "ipv4_short"),
        (lambda d: _resum(bytearray(b"\x65") + d[1:]), "ipv4_version"),
        (lambda d: _resum(bytearray(b"\x44") + d[1:]), "ipv4_header_len"),
        (lambda d: bytearray(b"\x4f") + d[1:], "ipv4_short"),
        (lambda d: _resum(d[:2] + b"\x00\x13" + d[4:]), "ipv4_total_length"),
        (lambda d: _resum(d[:2] + b"\x00\x29" + d[4:]), "ipv4_total_length"),
        (lambda d: d[:8] + bytes([d[8] ^ 1]) + d[9:], "ipv4_checksum"),
    ],
)
def test_reasons(mutate: object, reason: str) -> None:
    bad = mutate(bytearray(_valid()))  # type: ignore[operator]
    with pytest.raises(ParseError) as e:
        ipv4.parse(bytes(bad))
    assert e.value.reason == reason


def test_checksum_not_verified_on_request() -> None:
    d = bytearray(_valid())
    d[8] ^= 1
    assert ipv4.parse(d, verify_checksum=False).ttl == 64 ^ 1


def test_address_helpers() -> None:
    assert ipv4.addr_from_str("198.18.0.2") == b"\xc6\x12\x00\x02"
    assert ipv4.addr_to_str(b"\xc6\x12\x00\x02") == "198.18.0.2"
    assert ipv4.parse_cidr("198.18.0.2/24") == (b"\xc6\x12\x00\x02", 24)
    assert ipv4.parse_cidr("198.19.255.255/15") == (b"\xc6\x13\xff\xff", 15)
    for bad in ["", "1.2.3", "1.2.3.256", "1.2.3.4.5", "01.2.3.4", "a.b.c.d", " 1.2.3.4"]:
        with pytest.raises(ValueError, match="IPv4"):
            ipv4.addr_from_str(bad)
    for bad in ["198.18.0.2", "198.18.0.2/33", "198.18.0.2/", "198.18.0.2/x", "1.2.3/8",
                "198.18.0.2/-1", "198.18.0.2/\uff12"]:
        with pytest.raises(ValueError):
            ipv4.parse_cidr(bad)
    with pytest.raises(ValueError):
        ipv4.addr_to_str(b"\x01\x02\x03")
