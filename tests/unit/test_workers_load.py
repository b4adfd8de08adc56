"""``--workers`` pieces that run without root: the classic BPF programs
(run here by a small interpreter of the instructions they use, on frames
scapy builds) and ``ustack load``'s split and merge of the workers' runs."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether

from ustack.apps.load.histogram import Histogram
from ustack.apps.load.results import LoadStats
from ustack.cli.loadworkers import merge_stats, share, stats_doc
from ustack.link import bpf

OUTGOING, HOST = 4, 0


def run(prog: list[bpf.Insn], frame: bytes, pkttype: int = HOST) -> int:
    """What the kernel's classic BPF would return for ``frame``."""
    a, pc = 0, 0
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        if code == bpf.LD_W_ABS:
            a = pkttype if k == bpf.SKF_AD_PKTTYPE else int.from_bytes(frame[k:k + 4], "big")
        elif code == bpf.LD_H_ABS:
            a = int.from_bytes(frame[k:k + 2], "big")
        elif code == bpf.JEQ_K:
            pc += jt if a == k else jf
        elif code == bpf.ALU_MOD_K:
            a %= k
        elif code == bpf.RET_K:
            return k
        else:
            raise AssertionError(f"opcode {code:#x} not interpreted")


def ipv4_to(dst: str) -> bytes:
    return bytes(Ether() / IP(src="198.18.1.1", dst=dst) / TCP(sport=80, dport=40000))


ARP_REQUEST = bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, psrc="198.18.1.1",
                                                        pdst="198.18.1.2"))
ARP_REPLY = bytes(Ether() / ARP(op=2, psrc="198.18.1.1", pdst="198.18.1.2"))


@pytest.mark.parametrize("count", [2, 3])
def test_address_partition_gives_each_address_to_one_worker(count: int) -> None:
    progs = [bpf.address_partition(count, k) for k in range(count)]
    for last in range(2, 12):
        dst = f"198.18.1.{last}"
        takers = [k for k, p in enumerate(progs) if run(p, ipv4_to(dst))]
        owner = (0xC6120100 + last) % count
        assert takers == [owner], (dst, takers)


def test_address_partition_arp_replies_to_all_requests_to_worker_0() -> None:
    progs = [bpf.address_partition(2, k) for k in range(2)]
    assert [bool(run(p, ARP_REPLY)) for p in progs] == [True, True]
    assert [bool(run(p, ARP_REQUEST)) for p in progs] == [True, False]
    other = bytes(Ether(type=0x86DD) / (b"\x60" * 40))  # IPv6: nobody's
    assert not any(run(p, other) for p in progs)


def test_arp_replies_by_direction() -> None:
    tap, packet = bpf.arp_replies(outgoing=True), bpf.arp_replies(outgoing=False)
    assert run(tap, ARP_REPLY, OUTGOING) and not run(tap, ARP_REPLY, HOST)
    assert run(packet, ARP_REPLY, HOST) and not run(packet, ARP_REPLY, OUTGOING)
    for prog in (tap, packet):
        for t in (HOST, OUTGOING):
            assert not run(prog, ARP_REQUEST, t)
            assert not run(prog, ipv4_to("198.18.1.2"), t)


def test_share_splits_evenly_and_adds_up() -> None:
    assert [share(10, 3, k) for k in range(3)] == [4, 3, 3]
    assert sum(share(7, 2, k) for k in range(2)) == 7


def _stats(nsources: int, latencies: list[int], started: float, ended: float) -> LoadStats:
    st = LoadStats(nsources)
    st.started, st.ended = started, ended
    st.sent = st.completed = len(latencies)
    st.status["2xx"] = len(latencies)
    st.errors["timeout"] = 1
    st.malformed["bad status line"] = 2
    for v in latencies:
        st.ttlb.record(v)
    st.src_conns = [1] * nsources
    st.src_completed = [len(latencies)] + [0] * (nsources - 1)
    return st


def test_merge_adds_the_workers_runs_up() -> None:
    a = _stats(2, [100, 200, 300], 10.0, 12.0)
    b = _stats(1, [5000], 10.5, 12.5)
    # Worker 0 had the global sources 0 and 2, worker 1 the source 1.
    merged = merge_stats([stats_doc(a), stats_doc(b)], [[0, 2], [1]], 3)
    assert (merged.sent, merged.completed, merged.status["2xx"]) == (4, 4, 4)
    assert merged.errors["timeout"] == 2 and merged.malformed == {"bad status line": 4}
    assert (merged.started, merged.ended) == (10.0, 12.5)
    assert merged.src_conns == [1, 1, 1]
    assert merged.src_completed == [3, 1, 0]
    whole = Histogram()
    for v in (100, 200, 300, 5000):
        whole.record(v)
    assert merged.ttlb.counts == whole.counts
    assert (merged.ttlb.count, merged.ttlb.min, merged.ttlb.max) == (4, 100, 5000)
    assert merged.ttlb.percentiles() == whole.percentiles()
