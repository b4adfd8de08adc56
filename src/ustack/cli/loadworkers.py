"""``ustack load --workers N``: the run split over N processes, one report.

A load generator opens its connections itself, so the kernel's flow hash
cannot choose the worker (the answer to a SYN must reach the worker that
sent it).  Each worker owns a share of the source addresses instead
(``--sources`` at least N): on AF_PACKET a socket filter gives worker K the
frames to the addresses ``a`` with ``a % N == K`` (``link.bpf``).  A TAP is
refused: the kernel chooses a queue of a multi-queue TAP by the flow's hash
(its steering by the queue that last wrote a flow did not hold: the
answers to half the SYNs reached the other worker, which reset them), and
an address-based choice would need an eBPF steering program
(TUNSETSTEERINGEBPF).  The connections, ``-n`` and
``--rate`` are split as evenly as they go; ``-d`` is every worker's.

Each worker hands its whole ``LoadStats`` to the parent at its end, which
adds them up (histograms included, so percentiles are those of all the
requests) and prints one report, as one process would.  A worker that dies
loses its share, and the run says so (exit status 1).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ustack.cli.common import UsageError, run_errors
from ustack.cli.loadrun import counters_of, finish, run_generator
from ustack.cli.supervise import Channel, Supervisor
from ustack.cli.workers import SharedLink, Worker, check_worker_name, command_stack

if TYPE_CHECKING:
    from ustack.apps.load.generator import LoadConfig
    from ustack.apps.load.results import LoadStats
    from ustack.bringup import LinkOptions

# LoadStats' fields, by how the workers' values add up.
_SUMS = ("opened", "established", "held_max", "server_closes", "syn_retransmits", "sent",
         "completed", "unfinished", "bytes_in", "bytes_out", "scheduled", "late", "never_sent")
_DICTS = ("status", "errors", "malformed")
_HISTOGRAM = ("count", "min", "max", "sum", "sum_sq", "clamped")


def share(total: int, count: int, index: int) -> int:
    """Worker ``index``'s part of ``total``: even, the first ones one more."""
    return total // count + (1 if index < total % count else 0)


def stats_doc(st: LoadStats) -> dict[str, Any]:
    """``st`` as JSON-able data (``stats_from_doc`` reads it back)."""
    doc: dict[str, Any] = {name: getattr(st, name) for name in (*_SUMS, *_DICTS)}
    doc["started"], doc["ended"] = st.started, st.ended
    doc["src"] = [st.src_conns, st.src_completed, st.src_errors]
    doc["hist"] = {
        phase: {"counts": {str(i): c for i, c in enumerate(h.counts) if c},
                **{k: getattr(h, k) for k in _HISTOGRAM}}
        for phase, h in st.histograms().items()
    }
    return doc


def merge_stats(docs: list[dict[str, Any]], owners: list[list[int]],
                nsources: int) -> LoadStats:
    """One ``LoadStats`` adding up the workers' ``docs``; ``owners[k]``: the
    global index of each source of worker k (its ``LoadConfig.sources``)."""
    from ustack.apps.load.histogram import Histogram
    from ustack.apps.load.results import LoadStats

    st = LoadStats(nsources)
    hists = st.histograms()
    for k, doc in enumerate(docs):
        for name in _SUMS:
            setattr(st, name, getattr(st, name) + int(doc[name]))
        for name in _DICTS:
            total: dict[str, int] = getattr(st, name)
            for key, value in doc[name].items():
                total[key] = total.get(key, 0) + int(value)
        st.started = doc["started"] if k == 0 else min(st.started, doc["started"])
        st.ended = max(st.ended, doc["ended"])
        for mine, glob in enumerate(owners[k]):
            st.src_conns[glob] += doc["src"][0][mine]
            st.src_completed[glob] += doc["src"][1][mine]
            st.src_errors[glob] += doc["src"][2][mine]
        for phase, h in doc["hist"].items():
            part = Histogram()
            for i, c in h["counts"].items():
                part.counts[int(i)] = int(c)
            for name in _HISTOGRAM:
                setattr(part, name, int(h[name]))
            hists[phase].add(part)
    return st


