"""The Stack: interfaces, tables, timers, counters and the one poll loop.

One Stack per process (docs/architecture.md, principle 2).  ``poll(now)`` is one
iteration: take a batch of frames from every device, push each straight
through Ethernet -> IPv4 -> transport -> application (direct dispatch, no
queues between layers), fire due timers, then flush every interface's
outgoing frames to its device in one batch.  ``run()`` repeats that, sleeping
in ``select`` until a device is readable or the next timer is due.  Tests
call ``poll`` with a fake clock; only ``run`` reads the real one.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import Any, Final

from ustack.counters import Counters
from ustack.link.base import Device
from ustack.net.arp import ArpLayer
from ustack.net.ethernet import EthernetInput
from ustack.net.host import Host
from ustack.net.icmp import IcmpLayer
from ustack.net.interface import Interface, random_mac
from ustack.net.ipv4 import Ipv4Layer
from ustack.net.route import RouteTable
from ustack.net.sockaddr import AddressArg
from ustack.tcp.layer import TcpLayer
from ustack.tcp.socket import TcpListener, TcpSocket
from ustack.timers import Timer, TimerHeap
from ustack.udp.socket import UdpLayer, UdpSocket
from ustack.wire import ipv4 as wip

BATCH: Final = 64  # frames taken from a device per poll; bounds latency per iteration
HOUSEKEEPING_INTERVAL: Final = 10.0  # seconds between ARP cache sweeps


class Stack:
    """The layers wired together over one host context, and the loop."""

    def __init__(self) -> None:
        # The context every layer gets (net/host.py): clock reading,
        # counters, timers, routes, local addresses.  The Stack is the only
        # writer of its clock.
        self.host = host = Host()
        self.interfaces: list[Interface] = []
        # The layers, each given the context and the layers below it.
        self.arp = ArpLayer(host)
        self.ipv4 = Ipv4Layer(host, self.arp)
        self.icmp = IcmpLayer(host, self.ipv4)
        self.udp = UdpLayer(host, self.ipv4)
        self.tcp = TcpLayer(host, self.ipv4)
        self.ethernet = EthernetInput(host, self.ipv4, self.arp)
        self._started = False
        self._stopping = False
        self._extra_readers: dict[int, Callable[[], None]] = {}
        # The event-loop front end driving this stack, one at a time
        # (ustack.aio's AioStack sets and clears it; the core never reads it).
        # An attribute, not a weak map beside it: compiled, a Stack has no
        # weak references.
        self.driver: object | None = None

    @property
    def now(self) -> float:
        """The stack's clock: the time passed to the last ``poll``, ``flush`` or ``advance``."""
        return self.host.now

    # The host context's parts, for applications and tools; read-only, so
    # the Stack and its layers can never hold different ones.

    @property
    def counters(self) -> Counters:
        return self.host.counters

    @property
    def timers(self) -> TimerHeap:
        return self.host.timers

    @property
    def routes(self) -> RouteTable:
        return self.host.routes

    @property
    def local_addrs(self) -> AbstractSet[bytes]:
        """Our unicast addresses (``add_interface`` adds them)."""
        return self.host.local_addrs

    # -- configuration ----------------------------------------------------

    def add_interface(self, device: Device, ip: str, *, mac: bytes | None = None) -> Interface:
        """Attach ``device`` with address ``ip`` ("198.18.0.2/24")."""
        addr, prefix = wip.parse_cidr(ip)
        host = self.host
        if addr in host.local_addrs:
            raise ValueError(f"address {wip.addr_to_str(addr)} is already on an interface")
        iface = Interface(device, mac or random_mac(), addr, prefix)
        self.interfaces.append(iface)
        host.local_addrs.add(addr)
        host.routes.add(addr, prefix, iface)
        if self._started:
            self.arp.announce(iface)
        return iface

    def add_address(self, iface: Interface, ip: str) -> None:
        """Give ``iface`` one more address ``ip`` ("198.18.4.7"), on its subnet.

        The address is ours as the first one is: ARP answers and announces
        it, IPv4, ICMP, UDP and TCP take datagrams to it, and a socket may
        bind or connect from it (``tcp_connect(..., source=...)``).
        ValueError if ``iface`` is not this stack's, or the address is off
        its subnet, its broadcast address, or ours already.
        """
        if iface not in self.interfaces:
            raise ValueError(f"{iface.name} is not an interface of this stack")
        addr = wip.addr_from_str(ip)
        host = self.host
        if addr in host.local_addrs:
            raise ValueError(f"address {ip} is already on an interface")
        iface.add_address(addr)
        host.local_addrs.add(addr)
        if self._started:
            self.arp.announce_address(iface, addr)

    def set_default_gateway(self, gateway: str) -> None:
        gw = wip.addr_from_str(gateway)
        for iface in self.interfaces:
            if iface.on_link(gw):
                self.host.routes.add(b"\x00\x00\x00\x00", 0, iface, gw)
                return
        raise ValueError(f"gateway {gateway} is not on the subnet of any interface")

    def udp_socket(self) -> UdpSocket:
        return self.udp.socket()

    def tcp_listen(self, address: AddressArg, backlog: int = 128,
                   **options: Any) -> TcpListener:
        """A listening TCP endpoint; established connections come from ``accept()``.

        ``options`` (``TcpConfig`` field names, as for ``tcp_connect``) apply
        to every connection accepted from it.
        """
        return self.tcp.listen(address, backlog, **options)

    def tcp_connect(self, address: AddressArg, *, source: AddressArg | None = None,
                    **options: Any) -> TcpSocket:
        """Start an active open; the socket reports ``Event.CONNECTED`` (or fails).

        ``source``, ``(ip, port)``, is the local end: one of our addresses
        (``add_address``) or "0.0.0.0" for the route's, and port 0 for an
        ephemeral port free for that address and ``address`` (the range is
        per 4-tuple, so each address has all of it).  OSError(EADDRNOTAVAIL)
        for an address not ours, OSError(EADDRINUSE) for a 4-tuple in use.

        ``options`` are ``TcpConfig`` fields for this connection, e.g.
        ``cc="newreno"`` (CUBIC is the default) or ``nodelay=True``.
        """
        return self.tcp.connect(address, source=source, **options)

    def call_at(self, deadline: float, callback: Callable[[float], None]) -> Timer:
        return self.host.timers.call_at(deadline, callback)

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        """Have ``run()`` call ``callback`` when ``fd`` is readable (control socket)."""
        self._extra_readers[fd] = callback

    def remove_reader(self, fd: int) -> None:
        self._extra_readers.pop(fd, None)

    def extra_readers(self) -> dict[int, Callable[[], None]]:
        """The readers added with ``add_reader`` (fd -> callback), as a copy:
        a loop that drives the Stack in ``run()``'s place (ustack.aio) registers them."""
        return dict(self._extra_readers)

    # -- the loop ---------------------------------------------------------

    def start(self, now: float) -> None:
        """Announce our addresses (gratuitous ARP) and arm housekeeping."""
        self.host.now = now
        if self._started:
            return
        self._started = True
        for iface in self.interfaces:
            self.arp.announce(iface)
        self.host.timers.call_at(now + HOUSEKEEPING_INTERVAL, self._housekeeping)
        self.flush()

    def _housekeeping(self, now: float) -> None:
        for iface in self.interfaces:
            iface.arp.expire(now)
        self.host.timers.call_at(now + HOUSEKEEPING_INTERVAL, self._housekeeping)

    def poll(self, now: float) -> int:
        """One iteration at time ``now``; returns the number of frames received."""
        if not self._started:
            self.start(now)
        self.host.now = now
        received = 0
        for iface in self.interfaces:
            frames = iface.device.recv_batch(BATCH, now)
            if frames:
                received += len(frames)
                self.ethernet.input(iface, frames)
        self.host.timers.run_due(now)
        self.flush()
        return received

    def advance(self, now: float) -> None:
        """Set the clock to ``now`` without polling the devices.

        For a driver that makes API calls between polls (the
        ``ustack.socket`` runtime thread, ``ustack.aio``): what those calls
        start (a SYN's timestamp, a retransmission timer) counts from
        ``now``.  With ``poll(now)``, ``flush(now)`` and ``start(now)`` (the
        first poll's, for a driver that starts the stack itself) this is the
        only way time enters the stack.
        """
        self.host.now = now

    def flush(self, now: float | None = None) -> None:
        """Transmit what the sockets have to send, then hand every interface's
        queued frames to its device, one batch each.

        ``now``, when given, first sets the clock (as ``advance``): a driver
        flushing what the application queued since the last poll.
        """
        if now is None:
            now = self.host.now
        else:
            self.host.now = now
        if self.tcp.dirty:
            self.tcp.run_dirty()
        out = 0
        for iface in self.interfaces:
            if iface.txq:
                out += iface.transmit(now)
        self.host.counters.EthOutFrames += out

    def next_deadline(self) -> float | None:
        """The earliest time ``poll`` has work without new frames."""
        if self.tcp.dirty:
            return self.host.now  # sockets left over by run_dirty's bound: at once
        deadline = self.host.timers.next_deadline()
        for iface in self.interfaces:
            d = iface.device.next_deadline()
            if d is not None and (deadline is None or d < deadline):
                deadline = d
        return deadline

    def run(self, *, clock: Callable[[], float] = time.monotonic,
            until: Callable[[], bool] | None = None, max_wait: float = 1.0) -> None:
        """Run the loop until ``stop()`` is called or ``until()`` returns True.

        A ``stop()`` that comes before ``run()`` (a signal during start-up)
        makes it return at once; the flag is cleared on the way out so the
        stack can be run again.  ``until`` is asked before each wait, so the
        loop returns as soon as a poll has made it true.
        """
        devices = {iface.device.fileno(): iface for iface in self.interfaces}
        poller = select.poll()
        for fd in devices:
            poller.register(fd, select.POLLIN)
        registered_extra: set[int] = set()
        self.start(clock())
        while not self._stopping and (until is None or not until()):
            for fd in self._extra_readers.keys() - registered_extra:
                poller.register(fd, select.POLLIN)
                registered_extra.add(fd)
            for fd in registered_extra - self._extra_readers.keys():
                poller.unregister(fd)
                registered_extra.discard(fd)
            now = clock()
            # Keep polling without sleeping while devices deliver full
            # batches -- but still look at the other readers (a runtime's
            # calls from application threads), or a sustained load would
            # starve them.
            got = self.poll(now)
            # What this poll delivered may be what ``until`` waits for (the
            # peer's FIN, the ACK of ours): look before sleeping, or the
            # caller's next step (closing, reporting) waits up to
            # ``max_wait`` for nothing.
            if self._stopping or (until is not None and until()):
                break
            if got >= BATCH:
                events = poller.poll(0)
            else:
                deadline = self.next_deadline()
                wait = max_wait if deadline is None else min(max_wait, deadline - clock())
                events = poller.poll(max(0, int(wait * 1000) + (1 if wait > 0 else 0)))
            for fd, _ in events:
                cb = self._extra_readers.get(fd)
                if cb is not None:
                    cb()
        self._stopping = False

    def stop(self) -> None:
        """Make ``run()`` return after the current iteration (signal-safe)."""
        self._stopping = True

    def close(self) -> None:
        for iface in self.interfaces:
            iface.device.close()
