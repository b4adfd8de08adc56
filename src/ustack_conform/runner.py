"""``ustack conform PATH...``: run packetdrill scripts and judge the results (issue 4).

Each script is played by ``execution.run_script`` against a fresh stack.
Results: one line per script (``pass``, ``FAIL file:line: first
mismatch``, ``error file:line: why``) and ``N passed, N failed``.  An
expected-failure list names the scripts that fail on purpose; an unexpected
failure and an unexpected pass both make the run fail (exit status 1).  A
malformed script is an ``error`` line with its file and line, never a
traceback, and the run goes on.

Expected-failure lists live next to the scripts they describe: a file named
``xfail.txt`` with one ``path/to/script.pkt: reason`` per line, the path
relative to the folder of the list (tests/conformance/xfail.txt covers
tests/conformance and the FreeBSD suite in tests/conformance/tcp-testsuite).
A script matches an entry when its path ends with ``/`` + the entry, so the
list also serves another copy of the same folders.  For each PATH given,
the list is the nearest ``xfail.txt`` (``find_xfail``): in PATH itself when
it is a folder, in its folder when it is a script, else in the closest
folder above, up to the top of the project (the first folder up that holds
``.git`` or ``pyproject.toml``) and never beyond it, so that an unrelated
list in /tmp or $HOME never applies; outside any project, only PATH's own
folder counts.  With none, every script under PATH is expected to pass.
``--xfail FILE`` judges every PATH by FILE instead, ``--no-xfail`` by no
list at all.

Usage::

    ustack conform tests/conformance
    ustack conform --strict -v tests/conformance/data-after-close.pkt
    outcome = run_path("x.pkt")            # Outcome(path, status, line, message)
    summary = run_all(paths, RunOptions())  # each PATH judged by its nearest xfail.txt
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ustack.cli.common import Parser, UsageError
from ustack_conform.execution import (
    DEFAULT_DEFINES,
    NON_FATAL_KINDS,
    Outcome,
    RunOptions,
    run_script,
)
from ustack_conform.parser import iter_scripts, parse_path
from ustack_conform.script import ScriptError

__all__ = [
    "DEFAULT_DEFINES",
    "PROJECT_MARKERS",
    "XFAIL_NAME",
    "Outcome",
    "RunOptions",
    "Summary",
    "Verdict",
    "find_xfail",
    "judge",
    "load_xfail",
    "main",
    "plan",
    "run_all",
    "run_path",
    "run_plan",
    "run_script",
]

#: The file name of an expected-failure list (see the module docstring).
XFAIL_NAME = "xfail.txt"
#: What marks the top of a project: the search for an ``xfail.txt`` stops there.
PROJECT_MARKERS = (".git", "pyproject.toml")


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


def find_xfail(path: str | os.PathLike[str]) -> Path | None:
    """The expected-failure list for the scripts under ``path``, or None.

    The nearest ``xfail.txt``: in ``path`` when it is a folder, in its folder
    when it is a script (or does not exist), else in the closest folder
    above, up to and including the top of the project (the first folder up
    that holds one of ``PROJECT_MARKERS``), never above it: a list found
    higher up belongs to something else.  Outside any project only the first
    folder is searched.  The path is made absolute but symbolic links are not
    followed: the folders searched are the ones the path names.
    """
    p = Path(os.path.abspath(path))
    start = p if p.is_dir() else p.parent
    chain = [start, *start.parents]
    top = next((i for i, folder in enumerate(chain)
                if any((folder / m).exists() for m in PROJECT_MARKERS)), 0)
    for folder in chain[: top + 1]:
        candidate = folder / XFAIL_NAME
        if candidate.is_file():
            return candidate
    return None


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


def plan(paths: Iterable[str],
         xfail: dict[str, str] | None = None) -> list[tuple[str, dict[str, str]]]:
    """Every script under ``paths``, each with the expected-failure list it is judged by.

    ``xfail`` is the list for every script; None: each PATH's nearest
    ``xfail.txt`` (``find_xfail``), or no list when there is none.  All lists
    are read here, before any script runs (OSError, ValueError).
    """
    out: list[tuple[str, dict[str, str]]] = []
    for p in paths:
        listed = xfail
        if listed is None:
            found = find_xfail(p)
            listed = load_xfail(found) if found else {}
        out.extend((os.fspath(q), listed) for q in iter_scripts(p))
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


def run_all(paths: Sequence[str], opts: RunOptions, xfail: dict[str, str] | None = None, *,
            jobs: int = 1, echo: bool = True) -> Summary:
    """Run every script under ``paths``; print a line per script when ``echo``.

    ``xfail``: the expected-failure list for every script; None (the
    default): each PATH's nearest ``xfail.txt`` (see ``plan``).
    """
    return run_plan(plan(paths, xfail), opts, jobs=jobs, echo=echo)


def run_plan(planned: Sequence[tuple[str, dict[str, str]]], opts: RunOptions, *, jobs: int = 1,
             echo: bool = True) -> Summary:
    """Run the scripts of a ``plan``, each judged by its own list."""
    summary = Summary()
    work = [(s, opts) for s, _ in planned]
    lists = [xfail for _, xfail in planned]
    if jobs > 1 and len(work) > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            outcomes: Iterable[Outcome] = pool.map(_run_one, work, chunksize=4)
            for o, xfail in zip(outcomes, lists, strict=True):
                _record(summary, o, xfail, echo)
    else:
        for w, xfail in zip(work, lists, strict=True):
            _record(summary, _run_one(w), xfail, echo)
    return summary


def _record(summary: Summary, o: Outcome, xfail: dict[str, str], echo: bool) -> None:
    v = judge(o, xfail)
    summary.verdicts.append(v)
    if echo:
        print(v.line(), flush=True)


def build_parser(prog: str = "ustack conform") -> argparse.ArgumentParser:
    p = Parser(  # the ustack command's: a one-line error, not usage + message
        prog=prog, description="Run packetdrill scripts against ustack (the stack under test "
        "is in memory; the runner plays the remote peer with a fake clock).",
        epilog=f"Expected failures: the scripts under each PATH are judged by the nearest "
        f"{XFAIL_NAME}, in PATH (a folder) or PATH's folder (a script), else in the closest "
        f"folder above, up to the top of the project (the first folder holding .git or "
        f"pyproject.toml; outside a project, PATH's folder only); with none, every script "
        f"must pass.  Each line of the list is "
        f"'path/to/script.pkt: reason', the path relative to the list's folder (a script "
        f"matches when its path ends with it); '#' starts a comment.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="scripts, or folders of *.pkt")
    p.add_argument("--strict", action="store_true",
                   help="also compare the windows (in bytes) and TCP options (by kind and "
                        "value, padding and order aside) of outbound packets, and the "
                        "buffer sizes getsockopt reports (the same expected failures)")
    p.add_argument("--define", "-D", action="append", default=None, metavar="NAME",
                   help="#ifdef names that hold (default: STANDARD); repeatable")
    p.add_argument("--xfail", metavar="FILE", default=None,
                   help=f"the expected-failure list for every PATH (default: each PATH's "
                        f"nearest {XFAIL_NAME}, see below)")
    p.add_argument("--no-xfail", action="store_true",
                   help="no expected-failure list: expect every script to pass")
    p.add_argument("--tolerance-usecs", type=int, default=None, metavar="N",
                   help="override the scripts' --tolerance_usecs")
    p.add_argument("--non_fatal", "--non-fatal", default="", metavar="KINDS",
                   help="packetdrill's option: the kinds of mismatch (packet, syscall; "
                        "comma-separated) that are noted instead of failing the script")
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
        non_fatal = frozenset(k.strip() for k in args.non_fatal.split(",") if k.strip())
        if non_fatal - NON_FATAL_KINDS:
            p.error(f"--non_fatal: expected {' and/or '.join(sorted(NON_FATAL_KINDS))}, "
                    f"not {args.non_fatal}")
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    opts = RunOptions(strict=args.strict,
                      defines=frozenset(args.define) if args.define else DEFAULT_DEFINES,
                      tolerance_usecs=args.tolerance_usecs, trace=args.trace,
                      non_fatal=non_fatal)
    xfail: dict[str, str] | None = {} if args.no_xfail else None  # None: each PATH's own
    try:
        if xfail is None and args.xfail:
            xfail = load_xfail(args.xfail)
        planned = plan(args.paths, xfail)
    except (OSError, ValueError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    summary = run_plan(planned, opts, jobs=args.jobs)
    print(summary.line())
    return 0 if summary.ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
