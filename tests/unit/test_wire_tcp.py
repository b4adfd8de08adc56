"""ustack.wire.tcp against scapy and dpkt."""

from __future__ import annotations

import socket

import dpkt  # type: ignore[import-untyped]
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.inet import IP, TCP
from scapy.packet import Raw

from ustack.wire import ParseError, checksum, ipv4, tcp

SETTINGS = settings(max_examples=100, deadline=None)

addrs = st.binary(min_size=4, max_size=4)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
flag_bytes = st.integers(0, 0xFF)
payloads = st.one_of(st.binary(max_size=200), st.integers(0, 1600).map(bytes))
blocks = st.lists(st.tuples(u32, u32), max_size=4)


@st.composite
def option_sets(draw: st.DrawFn) -> dict[str, object]:
    kw: dict[str, object] = {
        "mss": draw(st.none() | u16),
        "wscale": draw(st.none() | st.integers(0, 14)),
        "sack_permitted": draw(st.booleans()),
        "sack_blocks": tuple(draw(blocks)),
        "ts": draw(st.none() | st.tuples(u32, u32)),
    }
    size = ((4 if kw["mss"] is not None else 0) + (4 if kw["wscale"] is not None else 0)
            + (12 if kw["ts"] is not None else 4 if kw["sack_permitted"] else 0)
            + (4 + 8 * len(kw["sack_blocks"]) if kw["sack_blocks"] else 0))  # type: ignore[arg-type]
    assume(size <= 40)
    return kw


def pseudo(src: bytes, dst: bytes, length: int) -> bytes:
    return src + dst + bytes([0, 6]) + length.to_bytes(2, "big")


@SETTINGS
@given(addrs, addrs, u16, u16, u32, u32, flag_bytes, u16, u16, option_sets(), payloads)
def test_build_parses_in_scapy_and_dpkt(
    src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
    window: int, urgent: int, opts: dict[str, object], pl: bytes,
) -> None:
    o = tcp.build_options(**opts)  # type: ignore[arg-type]
    assert len(o) % 4 == 0 and len(o) <= 40
    seg = tcp.build(src, dst, sport, dport, seq, ack, flags, window, o, pl, urgent)
    hl = 20 + len(o)
    csum = int.from_bytes(seg[16:18], "big")
    assert dpkt.in_cksum(pseudo(src, dst, len(seg)) + seg) == 0
    frame = ipv4.build(src, dst, ipv4.PROTO_TCP, seg)
    s = IP(frame)
    t = s[TCP]
    assert (t.sport, t.dport, t.seq, t.ack, t.dataofs * 4) == (sport, dport, seq, ack, hl)
    assert (int(t.flags), t.window, t.urgptr, t.chksum) == (flags, window, urgent, csum)
    assert bytes(t.payload) == pl
    sopts = dict((k, v) for k, v in t.options if k not in ("NOP", "EOL"))
    assert sopts.get("MSS") == opts["mss"]
    assert sopts.get("WScale") == opts["wscale"]
    assert ("SAckOK" in sopts) == opts["sack_permitted"]
    assert sopts.get("Timestamp") == opts["ts"]
    assert sopts.get("SAck", ()) == tuple(x for b in opts["sack_blocks"] for x in b)  # type: ignore[attr-defined]
    del s[TCP].chksum
    assert IP(raw(s))[TCP].chksum == csum
    d = dpkt.ip.IP(frame).data
    assert isinstance(d, dpkt.tcp.TCP)
    assert (d.sport, d.dport, d.seq, d.ack, d.off * 4, d.flags, d.win, d.sum, d.urp) == (
        sport, dport, seq, ack, hl, flags, window, csum, urgent)
    assert bytes(d.opts) == o and bytes(d.data) == pl
    dkinds = [k for k, _ in dpkt.tcp.parse_opts(bytes(d.opts)) if k not in (0, 1)]
    assert len(dkinds) == len(sopts)
    # Our parser round-trips everything.
    h = tcp.parse(seg, src, dst)
    assert h == (sport, dport, seq, ack, hl, flags, window, csum, urgent, o)
    p = tcp.parse_options(h.options_raw)
    ts = opts["ts"]
    assert p == tcp.TcpOptions(opts["mss"], opts["wscale"], opts["sack_permitted"],  # type: ignore[arg-type]
                               opts["sack_blocks"],  # type: ignore[arg-type]
                               ts[0] if ts else None, ts[1] if ts else None, ())  # type: ignore[index]


