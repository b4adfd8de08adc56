"""ICMP echo and ARP against the Linux kernel, over TAP and AF_PACKET.

``ping -s 3000`` exceeds the 1500-byte MTU: the kernel fragments the request
(the stack must reassemble it, RFC 791 section 3.2) and the stack must
fragment its 3028-byte reply, checked on the wire, not only by ping.
"""

from __future__ import annotations

import re
import socket

import dpkt
import pytest

from ustack_testbed import Topology, UstackProcess

pytestmark = pytest.mark.root


def ping(topo: Topology, size: int, count: int = 3) -> str:
    cmd = ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2", "-s", str(size), topo.stack_ip]
    proc = topo.peer_ns.run(["timeout", "20", *cmd], check=False, timeout=25)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}"
    return proc.stdout


@pytest.mark.parametrize("size", [56, 3000])
def test_ping(stack_topo: Topology, stack: UstackProcess, size: int) -> None:
    out = ping(stack_topo, size)
    assert f"{size + 8} bytes from {stack_topo.stack_ip}" in out
    assert re.search(r"\b3 packets transmitted, 3 received\b", out), out


def ip_packets_from(frames: list[bytes], src: str) -> list[dpkt.ip.IP]:
    packed = socket.inet_aton(src)
    out = []
    for frame in frames:
        eth = dpkt.ethernet.Ethernet(frame)
        if isinstance(eth.data, dpkt.ip.IP) and eth.data.src == packed:
            out.append(eth.data)
    return out


def test_large_reply_is_fragmented_to_the_mtu(stack_topo: Topology, stack: UstackProcess) -> None:
    size = 3000
    bpf = f"icmp and host {stack_topo.stack_ip}"
    with stack_topo.peer_ns.capture(stack_topo.peer_if, bpf) as cap:
        ping(stack_topo, size, count=1)
    assert all(len(f) <= 1514 for f in cap.frames), [len(f) for f in cap.frames]
    frags = sorted(ip_packets_from(cap.frames, stack_topo.stack_ip), key=lambda p: p.offset)
    assert len(frags) >= 3, f"expected >= 3 fragments of the reply, saw {len(frags)}"
    assert len({p.id for p in frags}) == 1
    # Fragments tile the datagram: each starts where the previous ended,
    # all but the last have More Fragments set (RFC 791 section 3.2).
    expect = 0
    for p in frags:
        assert p.offset * 8 == expect
        expect += p.len - p.hl * 4
    assert [p.mf for p in frags] == [1] * (len(frags) - 1) + [0]
    assert expect == 8 + size  # ICMP header + payload


def test_kernel_learns_the_stack_mac(stack_topo: Topology, stack: UstackProcess) -> None:
    ping(stack_topo, 56, count=1)
    out = stack_topo.peer_ns.ip("neigh", "show", stack_topo.stack_ip, "dev", stack_topo.peer_if)
    assert f"lladdr {stack.mac.lower()}" in out.stdout.lower(), out.stdout
    assert not re.search(r"\b(FAILED|INCOMPLETE)\b", out.stdout), out.stdout


def test_stack_learned_the_kernel_mac(stack_topo: Topology, stack: UstackProcess) -> None:
    ping(stack_topo, 56, count=1)
    kernel_mac = (
        stack_topo.peer_ns.ip("-o", "link", "show", stack_topo.peer_if)
        .stdout.split("link/ether", 1)[1]
        .split()[0]
    )
    arp = stack.report()["interfaces"][0]["arp"]
    assert arp.get(stack_topo.peer_ip, "").lower() == kernel_mac.lower(), arp


def test_ping_record_route_and_timestamp(stack_topo: Topology, stack: UstackProcess) -> None:
    """RFC 1122 3.2.2.6: the kernel's ``ping -R`` and ``ping -T`` (IP Record
    Route and Timestamp options) get the option back with the stack in it;
    iputils' ping is the judge of the reply's options."""
    base = ["ping", "-n", "-c", "1", "-W", "2"]
    rr = topo_run(stack_topo, [*base, "-R", stack_topo.stack_ip])
    assert re.search(r"^RR:", rr, re.M), rr
    route = re.findall(r"\d+\.\d+\.\d+\.\d+", rr.split("RR:", 1)[1])
    assert stack_topo.stack_ip in route, rr
    ts = topo_run(stack_topo, [*base, "-T", "tsandaddr", stack_topo.stack_ip])
    # The kernel's stamp first (absolute), then ours (printed as the
    # difference to the one before, in ms: the same clock, so about 0).
    stamps = re.findall(r"(\d+\.\d+\.\d+\.\d+)\s+(-?\d+)", ts.split("TS:", 1)[1])
    assert len(stamps) >= 2 and stamps[1][0] == stack_topo.stack_ip, ts
    assert abs(int(stamps[1][1])) < 1000, ts


def topo_run(topo: Topology, cmd: list[str]) -> str:
    proc = topo.peer_ns.run(["timeout", "10", *cmd], check=False, timeout=15)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}"
    return proc.stdout
