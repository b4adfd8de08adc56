"""Ready-made topologies: a stack and its kernel peer over a TAP or a veth pair, and two
peers with the impairment relay between them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ustack_testbed.names import check_test_address
from ustack_testbed.netns import Netns
from ustack_testbed.process import UstackProcess
from ustack_testbed.relay import RelayProcess
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
    """

    kind: str
    testbed: Testbed = field(repr=False)
    stack_ns: Netns
    peer_ns: Netns
    stack_if: str
    peer_if: str
    stack_cidr: str
    peer_cidr: str

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
    tb: Testbed, stack_cidr: str = PACKET_STACK_CIDR, peer_cidr: str = PACKET_PEER_CIDR
) -> Topology:
    """A veth pair: kernel peer with ``peer_cidr`` in one namespace, the bare
    other end (no IP, offloads off) in the namespace the stack runs in."""
    check_test_address(stack_cidr)
    peer = tb.netns("peer")
    peer.sysctl("net.ipv4.tcp_tw_reuse", "1")
    host = tb.netns("host")
    peer_if, host_if = tb.veth(peer, host, ip_a=peer_cidr)
    return Topology("packet", tb, host, peer, host_if, peer_if, stack_cidr, peer_cidr)


def topology(tb: Testbed, kind: str) -> Topology:
    """``tap_topology`` or ``packet_topology`` by name (for parametrising)."""
    if kind == "tap":
        return tap_topology(tb)
    if kind == "packet":
        return packet_topology(tb)
    raise ValueError(f"unknown topology {kind!r} (tap or packet)")


RELAY_LEFT_CIDR = "198.18.2.1/24"
RELAY_RIGHT_CIDR = "198.18.2.2/24"


@dataclass(eq=False)
class RelayTopology:
    """Two peers with the impairment relay between them (``ustack_testbed.relay``)::

        left_ns [left_if] --veth-- [relay_left] relay_ns [relay_right] --veth-- [right_if] right_ns

    ``right_if`` has ``right_cidr``; ``left_if`` has ``left_cidr`` while the
    left peer is the kernel (``set_left_kernel``) and no address while a
    stack attaches to it with AF_PACKET (``link``).  All four veth ends have
    offloads off, so every frame the relay sees is whole and checksummed.
    """

    testbed: Testbed = field(repr=False)
    left_ns: Netns
    relay_ns: Netns
    right_ns: Netns
    left_if: str
    relay_left: str
    relay_right: str
    right_if: str
    left_cidr: str
    right_cidr: str
    left_kernel: bool = False

    @property
    def left_ip(self) -> str:
        return self.left_cidr.partition("/")[0]

    @property
    def right_ip(self) -> str:
        return self.right_cidr.partition("/")[0]

    @property
    def link(self) -> str:
        """``--link`` for a stack on the left side."""
        return f"packet:{self.left_if}"

    def set_left_kernel(self, on: bool) -> None:
        """Give the left veth end its address (the kernel is the left peer) or take it away."""
        if on and not self.left_kernel:
            self.left_ns.add_address(self.left_if, self.left_cidr)
        elif not on and self.left_kernel:
            self.left_ns.ip("addr", "del", self.left_cidr, "dev", self.left_if, check=False)
        self.left_kernel = on

    def flush_neighbours(self) -> None:
        """Forget the MACs learnt: each left peer (a kernel, a new ustack) has its own."""
        self.left_ns.ip("neigh", "flush", "dev", self.left_if, check=False)
        self.right_ns.ip("neigh", "flush", "dev", self.right_if, check=False)

    def start_relay(
        self, fault: str = "", *, seconds: float = 600.0, limit: int | None = None
    ) -> RelayProcess:
        """A relay with ``fault`` (ustack's spec syntax) between the two sides;
        it stops by itself after ``seconds`` and with the testbed."""
        args = ["--left", self.relay_left, "--right", self.relay_right, "--fault", fault]
        args += ["--seconds", str(seconds)]
        if limit is not None:
            args += ["--limit", str(limit)]
        return RelayProcess(self.relay_ns, args)


def relay_topology(
    tb: Testbed,
    left_cidr: str = RELAY_LEFT_CIDR,
    right_cidr: str = RELAY_RIGHT_CIDR,
    *,
    left_kernel: bool = True,
) -> RelayTopology:
    """Three namespaces: left peer, relay, right peer (see ``RelayTopology``)."""
    check_test_address(left_cidr)
    left = tb.netns("left")
    relay = tb.netns("relay")
    right = tb.netns("right")
    for ns in (left, right):
        ns.sysctl("net.ipv4.tcp_tw_reuse", "1")
    left_if, relay_left = tb.veth(left, relay)
    relay_right, right_if = tb.veth(relay, right, ip_b=right_cidr)
    topo = RelayTopology(
        tb, left, relay, right, left_if, relay_left, relay_right, right_if, left_cidr, right_cidr
    )
    topo.set_left_kernel(left_kernel)
    return topo
