"""Disposable test hosts: network namespaces, veth pairs, TAP devices, stacks.

Tests, the demo and the benchmarks need a Linux kernel to talk to that is not
the machine's own network.  A :class:`Testbed` builds one out of network
namespaces joined by veth pairs or a TAP, with addresses from 198.18.0.0/15
(RFC 2544's benchmarking range, never routed) and no default route, so no
frame can leave the machine.  Everything it creates is recorded and deleted
again: by the context manager, at interpreter exit, on SIGTERM/SIGHUP, and, for
a run that was killed outright, by :func:`reap_stale` on the next run (names
carry the creating process's pid, so a leftover whose owner is dead is known
to be garbage and a parallel run's live objects are left alone).

Example::

    with Testbed() as tb:
        topo = tap_topology(tb)
        stack = topo.start_ustack("--service", "udp-echo:7")
        topo.peer_ns.run(["ping", "-c", "1", "-W", "2", topo.stack_ip])
        counters = stack.stop()

Only the standard library is used; the work is done by ``ip``, ``ethtool``
and ``sysctl`` run as subprocesses (root is required for anything but the
pure helpers: names, the address guard, output and pcap parsing).

The modules: ``names`` (pid-tagged names, the 198.18.0.0/15 guard),
``commands`` (running the tools), ``netns`` (a namespace), ``capture``
(tcpdump, pcap), ``process`` (a running ``ustack up``), ``testbed``
(:class:`Testbed`: namespaces, veth pairs, TAPs, cleanup), ``topology``
(ready-made stack + kernel peer; two peers through the relay), ``relay``
(the impairment relay: loss, reordering, duplication, corruption, delay
between two namespaces), ``reap`` (leftovers of killed runs);
``python -m ustack_testbed {list,reap,relay}``.
"""

from __future__ import annotations

from ustack_testbed.capture import Capture, read_pcap
from ustack_testbed.errors import TestbedError, TestbedWarning
from ustack_testbed.names import (
    IFNAME_MAX,
    NAME_PREFIX,
    TEST_NET,
    Namer,
    check_test_address,
    owner_pid,
)
from ustack_testbed.netns import Netns
from ustack_testbed.process import UstackProcess, parse_counters, parse_ready_line, stack_name
from ustack_testbed.reap import reap_stale
from ustack_testbed.relay import Relay, RelayProcess
from ustack_testbed.testbed import Testbed, cleanup_all
from ustack_testbed.topology import (
    PACKET_PEER_CIDR,
    PACKET_STACK_CIDR,
    RELAY_LEFT_CIDR,
    RELAY_RIGHT_CIDR,
    TAP_PEER_CIDR,
    TAP_STACK_CIDR,
    RelayTopology,
    Topology,
    packet_topology,
    relay_topology,
    tap_topology,
    topology,
)

__all__ = [
    "IFNAME_MAX",
    "NAME_PREFIX",
    "PACKET_PEER_CIDR",
    "PACKET_STACK_CIDR",
    "RELAY_LEFT_CIDR",
    "RELAY_RIGHT_CIDR",
    "TAP_PEER_CIDR",
    "TAP_STACK_CIDR",
    "TEST_NET",
    "Capture",
    "Namer",
    "Netns",
    "Relay",
    "RelayProcess",
    "RelayTopology",
    "Testbed",
    "TestbedError",
    "TestbedWarning",
    "Topology",
    "UstackProcess",
    "check_test_address",
    "cleanup_all",
    "owner_pid",
    "packet_topology",
    "parse_counters",
    "parse_ready_line",
    "read_pcap",
    "reap_stale",
    "relay_topology",
    "stack_name",
    "tap_topology",
    "topology",
]
