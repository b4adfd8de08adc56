"""ustack.wire.icmp against scapy and dpkt."""

from __future__ import annotations

import socket

import dpkt  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.inet import ICMP, IP, UDP, IPerror, UDPerror
from scapy.packet import Raw

from ustack.wire import ParseError, icmp, ipv4, udp

SETTINGS = settings(max_examples=100, deadline=None)

addrs = st.binary(min_size=4, max_size=4)
u16 = st.integers(0, 0xFFFF)
echo_types = st.sampled_from([icmp.ECHO_REQUEST, icmp.ECHO_REPLY])
errors = st.sampled_from([
    (icmp.DEST_UNREACH, icmp.NET_UNREACH), (icmp.DEST_UNREACH, icmp.HOST_UNREACH),
    (icmp.DEST_UNREACH, icmp.PROTO_UNREACH), (icmp.DEST_UNREACH, icmp.PORT_UNREACH),
    (icmp.DEST_UNREACH, icmp.FRAG_NEEDED), (icmp.TIME_EXCEEDED, icmp.TTL_EXCEEDED),
    (icmp.TIME_EXCEEDED, icmp.REASM_TIME_EXCEEDED),
])


def scapy_recomputed(msg: bytes) -> int:
    p = ICMP(msg)
    del p.chksum
    return int(ICMP(raw(p)).chksum)


@SETTINGS
@given(echo_types, u16, u16, st.binary(max_size=300))
def test_echo_parses_in_scapy_and_dpkt(t: int, ident: int, seq: int, pl: bytes) -> None:
    m = icmp.build_echo(t, ident, seq, pl)
    s = ICMP(m)
    assert (s.type, s.code, s.id, s.seq) == (t, 0, ident, seq)
    assert bytes(s.payload) == pl
    assert s.chksum == scapy_recomputed(m)
    d = dpkt.icmp.ICMP(m)
    assert (d.type, d.code) == (t, 0)
    assert (d.data.id, d.data.seq, bytes(d.data.data)) == (ident, seq, pl)
    assert dpkt.in_cksum(m) == 0
    p = icmp.parse(m)
    assert (p.type, p.code, p.ident, p.seq, p.body) == (t, 0, ident, seq, pl)


@SETTINGS
@given(echo_types, u16, u16, st.binary(max_size=300))
def test_scapy_echo_parses(t: int, ident: int, seq: int, pl: bytes) -> None:
    m = raw(ICMP(type=t, id=ident, seq=seq) / Raw(pl))
    p = icmp.parse(memoryview(m))
    assert (p.type, p.code, p.ident, p.seq, p.body) == (t, 0, ident, seq, pl)
    assert p.rest == (ident << 16) | seq
    assert p.checksum == ICMP(m).chksum


def _offending(src: bytes, dst: bytes, sport: int, dport: int, size: int) -> bytes:
    return ipv4.build(src, dst, ipv4.PROTO_UDP, udp.build(src, dst, sport, dport, bytes(size)))


@SETTINGS
@given(errors, addrs, addrs, u16, u16, st.integers(0, 1500), st.integers(68, 0xFFFF))
def test_error_parses_in_scapy_and_dpkt(
    tc: tuple[int, int], src: bytes, dst: bytes, sport: int, dport: int, size: int, mtu: int
) -> None:
    t, c = tc
    orig = _offending(src, dst, sport, dport, size)
    m = icmp.build_error(t, c, orig, mtu=mtu if c == icmp.FRAG_NEEDED and t == 3 else 0)
    # RFC 1812 4.3.2.3 / RFC 792: <= 576 bytes in a 20-byte IP header, >= header + 8 quoted.
    assert 20 + len(m) <= 576
    assert len(m) >= 8 + 28
    assert m[8:] == orig[: len(m) - 8]
    s = ICMP(m)
    assert (s.type, s.code) == (t, c)
    assert s.chksum == scapy_recomputed(m)
    if t == 3 and c == icmp.FRAG_NEEDED:
        assert s.nexthopmtu == mtu
    inner = s[IPerror]
    assert (inner.src, inner.dst) == (socket.inet_ntoa(src), socket.inet_ntoa(dst))
    assert (s[UDPerror].sport, s[UDPerror].dport) == (sport, dport)
    d = dpkt.icmp.ICMP(m)
    assert (d.type, d.code) == (t, c)
    assert dpkt.in_cksum(m) == 0
    # Quoted header and transport bytes come back out.
    p = icmp.parse(m)
    qh, qt = icmp.quoted(p)
    assert (qh.src, qh.dst, qh.proto, qh.total_length) == (src, dst, 17, len(orig))
    assert qt[:4] == sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
    assert qt == orig[20 : 20 + len(qt)] and len(qt) >= 8
    if t == 3 and c == icmp.FRAG_NEEDED:
        assert p.next_hop_mtu == mtu


