"""Datagrams with a wrong checksum get no answer and are counted.

hping3 ``-b`` sends a deliberately wrong ICMP/UDP checksum.  RFC 1122
sections 3.2.2.6 and 4.1.3.4: such datagrams are silently discarded -- no
echo reply, no UDP echo and no port unreachable -- and the stack counts them
as IcmpInCsumErrors / UdpInCsumErrors.  Each case has a control with a good
checksum, so "no reply" cannot pass because hping3 itself failed.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from ustack_testbed import Topology, UstackProcess

pytestmark = pytest.mark.root

COUNT = 3


def hping(topo: Topology, need: Callable[[str], str], *args: str) -> int:
    """Send COUNT packets; return how many replies hping3 saw."""
    need("hping3")
    cmd = ["hping3", "-n", "-c", str(COUNT), "-i", "u100000", *args, topo.stack_ip]
    proc = topo.peer_ns.run(["timeout", "15", *cmd], check=False, timeout=20)
    # The statistics go to stderr, the replies to stdout.
    m = re.search(r"(\d+) packets transmitted, (\d+) packets received", proc.stderr)
    assert m is not None, f"{' '.join(cmd)}:\n{proc.stdout}{proc.stderr}"
    assert int(m.group(1)) == COUNT
    return int(m.group(2))


def counter_delta(before: dict[str, int], after: dict[str, int], name: str) -> int:
    assert name in after, f"stack has no counter {name}; it has {sorted(after)}"
    return after[name] - before.get(name, 0)


def test_icmp_good_checksum_is_answered(
    stack_topo: Topology, stack: UstackProcess, need_tool: Callable[[str], str]
) -> None:
    assert hping(stack_topo, need_tool, "-1") == COUNT


def test_icmp_bad_checksum_is_dropped_and_counted(
    stack_topo: Topology, stack: UstackProcess, need_tool: Callable[[str], str]
) -> None:
    before = stack.stats()
    assert hping(stack_topo, need_tool, "-1", "-b") == 0
    assert counter_delta(before, stack.stats(), "IcmpInCsumErrors") == COUNT


def test_udp_closed_port_good_checksum_gets_unreachable(
    stack_topo: Topology, stack: UstackProcess, need_tool: Callable[[str], str]
) -> None:
    # >= 1: a stack may rate-limit ICMP errors (RFC 1812 section 4.3.2.8).
    assert hping(stack_topo, need_tool, "-2", "-p", "9999") >= 1


@pytest.mark.parametrize("port", [7, 9999], ids=["echo-port", "closed-port"])
def test_udp_bad_checksum_is_dropped_and_counted(
    stack_topo: Topology, stack: UstackProcess, need_tool: Callable[[str], str], port: int
) -> None:
    before = stack.stats()
    assert hping(stack_topo, need_tool, "-2", "-b", "-p", str(port), "-d", "10") == 0
    assert counter_delta(before, stack.stats(), "UdpInCsumErrors") == COUNT
