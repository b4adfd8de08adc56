"""``ustack stats``: the counters of a running stack, read from its control
socket (``control.py``); ``--watch`` prints what changed each interval,
as ``nstat`` does.

One list of names: the stack's counters as ``nstat`` names them
(``TcpInSegs``, ``TcpExtTCPHPHits`` ...), its drops by reason
(``Drop<Reason>``), an application's own (``ustack serve``'s ``Http*``),
then the link's: each device statistic ``rx_frames``, ``tx_queue_full`` ...
as ``Link`` and the name in CamelCase (``LinkRxFrames``,
``LinkTxQueueFull``), summed over the stack's interfaces.  The workers of
a stack (``NAME@K``) are summed, or shown each with ``--per-worker``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ustack.cli.common import EXIT_ERROR, UsageError, print_counters

HELP = "print the counters of a running stack (--watch: what changed, like nstat)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", help="which stack (default: the only one running)")
    p.add_argument("--json", action="store_true",
                   help="print the whole report as JSON (with --watch: a JSON line an interval)")
    p.add_argument("--all", action="store_true",
                   help="include counters that are zero (with --watch: that did not change)")
    p.add_argument("--watch", nargs="?", type=float, const=1.0, default=None, metavar="SECS",
                   help="every SECS seconds (default 1) print the counters that changed, "
                        "by how much, until Ctrl-C")
    p.add_argument("--count", type=int, metavar="K",
                   help="with --watch: stop after K intervals")
    p.add_argument("--per-worker", action="store_true",
                   help="a stack run as workers: each worker's counters, not their sum")


def camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def link_counters(report: dict[str, Any]) -> dict[str, int]:
    """The device statistics of a stats report as counters: ``rx_frames``
    is ``LinkRxFrames``, summed over the interfaces."""
    out: dict[str, int] = {}
    for iface in report.get("interfaces", []):
        for key, value in iface.get("device", {}).items():
            if isinstance(value, int):
                name = "Link" + camel(key)
                out[name] = out.get(name, 0) + value
    return out


def all_counters(report: dict[str, Any]) -> dict[str, int]:
    """Every counter of a stats report, the link's after the stack's."""
    out = {k: int(v) for k, v in report.get("counters", {}).items()}
    out.update(link_counters(report))
    return out


def main(args: argparse.Namespace) -> int:
    from ustack.cli.control import ControlError, merged, pick_name, query_all

    if args.count is not None and args.count < 1:
        raise UsageError("ustack stats: --count must be at least 1")
    if args.watch is not None and not args.watch > 0:
        raise UsageError("ustack stats: --watch takes a number of seconds above 0")
    if args.count is not None and args.watch is None:
        args.watch = 1.0
    try:
        name = pick_name(args.name)
        answers = query_all(name, "stats")
    except ControlError as e:
        raise UsageError(f"ustack stats: {e}") from None
    if args.watch is not None:
        return watch(name, answers, args)
    report = merged(answers)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    if args.per_worker:
        for member, rep in answers:
            print(f"# {member} pid {rep.get('pid')}")
            print_counters(all_counters(rep), all_=args.all)
        return 0
    print_counters(all_counters(report), all_=args.all)
    return 0


# Each member of a stack (``NAME`` or its workers ``NAME@K``): the pid that
# answered and its counters then.
Snapshot = dict[str, tuple[object, dict[str, int]]]


def snapshot(answers: list[tuple[str, dict[str, Any]]],
             before: Snapshot | None = None) -> Snapshot:
    """The members' counters now; a member that did not answer (a worker
    being restarted) keeps its last snapshot from ``before``, so that it
    neither drops out of the sum nor comes back as a jump."""
    out: Snapshot = dict(before) if before else {}
    for member, rep in answers:
        out[member] = (rep.get("pid"), all_counters(rep))
    return out


def member_deltas(before: Snapshot, after: Snapshot) -> dict[str, dict[str, int]]:
    """How much each member's counters moved: from its last snapshot, or
    from 0 when its pid changed (a restarted worker counts from 0 again) or
    it is new."""
    out: dict[str, dict[str, int]] = {}
    for member, (pid, counters) in after.items():
        old = before.get(member)
        base = old[1] if old is not None and old[0] == pid else {}
        out[member] = deltas(base, counters)
    return out


def summed(per_member: dict[str, dict[str, int]]) -> dict[str, int]:
    """The members' deltas added up: a sum of deltas, not a delta of sums
    (which a restart would make negative)."""
    total: dict[str, int] = {}
    for moved in per_member.values():
        for k, v in moved.items():
            total[k] = total.get(k, 0) + v
    return total


def deltas(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """How much each counter moved (a counter new since: from 0), in
    ``after``'s order."""
    return {k: v - before.get(k, 0) for k, v in after.items()}


def print_deltas(moved: dict[str, int], seconds: float, *, all_: bool) -> None:
    """nstat's lines: name, the change, and the change per second."""
    for name, d in moved.items():
        if d or all_:
            print(f"{name:<32}{d:<16}{d / seconds:.1f}")


def watch(name: str, first: list[tuple[str, dict[str, Any]]], args: argparse.Namespace) -> int:
    """Every interval, the counters that moved since the last one; Ctrl-C
    ends it (exit 0), the stack going away too (one line, exit 1)."""
    from ustack.cli.control import ControlError, query_all

    interval: float = args.watch
    before = snapshot(first)
    last = start = time.monotonic()
    done = 0
    try:
        while args.count is None or done < args.count:
            done += 1
            due = start + done * interval
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                answers = query_all(name, "stats")
            except ControlError as e:
                print(f"ustack stats: stack {name!r} went away after {done - 1} "
                      f"interval(s) ({e})", file=sys.stderr)
                return EXIT_ERROR
            now = time.monotonic()
            after = snapshot(answers, before)
            per = member_deltas(before, after)
            shown = ({member: per[member] for member, _ in answers} if args.per_worker
                     else {"": summed(per)})
            stamp = time.strftime("%H:%M:%S")
            for member, moved in shown.items():
                if args.json:  # one JSON object a line and interval
                    print(json.dumps({"name": member or name, "time": time.time(),
                                      "seconds": round(now - last, 3),
                                      "deltas": {k: v for k, v in moved.items()
                                                 if v or args.all}}))
                    continue
                print(f"#ustack {member or name} {stamp} {now - last:.1f}s")
                print_deltas(moved, now - last, all_=args.all)
            sys.stdout.flush()
            before, last = after, now
    except KeyboardInterrupt:
        return 0
    return 0