def test_error_does_not_quote_link_padding() -> None:
    orig = _offending(b"\xc6\x12\x00\x01", b"\xc6\x12\x00\x02", 1, 2, 0)  # 28 bytes
    m = icmp.build_error(icmp.DEST_UNREACH, icmp.PORT_UNREACH, orig + bytes(18))
    assert m[8:] == orig


@SETTINGS
@given(errors, addrs, addrs, u16, u16, st.integers(0, 600), st.integers(0, 0xFFFF))
def test_scapy_error_parses(
    tc: tuple[int, int], src: bytes, dst: bytes, sport: int, dport: int, size: int, mtu: int
) -> None:
    t, c = tc
    inner = IP(src=socket.inet_ntoa(src), dst=socket.inet_ntoa(dst)) / UDP(
        sport=sport, dport=dport) / Raw(bytes(size))
    # Quote only header + 8 bytes, as RFC 792 routers do: total_length exceeds the quote.
    quote = raw(inner)[:28]
    frag_needed = (t, c) == (icmp.DEST_UNREACH, icmp.FRAG_NEEDED)
    m = raw(ICMP(type=t, code=c, nexthopmtu=mtu if frag_needed else 0) / Raw(quote))
    p = icmp.parse(m)
    assert (p.type, p.code) == (t, c)
    if frag_needed:
        assert p.next_hop_mtu == mtu
    qh, qt = icmp.quoted(p)
    assert (qh.src, qh.dst, qh.proto, qh.total_length) == (src, dst, 17, 28 + size)
    assert qt == quote[20:]


def test_quote_with_ip_options() -> None:
    inner = ipv4.build(b"\xc6\x12\x00\x01", b"\xc6\x12\x00\x02", 17,
                       udp.build(b"\xc6\x12\x00\x01", b"\xc6\x12\x00\x02", 7, 9, b""),
                       options=b"\x01" * 8)
    p = icmp.parse(icmp.build_error(icmp.DEST_UNREACH, icmp.PORT_UNREACH, inner))
    qh, qt = icmp.quoted(p)
    assert qh.header_len == 28 and qh.options == b"\x01" * 8
    assert qt[:4] == b"\x00\x07\x00\x09"


@pytest.mark.parametrize(
    "body",
    [b"", b"\x45" + bytes(26), b"\x46" + bytes(30), b"\x65" + bytes(40), b"\x44" + bytes(40),
     b"\x45\x00\x00\x10" + bytes(40)],
)
def test_quote_reasons(body: bytes) -> None:
    msg = icmp.IcmpMessage(3, 3, 0, 0, body)
    with pytest.raises(ParseError) as e:
        icmp.quoted(msg)
    assert e.value.reason == "icmp_quote"


def test_reasons() -> None:
    with pytest.raises(ParseError) as e:
        icmp.parse(b"\x08\x00\x00\x00\x00\x00\x00")
    assert e.value.reason == "icmp_short"
    m = bytearray(icmp.build_echo(icmp.ECHO_REQUEST, 1, 2, b"abc"))
    m[-1] ^= 0x10
    with pytest.raises(ParseError) as e:
        icmp.parse(m)
    assert e.value.reason == "icmp_checksum"
    assert icmp.parse(m, verify_checksum=False).body == b"abs"
    # All zeros sum to +0, never valid; the all-zero echo reply gets 0xFFFF.
    with pytest.raises(ParseError):
        icmp.parse(bytes(8))
    z = icmp.build_echo(icmp.ECHO_REPLY, 0, 0, bytes(4))
    assert z[2:4] == b"\xff\xff" and icmp.parse(z).seq == 0
