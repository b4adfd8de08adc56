"""``--workers N``: one stack per process on one link, same MAC and address.

What the parent sets up once (``SharedLink``), what each worker adds to the
stack it brings up (``Worker``), and the run of N of them under a
``Supervisor`` (``run_workers``).  ``--workers 1`` never comes here: the
command runs as one process, as it always did.

How the link is shared (the kernel spreads the flows; DESIGN.md, 7):

``packet:IFACE``  one AF_PACKET socket per worker in a PACKET_FANOUT_HASH
                  group whose id comes from the parent's pid; the hash is
                  symmetric, so a flow stays on one worker, and
                  PACKET_FANOUT_FLAG_DEFRAG makes the kernel reassemble
                  fragments before it chooses.  The worker receives through
                  it and transmits through a socket of its own.
``tap:NAME``      an IFF_MULTI_QUEUE TAP, one queue per worker.  The parent
                  creates it and gives the kernel side its address; it
                  goes when the parent exits.

The parent opens every worker's socket or queue before the first fork and
holds them all until it exits (``SharedLink``): a restarted worker must not
change which worker the kernel picks for the flows of the others.

ARP: the kernel hands an ARP frame to one worker.  A request is answered by
whichever gets it (all have the same MAC and addresses: the same answer).
A reply may reach a worker that did not ask, so every worker also has an
``ArpReplyListener`` (link/arpshare.py) that sees every reply and learns
from those for neighbours it resolves or caches, without counting them:
the worker the link handed the reply to counts it, so each is counted once.
ICMP echo: whichever worker gets the request answers, from the same address.

SYN cookies: one secret for all (``--syncookie-secret FILE``, read by the
parent; else 32 random bytes the parent makes), so any worker can finish a
handshake another answered with a cookie.  Control sockets: worker K of the
stack NAME serves ``NAME@K``.  ``--pcap FILE`` and ``--trace FILE``: worker K
writes ``FILE`` with ``@K`` before its extension, a restarted life ``@K-rN``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ustack.cli.common import (
    UsageError,
    linked_stack,
    os_error_text,
    print_counters,
    run_errors,
    stop_on_signals,
)
from ustack.cli.supervise import Channel, Counters, Supervisor

if TYPE_CHECKING:
    from ustack.bringup import LinkedStack, LinkOptions
    from ustack.link.arpshare import ArpReplyListener
    from ustack.link.base import Device
    from ustack.link.packet import PacketDevice
    from ustack.link.tap import TapDevice

# The kernel's bound on both: PACKET_FANOUT_MAX members, MAX_TAP_QUEUES.
MAX_WORKERS = 256


def add_name_and_workers_options(p: argparse.ArgumentParser) -> None:
    """``--name`` and ``--workers``, which the commands that run a stack
    until the end (up, serve, load) take alike."""
    p.add_argument("--name", help="name of the control socket, for ustack stats and ss "
                                  "(default: the device name; worker K of --workers N "
                                  "serves NAME@K)")
    p.add_argument("--workers", default="1", metavar="N|auto",
                   help="run N processes, each with its own stack on the same MAC and "
                        "address, the kernel spreading the flows over them; auto: one "
                        "per CPU this process may run on (default 1)")


def worker_count(value: str, prog: str) -> int:
    """``--workers``' value: a number 1..MAX_WORKERS, or ``auto``."""
    if value.strip().lower() == "auto":
        return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))
    try:
        n = int(value)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_WORKERS:
        raise UsageError(f"{prog}: --workers {value}: a number of processes from 1 to "
                         f"{MAX_WORKERS}, or auto")
    return n


def indexed_path(path: str, index: int, life: int = 0) -> str:
    """``path`` with ``@index`` before its extension: ``x.pcap`` -> ``x@1.pcap``;
    for a restarted worker's ``life`` (1, 2, ...) ``-rLIFE`` too: ``x@1-r2.pcap``."""
    stem, ext = os.path.splitext(path)
    again = f"-r{life}" if life else ""
    return f"{stem}@{index}{again}{ext}"


