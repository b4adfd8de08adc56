"""Echo requests with IP options (RFC 1122 3.2.2.6, RFC 791 3.1).

"If a Record Route and/or Time Stamp option is received in an ICMP Echo
Request, this option (these options) SHOULD be updated to include the
current host and included in the IP header of the Echo Reply message."
The requests' options are written byte by byte from RFC 791's formats;
scapy parses the replies (an independent judge of the header and of the
Record Route option), and the Timestamp slots are read from its raw bytes.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator

import pytest
from scapy.layers.inet import ICMP, IP, IPOption_RR, IPOption_Timestamp
from scapy.layers.l2 import Ether
from scapy.packet import Packet
from scapy.utils import checksum
from test_net_harness import (
    OTHER_IP,
    OUR_IP,
    OUR_MAC,
    PEER_IP,
    PEER_MAC,
    Harness,
    assert_accounted,
    assert_icmp_checksum,
    assert_ip_checksum,
)

# 12:34:56.789 UT on some day: the Timestamp option's milliseconds since midnight.
WALL = 1_700_000_000 - 1_700_000_000 % 86400 + 45296.789
MS = 45296789


@pytest.fixture
def h() -> Iterator[Harness]:
    with Harness() as harness:
        harness.stack.icmp.wall_clock = lambda: WALL
        yield harness


def ip4(a: str) -> bytes:
    return socket.inet_aton(a)


def rr(slots: int, filled: list[str] | None = None) -> bytes:
    """Record Route (type 7) with ``slots`` addresses, the first ``filled``."""
    filled = filled or []
    body = b"".join(ip4(a) for a in filled) + bytes(4 * (slots - len(filled)))
    return bytes([7, 3 + 4 * slots, 4 + 4 * len(filled)]) + body


def ts(flag: int, slots: int, *, addrs: list[str] | None = None, used: int = 0,
       overflow: int = 0) -> bytes:
    """Timestamp (type 68): ``slots`` slots of 4 (flag 0) or 8 bytes, the
    first ``used`` taken; ``addrs`` are the prespecified addresses (flag 3)."""
    size = 4 if flag == 0 else 8
    body = bytearray(size * slots)
    for i, a in enumerate(addrs or []):
        body[i * 8:i * 8 + 4] = ip4(a)
    return bytes([68, 4 + size * slots, 5 + size * used, overflow << 4 | flag]) + bytes(body)


def echo_with(options: bytes) -> Packet:
    """An echo request whose IPv4 header carries ``options`` as they are
    (padded with EOL), malformed or not: written by hand, scapy's checksum."""
    opts = options + bytes(-len(options) % 4)
    icmp = bytes(ICMP(type=8, id=0x4242, seq=3) / os.urandom(32))
    hl = 20 + len(opts)
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | hl // 4, 0, hl + len(icmp), 1, 0, 64,
                                1, 0, ip4(PEER_IP), ip4(OUR_IP)) + opts)
    hdr[10:12] = struct.pack("!H", checksum(bytes(hdr)))
    pkt: Packet = Ether(Ether(src=PEER_MAC, dst=OUR_MAC, type=0x0800).build()
                        + bytes(hdr) + icmp)
    return pkt


def reply_to(h: Harness, req: Packet) -> Packet:
    h.send(req)
    (reply,) = h.recv()
    assert_ip_checksum(reply)
    assert_icmp_checksum(reply)
    r, q = reply[ICMP], req[ICMP]
    assert (r.type, r.id, r.seq, bytes(r.payload)) == (0, q.id, q.seq, bytes(q.payload))
    assert (reply[IP].src, reply[IP].dst) == (OUR_IP, PEER_IP)
    assert_accounted(h.stack)
    return reply


def raw_options(reply: Packet) -> bytes:
    raw = bytes(reply[IP])
    return raw[20:(raw[0] & 15) * 4]


def option(reply: Packet, kind: type) -> Packet:
    found = [o for o in reply[IP].options if isinstance(o, kind)]
    assert len(found) == 1, reply[IP].options
    opt: Packet = found[0]
    return opt


@pytest.mark.parametrize("filled", [[], [PEER_IP], ["198.18.9.9", PEER_IP]])
def test_record_route_gets_our_address(h: Harness, filled: list[str]) -> None:
    reply = reply_to(h, echo_with(rr(4, filled)))
    opt = option(reply, IPOption_RR)
    assert opt.pointer == 4 + 4 * (len(filled) + 1)
    assert list(opt.routers) == [*filled, OUR_IP] + ["0.0.0.0"] * (3 - len(filled))


