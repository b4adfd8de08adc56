"""Ready-made topologies: a stack and its kernel peer over a TAP or a veth pair."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ustack_testbed.names import check_test_address
from ustack_testbed.netns import Netns
from ustack_testbed.process import UstackProcess
from ustack_testbed.testbed import Testbed

TAP_PEER_CIDR = "198.18.0.1/24"
TAP_STACK_CIDR = "198.18.0.2/24"
PACKET_PEER_CIDR = "198.18.1.1/24"
PACKET_STACK_CIDR = "198.18.1.2/24"


@dataclass(eq=False)
class Topology:
    """Where a stack runs and where its kernel peer sits.

    ``tap``: one namespace holds both; the stack creates TAP ``stack_if`` and
    gives the kernel side ``peer_cidr``; ``peer_if`` is that same TAP seen
    from the kernel.  ``packet``: ``peer_ns`` has veth end ``peer_if`` with
    ``peer_cidr``; ``stack_ns`` has the other end ``stack_if`` up without an
    IP, for AF_PACKET.  Kernel-side tools run in ``peer_ns`` either way.
    ``offloads``: the veth keeps the kernel's default offloads (transmit
    checksum, TSO/GSO, GRO), so the kernel hands AF_PACKET frames with
    partial checksums and 64 KB super-frames, as on any host; off, every
    frame is whole and checksummed.
    """

    kind: str
    testbed: Testbed = field(repr=False)
    stack_ns: Netns
    peer_ns: Netns
    stack_if: str
    peer_if: str
    stack_cidr: str
    peer_cidr: str
    offloads: bool = False

    @property
    def stack_ip(self) -> str:
        return self.stack_cidr.partition("/")[0]

    @property
    def peer_ip(self) -> str:
        return self.peer_cidr.partition("/")[0]

    @property
    def link(self) -> str:
        return f"{self.kind}:{self.stack_if}"

    def ustack_args(self, *extra: str) -> list[str]:
        """``up --link ... --ip ...`` (plus ``--host-ip`` for tap) and ``extra``."""
        args = ["up", "--link", self.link, "--ip", self.stack_cidr]
        if self.kind == "tap":
            args += ["--host-ip", self.peer_cidr]
        return [*args, *extra]

    def start_ustack(
        self, *extra: str, timeout: float = 10.0, env: Mapping[str, str] | None = None
    ) -> UstackProcess:
        """``ustack up`` on this topology (``ustack_args``); ``env``: its whole
        environment (default: this process's), see ``Testbed.start_ustack``."""
        return self.testbed.start_ustack(self.stack_ns, self.ustack_args(*extra), timeout, env)


def tap_topology(
    tb: Testbed, stack_cidr: str = TAP_STACK_CIDR, peer_cidr: str = TAP_PEER_CIDR
) -> Topology:
    """A namespace for ``ustack up --link tap:NAME --host-ip PEER --ip STACK``."""
    check_test_address(stack_cidr)
    check_test_address(peer_cidr)
    ns = tb.netns("tap")
    # Connection-per-request clients in this namespace would otherwise run
    # out of ports: tcp_tw_reuse=2 (the default) only applies to loopback.
    ns.sysctl("net.ipv4.tcp_tw_reuse", "1")
    tap = tb.ifname("t", ns)
    return Topology("tap", tb, ns, ns, tap, tap, stack_cidr, peer_cidr)


def packet_topology(
    tb: Testbed,
    stack_cidr: str = PACKET_STACK_CIDR,
    peer_cidr: str = PACKET_PEER_CIDR,
    *,
    offloads: bool = False,
) -> Topology:
    """A veth pair: kernel peer with ``peer_cidr`` in one namespace, the bare
    other end (no IP) in the namespace the stack runs in; offloads off unless
    ``offloads`` (then the kernel's defaults, as a fresh veth has them)."""
    check_test_address(stack_cidr)
    peer = tb.netns("peer")
    peer.sysctl("net.ipv4.tcp_tw_reuse", "1")
    host = tb.netns("host")
    peer_if, host_if = tb.veth(peer, host, ip_a=peer_cidr, offloads_off=not offloads)
    return Topology(
        "packet", tb, host, peer, host_if, peer_if, stack_cidr, peer_cidr, offloads=offloads
    )


# Topology names for parametrising; "packet-offload" is AF_PACKET on a veth
# with the kernel's default offloads.
KINDS = ("tap", "packet", "packet-offload")


def topology(tb: Testbed, kind: str) -> Topology:
    """A topology by name (``KINDS``), for parametrising."""
    if kind == "tap":
        return tap_topology(tb)
    if kind == "packet":
        return packet_topology(tb)
    if kind == "packet-offload":
        return packet_topology(tb, offloads=True)
    raise ValueError(f"unknown topology {kind!r} (one of {', '.join(KINDS)})")
