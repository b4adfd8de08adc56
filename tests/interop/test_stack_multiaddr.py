"""Many addresses from one stack (``ustack up --sources N``) against the
Linux kernel: each answers ARP and ping, and the kernel's neighbour table
learns every one asked for, with the stack's one MAC; a kernel server
accepts a connection from each (``Stack.tcp_connect(..., source=...)``).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time

import pytest

from ustack.bringup import LinkedStack, LinkOptions
from ustack.tcp.socket import TcpSocket
from ustack_testbed import Topology

pytestmark = pytest.mark.root

SOURCES = 50


def ping(topo: Topology, ip: str) -> int:
    cmd = ["timeout", "10", "ping", "-n", "-c", "1", "-W", "1", ip]
    return topo.peer_ns.run(cmd, check=False, timeout=15).returncode


def test_fifty_addresses_answer_ping_and_the_kernel_learns_them(topo: Topology) -> None:
    stack = topo.start_ustack("--sources", str(SOURCES))
    assert stack.report()["interfaces"][0]["addresses"] == SOURCES
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


def test_a_kernel_server_accepts_a_connection_from_each_source(topo: Topology) -> None:
    host_ip = topo.peer_cidr if topo.kind == "tap" else None
    options = LinkOptions(topo.link, topo.stack_cidr, host_ip=host_ip, sources=20)
    up = topo.stack_ns.call(LinkedStack(options).open)
    lsock = topo.peer_ns.socket(socket.AF_INET, socket.SOCK_STREAM)
    accepted: list[socket.socket] = []
    try:
        lsock.bind((topo.peer_ip, 0))
        lsock.listen(64)
        lsock.setblocking(False)
        port = lsock.getsockname()[1]
        stack = up.stack
        clients: list[TcpSocket] = [stack.tcp_connect((topo.peer_ip, port), source=(ip, 0))
                                    for ip in options.addresses()]
        peers: set[str] = set()

        def all_accepted() -> bool:
            try:
                while True:
                    conn, addr = lsock.accept()
                    accepted.append(conn)
                    peers.add(addr[0])
            except BlockingIOError:
                pass
            return len(accepted) == len(clients)

        deadline = time.monotonic() + 20
        stack.run(until=lambda: all_accepted() or time.monotonic() > deadline, max_wait=0.05)
        assert peers == set(options.addresses())
        assert {c.getsockname()[0] for c in clients} == peers
    finally:
        for conn in accepted:
            conn.close()
        lsock.close()
        up.close()