def test_full_record_route_comes_back_unchanged(h: Harness) -> None:
    """RFC 791: no room, nothing recorded (there is no overflow count)."""
    full = rr(2, [PEER_IP, "198.18.9.9"])
    reply = reply_to(h, echo_with(full))
    opt = option(reply, IPOption_RR)
    assert (opt.pointer, list(opt.routers)) == (12, [PEER_IP, "198.18.9.9"])


def test_timestamp_only(h: Harness) -> None:
    reply = reply_to(h, echo_with(ts(0, 3)))
    o = raw_options(reply)
    assert o[:4] == bytes([68, 16, 9, 0])
    assert struct.unpack("!3I", o[4:16]) == (MS, 0, 0)
    assert isinstance(reply[IP].options[0], IPOption_Timestamp)


def test_timestamp_with_address(h: Harness) -> None:
    reply = reply_to(h, echo_with(ts(1, 2)))
    o = raw_options(reply)
    assert o[:4] == bytes([68, 20, 13, 1])
    assert (o[4:8], struct.unpack("!I", o[8:12])[0]) == (ip4(OUR_IP), MS)
    opt = option(reply, IPOption_Timestamp)
    assert (opt.flg, opt.internet_address, opt.timestamp) == (1, OUR_IP, MS)


@pytest.mark.parametrize("ours_first", [True, False])
def test_prespecified_timestamp_only_at_our_turn(h: Harness, ours_first: bool) -> None:
    """Flag 3: a host stamps only when the next prespecified address is its own."""
    addrs = [OUR_IP, OTHER_IP] if ours_first else [OTHER_IP, OUR_IP]
    reply = reply_to(h, echo_with(ts(3, 2, addrs=addrs)))
    o = raw_options(reply)
    if ours_first:
        assert o[2] == 13 and o[4:8] == ip4(OUR_IP) and struct.unpack("!I", o[8:12])[0] == MS
    else:
        assert o == ts(3, 2, addrs=addrs)  # not our turn: untouched


@pytest.mark.parametrize("flag", [0, 1])
def test_full_timestamp_counts_overflow(h: Harness, flag: int) -> None:
    """RFC 791: no room, the overflow count goes up by one."""
    full = ts(flag, 1, used=1, overflow=2)
    reply = reply_to(h, echo_with(full))
    o = raw_options(reply)
    assert o[3] == (3 << 4) | flag and o[:3] == full[:3] and o[4:len(full)] == full[4:]


def test_both_options_are_updated(h: Harness) -> None:
    reply = reply_to(h, echo_with(rr(2) + b"\x01" + ts(0, 2)))
    opt = option(reply, IPOption_RR)
    assert list(opt.routers)[:1] == [OUR_IP]
    o = raw_options(reply)
    t = o.index(bytes([68, 12]))
    assert o[t + 2] == 9 and struct.unpack("!I", o[t + 4:t + 8])[0] == MS


@pytest.mark.parametrize(("options", "reason"), [
    (bytes([7, 11, 2]) + bytes(8), "ipv4_option_pointer"),      # RR pointer below 4
    (bytes([7, 10, 8]) + bytes(7), "ipv4_option_pointer"),      # last slot cut short
    (ts(1, 1, used=1, overflow=15), "ipv4_option_ts_overflow"),  # RFC 791: in error
    (bytes([68, 12, 5, 2]) + bytes(8), "ipv4_option_ts_flag"),  # no flag 2
    (bytes([68, 12, 3, 0]) + bytes(8), "ipv4_option_pointer"),  # TS pointer below 5
])
def test_malformed_option_gets_no_reply(h: Harness, options: bytes, reason: str) -> None:
    h.send(echo_with(options))
    assert h.recv() == []
    assert h.drops.get(reason) == 1


def test_other_options_are_not_returned(h: Harness) -> None:
    """Only Record Route and Timestamp come back (here: a NOP and a router
    alert, RFC 2113, and no header options at all in the reply)."""
    reply = reply_to(h, echo_with(b"\x01" + bytes([148, 4, 0, 0])))
    assert reply[IP].ihl == 5 and raw_options(reply) == b""
