"""``ustack serve DIR``: the HTTP/1.1 server on a stack, until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from ustack import purepy
from ustack.cli.common import (
    UsageError,
    add_link_options,
    add_syncookie_options,
    link_options,
    os_error_text,
    print_counters,
    run_errors,
    syncookie_settings,
)
from ustack.cli.workers import add_name_and_workers_options, command_stack

if TYPE_CHECKING:
    from ustack.apps.http.server import ServerLimits
    from ustack.bringup import LinkedStack, LinkOptions
    from ustack.cli.workers import Worker

HELP = "serve the files under DIR over HTTP/1.1 from the stack's own address"
DESCRIPTION = ("Serve the files under DIR over HTTP/1.1 (GET and HEAD) from a stack with its "
               "own MAC and IP address, until SIGINT/SIGTERM; then print the server's and "
               "the stack's counters.  Whole-file responses take the specialised path: "
               "built once, cut once per MSS, checksummed once.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", metavar="DIR", help="the directory to serve")
    add_link_options(p)
    add_syncookie_options(p)
    p.add_argument("--port", type=int, default=80, help="TCP port (default 80)")
    p.add_argument("--access-log", metavar="FILE",
                   help="append a Common Log Format line per request to FILE ('-': stdout)")
    p.add_argument("--max-conns", type=int, default=10000, metavar="N",
                   help="connections served at once; one more is reset (default 10000)")
    p.add_argument("--header-timeout", type=float, default=10.0, metavar="SECS",
                   help="a request must arrive whole within SECS of its first byte "
                        "(default 10)")
    p.add_argument("--min-rate", type=float, default=64.0, metavar="BYTES_PER_SEC",
                   help="a request must arrive at this rate at least (default 64)")
    p.add_argument("--idle-timeout", type=float, default=15.0, metavar="SECS",
                   help="close a keep-alive connection idle for SECS (default 15)")
    p.add_argument("--no-specialise", action="store_true",
                   help="serve every response through the general send path")
    p.add_argument("--stateless", action="store_true",
                   help="answer a request whose response fits the initial window with no "
                        "connection at all (SYN cookies always; others get a connection)")
    p.add_argument("--stateless-rst", action="store_true",
                   help="with --stateless: a RST after the FIN, so a client that lost the "
                        "last segments stops waiting (it cannot ask for lost data either)")
    add_name_and_workers_options(p)


def _open_log(path: str | None) -> TextIO | None:
    if path is None:
        return None
    if path == "-":
        return sys.stdout
    try:
        return open(path, "a", buffering=1, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"ustack serve: --access-log {os_error_text(e)}") from None


def main(args: argparse.Namespace) -> int:
    from ustack.apps.http.server import ServerLimits
    from ustack.cli.control import ControlError, check_name
    from ustack.cli.workers import run_workers, worker_count

    prog = "ustack serve"
    if not os.path.isdir(args.root):
        raise UsageError(f"{prog}: {args.root}: not a directory")
    if args.stateless_rst and not args.stateless:
        raise UsageError(f"{prog}: --stateless-rst needs --stateless")
    if not 0 < args.port < 65536:
        raise UsageError(f"{prog}: --port must be 1..65535, got {args.port}")
    try:
        limits = ServerLimits(header_timeout=args.header_timeout,
                              idle_timeout=args.idle_timeout, min_rate=args.min_rate,
                              max_conns=args.max_conns)
        if args.name is not None:
            check_name(args.name)
    except (ValueError, ControlError) as e:
        raise UsageError(f"{prog}: {e}") from None
    count = worker_count(args.workers, prog)
    options = link_options(args, prog)
    set_cookies = syncookie_settings(args, prog)
    name = args.name or options.device_name
    log = _open_log(args.access_log)
    try:
        if count == 1:
            counters = _run(args, options, set_cookies, limits, log, name, None,
                            lambda text: print(text, flush=True))
            for c in counters:
                print_counters(c)
            return 0
        return run_workers(
            prog, options, count,
            lambda w, ch: _run(args, w.options, set_cookies, limits, log, name, w, ch.ready),
            own_secret=args.syncookie_secret is None, name=name)
    finally:
        if log is not None and log is not sys.stdout:
            with contextlib.suppress(OSError):
                log.close()


def _run(args: argparse.Namespace, options: LinkOptions,
         set_cookies: Callable[[LinkedStack], None], limits: ServerLimits,
         log: TextIO | None, name: str, worker: Worker | None,
         say_ready: Callable[[str], None]) -> list[dict[str, int]]:
    """The server, until SIGINT/SIGTERM: the whole command with one
    process, a worker's life with ``--workers``.  Its counters: the
    server's, then the stack's (none of the server's if it never started)."""
    from ustack.apps.http.server import HttpServer
    from ustack.cli.control import ControlServer
    from ustack.cli.up import tune_allocator, tune_collector
    from ustack.wire import ethernet

    prog = "ustack serve"
    tune_allocator()
    server = None
    with command_stack(options, prog, worker, name) as (up, name):
        stack = up.stack
        set_cookies(up)
        control = None
        try:
            with run_errors(prog):
                server = HttpServer(stack, args.root, args.port, limits=limits,
                                    access_log=log, specialise=not args.no_specialise)
                if args.stateless:
                    from ustack.apps.http.stateless import StatelessFront

                    StatelessFront(stack, server, rst=args.stateless_rst).install()
                control = ControlServer(stack, name, server.stats)
                ip = args.ip.split("/")[0]
                port = "" if args.port == 80 else f":{args.port}"
                mac = ethernet.mac_to_str(up.iface.mac)
                say_ready(f"ready: http://{ip}{port}/ link={args.link} mac={mac} ip={args.ip} "
                          f"root={os.path.abspath(args.root)} build={purepy.build()}")
                tune_collector()
                stack.run()
        finally:
            if control is not None:
                control.close()
            if server is not None:
                server.close()
    counters = [] if server is None else [server.stats()]
    return [*counters, stack.counters.snapshot()]
