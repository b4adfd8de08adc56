"""``ustack conform PATH...``: run packetdrill scripts and judge the results (issue 4).

Each script is played by ``execution.run_script`` against a fresh stack.
Results: one line per script (``pass``, ``FAIL file:line: first
mismatch``, ``error file:line: why``) and ``N passed, N failed``.  The
expected-failure list (``xfail.txt`` next to this file: ``path: reason``
per line, the path relative to the suite) names the scripts that fail on
purpose; an unexpected failure and an unexpected pass both make the run
fail (exit status 1).  A malformed script is an ``error`` line with its file
and line, never a traceback, and the run goes on.

Usage::

    ustack conform tests/conformance
    ustack conform --strict -v tests/conformance/data-after-close.pkt
    outcome = run_path("x.pkt")            # Outcome(path, status, line, message)
    summary = run_all(paths, RunOptions(), load_xfail(DEFAULT_XFAIL))
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, NoReturn

from ustack_conform.execution import DEFAULT_DEFINES, Outcome, RunOptions, run_script
from ustack_conform.parser import iter_scripts, parse_path
from ustack_conform.script import ScriptError

__all__ = [
    "DEFAULT_DEFINES",
    "DEFAULT_XFAIL",
    "Outcome",
    "RunOptions",
    "Summary",
    "Verdict",
    "judge",
    "load_xfail",
    "main",
    "run_all",
    "run_path",
    "run_script",
]

DEFAULT_XFAIL = Path(__file__).with_name("xfail.txt")


def run_path(path: str | os.PathLike[str], opts: RunOptions | None = None) -> Outcome:
    """Parse and play one script file; never raises (an error is an Outcome)."""
    name = os.fspath(path)
    try:
        script = parse_path(name)
    except ScriptError as e:
        return Outcome(name, "error", e.line, e.message)
    return run_script(script, opts)


def load_xfail(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{script path suffix: reason}`` from an expected-failure file.

    One script per line, ``relative/path.pkt: reason``; ``#`` starts a
    comment.  Raises ValueError (with the line) on a line without a reason.
    """
    out: dict[str, str] = {}
    text = Path(path).read_text(encoding="utf-8")
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, reason = line.partition(": ")
        if not sep or not reason.strip() or not name.endswith(".pkt"):
            raise ValueError(f"{path}:{n}: expected 'path/to/script.pkt: reason'")
        out[name.strip()] = reason.strip()
    return out


def _xfail_reason(path: str, xfail: dict[str, str]) -> str | None:
    p = Path(path).resolve().as_posix()
    for suffix, reason in xfail.items():
        if p == suffix or p.endswith("/" + suffix):
            return reason
    return None


class Verdict(NamedTuple):
    """An outcome judged against the expected-failure list."""

    outcome: Outcome
    expected_failure: str | None  # the xfail reason, when listed
    ok: bool  # what was expected happened

    def line(self) -> str:
        o = self.outcome
        if self.expected_failure is None:
            return str(o)
        if o.status == "pass":
            return f"XPASS {o.path}: listed as failing ({self.expected_failure})"
        return f"xfail {o.path}:{o.line}: {o.message} [{self.expected_failure}]"


def judge(outcome: Outcome, xfail: dict[str, str]) -> Verdict:
    reason = _xfail_reason(outcome.path, xfail)
    passed = outcome.status == "pass"
    return Verdict(outcome, reason, passed if reason is None else not passed)


def _scripts(paths: Iterable[str]) -> list[str]:
    out: list[str] = []
    for p in paths:
        out.extend(os.fspath(q) for q in iter_scripts(p))
    return out


def _run_one(args: tuple[str, RunOptions]) -> Outcome:
    return run_path(args[0], args[1])


@dataclass
class Summary:
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(1 for v in self.verdicts if v.outcome.status == "pass")

    @property
    def failed(self) -> int:
        return len(self.verdicts) - self.passed

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts)

    def line(self) -> str:
        xf = sum(1 for v in self.verdicts if v.expected_failure and v.ok)
        bad = sum(1 for v in self.verdicts if not v.ok and v.outcome.status != "pass")
        xpass = sum(1 for v in self.verdicts if not v.ok and v.outcome.status == "pass")
        return (f"{self.passed} passed, {self.failed} failed ({xf} expected, {bad} unexpected "
                f"failures, {xpass} unexpected passes)")


def run_all(paths: Sequence[str], opts: RunOptions, xfail: dict[str, str], *, jobs: int = 1,
            echo: bool = True) -> Summary:
    """Run every script under ``paths``; print a line per script when ``echo``."""
    scripts = _scripts(paths)
    summary = Summary()
    work = [(s, opts) for s in scripts]
    if jobs > 1 and len(work) > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            outcomes: Iterable[Outcome] = pool.map(_run_one, work, chunksize=4)
            for o in outcomes:
                _record(summary, o, xfail, echo)
    else:
        for w in work:
            _record(summary, _run_one(w), xfail, echo)
    return summary


def _record(summary: Summary, o: Outcome, xfail: dict[str, str], echo: bool) -> None:
    v = judge(o, xfail)
    summary.verdicts.append(v)
    if echo:
        print(v.line(), flush=True)


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error instead of usage + message (as ``ustack``)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser(prog: str = "ustack conform") -> argparse.ArgumentParser:
    p = _Parser(
        prog=prog, description="Run packetdrill scripts against ustack (the stack under test "
        "is in memory; the runner plays the remote peer with a fake clock).")
    p.add_argument("paths", nargs="+", metavar="PATH", help="scripts, or folders of *.pkt")
    p.add_argument("--strict", action="store_true",
                   help="also compare windows, TTL and TCP options of outbound packets, "
                        "and the buffer sizes getsockopt reports")
    p.add_argument("--define", "-D", action="append", default=None, metavar="NAME",
                   help="#ifdef names that hold (default: STANDARD); repeatable")
    p.add_argument("--xfail", metavar="FILE", default=None,
                   help=f"expected-failure list (default: {DEFAULT_XFAIL.name} of the package)")
    p.add_argument("--no-xfail", action="store_true", help="expect every script to pass")
    p.add_argument("--tolerance-usecs", type=int, default=None, metavar="N",
                   help="override the scripts' --tolerance_usecs")
    p.add_argument("-j", "--jobs", type=int, default=1, metavar="N",
                   help="run N scripts at a time in worker processes")
    p.add_argument("-v", "--trace", action="store_true", help="trace each event on stderr")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "ustack conform") -> int:
    """The ``conform`` command: 0 when every result is the expected one, 1 otherwise."""
    p = build_parser(prog)
    try:
        args = p.parse_intermixed_args(list(argv) if argv is not None else None)
        if args.jobs < 1:
            p.error("--jobs must be at least 1")
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    opts = RunOptions(strict=args.strict,
                      defines=frozenset(args.define) if args.define else DEFAULT_DEFINES,
                      tolerance_usecs=args.tolerance_usecs, trace=args.trace)
    xfail: dict[str, str] = {}
    if not args.no_xfail:
        try:
            xfail = load_xfail(args.xfail or DEFAULT_XFAIL)
        except (OSError, ValueError) as e:
            print(f"{prog}: {e}", file=sys.stderr)
            return 2
    summary = run_all(args.paths, opts, xfail, jobs=args.jobs)
    print(summary.line())
    return 0 if summary.ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