def test_linux_syn_layout() -> None:
    # Linux tcp_options_write: MSS, SACK-permitted + timestamps, NOP + WS.
    o = tcp.build_options(mss=1460, wscale=7, sack_permitted=True, ts=(1, 2))
    assert o == bytes.fromhex("020405b4" "0402080a0000000100000002" "01030307")
    assert tcp.build_options(ts=(1, 2)) == bytes.fromhex("0101080a0000000100000002")
    assert tcp.build_options(sack_permitted=True) == bytes.fromhex("01010402")
    assert tcp.build_options() == b""


def test_build_options_too_long() -> None:
    with pytest.raises(ValueError):
        tcp.build_options(ts=(1, 2), sack_blocks=((1, 2),) * 4)
    assert len(tcp.build_options(sack_blocks=((1, 2),) * 4)) == 36
    with pytest.raises(ValueError):
        tcp.build(bytes(4), bytes(4), 1, 2, 0, 0, tcp.ACK, 0, options=b"\x01" * 3)


@SETTINGS
@given(addrs, addrs, u16, u16, u32, u32, flag_bytes, u16, option_sets(), payloads,
       st.integers(0, 8))
def test_pack_header_into_matches_build(
    src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
    window: int, opts: dict[str, object], pl: bytes, off: int,
) -> None:
    o = tcp.build_options(**opts)  # type: ignore[arg-type]
    ref = tcp.build(src, dst, sport, dport, seq, ack, flags, window, o, pl)
    buf = bytearray(off + 20 + len(o) + len(pl))
    hl = tcp.pack_header_into(buf, off, src, dst, sport, dport, seq, ack, flags, window, o, pl)
    assert hl == 20 + len(o)
    buf[off + hl :] = pl
    assert bytes(buf[off:]) == ref
    # A precomputed payload sum gives the same checksum (sums compose).
    assert tcp.build(src, dst, sport, dport, seq, ack, flags, window, o, pl,
                     payload_sum=checksum.ones_sum(pl)) == ref
    nock = tcp.build(src, dst, sport, dport, seq, ack, flags, window, o, pl, checksum=False)
    assert nock[16:18] == b"\x00\x00" and nock[:16] == ref[:16]


scapy_opts = st.lists(
    st.one_of(
        u16.map(lambda v: ("MSS", v)),
        st.integers(0, 14).map(lambda v: ("WScale", v)),
        st.just(("SAckOK", b"")),
        st.tuples(u32, u32).map(lambda v: ("Timestamp", v)),
        st.lists(u32, min_size=2, max_size=6).filter(lambda v: len(v) % 2 == 0)
        .map(lambda v: ("SAck", tuple(v))),
        st.just(("NOP", None)),
        st.tuples(st.sampled_from([6, 7, 19, 28, 30, 34, 253]), st.binary(max_size=6)),
    ),
    max_size=6,
)


_SCAPY_LEN = {"MSS": 4, "WScale": 3, "SAckOK": 2, "Timestamp": 10, "NOP": 1}


def _var_len(kind: object, value: object) -> int:
    """Encoded size of a SACK or unknown-kind option."""
    if kind == "SAck":
        return 2 + 4 * len(value)  # type: ignore[arg-type]
    return 2 + len(value)  # type: ignore[arg-type]


def _expected(opts: list[tuple[object, object]]) -> tcp.TcpOptions:
    kw: dict[str, object] = {}
    unknown: list[tuple[int, bytes]] = []
    for k, v in opts:
        if k == "MSS":
            kw["mss"] = v
        elif k == "WScale":
            kw["wscale"] = v
        elif k == "SAckOK":
            kw["sack_permitted"] = True
        elif k == "Timestamp":
            kw["ts_val"], kw["ts_ecr"] = v  # type: ignore[misc]
        elif k == "SAck":
            vv: tuple[int, ...] = v  # type: ignore[assignment]
            kw["sack_blocks"] = tuple(zip(vv[::2], vv[1::2], strict=True))
        elif isinstance(k, int):
            unknown.append((k, v))  # type: ignore[arg-type]
    return tcp.TcpOptions(unknown=tuple(unknown), **kw)  # type: ignore[arg-type]


