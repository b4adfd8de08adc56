"""Robustness of a live Stack: hostile frames never raise, every frame is counted.

Random bytes and mutated valid frames (with the IPv4 header checksum repaired
half of the time, so that mutations reach the layers above IP) go through a
Stack on a device that passes frames of any length.  Afterwards the clock
jumps past every timer (ARP retries, reassembly timeouts), and the counters
must account for every frame taken in (``assert_accounted``).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, UDP, fragment
from scapy.layers.l2 import ARP, Ether
from scapy.utils import checksum
from test_net_harness import (
    BCAST_MAC,
    OUR_IP,
    OUR_MAC,
    PEER_IP,
    PEER_MAC,
    SUBNET_BCAST,
    RawDevice,
    assert_accounted,
    ipb,
    macb,
)

from ustack.stack import Stack


def _base_frames() -> list[bytes]:
    eth = Ether(src=PEER_MAC, dst=OUR_MAC)
    ip = IP(src=PEER_IP, dst=OUR_IP)
    # A datagram our connected socket (5555 -> PEER:9999) sent, for ICMP errors.
    ours = bytes(IP(src=OUR_IP, dst=PEER_IP) / UDP(sport=5555, dport=9999) / b"ping")
    frames = [
        eth / ip / UDP(sport=1000, dport=7) / b"to the open port",
        eth / ip / UDP(sport=1000, dport=9) / b"to a closed port",
        eth / IP(src=PEER_IP, dst=OUR_IP, options=b"\x94\x04\x00\x00") / UDP(dport=7) / b"o",
        Ether(src=PEER_MAC, dst=BCAST_MAC) / IP(src=PEER_IP, dst=SUBNET_BCAST) / UDP(dport=7),
        eth / ip / ICMP(type=8, id=1, seq=1) / b"echo",
        eth / ip / ICMP(type=0, id=1, seq=1) / b"reply",
        eth / ip / ICMP(type=3, code=3) / ours,
        eth / ip / ICMP(type=11, code=0) / ours,
        eth / IP(src=PEER_IP, dst=OUR_IP, proto=253) / b"unknown protocol",
        Ether(src=PEER_MAC, dst=BCAST_MAC) / ARP(op=1, hwsrc=PEER_MAC, psrc=PEER_IP, pdst=OUR_IP),
        eth / ARP(op=2, hwsrc=PEER_MAC, psrc=PEER_IP, hwdst=OUR_MAC, pdst=OUR_IP),
    ]
    return [bytes(f) for f in frames]


def _trains() -> list[list[bytes]]:
    eth = Ether(src=PEER_MAC, dst=OUR_MAC)
    big = IP(src=PEER_IP, dst=OUR_IP, id=99) / UDP(sport=1, dport=7) / os.urandom(2500)
    big_echo = IP(src=PEER_IP, dst=OUR_IP, id=98) / ICMP(type=8) / os.urandom(2000)
    return [[bytes(eth / f) for f in fragment(p, fragsize=1000)] for p in (big, big_echo)]


BASES = _base_frames()
TRAINS = _trains()


def _fix_checksums(frame: bytearray, transport: bool) -> None:
    """Repair the IPv4 header checksum and, with ``transport``, make the UDP or
    ICMP checksum valid too (UDP: zero, "none"; ICMP: recomputed), so that a
    mutation is judged by the layer it was aimed at."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return
    hl = (frame[14] & 0x0F) * 4
    if hl < 20 or len(frame) < 14 + hl:
        return
    start = 14 + hl
    total = int.from_bytes(frame[16:18], "big")
    end = min(len(frame), 14 + total)
    first = not (int.from_bytes(frame[20:22], "big") & 0x1FFF)
    if transport and first and end >= start + 8:
        if frame[23] == 17:
            frame[start + 6 : start + 8] = b"\x00\x00"
        elif frame[23] == 1 and not frame[20] & 0x20:  # a whole ICMP message
            frame[start + 2 : start + 4] = b"\x00\x00"
            frame[start + 2 : start + 4] = checksum(bytes(frame[start:end])).to_bytes(2, "big")
    frame[24:26] = b"\x00\x00"
    frame[24:26] = checksum(bytes(frame[14:start])).to_bytes(2, "big")


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    frame = bytearray(draw(st.sampled_from(BASES)))
    for pos, val in draw(st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=4)):
        if frame:
            frame[pos % len(frame)] = val
    if draw(st.integers(0, 4)) == 0:
        del frame[draw(st.integers(0, len(frame))) :]
    if draw(st.integers(0, 4)) == 0:
        frame += draw(st.binary(min_size=1, max_size=8))
    fix = draw(st.integers(0, 2))
    if fix:
        _fix_checksums(frame, transport=fix == 2)
    return bytes(frame)