def run_load_workers(args: argparse.Namespace, prog: str, count: int, cfg: LoadConfig,
                     options: LinkOptions, url: str) -> int:
    """``ustack load`` over ``count`` workers (module doc); its exit status."""
    from ustack.apps.load.generator import LoadConfig
    from ustack.apps.load.report import build
    from ustack.wire import ipv4

    sources = list(cfg.sources)
    if options.kind == "tap":
        raise UsageError(f"{prog}: --workers {count} with a TAP: the kernel picks a TAP queue "
                         "by flow hash, not by the worker that opened the connection; use "
                         "--link packet:IFACE or one worker")
    if len(sources) < count:
        raise UsageError(f"{prog}: --workers {count} needs --sources {count} at least: each "
                         "worker opens its connections from addresses of its own")
    if cfg.connections < count:
        raise UsageError(f"{prog}: --workers {count} needs -c {count} at least (a connection "
                         "is one worker's)")
    if cfg.requests is not None and cfg.requests < count:
        raise UsageError(f"{prog}: --workers {count} needs -n {count} at least")
    owners = [[i for i, a in enumerate(sources)
               if int.from_bytes(ipv4.addr_from_str(a), "big") % count == k]
              for k in range(count)]
    name = args.name or options.device_name
    check_worker_name(name, count, prog)
    shared = SharedLink(options, prog, count=count, partition=True)

    def work(index: int, channel: Channel) -> int:
        shared.keep_only(index)
        worker = Worker(index, count, shared, None)
        mine = LoadConfig(
            cfg.ip, cfg.port, cfg.request, [sources[i] for i in owners[index]],
            head_only=cfg.head_only, connections=share(cfg.connections, count, index),
            duration=cfg.duration,
            requests=None if cfg.requests is None else share(cfg.requests, count, index),
            rate=None if cfg.rate is None else cfg.rate / count, close=cfg.close,
            pipeline=cfg.pipeline, timeout=cfg.timeout)
        channel.result(_run_one(worker, mine, channel, prog, name))
        return 0

    sup = Supervisor(prog, count, work, one_shot=True)
    try:
        status = sup.run()
    finally:
        shared.close()
    if status != 0:
        return status
    docs = sup.results
    stats = merge_stats([d["stats"] for d in docs], [owners[d["index"]] for d in docs],
                        len(sources))
    report = build(stats, cfg, url=url, method=args.method,
                   cpu_user=sum(d["cpu_user"] for d in docs),
                   cpu_system=sum(d["cpu_system"] for d in docs))
    interrupted = any(d["interrupted"] for d in docs) or len(docs) < count
    finish(args, prog, report, stats.histograms(), interrupted)
    return 0 if stats.succeeded and not sup.lost else 1


def _run_one(worker: Worker, cfg: LoadConfig, channel: Channel, prog: str,
             name: str) -> dict[str, Any]:
    """Worker ``worker``'s run: its stack, its generator, until its end."""
    from ustack.apps.load.generator import LoadGenerator
    from ustack.cli.control import ControlServer
    from ustack.cli.up import tune_allocator

    tune_allocator()
    with command_stack(worker.options, prog, worker, name) as (up, name):
        stack = up.stack
        control = None
        try:
            with run_errors(prog):
                gen = LoadGenerator(stack, cfg)
                control = ControlServer(stack, name, lambda: counters_of(gen))
                channel.ready("")
                interrupted, cpu_user, cpu_system = run_generator(stack, gen)
        finally:
            if control is not None:
                control.close()
    return {"index": worker.index, "stats": stats_doc(gen.stats), "interrupted": interrupted,
            "cpu_user": cpu_user, "cpu_system": cpu_system}