class SharedLink:
    """What the parent opens once for the ``count`` workers of ``options``'
    link and holds while it runs: worker K's share (``shares[K]``), which
    each of its lives inherits (``keep_only``); ``close()`` gives it all
    back (the TAP goes with it).

    Why the parent: the kernel picks a worker by ``hash % members``, in the
    order the members joined (a fanout group's array, a TAP's queues), and
    compacts that order when one leaves.  Were each life to open its own
    share, a restart would change the order ([w0, w1] -> [w1] -> [w1, w0])
    and send every flow of the workers that did not die to another worker,
    which resets it.  Held by the parent, the order never changes; the
    frames for a worker that is down wait in its share until its next life
    reads them (``RxRingV2.resync``), up to the ring's or queue's room."""

    def __init__(self, options: LinkOptions, prog: str, *, count: int = 1,
                 partition: bool = False) -> None:
        from ustack.link.errors import LinkError
        from ustack.link.netif import configure_host_side
        from ustack.link.packet import PacketDevice
        from ustack.link.tap import TapDevice
        from ustack.net.interface import random_mac

        if options.mac_bytes() is None:
            # One MAC for all, chosen here: each worker would pick its own.
            options = dataclasses.replace(options, mac=random_mac())
        self.options = options
        self.count = count
        # Split by our address instead of by flow (``ustack load``, whose
        # connections are opened by a worker, not by the kernel's hash):
        # see ustack.link.bpf.address_partition (AF_PACKET only); each
        # worker opens its own socket then (a one-shot worker has one life).
        self.partition = partition and options.kind == "packet"
        self.shares: list[TapDevice | PacketDevice] = []
        self.worker_base = options
        try:
            if options.kind == "tap":
                name = options.device_name
                for k in range(count):
                    queue = TapDevice(name, vnet_hdr=options.vnet_hdr, multi_queue=True)
                    self.shares.append(queue)
                    name = queue.name
                    if k == 0 and options.host_ip:
                        configure_host_side(name, options.host_ip)
                # The kernel side is configured once, here, not by each worker.
                self.worker_base = dataclasses.replace(options, host_ip=None)
            elif not self.partition:
                # One group per parent: ids are per interface and the pid of
                # a running parent is nobody else's.  No TX ring: a worker
                # transmits through a socket of its own (link/packet.py).
                group = os.getpid() & 0xFFFF
                for _ in range(count):
                    self.shares.append(PacketDevice(
                        options.device_name, tx_frames=0, fanout_group=group,
                        fanout_mode="hash", fanout_defrag=True))
        except (LinkError, OSError) as e:
            self.close()
            why = str(e) if isinstance(e, LinkError) else os_error_text(e)
            raise UsageError(f"{prog}: {why}") from None

    def worker_link_opts(self, index: int) -> dict[str, Any]:
        """What worker ``index`` opens the device with (``open_link``)."""
        if self.partition:
            from ustack.link.bpf import address_partition

            return {"bpf_filter": address_partition(self.count, index)}
        if self.options.kind == "tap":
            return {}  # the share is the device itself (worker_device)
        return {"rx_from": self.shares[index]}

    def worker_device(self, index: int) -> Device | None:
        """Worker ``index``'s device when its share is one: its TAP queue."""
        if self.partition or self.options.kind != "tap":
            return None
        return self.shares[index]

    def keep_only(self, index: int) -> None:
        """In worker ``index``: close this process's copies of the other
        workers' shares (the parent's stay open); its own is closed with
        its stack."""
        for k, share in enumerate(self.shares):
            if k != index:
                share.close()

    def worker_options(self, index: int, life: int = 0) -> LinkOptions:
        # One file per worker for what each writes: two processes appending
        # to one pcap or trace would interleave partial records; and one per
        # life: a restart must not overwrite the files that show why the
        # life before it died.
        o = self.worker_base
        if o.pcap is not None:
            o = dataclasses.replace(o, pcap=indexed_path(o.pcap, index, life))
        if o.trace is not None:
            o = dataclasses.replace(o, trace=indexed_path(o.trace, index, life))
        return o

    def close(self) -> None:
        shares, self.shares = self.shares, []
        for share in shares:
            share.close()


