"""What ``ustack load`` does with one process or several (``--workers``):
the end of a run on a stack, its counters for ``ustack stats``, and the
summary and files written at the end."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ustack.cli.common import UsageError, os_error_text

if TYPE_CHECKING:
    from ustack.apps.load.generator import LoadGenerator
    from ustack.apps.load.histogram import Histogram
    from ustack.stack import Stack

LINGER = 1.0


def run_generator(stack: Stack, gen: LoadGenerator,
                  on_start: Callable[[], None] | None = None) -> tuple[bool, float, float]:
    """Run ``gen`` on ``stack`` to its end or to SIGINT/SIGTERM, then let
    its last closes finish (``linger``, unless interrupted).  ``on_start``:
    called once the run has started (its clock set).  Whether it was
    interrupted, and the process's user and system CPU seconds in the run."""
    from ustack.cli.up import tune_collector

    tune_collector()
    before = resource.getrusage(resource.RUSAGE_SELF)
    # The run's clock is run()'s (time.monotonic): started on it, the
    # addresses announced, then the first connection.
    stack.start(time.monotonic())
    gen.start()
    if on_start is not None:
        on_start()
    stack.run(until=lambda: gen.done)
    interrupted = not gen.done
    gen.stop()
    after = resource.getrusage(resource.RUSAGE_SELF)
    if not interrupted:
        linger(stack, gen)
    return interrupted, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def linger(stack: Stack, gen: LoadGenerator) -> None:
    """Let the last closes finish (``LoadGenerator.settled``), for at most
    LINGER seconds: a process that left at once would leave the server
    retransmitting FINs to a link that is gone."""
    end = time.monotonic() + LINGER
    stack.run(until=lambda: gen.settled() or time.monotonic() > end, max_wait=0.05)
    stack.flush()


def counters_of(gen: LoadGenerator) -> dict[str, int]:
    """The run's figures so far, for ``ustack stats``."""
    st = gen.stats
    return {"LoadConnsOpened": st.opened, "LoadConnsHeld": gen.held,
            "LoadRequestsSent": st.sent, "LoadRequestsCompleted": st.completed,
            "LoadErrors": sum(st.errors.values())}


def finish(args: argparse.Namespace, prog: str, report: dict[str, Any],
           hists: dict[str, Histogram], interrupted: bool) -> None:
    """Print the summary of ``report``; write --json and --hist."""
    from ustack.apps.load.report import hgrm_files, summary

    text = summary(report)
    if interrupted:
        text += "  interrupted: the run was stopped before its end (SIGINT/SIGTERM)\n"
    sys.stdout.write(text)
    sys.stdout.flush()
    try:
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(report, f, indent=1)
                f.write("\n")
        if args.hist:
            for phase, path in hgrm_files(args.hist).items():
                with open(path, "w", encoding="utf-8") as f:
                    f.write(hists[phase].to_hgrm())
    except OSError as e:
        raise UsageError(f"{prog}: {os_error_text(e)}") from None
