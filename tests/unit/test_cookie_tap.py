"""apps/cookie_tap.py: SYNs answered in the receive ring, as the stack would.

The tap is handed frames in an mmap, as the AF_PACKET ring would; what it
takes must leave exactly the SYN-ACK the stack's own path sends for the
same SYN (a second stack with the same secret and clock is the oracle),
and every frame outside its rules must be left to the stack, untouched.
"""

from __future__ import annotations

import mmap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from tcp_peer import OUR_IP, OUR_MAC, PEER_IP, PEER_MAC, Peer, peer

from ustack.apps.cookie_tap import CookieTap
from ustack.tcp.syncookies import SynCookieSecret

SYN_OPTS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (12345, 0)), ("NOP", None),
            ("WScale", 7)]


def syn_frame(*, flags: str = "S", sport: int = 40000, dport: int = 80,
              opts: list[tuple[str, object]] | None = None, dst_mac: str = OUR_MAC,
              frag: int = 0, payload: bytes = b"", ip_opts: bool = False,
              bad_tcp_sum: bool = False, bad_ip_sum: bool = False, dst: str = OUR_IP,
              src: str = PEER_IP) -> bytes:
    ip = IP(src=src, dst=dst, flags="DF" if not frag else "MF", frag=frag)
    if ip_opts:
        ip.options = [b"\x01\x01\x01\x00"]
    tcp = TCP(sport=sport, dport=dport, seq=0x11223344, flags=flags, window=64240,
              options=SYN_OPTS if opts is None else opts)
    pkt = Ether(dst=dst_mac, src=PEER_MAC) / ip / tcp
    if payload:
        pkt = pkt / Raw(payload)
    raw = bytearray(bytes(pkt))
    ihl = (raw[14] & 0x0F) * 4
    if bad_tcp_sum:
        raw[14 + ihl + 16] ^= 0x01
    if bad_ip_sum:
        raw[24] ^= 0x01
    return bytes(raw)


def offer(tap: CookieTap, frame: bytes, trusted: bool = False) -> bool:
    """The frame in an mmap at an offset, as a ring slot holds it."""
    mm = mmap.mmap(-1, 4096)
    mm[100:100 + len(frame)] = frame
    return tap.take(mm, 100, len(frame), trusted)


def pair() -> tuple[Peer, Peer]:
    """Two stacks alike (address, secret, clock), each listening on port 80
    with cookies always: one for the tap, one for the stack's own path."""
    a, b = Peer(), Peer()
    b.stack.tcp.cookie_secret = SynCookieSecret(a.stack.tcp.cookie_secret.raw)
    for p in (a, b):
        p.stack.tcp_listen(("0.0.0.0", 80), 16, syncookies="always")
    return a, b


def tcp_bytes(frame: bytes | bytearray) -> bytes:
    return bytes(frame[34:])


@pytest.mark.parametrize("opts", [SYN_OPTS, [("MSS", 1300)], [],
                                  [("MSS", 1460), ("Timestamp", (1, 0))],
                                  [("SAckOK", b""), ("Timestamp", (99, 0)), ("WScale", 14)]],
                         ids=["linux", "mss", "none", "ts", "sack-ts-ws14"])
def test_the_tap_answers_as_the_stack_does(opts: list[tuple[str, object]]) -> None:
    a, b = pair()
    try:
        frame = syn_frame(opts=opts)
        tap = CookieTap(a.stack.tcp, a.iface)
        assert offer(tap, frame)
        [mine] = a.iface.txq
        b.inject(frame)
        [theirs] = [bytes(s.pkt) for s in b.take()]
        # The TCP segment byte for byte (cookie, options, checksum); the
        # IPv4 header but for its identification and so its checksum.
        assert tcp_bytes(mine) == tcp_bytes(theirs)
        assert mine[:18] == theirs[:18] and mine[22:24] == theirs[22:24]
        assert mine[26:34] == theirs[26:34]
        ca, cb = a.stack.counters.snapshot(), b.stack.counters.snapshot()
        for name in ("TcpExtSyncookiesSent", "TcpInSegs", "TcpOutSegs", "IpInReceives",
                     "IpOutRequests"):
            assert ca[name] == cb[name] == 1, name
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("change", [
    {"flags": "SA"}, {"flags": "SF"}, {"flags": "A"}, {"flags": "SR"}, {"flags": "SP"},
    {"dport": 81}, {"dst_mac": "02:00:00:00:09:09"}, {"frag": 8}, {"ip_opts": True},
    {"payload": b"early data"}, {"bad_tcp_sum": True}, {"bad_ip_sum": True},
    {"dst": "198.18.0.77"}, {"src": "127.0.0.5"}, {"src": "224.0.0.9"},
    {"src": "0.1.2.3"}, {"src": "198.18.0.255"}], ids=str)
