"""``ustack up``: a stack on a link, with services, until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import ctypes
import gc
from collections.abc import Callable
from typing import TYPE_CHECKING

from ustack import purepy
from ustack.cli.common import (
    UsageError,
    add_link_options,
    add_syncookie_options,
    check_services,
    link_options,
    print_counters,
    run_errors,
    service_help,
    syncookie_settings,
)
from ustack.cli.workers import add_name_and_workers_options, command_stack

if TYPE_CHECKING:
    from ustack.bringup import LinkedStack, LinkOptions
    from ustack.cli.workers import Worker

HELP = "bring a stack up on a link and run until interrupted"
DESCRIPTION = ("Bring a stack up with its own MAC and IP address and run until "
               "SIGINT/SIGTERM, then print its counters.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_link_options(p)
    add_syncookie_options(p)
    p.add_argument("--service", action="append", default=[], metavar="NAME:PORT",
                   help=service_help())
    add_name_and_workers_options(p)


def tune_collector() -> None:
    """The stack is this process's whole work, so the cyclic garbage collector
    is set for it: what start-up made (modules, the stack, its services) is
    frozen out of its scans, and a collection of the young generation runs
    after 50,000 new container objects instead of Python's 700.  Connections
    and segments are freed by reference counting as they end; with the
    default threshold the collector ran every few short connections and
    took about a fifth of their CPU (in-process connect/echo/close,
    compiled build: 149 -> 117 us per connection for both stacks).
    Cycles are still collected, only less often."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3


def tune_allocator() -> None:
    """The C allocator, set for a process whose whole work is the stack.

    A TCP stack with offload allocates and frees 64 KB buffers at a high
    rate (super-frames, send-queue views, received super-frames).  With
    glibc's defaults the top of the heap is given back to the system as
    soon as it is free and taken again for the next buffer, until glibc's
    thresholds adapt (after a freed buffer above them); until then every
    such buffer is fresh memory.  In a fresh ``ustack up`` serving only a
    bulk send with offload (AF_PACKET, veth offloads on, compiled), page
    faults and zeroed pages were a quarter of the CPU, and keeping up to
    256 MB of free heap (grown 64 MB at a time, blocks below 16 MB from the
    heap, not fresh mappings) took it from about 590 to about 870 MB/s.
    (bench_tcp's process, whose thresholds had adapted during its earlier
    runs, showed no change.)  Pages are counted only once touched; without
    glibc nothing happens."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mallopt(_M_TRIM_THRESHOLD, 256 << 20)
    mallopt(_M_TOP_PAD, 64 << 20)
    mallopt(_M_MMAP_THRESHOLD, 16 << 20)


def main(args: argparse.Namespace) -> int:
    from ustack.cli.control import ControlError, check_name
    from ustack.cli.workers import run_workers, worker_count

    prog = "ustack up"
    # Everything that can be checked is, before the link is touched.
    try:
        check_services(args.service)
        if args.name is not None:
            check_name(args.name)
    except (ValueError, ControlError) as e:
        raise UsageError(f"{prog}: {e}") from None
    count = worker_count(args.workers, prog)
    options = link_options(args, prog)
    set_cookies = syncookie_settings(args, prog)
    name = args.name or options.device_name
    if count == 1:
        counters = _run(args, options, set_cookies, name, None,
                        lambda text: print(text, flush=True))
        print_counters(counters[0])
        return 0
    return run_workers(prog, options, count,
                       lambda w, ch: _run(args, w.options, set_cookies, name, w, ch.ready),
                       own_secret=args.syncookie_secret is None, name=name)


def _run(args: argparse.Namespace, options: LinkOptions,
         set_cookies: Callable[[LinkedStack], None], name: str, worker: Worker | None,
         say_ready: Callable[[str], None]) -> list[dict[str, int]]:
    """The stack, until SIGINT/SIGTERM: the whole command with one
    process, a worker's life with ``--workers``.  Its counters."""
    from ustack.apps import services
    from ustack.cli.control import ControlServer
    from ustack.wire import ethernet

    prog = "ustack up"
    tune_allocator()
    with command_stack(options, prog, worker, name) as (up, name):
        stack = up.stack
        set_cookies(up)
        control = None
        try:
            with run_errors(prog):
                names = [services.install(stack, spec) for spec in args.service]
                control = ControlServer(stack, name)
                say_ready(f"ready: link={args.link} mac={ethernet.mac_to_str(up.iface.mac)} "
                          f"ip={args.ip}" + (f" services={','.join(names)}" if names else "")
                          + f" build={purepy.build()}")
                tune_collector()
                stack.run()
        finally:
            if control is not None:
                control.close()
    return [stack.counters.snapshot()]
