"""Many addresses from one stack (``ustack up --sources N``) against the
Linux kernel: each answers ARP and ping, and the kernel's neighbour table
learns every one asked for, with the stack's one MAC.
"""

from __future__ import annotations

import ipaddress
import re

import pytest

from ustack_testbed import Topology

pytestmark = pytest.mark.root

SOURCES = 50


def ping(topo: Topology, ip: str) -> int:
    cmd = ["timeout", "10", "ping", "-n", "-c", "1", "-W", "1", ip]
    return topo.peer_ns.run(cmd, check=False, timeout=15).returncode


def test_fifty_addresses_answer_ping_and_the_kernel_learns_them(topo: Topology) -> None:
    stack = topo.start_ustack("--sources", str(SOURCES))
    first = ipaddress.IPv4Address(topo.stack_ip)
    asked = [str(first + i) for i in (0, 1, 24, SOURCES - 1)]
    for ip in asked:
        assert ping(topo, ip) == 0, f"no answer from {ip}"
    neigh = topo.peer_ns.ip("neigh", "show", "dev", topo.peer_if).stdout.lower()
    for ip in asked:
        line = re.search(rf"^{re.escape(ip)} .*$", neigh, re.MULTILINE)
        assert line is not None, neigh
        assert f"lladdr {stack.mac.lower()}" in line.group(0), neigh
        assert not re.search(r"\b(failed|incomplete)\b", line.group(0)), neigh
    # One past the last is not ours: no ARP answer, no echo.
    past = str(first + SOURCES)
    assert ping(topo, past) != 0
    line = re.search(rf"^{re.escape(past)} .*$", neigh + topo.peer_ns.ip(
        "neigh", "show", past, "dev", topo.peer_if).stdout.lower(), re.MULTILINE)
    assert line is None or "lladdr" not in line.group(0), line
