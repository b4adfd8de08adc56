"""UDP against the Linux kernel: echo of every size class, closed ports.

Sizes: 1 and 2 (odd/even checksum tail, RFC 1071), 1472 (the largest that
fits one 1500-byte frame), 1473 (one byte more: two fragments), 3000 and
8000 (several fragments each way).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

from ustack_testbed import Topology, UstackProcess

pytestmark = pytest.mark.root

ECHO_PORT = 7
CLOSED_PORT = 9999


def pattern(size: int) -> bytes:
    """Not all zeros: a byte swap or a wrong offset must change the data."""
    return bytes((i * 7 + size) & 0xFF for i in range(size))


@pytest.mark.parametrize("size", [1, 2, 100, 1472, 1473, 3000, 8000])
def test_udp_echo(stack_topo: Topology, stack: UstackProcess, size: int) -> None:
    payload = pattern(size)
    with stack_topo.peer_ns.socket() as sock:
        sock.settimeout(3.0)
        sock.bind((stack_topo.peer_ip, 0))
        sock.sendto(payload, (stack_topo.stack_ip, ECHO_PORT))
        data, peer = sock.recvfrom(65535)
    assert peer == (stack_topo.stack_ip, ECHO_PORT)
    assert len(data) == size
    assert data == payload


def test_udp_echo_replies_fit_the_mtu(stack_topo: Topology, stack: UstackProcess) -> None:
    """Over a TAP the kernel would accept an oversized frame; check the wire."""
    payload = pattern(8000)
    bpf = f"udp and src host {stack_topo.stack_ip}"
    with (
        stack_topo.peer_ns.capture(stack_topo.peer_if, bpf) as cap,
        stack_topo.peer_ns.socket() as sock,
    ):
        sock.settimeout(3.0)
        sock.sendto(payload, (stack_topo.stack_ip, ECHO_PORT))
        assert sock.recv(65535) == payload
    sizes = [len(f) for f in cap.frames]
    assert len(sizes) >= 6, sizes  # 8008 bytes of UDP in 1480-byte pieces
    assert max(sizes) <= 1514, sizes


def test_udp_echo_many_in_a_row(stack_topo: Topology, stack: UstackProcess) -> None:
    """500 ping-pongs: nothing lost, no stall; bounded to 20 s."""
    n = 500
    deadline = time.monotonic() + 20
    with stack_topo.peer_ns.socket() as sock:
        sock.settimeout(2.0)
        sock.connect((stack_topo.stack_ip, ECHO_PORT))
        for i in range(n):
            msg = i.to_bytes(4, "big") * 25
            sock.send(msg)
            assert sock.recv(2048) == msg, f"datagram {i}"
            assert time.monotonic() < deadline, f"only {i} echoes in 20 s"


def test_nmap_reports_closed_udp_port(
    stack_topo: Topology, stack: UstackProcess, need_tool: Callable[[str], str]
) -> None:
    need_tool("nmap")
    cmd = ["nmap", "-n", "-Pn", "-sU", "-p", str(CLOSED_PORT), "--max-retries", "2"]
    cmd += ["--host-timeout", "30s", stack_topo.stack_ip]
    proc = stack_topo.peer_ns.run(["timeout", "45", *cmd], check=False, timeout=50)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(rf"^{CLOSED_PORT}/udp\s+closed\b", proc.stdout, re.M), proc.stdout


def test_closed_port_answers_port_unreachable(stack_topo: Topology, stack: UstackProcess) -> None:
    """A connected UDP socket sees ICMP port unreachable as ECONNREFUSED."""
    with stack_topo.peer_ns.socket() as sock:
        sock.settimeout(3.0)
        sock.connect((stack_topo.stack_ip, CLOSED_PORT))
        sock.send(b"anyone?")
        with pytest.raises(ConnectionRefusedError):
            sock.recv(100)
