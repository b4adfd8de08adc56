"""``ustack load URL``: the HTTP load generator on a stack, for a bounded run."""

from __future__ import annotations

import argparse
import math
import os
from typing import TYPE_CHECKING

from ustack.cli.common import (
    UsageError,
    add_link_options,
    link_options,
    linked_stack,
    os_error_text,
    run_errors,
    stop_on_signals,
)
from ustack.cli.loadrun import counters_of, finish, run_generator
from ustack.cli.loadrun import linger as linger  # re-exported: ustack flood uses it
from ustack.cli.progress import RunProgress
from ustack.cli.workers import add_name_and_workers_options, worker_count

if TYPE_CHECKING:
    from ustack.apps.load.generator import LoadGenerator
    from ustack.stack import Stack

HELP = "load an HTTP server from the stack's own addresses, for a bounded run"
DESCRIPTION = (
    "Send HTTP/1.1 requests to URL (http://IPV4[:PORT]/PATH) from a stack with its own MAC "
    "and addresses, spreading connections round-robin over all of them (--sources N), for "
    "-d SECS (default 10) or -n REQUESTS; then print what happened: requests, latency "
    "percentiles per phase (SYN to SYN-ACK, connect, first byte, last byte), and every "
    "error explained at the TCP level.  Closed loop by default (-c connections, each "
    "sending its next request when the answer came); --rate R is an open loop at R "
    "requests/s whose latencies count from when each request was due.  Exit status 1 "
    "when no request succeeded (2xx/3xx).")

DEFAULT_DURATION = 10.0
PROGRESS_EVERY = 1.0
MAX_BODY = 64 << 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", metavar="URL", help="http://IPV4[:PORT]/PATH")
    add_link_options(p)
    p.add_argument("-c", "--connections", type=int, default=10, metavar="CONNS",
                   help="connections (closed loop: all busy; open loop: at most; default 10)")
    bound = p.add_argument_group("bounds (one at least; default -d 10)")
    bound.add_argument("-d", "--duration", type=float, metavar="SECS",
                       help="run for SECS seconds")
    bound.add_argument("-n", "--requests", type=int, metavar="REQUESTS",
                       help="send this many requests (a connection that fails first counts "
                            "as one), then stop when they are settled")
    p.add_argument("--rate", type=float, metavar="R",
                   help="open loop: R requests/s in all, latency from when each was due")
    p.add_argument("--close", action="store_true",
                   help="a new connection per request (Connection: close)")
    p.add_argument("--pipeline", type=int, default=1, metavar="K",
                   help="K requests outstanding per connection (default 1)")
    p.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'",
                   help="a request header (again for more); replaces a default of that name")
    p.add_argument("--method", default="GET", choices=["GET", "HEAD", "POST"],
                   help="request method (default GET)")
    p.add_argument("--body", metavar="FILE", help="the request body (with --method POST)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="a request (or a connect) not answered within S seconds is reset "
                        "and counted (default 10)")
    p.add_argument("--json", metavar="FILE", help="write everything counted to FILE as JSON")
    p.add_argument("--hist", metavar="FILE",
                   help="write each phase's latency distribution in HdrHistogram's format "
                        "to FILE.PHASE.hgrm")
    add_name_and_workers_options(p)


def _read_body(path: str | None, prog: str) -> bytes:
    if path is None:
        return b""
    try:
        with open(path, "rb") as f:
            body = f.read(MAX_BODY + 1)
    except OSError as e:
        raise UsageError(f"{prog}: --body {os_error_text(e)}") from None
    if len(body) > MAX_BODY:
        raise UsageError(f"{prog}: --body {path}: larger than {MAX_BODY >> 20} MB")
    return body


def _check_reach(args: argparse.Namespace, ip: str, prog: str) -> None:
    """The server must be on --ip's subnet or behind --gw, and not ours
    (checked before the link; a bad --ip is link_options' to report)."""
    from ustack.wire import ipv4

    try:
        ours, prefix = ipv4.parse_cidr(args.ip)
    except ValueError:
        return
    dst = int.from_bytes(ipv4.addr_from_str(ip), "big")
    first = int.from_bytes(ours, "big")
    if first <= dst < first + max(args.sources, 1):
        raise UsageError(f"{prog}: {ip} is one of our own addresses (--ip {args.ip}, "
                         f"--sources {args.sources}): the server must be another host")
    mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    if (dst ^ first) & mask and not args.gw:
        raise UsageError(f"{prog}: {ip} is not on --ip {args.ip}'s subnet and no --gw is "
                         "given: no route to it")