class Worker:
    """Worker ``index`` of ``count``: its share of the link, its control
    socket's name, and what it adds to its stack (``attach``)."""

    def __init__(self, index: int, count: int, shared: SharedLink,
                 cookie_secret: bytes | None, life: int = 0) -> None:
        self.index = index
        self.count = count
        self.life = life  # 0, then one more for each restart (Channel.life)
        self.shared = shared
        self.cookie_secret = cookie_secret
        self.listener: ArpReplyListener | None = None

    @property
    def options(self) -> LinkOptions:
        return self.shared.worker_options(self.index, self.life)

    @property
    def link_opts(self) -> dict[str, Any]:
        return self.shared.worker_link_opts(self.index)

    @property
    def device(self) -> Device | None:
        return self.shared.worker_device(self.index)

    def control_name(self, name: str) -> str:
        return f"{name}@{self.index}"

    def attach(self, up: LinkedStack) -> None:
        """The shared cookie secret, and the ARP reply listener on the stack's loop."""
        from ustack.link.arpshare import ArpReplyListener
        from ustack.tcp.syncookies import SynCookieSecret
        from ustack.wire import arp as warp
        from ustack.wire.errors import ParseError

        if self.cookie_secret is not None:
            up.stack.tcp.cookie_secret = SynCookieSecret(self.cookie_secret)
        o = self.options
        if self.shared.partition:
            return  # every worker's own filter passes the ARP replies (link/bpf.py)
        listener = self.listener = ArpReplyListener(o.kind, o.device_name)
        stack, iface = up.stack, up.iface
        table = iface.arp
        learn = stack.arp._learn

        def replies() -> None:
            for frame in listener.recv():
                try:
                    pkt = warp.parse(frame[14:])
                except ParseError:
                    continue
                spa, sha = pkt.spa, pkt.sha
                # Only for a neighbour of ours: any other reply is one the
                # worker that asked takes (else every worker would count
                # the others' replies as unsolicited).  Learned, not
                # counted: the reply is counted (ArpInReplies) once, by the
                # worker the link handed it to, which may be this one.
                if (pkt.op == warp.OP_REPLY and not sha[0] & 1 and any(sha)
                        and (spa in table.pending or spa in table.entries)):
                    learn(iface, spa, sha)

        stack.add_reader(listener.fileno(), replies)

    def detach(self, up: LinkedStack) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            up.stack.remove_reader(listener.fileno())
            listener.close()


WorkerBody = Callable[[Worker, Channel], Counters]


@contextlib.contextmanager
def command_stack(options: LinkOptions, prog: str, worker: Worker | None,
                  name: str) -> Iterator[tuple[LinkedStack, str]]:
    """The stack a command runs on until SIGINT/SIGTERM: the whole command
    with one process, a worker's life with ``--workers`` (its share of the
    link opened, attached while it runs); and the name its control socket
    takes (``NAME@K`` for worker K)."""
    link_opts = worker.link_opts if worker is not None else None
    device = worker.device if worker is not None else None
    with linked_stack(options, prog, link_opts, device) as up, stop_on_signals(up.stack):
        try:
            if worker is not None:
                with run_errors(prog):
                    worker.attach(up)
                name = worker.control_name(name)
            yield up, name
        finally:
            if worker is not None:
                worker.detach(up)


def check_worker_name(name: str, count: int, prog: str) -> None:
    """Worker K of NAME serves the control socket ``NAME@K``: a NAME with
    an ``@`` of its own would fail in every worker, once started."""
    if count > 1 and "@" in name:
        raise UsageError(f"{prog}: --name {name}: no '@' in the name of a stack with "
                         f"--workers {count} (worker K serves NAME@K)")


def run_workers(prog: str, options: LinkOptions, count: int, body: WorkerBody, *,
                own_secret: bool, name: str) -> int:
    """Run ``body`` in ``count`` workers until SIGINT/SIGTERM; print the
    first worker's ready line (with ``workers=N``) once all are ready, and
    the merged counters at the end.  ``own_secret``: no secret was given,
    the parent makes the one the workers share; ``name``: the stack's (its
    workers serve ``name@K``)."""
    check_worker_name(name, count, prog)
    shared = SharedLink(options, prog, count=count)
    secret = os.urandom(32) if own_secret else None

    def work(index: int, channel: Channel) -> int:
        shared.keep_only(index)
        counters = body(Worker(index, count, shared, secret, channel.life), channel)
        channel.counters(counters)
        return 0

    def ready(text: str) -> None:
        print(f"{text} workers={count}", flush=True)

    sup = Supervisor(prog, count, work, on_ready=ready)
    try:
        status = sup.run()
    finally:
        shared.close()
    if status == 0:
        for counters in sup.counters:
            print_counters(counters)
        sys.stdout.flush()
    return status
