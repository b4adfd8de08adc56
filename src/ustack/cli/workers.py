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
                  fragments before it chooses.
``tap:NAME``      an IFF_MULTI_QUEUE TAP, one queue per worker.  The parent
                  creates it, gives the kernel side its address and keeps
                  one queue detached (TUNSETQUEUE), which holds the device
                  while workers come and go; it goes when the parent exits.

ARP: the kernel hands an ARP frame to one worker.  A request is answered by
whichever gets it (all have the same MAC and addresses: the same answer).
A reply may reach a worker that did not ask, so every worker also has an
``ArpReplyListener`` (link/arpshare.py) that sees every reply and takes
those for neighbours it resolves or caches.  ICMP echo: whichever worker
gets the request answers, from the same address.

SYN cookies: one secret for all (``--syncookie-secret FILE``, read by the
parent; else 32 random bytes the parent makes), so any worker can finish a
handshake another answered with a cookie.  Control sockets: worker K of the
stack NAME serves ``NAME@K``.  ``--pcap FILE`` and ``--trace FILE``: worker K
writes ``FILE`` with ``@K`` before its extension.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ustack.cli.common import UsageError, os_error_text, print_counters
from ustack.cli.supervise import Channel, Counters, Supervisor

if TYPE_CHECKING:
    from ustack.bringup import LinkedStack, LinkOptions
    from ustack.link.arpshare import ArpReplyListener
    from ustack.link.tap import TapDevice

# The kernel's bound on both: PACKET_FANOUT_MAX members, MAX_TAP_QUEUES.
MAX_WORKERS = 256


def add_workers_option(p: argparse.ArgumentParser) -> None:
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


def indexed_path(path: str, index: int) -> str:
    """``path`` with ``@index`` before its extension: ``x.pcap`` -> ``x@1.pcap``."""
    stem, ext = os.path.splitext(path)
    return f"{stem}@{index}{ext}"


class SharedLink:
    """What the parent opens once for the workers of ``options``' link;
    ``close()`` gives it back (the TAP goes with it)."""

    def __init__(self, options: LinkOptions, prog: str, *, count: int = 1,
                 partition: bool = False) -> None:
        from ustack.link.errors import LinkError
        from ustack.link.netif import configure_host_side
        from ustack.link.tap import TapDevice
        from ustack.net.interface import random_mac

        if options.mac_bytes() is None:
            # One MAC for all, chosen here: each worker would pick its own.
            options = dataclasses.replace(options, mac=random_mac())
        self.options = options
        self.count = count
        # Split by our address instead of by flow (``ustack load``, whose
        # connections are opened by a worker, not by the kernel's hash):
        # see ustack.link.bpf.address_partition (AF_PACKET only).
        self.partition = partition and options.kind == "packet"
        self.holder: TapDevice | None = None
        self.link_opts: dict[str, Any]
        if options.kind == "tap":
            try:
                self.holder = TapDevice(options.device_name, vnet_hdr=options.vnet_hdr,
                                        multi_queue=True)
                if options.host_ip:
                    configure_host_side(self.holder.name, options.host_ip)
                self.holder.detach_queue()
            except (LinkError, OSError) as e:
                self.close()
                why = str(e) if isinstance(e, LinkError) else os_error_text(e)
                raise UsageError(f"{prog}: {why}") from None
            self.link_opts = {"multi_queue": True}
            # The kernel side is configured once, here, not by each worker.
            self.worker_base = dataclasses.replace(options, host_ip=None)
        else:
            # One group per parent: ids are per interface and the pid of a
            # running parent is nobody else's.
            self.link_opts = {"fanout_group": os.getpid() & 0xFFFF, "fanout_mode": "hash",
                              "fanout_defrag": True}
            self.worker_base = options

    def worker_link_opts(self, index: int) -> dict[str, Any]:
        """What worker ``index`` opens the device with (``open_link``)."""
        if self.partition:
            from ustack.link.bpf import address_partition

            return {"bpf_filter": address_partition(self.count, index)}
        return self.link_opts

    def worker_options(self, index: int) -> LinkOptions:
        # One file per worker for what each writes: two processes appending
        # to one pcap or trace would interleave partial records.
        o = self.worker_base
        if o.pcap is not None:
            o = dataclasses.replace(o, pcap=indexed_path(o.pcap, index))
        if o.trace is not None:
            o = dataclasses.replace(o, trace=indexed_path(o.trace, index))
        return o

    def close(self) -> None:
        holder, self.holder = self.holder, None
        if holder is not None:
            holder.close()


class Worker:
    """Worker ``index`` of ``count``: its share of the link, its control
    socket's name, and what it adds to its stack (``attach``)."""

    def __init__(self, index: int, count: int, shared: SharedLink,
                 cookie_secret: bytes | None) -> None:
        self.index = index
        self.count = count
        self.shared = shared
        self.cookie_secret = cookie_secret
        self.listener: ArpReplyListener | None = None

    @property
    def options(self) -> LinkOptions:
        return self.shared.worker_options(self.index)

    @property
    def link_opts(self) -> dict[str, Any]:
        return self.shared.worker_link_opts(self.index)

    def control_name(self, name: str) -> str:
        return f"{name}@{self.index}"

    def attach(self, up: LinkedStack) -> None:
        """The shared cookie secret, and the ARP reply listener on the stack's loop."""
        from ustack.link.arpshare import ArpReplyListener
        from ustack.tcp.syncookies import SynCookieSecret

        if self.cookie_secret is not None:
            up.stack.tcp.cookie_secret = SynCookieSecret(self.cookie_secret)
        o = self.options
        if self.shared.partition:
            return  # every worker's own filter passes the ARP replies (link/bpf.py)
        listener = self.listener = ArpReplyListener(o.kind, o.device_name)
        stack, iface = up.stack, up.iface
        table = iface.arp

        def replies() -> None:
            for frame in listener.recv():
                body = frame[14:]
                spa = body[14:18]
                # Only for a neighbour of ours: any other reply is one the
                # worker that asked takes (else every worker would count
                # the others' replies as unsolicited).
                if spa in table.pending or spa in table.entries:
                    stack.arp.input(iface, body)

        stack.add_reader(listener.fileno(), replies)

    def detach(self, up: LinkedStack) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            up.stack.remove_reader(listener.fileno())
            listener.close()


WorkerBody = Callable[[Worker, Channel], Counters]


def run_workers(prog: str, options: LinkOptions, count: int, body: WorkerBody, *,
                own_secret: bool) -> int:
    """Run ``body`` in ``count`` workers until SIGINT/SIGTERM; print the
    first worker's ready line (with ``workers=N``) once all are ready, and
    the merged counters at the end.  ``own_secret``: no secret was given,
    the parent makes the one the workers share."""
    shared = SharedLink(options, prog)
    secret = os.urandom(32) if own_secret else None

    def work(index: int, channel: Channel) -> int:
        # The parent's TAP queue: this copy of its fd is not the worker's
        # (closing it leaves the parent's open).
        shared.close()
        counters = body(Worker(index, count, shared, secret), channel)
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
