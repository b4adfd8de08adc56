"""Every wire parser, fed garbage, returns or raises ParseError -- nothing else."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.wire import ParseError, arp, ethernet, icmp, ipv4, tcp, udp

SETTINGS = settings(max_examples=300, deadline=None)

SRC, DST = b"\xc6\x12\x00\x01", b"\xc6\x12\x00\x02"
MAC = b"\x02\x00\x00\x00\x00\x01"


def _icmp_all(data: bytes | bytearray | memoryview) -> object:
    m = icmp.parse(data, verify_checksum=False)
    with contextlib.suppress(ParseError):
        icmp.parse(data)
    return icmp.quoted(m) if m.type in (icmp.DEST_UNREACH, icmp.TIME_EXCEEDED) else m


def _tcp_all(data: bytes | bytearray | memoryview) -> object:
    with contextlib.suppress(ParseError):
        tcp.parse(data, SRC, DST)
    h = tcp.parse(data)
    return tcp.parse_options(h.options_raw)


def _udp_all(data: bytes | bytearray | memoryview) -> object:
    with contextlib.suppress(ParseError):
        udp.parse(data, SRC, DST)
    return udp.parse(data)


def _ipv4_all(data: bytes | bytearray | memoryview) -> object:
    with contextlib.suppress(ParseError):
        ipv4.parse(data)
    return ipv4.parse(data, verify_checksum=False)


PARSERS: dict[str, tuple[Callable[[bytes | bytearray | memoryview], object], bytes]] = {
    "ethernet": (ethernet.parse, ethernet.build(ethernet.BROADCAST, MAC, 0x0800, b"x" * 46)),
    "arp": (arp.parse, arp.build(arp.OP_REQUEST, MAC, SRC, bytes(6), DST)),
    "ipv4": (_ipv4_all, ipv4.build(SRC, DST, 17, b"payload", options=b"\x01\x07\x07\x04")),
    "udp": (_udp_all, udp.build(SRC, DST, 53, 4000, b"hello")),
    "icmp_echo": (_icmp_all, icmp.build_echo(icmp.ECHO_REQUEST, 7, 9, b"ping")),
    "icmp_error": (_icmp_all, icmp.build_error(
        icmp.DEST_UNREACH, icmp.PORT_UNREACH,
        ipv4.build(SRC, DST, 17, udp.build(SRC, DST, 1, 2, b"abc")))),
    "tcp": (_tcp_all, tcp.build(SRC, DST, 80, 4000, 1, 2, tcp.SYN | tcp.ACK, 65535,
                                tcp.build_options(1460, 7, True, ((1, 2),), (3, 4)), b"data")),
    "tcp_options": (tcp.parse_options, tcp.build_options(1460, 7, True, (), (3, 4))),
}


def _feed(parse: Callable[[bytes | bytearray | memoryview], object], data: bytes) -> None:
    for view in (data, bytearray(data), memoryview(data)):
        try:
            parse(view)
        except ParseError as e:
            assert e.reason and e.reason.replace("_", "").isalnum()


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "extend", "splice"]))
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 8, 10, 0x40, 0x45, 0x4F, 0xFF]))
        elif op == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif op == "extend":
            data += draw(st.binary(min_size=1, max_size=64))
        elif op == "splice" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i : i + 4] = draw(st.binary(max_size=8))
    return bytes(data)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_valid_example_parses(name: str) -> None:
    parse, valid = PARSERS[name]
    assert parse(valid) is not None


@pytest.mark.parametrize("name", sorted(PARSERS))
@SETTINGS
@given(data=st.data())
def test_random_bytes(name: str, data: st.DataObject) -> None:
    _feed(PARSERS[name][0], data.draw(st.binary(max_size=120)))


@pytest.mark.parametrize("name", sorted(PARSERS))
@SETTINGS
@given(data=st.data())
def test_mutated_frames(name: str, data: st.DataObject) -> None:
    parse, valid = PARSERS[name]
    _feed(parse, data.draw(mutated(valid)))