@SETTINGS
@given(addrs, addrs, u16, u16, u32, u32, flag_bytes, u16, scapy_opts, st.binary(max_size=100))
def test_scapy_segments_parse(
    src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
    window: int, opts: list[tuple[object, object]], pl: bytes,
) -> None:
    assume(sum(_SCAPY_LEN.get(str(k), 0) or _var_len(k, v) for k, v in opts) <= 40)
    frame = raw(IP(src=socket.inet_ntoa(src), dst=socket.inet_ntoa(dst)) / TCP(
        sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, window=window,
        options=opts) / Raw(pl))
    seg = memoryview(frame)[20:]
    h = tcp.parse(seg, src, dst)
    t = IP(frame)[TCP]
    assert (h.sport, h.dport, h.seq, h.ack, h.flags, h.window) == (
        sport, dport, seq, ack, flags, window)
    assert (h.header_len, h.checksum) == (t.dataofs * 4, t.chksum)
    assert bytes(seg[h.header_len :]) == pl
    assert tcp.parse_options(h.options_raw) == _expected(opts)


def test_options_after_eol_ignored() -> None:
    raw_opts = bytes.fromhex("020405b4" "00" "030307")
    assert tcp.parse_options(raw_opts) == tcp.TcpOptions(mss=1460)


def test_timestamp_fast_path_matches_general() -> None:
    a = tcp.parse_options(bytes.fromhex("0101080a0000000100000002"))
    b = tcp.parse_options(bytes.fromhex("080a0000000100000002" "0101"))
    assert a == b == tcp.TcpOptions(ts_val=1, ts_ecr=2)
    assert tcp.parse_options(memoryview(bytes.fromhex("0101080a0000000100000002"))) == a


@pytest.mark.parametrize(
    "raw_opts",
    [
        "02", "0201", "0205000000", "020300", "0304050505", "030207", "040302", "0201ff",
        "080900000000000000", "080b0000000000000000000000", "05020000", "050a00000000000000",
        "050b000000000000000000", "1e01", "1e00", "1e0a0000",
    ],
)
def test_option_reasons(raw_opts: str) -> None:
    with pytest.raises(ParseError) as e:
        tcp.parse_options(bytes.fromhex(raw_opts))
    assert e.value.reason == "tcp_option"


@SETTINGS
@given(addrs, addrs, st.binary(min_size=1, max_size=60), st.data())
def test_corruption_detected(src: bytes, dst: bytes, pl: bytes, data: st.DataObject) -> None:
    seg = bytearray(tcp.build(src, dst, 80, 4000, 1, 2, tcp.ACK | tcp.PSH, 100,
                              tcp.build_options(ts=(5, 6)), pl))
    i = data.draw(st.integers(0, len(seg) - 1))
    seg[i] ^= 1 << data.draw(st.integers(0, 7))
    try:
        tcp.parse(seg, src, dst)
    except ParseError as e:
        assert e.reason in ("tcp_checksum", "tcp_header_len", "tcp_short")
    else:
        raise AssertionError("corrupted segment accepted")


def test_reasons() -> None:
    src, dst = b"\xc6\x12\x00\x01", b"\xc6\x12\x00\x02"
    seg = tcp.build(src, dst, 1, 2, 3, 4, tcp.SYN, 5, tcp.build_options(mss=1460))
    cases = [
        (seg[:19], "tcp_short"),
        (seg[:12] + b"\x40" + seg[13:], "tcp_header_len"),
        (seg[:12] + b"\xf0" + seg[13:], "tcp_short"),
        (seg[:-1] + bytes([seg[-1] ^ 1]), "tcp_checksum"),
    ]
    for data, reason in cases:
        with pytest.raises(ParseError) as e:
            tcp.parse(data, src, dst)
        assert e.value.reason == reason