def test_anything_else_is_left_to_the_stack(change: dict[str, object]) -> None:
    with peer() as p:
        p.stack.tcp_listen(("0.0.0.0", 80), 16, syncookies="always")
        tap = CookieTap(p.stack.tcp, p.iface)
        assert not offer(tap, syn_frame(**change))  # type: ignore[arg-type]
        assert not p.iface.txq and p.stack.counters.TcpInSegs == 0


def test_a_bad_tcp_checksum_is_taken_when_the_kernel_vouched_for_it() -> None:
    """``trusted`` is the kernel's mark that it checked the transport
    checksum (the frame came from a local sender with checksum offload)."""
    with peer() as p:
        p.stack.tcp_listen(("0.0.0.0", 80), 16, syncookies="always")
        tap = CookieTap(p.stack.tcp, p.iface)
        assert offer(tap, syn_frame(bad_tcp_sum=True), trusted=True)


def test_the_listeners_state_decides() -> None:
    """Mode on answers only with the SYN queue full; mode off, or a 4-tuple
    the layer holds, go to the stack; a listener's options are honoured."""
    with peer() as p:
        lst = p.stack.tcp_listen(("0.0.0.0", 80), 1)  # mode on
        tap = CookieTap(p.stack.tcp, p.iface)
        assert not offer(tap, syn_frame())  # the queue has room: a connection
        p.inject(syn_frame(sport=50000))  # the stack's own SYN-RECEIVED, the queue full
        assert lst.syn_received == 1
        p.take()
        assert offer(tap, syn_frame())
        assert p.stack.counters.TcpExtTCPReqQFullDoCookies == 1
        assert not offer(tap, syn_frame(sport=50000))  # that 4-tuple is a connection
        lst.syncookies = 0
        assert not offer(tap, syn_frame(sport=40001))
        lst.syncookies = 2
        lst.set_options(rcvbuf=20000)
        assert offer(tap, syn_frame(sport=40002))
        synack = p.iface.txq[-1]
        assert synack[34 + 14:34 + 16] == (20000).to_bytes(2, "big")  # its window


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=200), st.booleans())
def test_garbage_never_crashes_it_nor_is_taken_unchecked(data: bytes, trusted: bool) -> None:
    """Any bytes behind our MAC and an IPv4 EtherType: taken only if they
    are a SYN with good checksums (the stack would answer it too)."""
    with peer() as p:
        p.stack.tcp_listen(("0.0.0.0", 80), 16, syncookies="always")
        tap = CookieTap(p.stack.tcp, p.iface)
        frame = bytes.fromhex(OUR_MAC.replace(":", "")) + b"\x02" * 6 + b"\x08\x00" + data
        took = offer(tap, frame, trusted)
        assert took == bool(p.iface.txq)
        if took:
            assert data[0] == 0x45 and data[33] & 0x3F == 0x02


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=40), st.lists(st.sampled_from([
    b"\x01", b"\x00", b"\x02\x04\x05\xb4", b"\x03\x03\x07", b"\x04\x02",
    b"\x08\x0a\x00\x00\x30\x39\x00\x00\x00\x00", b"\x05\x0a" + bytes(8), b"\x05\x02",
    b"\x02\x03\x05", b"\x1e\x04\x00\x00", b"\x08\x02"]), max_size=8).map(b"".join)))
def test_the_taps_option_reader_agrees_with_the_wire_parser(raw: bytes) -> None:
    """Valid or not, and what a SYN offers, as ``wire.tcp.parse_options``
    reads the same bytes (the tap must not answer what the stack refuses)."""
    from ustack.apps.cookie_tap import _syn_options
    from ustack.wire import tcp as wtcp
    from ustack.wire.errors import ParseError

    pkt = bytes(40) + raw
    mss, ws, sack, tsval = _syn_options(pkt, 40, len(pkt))
    try:
        o = wtcp.parse_options(raw)
    except ParseError:
        assert mss == -2
        return
    assert mss == (o.mss or 0)
    assert ws == (-1 if o.wscale is None else o.wscale)
    assert sack == o.sack_permitted
    assert tsval == (-1 if o.ts_val is None else o.ts_val)
