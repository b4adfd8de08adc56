"""``ustack flood`` in memory: the SYNs it writes, the answers it counts, its bounds.

scapy and dpkt judge the frames (checksums recomputed by scapy, options
decoded by both); a scripted peer on the other end of an in-memory pipe
answers ARP for the target and each SYN as a test says (a SYN-ACK, a RST,
nothing, a SYN-ACK twice, a SYN-ACK acknowledging something else), with a
fake clock, so every count can be checked exactly.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from ustack.apps.flood.answers import FloodAnswers, FloodTap
from ustack.apps.flood.report import build, summary
from ustack.apps.flood.run import MAX_COUNT, Flood, FloodConfig, FloodError
from ustack.apps.flood.syn import (
    FloodTarget,
    SynWriter,
    frame_len,
    isn_base,
    scramble,
    serial_of,
    unscramble,
)
from ustack.link.pipe import PipeDevice, pipe_pair
from ustack.link.rings import RxRingV2, TxRing, slot_offsets
from ustack.stack import Stack
from ustack.wire import ipv4 as wip

OUR_IP = "198.18.1.10"
OUR_MAC = bytes.fromhex("02000000010a")
TARGET_IP = "198.18.1.1"
TARGET_MAC = bytes.fromhex("020000000101")
TARGET = wip.addr_from_str(TARGET_IP)
FIRST = int.from_bytes(wip.addr_from_str(OUR_IP), "big")
ETH = TARGET_MAC + OUR_MAC + b"\x08\x00"
LINUX_OPTIONS = [("MSS", 1460), ("SAckOK", b""), ("NOP", None), ("WScale", 7)]


def writer(n_sources: int = 1, *, rand: bool = False, options: bool = True, seed: int = 1,
           targets: list[FloodTarget] | None = None, prefix: bytes = b"") -> SynWriter:
    ts = targets or [FloodTarget(0, TARGET, 80, ETH, 0x1234567)]
    return SynWriter(ts, FIRST, n_sources, rand_source=rand, options=options, seed=seed,
                     prefix=prefix)


# -- the frames -------------------------------------------------------------


def check_syn(frame: bytes, options: bool) -> Ether:
    """``frame`` as scapy reads it: a SYN whose checksums scapy computes alike."""
    p = Ether(frame)
    ip, tcp = p[IP], p[TCP]
    assert (p.dst, p.src, p.type) == ("02:00:00:00:01:01", "02:00:00:00:01:0a", 0x0800)
    assert (ip.version, ip.ihl, ip.ttl, ip.proto, str(ip.flags), ip.frag) == (4, 5, 64, 6, "DF",
                                                                             0)
    assert ip.len == len(frame) - 14 and ip.dst == TARGET_IP
    assert str(tcp.flags) == "S" and tcp.dport == 80 and tcp.ack == 0 and tcp.window == 64240
    assert 1024 <= tcp.sport <= 65535
    got = [(k, v) for k, v in tcp.options if k != "Timestamp"]
    if options:
        assert got == LINUX_OPTIONS
        ((_ts_val, ts_ecr),) = [v for k, v in tcp.options if k == "Timestamp"]
        assert ts_ecr == 0
        # Linux's layout exactly (tcp_options_write): MSS, SACK-permitted +
        # timestamps in 12 bytes, NOP, window scale.
        raw = bytes(tcp)[20:40]
        assert raw[:8] == bytes.fromhex("020405b40402080a") and raw[16:] == b"\x01\x03\x03\x07"
    else:
        assert tcp.options == [] and tcp.dataofs == 5
    ip_sum, tcp_sum = ip.chksum, tcp.chksum
    del ip.chksum
    del tcp.chksum
    again = Ether(bytes(p))
    assert (again[IP].chksum, again[TCP].chksum) == (ip_sum, tcp_sum)
    # dpkt reads it alike (another parser, its own option decoding).
    d = dpkt.ethernet.Ethernet(frame)
    assert isinstance(d.data, dpkt.ip.IP) and isinstance(d.data.data, dpkt.tcp.TCP)
    assert d.data.data.flags == dpkt.tcp.TH_SYN
    kinds = [k for k, _ in dpkt.tcp.parse_opts(d.data.data.opts)]
    assert kinds == ([2, 4, 8, 1, 3] if options else [])
    return p


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(1, 2**32 - 1), n_sources=st.integers(1, 300), rand=st.booleans(),
       options=st.booleans())
def test_every_syn_is_valid_with_the_options_asked_and_a_source_of_ours(
        seed: int, n_sources: int, rand: bool, options: bool) -> None:
    w = writer(n_sources, rand=rand, options=options, seed=seed)
    frames = w.frames(12)
    assert all(len(f) == frame_len(options) for f in frames)
    for f in frames:
        p = check_syn(bytes(f), options)
        src = int.from_bytes(wip.addr_from_str(p[IP].src), "big")
        assert FIRST <= src < FIRST + n_sources
    assert w.sent == 12 and w.targets[0].sent == 12


def test_sources_in_turn_cover_the_range_and_random_ones_stay_inside() -> None:
    w = writer(7)
    srcs = [Ether(bytes(f))[IP].src for f in w.frames(14)]
    assert srcs == [f"198.18.1.{10 + i % 7}" for i in range(14)]
    w = writer(200, rand=True, seed=99)
    srcs = {Ether(bytes(f))[IP].src for f in w.frames(2000)}
    inside = {f"198.18.1.{10 + i}" for i in range(200)}
    assert srcs <= inside and len(srcs) > 190  # random, and over (nearly) all of them


def test_ports_and_sequence_numbers_are_random_and_name_their_syn() -> None:
    w = writer(3, seed=12345)
    pkts = [Ether(bytes(f)) for f in w.frames(500)]
    ports = {p[TCP].sport for p in pkts}
    seqs = {p[TCP].seq for p in pkts}
    assert len(ports) > 490 and len(seqs) == 500
    key = w.targets[0].key
    for k, p in enumerate(pkts):
        src = int.from_bytes(wip.addr_from_str(p[IP].src), "big")
        ports_word = (p[TCP].sport << 16) | 80
        # The answer acknowledges ISN + 1; it gives back the SYN's serial number.
        assert serial_of((p[TCP].seq + 1) & 0xFFFFFFFF, src, ports_word, key) == k
        assert p[TCP].seq == (isn_base(src, ports_word, key) + scramble(k)) & 0xFFFFFFFF


@given(st.integers(0, 2**32 - 1))
def test_the_serial_permutation_is_undone(k: int) -> None:
    assert unscramble(scramble(k)) == k


def test_targets_are_taken_in_turn() -> None:
    other = wip.addr_from_str("198.18.1.2")
    ts = [FloodTarget(0, TARGET, 80, ETH, 1), FloodTarget(1, other, 8080, ETH, 2)]
    pkts = [Ether(bytes(f)) for f in writer(targets=ts).frames(6)]
    assert [(p[IP].dst, p[TCP].dport) for p in pkts] == [
        (TARGET_IP, 80), ("198.18.1.2", 8080)] * 3
    assert (ts[0].sent, ts[1].sent) == (3, 3)


@pytest.mark.parametrize("version", [2, 3])
def test_a_written_slot_is_the_slot_put_writes_for_the_same_frame(version: int) -> None:
    """TxRing.put_written with the ring's slot prefix fills a slot byte for
    byte as put() does with the frame written alone (same seed)."""
    size, frame_size = 8192, 256
    mm_a, mm_b = mmap.mmap(-1, size), mmap.mmap(-1, size)
    ring_a = TxRing(mm_a, slot_offsets(0, 4096, 2, frame_size), frame_size, version)
    ring_b = TxRing(mm_b, slot_offsets(0, 4096, 2, frame_size), frame_size, version)
    n = frame_len(True)
    w = writer(5, seed=3, prefix=ring_a.slot_prefix(n))
    assert ring_a.put_written(w, 3, n) == 3
    assert ring_b.put(writer(5, seed=3).frames(3)) == 3
    assert mm_a[:] == mm_b[:]
    assert (ring_a.frames, ring_a.bytes) == (3, 3 * n)
    # A slot the kernel still holds stops the writer (not counted a drop).
    status = 20 if version == 3 else 0
    slots = slot_offsets(0, 4096, 2, frame_size)
    struct.pack_into("=I", mm_a, slots[3] + status, 1)
    assert ring_a.put_written(w, 5, n) == 0 and ring_a.ring_full == 0


# -- the answers: a scripted peer -------------------------------------------


def syn_ack_or_rst(syn: dpkt.ethernet.Ethernet, flags: int, ack_delta: int = 1) -> bytes:
    ip, tcp = syn.data, syn.data.data
    t = dpkt.tcp.TCP(sport=tcp.dport, dport=tcp.sport, seq=0 if flags & dpkt.tcp.TH_RST
                     else 0x55AA55AA, ack=(tcp.seq + ack_delta) & 0xFFFFFFFF, flags=flags,
                     win=65160, off=5)
    i = dpkt.ip.IP(src=ip.dst, dst=ip.src, p=6, ttl=64, data=t)
    i.len = 20 + len(bytes(t))
    return bytes(dpkt.ethernet.Ethernet(src=syn.dst, dst=syn.src, type=0x0800, data=i))


@dataclass
class Peer:
    """The target on the other end of the pipe: answers ARP for its address
    and each SYN by ``answer(i)`` (i: the SYN's arrival order), one of
    "synack", "rst", "none", "twice" (a SYN-ACK and its retransmission),
    "wrong" (a SYN-ACK acknowledging another number)."""

    dev: PipeDevice
    answer: Callable[[int], str]
    syns: list[dpkt.ethernet.Ethernet] = field(default_factory=list)
    others: list[bytes] = field(default_factory=list)  # every other frame from the stack

    def __call__(self, now: float) -> None:
        out: list[bytes] = []
        for raw in self.dev.recv_batch(1 << 20, now):
            eth = dpkt.ethernet.Ethernet(raw)
            if isinstance(eth.data, dpkt.arp.ARP):
                a = eth.data
                if a.op == dpkt.arp.ARP_OP_REQUEST and a.tpa == TARGET:
                    reply = dpkt.arp.ARP(op=dpkt.arp.ARP_OP_REPLY, sha=TARGET_MAC, spa=TARGET,
                                         tha=a.sha, tpa=a.spa)
                    out.append(bytes(dpkt.ethernet.Ethernet(src=TARGET_MAC, dst=a.sha,
                                                            type=0x0806, data=reply)))
                continue
            tcp = eth.data.data if isinstance(eth.data, dpkt.ip.IP) else None
            if not isinstance(tcp, dpkt.tcp.TCP) or tcp.flags != dpkt.tcp.TH_SYN:
                self.others.append(raw)
                continue
            i = len(self.syns)
            self.syns.append(eth)
            what = self.answer(i)
            if what in ("synack", "twice"):
                out.append(syn_ack_or_rst(eth, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK))
            if what == "twice":
                out.append(out[-1])
            if what == "rst":
                out.append(syn_ack_or_rst(eth, dpkt.tcp.TH_RST | dpkt.tcp.TH_ACK))
            if what == "wrong":
                out.append(syn_ack_or_rst(eth, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK, 7))
        if out:
            self.dev.send_batch(out, now)


class FakeClock:
    def __init__(self, step: float = 1e-4) -> None:
        self.t = 100.0
        self.step = step

    def __call__(self) -> float:
        self.t += self.step
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def flood_run(answer: Callable[[int], str], *, sources: int = 4, clock: FakeClock | None = None,
              **config: object) -> tuple[Flood, Peer, Stack]:
    a, b = pipe_pair(queue_len=1 << 16)
    stack = Stack()
    iface = stack.add_interface(a, f"{OUR_IP}/24", mac=OUR_MAC)
    for i in range(1, sources):
        stack.add_address(iface, f"198.18.1.{10 + i}")
    peer = Peer(b, answer)
    clock = clock or FakeClock()
    cfg = FloodConfig(((TARGET, 80),), grace=0.5, seed=7, **config)  # type: ignore[arg-type]
    flood = Flood(stack, iface, cfg, (FIRST, sources))
    flood.resolve(clock, sleep=clock.sleep, between=peer)
    flood.run(clock, clock.sleep, between=peer)
    return flood, peer, stack


SCRIPT = ["synack", "rst", "none", "twice", "wrong"]


def test_answers_are_counted_per_syn_and_none_is_answered() -> None:
    flood, peer, stack = flood_run(lambda i: SCRIPT[i % 5], count=1000, batch=64)
    (t,) = flood.targets
    assert flood.sent == t.sent == len(peer.syns) == 1000
    assert t.synack == 400  # "synack" and "twice"
    assert t.rst == 200
    assert t.dup == 200  # the second SYN-ACK of "twice"
    assert t.unmatched == 200  # "wrong": acknowledges no SYN of ours
    assert t.unanswered == 400  # "none" and "wrong"
    assert t.other == 0
    # The stack sent nothing but the SYNs and its ARP: no RST for any
    # SYN-ACK, no ACK, and it keeps no connection or timer for them.
    assert [f for f in peer.others if f[12:14] != b"\x08\x06"] == []
    assert stack.tcp.conns == {} and not stack.tcp.tw.records
    c = stack.counters.snapshot(nonzero=True)
    assert c.get("TcpOutRsts", 0) == 0 and c.get("TcpOutSegs", 0) == 0
    assert c["DropFloodAnswerUnmatched"] == 200
    # TCP is the stack's again after the run.
    assert stack.ipv4.protocols[6] is stack.tcp


def test_tcp_is_handed_back_and_answers_then_get_the_stack_rst() -> None:
    """After the flood, a late SYN-ACK is the TCP layer's again (RFC 9293
    3.10.7.1 answers it with a RST): the interception ends with the run."""
    flood, peer, stack = flood_run(lambda i: "none", count=10)
    late = syn_ack_or_rst(peer.syns[0], dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK)
    now = stack.now + 0.01
    peer.dev.send_batch([late], now)
    stack.poll(now)
    out = [dpkt.ethernet.Ethernet(f) for f in peer.dev.recv_batch(10, now)]
    assert [e.data.data.flags for e in out if isinstance(e.data, dpkt.ip.IP)] == [
        dpkt.tcp.TH_RST]
    assert flood.targets[0].synack == 0


def test_the_count_bounds_the_run_exactly() -> None:
    flood, peer, _ = flood_run(lambda i: "synack", count=777, batch=100, duration=60.0)
    assert flood.sent == len(peer.syns) == 777
    r = build(flood)
    assert r["stopped_by"] == "count" and r["targets"][0]["synack"] == 777
    assert r["targets"][0]["answered_fraction"] == 1.0


def test_the_duration_bounds_the_run() -> None:
    clock = FakeClock(step=0.01)  # every clock read moves 10 ms on
    flood, peer, _ = flood_run(lambda i: "none", count=MAX_COUNT, duration=0.5, batch=10,
                               clock=clock)
    assert flood.send_seconds >= 0.5 and flood.send_seconds < 0.6
    assert 0 < flood.sent == len(peer.syns) < 1000
    assert build(flood)["stopped_by"] == "duration"


def test_the_rate_is_kept() -> None:
    clock = FakeClock(step=1e-4)
    flood, peer, _ = flood_run(lambda i: "synack", count=100_000, duration=1.0, rate=2000.0,
                               clock=clock)
    assert 1900 <= flood.sent <= 2100 and len(peer.syns) == flood.sent
    r = build(flood)
    assert r["rate"]["reached"] and r["stopped_by"] == "duration"
    assert r["targets"][0]["synack"] == flood.sent


def test_a_rate_not_reached_is_said() -> None:
    # One SYN per step and 10 ms per clock read: at most ~50 SYNs/s.
    clock = FakeClock(step=0.01)
    flood, _, _ = flood_run(lambda i: "none", count=1000, duration=1.0, rate=10_000.0, batch=1,
                            clock=clock)
    r = build(flood)
    assert not r["rate"]["reached"]
    assert "rate NOT reached" in summary(r)


def test_every_source_address_is_answered_by_arp() -> None:
    """The target must reach each source: the stack answers ARP for them all."""
    _flood, peer, stack = flood_run(lambda i: "none", count=10, sources=50)
    frames = []
    for i in range(50):
        req = dpkt.arp.ARP(op=dpkt.arp.ARP_OP_REQUEST, sha=TARGET_MAC, spa=TARGET,
                           tha=b"\0" * 6, tpa=(FIRST + i).to_bytes(4, "big"))
        frames.append(bytes(dpkt.ethernet.Ethernet(src=TARGET_MAC, dst=b"\xff" * 6,
                                                   type=0x0806, data=req)))
    now = stack.now + 0.01
    peer.dev.send_batch(frames, now)
    stack.poll(now)
    replies = [dpkt.ethernet.Ethernet(f).data for f in peer.dev.recv_batch(100, now)]
    assert sorted(int.from_bytes(a.spa, "big") - FIRST for a in replies
                  if a.op == dpkt.arp.ARP_OP_REPLY) == list(range(50))


def test_answer_memory_is_one_bit_per_syn_and_does_not_grow() -> None:
    """Nothing is kept per answer: a bit per SYN of the count, allocated at
    the start, and repeated or forged answers add nothing."""
    import tracemalloc

    a, _b = pipe_pair(queue_len=1 << 16)
    stack = Stack()
    iface = stack.add_interface(a, f"{OUR_IP}/24", mac=OUR_MAC)
    w = writer()
    answers = FloodAnswers(stack.host, stack.ipv4, stack.tcp, w, 80_000)
    assert len(answers.answered) == 10_000
    answers.install()
    syns = [dpkt.ethernet.Ethernet(bytes(f)) for f in w.frames(2000)]
    batch = [syn_ack_or_rst(s, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK) for s in syns]
    wrong = [syn_ack_or_rst(s, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK, 3) for s in syns]
    stack.ethernet.input(iface, batch)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(5):
        stack.ethernet.input(iface, batch)
        stack.ethernet.input(iface, wrong)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 4096, grown
    t = w.targets[0]
    assert (t.synack, t.dup, t.unmatched) == (2000, 10_000, 10_000)
    assert stack.tcp.conns == {} and len(stack.timers) == 0


def test_no_route_or_no_arp_answer_is_one_error() -> None:
    a, _b = pipe_pair()
    stack = Stack()
    iface = stack.add_interface(a, f"{OUR_IP}/24", mac=OUR_MAC)
    clock = FakeClock()
    far = wip.addr_from_str("198.19.0.1")
    with pytest.raises(FloodError, match="no route"):
        Flood(stack, iface, FloodConfig(((far, 80),)), (FIRST, 1)).resolve(clock)
    with pytest.raises(FloodError, match=r"no ARP answer from 198\.18\.1\.1"):
        Flood(stack, iface, FloodConfig(((TARGET, 80),)), (FIRST, 1)).resolve(
            clock, 0.5, sleep=clock.sleep)
    with pytest.raises(FloodError, match="one of our own"):
        Flood(stack, iface, FloodConfig(((wip.addr_from_str(OUR_IP), 80),)), (FIRST, 1))


@pytest.mark.parametrize(("kw", "why"), [
    ({"count": 0}, "--count 0"), ({"count": MAX_COUNT + 1}, "a flood is bounded"),
    ({"duration": 0.0}, "--duration"), ({"duration": 1e9}, "a flood is bounded"),
    ({"rate": -1.0}, "--rate"), ({"rate": float("inf")}, "--rate"), ({"grace": 99.0}, "--grace"),
])
def test_an_unbounded_or_bad_config_is_refused(kw: dict[str, float], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        FloodConfig(((TARGET, 80),), **kw)  # type: ignore[arg-type]


def test_the_summary_says_what_the_json_says() -> None:
    flood, _, _ = flood_run(lambda i: SCRIPT[i % 5], count=500)
    r = build(flood, {"rx_kernel_drops": 3, "link_rx_dropped": 4, "link_tx_dropped": 5})
    text = summary(r)
    t = r["targets"][0]
    assert f"{r['sent']} SYNs" in text
    assert (f"{t['synack']} SYN-ACKs" in text and f"{t['rst']} RSTs" in text
            and f"{t['unanswered']} unanswered" in text)
    assert f"{t['repeated_answers']} repeated answers" in text
    assert "3 frames lost by the kernel" in text
    assert "4 frames dropped by the kernel on the link's way in" in text
    assert "5 frames dropped by the kernel on the link's way out" in text
    assert r["sources"] == {"first": OUR_IP, "last": "198.18.1.13", "count": 4,
                            "order": "in turn"}


# -- the answers taken in the receive ring ------------------------------------

_SLOT = 256
_MAC_OFF = 32 + 10  # tpacket2_hdr (and the sockaddr_ll room), then the vnet header


def ring_of(frames: list[tuple[bytes, bool]]) -> RxRingV2:
    """A TPACKET_V2 receive ring in anonymous memory holding ``frames``
    (frame, the kernel vouched for its checksum), as the kernel writes them."""
    mm = mmap.mmap(-1, _SLOT * (len(frames) + 1))
    slots = [i * _SLOT for i in range(len(frames) + 1)]
    for off, (frame, trusted) in zip(slots, frames, strict=False):
        struct.pack_into("=IIIH", mm, off, 1, len(frame), len(frame), _MAC_OFF)
        mm[off + _MAC_OFF - 10] = 2 if trusted else 0  # VIRTIO_NET_HDR_F_DATA_VALID
        mm[off + _MAC_OFF:off + _MAC_OFF + len(frame)] = frame
    return RxRingV2(mm, slots, 10)


def answer_frames(syns: list[dpkt.ethernet.Ethernet], trusted: bool) -> list[bytes]:
    """Every kind of answer, and frames that are no answer at all (a frame
    whose transport checksum the kernel vouched for has a good one)."""
    sa, rst = dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK, dpkt.tcp.TH_RST | dpkt.tcp.TH_ACK
    out = []
    for i, s in enumerate(syns):
        kind = i % 8
        f = syn_ack_or_rst(s, rst if kind == 1 else sa, 5 if kind == 2 else 1)
        if kind == 3:
            f = f[:24] + bytes([f[24] ^ 0xFF]) + f[25:]  # IPv4 header checksum broken
        if kind == 4 and not trusted:
            f = f[:50] + bytes([f[50] ^ 0xFF]) + f[51:]  # TCP checksum broken
        if kind == 5:
            f = b"\x02\x00\x00\x00\x09\x09" + f[6:]  # another host's MAC
        if kind == 6:
            f = f[:34] + b"\x00\x51" + f[36:]  # another port (its checksum then wrong)
        out.append(f)
        if kind == 7:
            out.append(f)  # a retransmitted SYN-ACK
    arp = dpkt.arp.ARP(op=dpkt.arp.ARP_OP_REQUEST, sha=TARGET_MAC, spa=TARGET, tha=b"\0" * 6,
                       tpa=FIRST.to_bytes(4, "big"))
    out.append(bytes(dpkt.ethernet.Ethernet(src=TARGET_MAC, dst=b"\xff" * 6, type=0x0806,
                                            data=arp)))
    return out


def counts(t: FloodTarget) -> tuple[int, ...]:
    return (t.synack, t.rst, t.dup, t.unmatched, t.other, t.unanswered)


@pytest.mark.parametrize("trusted", [True, False])
def test_the_ring_tap_counts_what_the_stack_path_counts(trusted: bool) -> None:
    """Answers taken in the ring (FloodTap) and answers through the layers
    (FloodAnswers.input) are counted alike, whatever the frame; the tap
    leaves to the stack every frame it does not take (an untrusted checksum,
    a broken header, ARP, another host's or port's), so the stack's
    checks still apply to them."""
    results = []
    for via_tap in (False, True):
        a, _b = pipe_pair()
        stack = Stack()
        iface = stack.add_interface(a, f"{OUR_IP}/24", mac=OUR_MAC)
        stack.start(1.0)
        w = writer(seed=11)
        answers = FloodAnswers(stack.host, stack.ipv4, stack.tcp, w, 1000)
        answers.install()
        syns = [dpkt.ethernet.Ethernet(bytes(f)) for f in w.frames(400)]
        frames = answer_frames(syns, trusted)
        if via_tap:
            ring = ring_of([(f, trusted) for f in frames])
            ring.tap = FloodTap(answers, OUR_MAC)
            rest = ring.recv(len(frames))
            taken = ring.st.tapped
            assert taken + len(rest) == len(frames)
            # Kinds 0, 1, 2, 4 and 7 twice; nothing the kernel did not vouch for.
            assert taken == (300 if trusted else 0)
        else:
            rest = frames
        stack.ethernet.input(iface, rest)
        t = w.targets[0]
        results.append(counts(t))
        assert stack.counters.TcpOutRsts == 0 and stack.tcp.conns == {}
    assert results[0] == results[1]
    # 50 of each kind: SYN-ACKs (0, 4 when its checksum is good, 7 twice),
    # RSTs (1), wrong acks (2); the rest is not the flood's or not valid.
    assert results[0][:4] == (150 if trusted else 100, 50, 50, 50)