@st.composite
def fragment_train(draw: st.DrawFn) -> list[bytes]:
    """The fragments of one datagram, shuffled, with one maybe lost, duplicated
    or mutated: the reassembler's paths."""
    frags = list(draw(st.sampled_from(TRAINS)))
    frags = draw(st.permutations(frags))
    action = draw(st.integers(0, 3))
    i = draw(st.integers(0, len(frags) - 1))
    if action == 1:
        del frags[i]
    elif action == 2:
        frags.insert(draw(st.integers(0, len(frags))), frags[i])
    elif action == 3:
        f = bytearray(frags[i])
        f[draw(st.integers(14, 33))] = draw(st.integers(0, 255))
        _fix_checksums(f, transport=False)
        frags[i] = bytes(f)
    return frags


@st.composite
def random_frame(draw: st.DrawFn) -> bytes:
    """Random bytes, usually behind a header that gets them past Ethernet."""
    prefix = draw(
        st.sampled_from(
            [
                b"",
                macb(OUR_MAC) + macb(PEER_MAC) + b"\x08\x00",
                macb(OUR_MAC) + macb(PEER_MAC) + b"\x08\x06",
                macb(BCAST_MAC) + macb(PEER_MAC) + b"\x08\x06",
                macb(OUR_MAC) + macb(PEER_MAC) + b"\x08\x00\x45\x00",
            ]
        )
    )
    return prefix + draw(st.binary(max_size=1600))


frames_strategy = st.lists(
    st.one_of(mutated().map(lambda f: [f]), random_frame().map(lambda f: [f]), fragment_train()),
    min_size=1,
    max_size=20,
).map(lambda groups: [f for g in groups for f in g])


def run_frames(frames: list[bytes]) -> Stack:
    dev = RawDevice()
    stack = Stack()
    iface = stack.add_interface(dev, f"{OUR_IP}/24", mac=macb(OUR_MAC))
    open_sock = stack.udp_socket()
    open_sock.bind(("0.0.0.0", 7))
    open_sock.rcvbuf = 4096  # small, so overflow is reachable
    conn = stack.udp_socket()
    conn.bind(("0.0.0.0", 5555))
    conn.connect((PEER_IP, 9999))
    if frames[0][:1] == b"\x00":  # half of the runs resolve the peer statically
        iface.arp.add_static(ipb(PEER_IP), macb(PEER_MAC))
    now = 0.0
    stack.poll(now)
    for f in frames:
        dev.rx.append(f)
        now += 0.01
        stack.poll(now)
    for _ in range(40):  # past ARP retries and the 30 s reassembly timeout
        now += 1.0
        stack.poll(now)
    for sock in (open_sock, conn):
        while True:
            try:
                sock.recvfrom()
            except BlockingIOError:
                break
            except OSError:
                continue  # a pending ICMP error surfaces once
    return stack


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames_strategy)
def test_hostile_frames_never_raise_and_are_all_counted(frames: list[bytes]) -> None:
    """docs/architecture.md, principle 3: every dropped frame has a name and a counter."""
    stack = run_frames(frames)
    assert stack.counters.EthInFrames == len(frames)
    assert_accounted(stack)
    assert len(stack.ipv4.reasm) == 0 and stack.ipv4.reasm.memory == 0


def test_every_base_frame_is_accepted_unmodified() -> None:
    """The corpus itself is valid: each base frame reaches a layer above IPv4
    or ARP without a parse error (or the fuzz test would mutate garbage)."""
    stack = run_frames(BASES + TRAINS[0] + TRAINS[1])
    c = stack.counters
    assert c.IpInHdrErrors == 0 and c.IcmpInErrors == 0 and c.UdpInErrors == 0
    assert c.IpReasmOKs == 2
    assert_accounted(stack)