def _progress(stack: Stack, gen: LoadGenerator, progress: RunProgress) -> None:
    """How far the run has got, every PROGRESS_EVERY seconds of it: the bar
    counts seconds with -d, requests with -n."""
    cfg = gen.cfg

    def tick(now: float) -> None:
        if gen.done:
            return
        st = gen.stats
        t = stack.now - st.started
        errors = sum(st.errors.values())
        rate = st.completed / t if t > 0 else 0.0
        done = float(st.completed) if cfg.duration is None else t
        progress.update(done, f"{st.completed} completed  {rate:,.0f} req/s  {errors} errors  "
                              f"{gen.held}/{cfg.connections} connections held", now)
        stack.call_at(stack.now + PROGRESS_EVERY, tick)

    stack.call_at(stack.now + PROGRESS_EVERY, tick)


def main(args: argparse.Namespace) -> int:
    from ustack.apps.load.generator import LoadConfig, LoadGenerator
    from ustack.apps.load.report import build, hgrm_files
    from ustack.apps.load.target import build_request, parse_header, parse_url
    from ustack.cli.control import ControlError, ControlServer, check_name
    from ustack.cli.up import tune_allocator

    prog = "ustack load"
    try:
        target = parse_url(args.url)
        headers = [parse_header(h) for h in args.header]
        body = _read_body(args.body, prog)
        request = build_request(target, args.method, headers, body, close=args.close)
        if args.name is not None:
            check_name(args.name)
    except (ValueError, ControlError) as e:
        raise UsageError(f"{prog}: {e}") from None
    duration = args.duration
    if duration is None and args.requests is None:
        duration = DEFAULT_DURATION
    for flag, value in (("-d", duration), ("--rate", args.rate), ("--timeout", args.timeout)):
        if value is not None and not math.isfinite(value):
            raise UsageError(f"{prog}: {flag} {value}: a finite number")
    _check_reach(args, target.ip, prog)
    try:
        # Checked before the link is opened; the sources are the link's.
        cfg = LoadConfig(target.ip, target.port, request, [target.ip],
                         head_only=args.method == "HEAD", connections=args.connections,
                         duration=duration, requests=args.requests, rate=args.rate,
                         close=args.close, pipeline=args.pipeline, timeout=args.timeout)
    except ValueError as e:
        raise UsageError(f"{prog}: {e}") from None
    count = worker_count(args.workers, prog)
    options = link_options(args, prog)
    cfg.sources = options.addresses()
    for path in (args.json, *(hgrm_files(args.hist).values() if args.hist else ())):
        if path is not None and not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
            raise UsageError(f"{prog}: {path}: cannot write there")
    if count > 1:
        from ustack.cli.loadworkers import run_load_workers

        return run_load_workers(args, prog, count, cfg, options, target.url)
    tune_allocator()
    with linked_stack(options, prog) as up, stop_on_signals(up.stack):
        stack = up.stack
        control = None
        progress: RunProgress | None = None
        try:
            with run_errors(prog):
                gen = LoadGenerator(stack, cfg)
                control = ControlServer(stack, args.name or options.device_name,
                                        lambda: counters_of(gen))
                total = cfg.duration if cfg.duration is not None else float(cfg.requests or 0)
                progress = RunProgress(prog, total)

                def started() -> None:
                    assert progress is not None
                    _progress(stack, gen, progress)

                interrupted, cpu_user, cpu_system = run_generator(stack, gen, started)
        finally:
            if progress is not None:
                progress.close()
            if control is not None:
                control.close()
    report = build(gen.stats, cfg, url=target.url, method=args.method,
                   cpu_user=cpu_user, cpu_system=cpu_system)
    finish(args, prog, report, gen.stats.histograms(), interrupted)
    return 0 if gen.stats.succeeded else 1
