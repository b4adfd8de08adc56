"""Run every benchmark in bench/ and print their tables (`make bench`).

Each ``bench/bench_*.py`` is a script that prints its own table; this runs
them one after the other, each in its own process (so one benchmark's
imports, threads or crash cannot skew the next), echo first.

    python3 bench/run.py [--quick] [--build compiled|pure] [--only NAME ...]

``--quick`` is passed on to every benchmark that accepts it (a smoke run
of seconds, not minutes), and so is ``--build`` (every benchmark measures
the compiled build by default, and fails without it: ``--build pure``
measures the pure-Python one instead).  The exit status is non-zero if any benchmark
failed; the others still run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
FIRST = ("echo", "checksum")
# A hard bound per benchmark, so `make bench` always ends by itself.
TIMEOUT = 30 * 60


def discover() -> list[str]:
    """Benchmark names (``bench_NAME.py`` -> ``NAME``), the FIRST ones first."""
    names = sorted(p.stem.removeprefix("bench_") for p in BENCH.glob("bench_*.py"))
    return [n for n in FIRST if n in names] + [n for n in names if n not in FIRST]


def accepts_quick(path: Path) -> bool:
    # Cheaper and safer than importing: does the script define the flag?
    return '"--quick"' in path.read_text()


def run_one(name: str, quick: bool, build: str | None = None) -> tuple[int, float]:
    path = BENCH / f"bench_{name}.py"
    cmd = [sys.executable, str(path)]
    if quick:
        if accepts_quick(path):
            cmd.append("--quick")
        else:
            print(f"(bench_{name}.py has no --quick: running it in full)")
    if build is not None:
        cmd += ["--build", build]
    t0 = time.monotonic()
    try:
        rc = subprocess.run(cmd, cwd=BENCH.parent, timeout=TIMEOUT).returncode
    except subprocess.TimeoutExpired:
        print(f"bench_{name}.py: stopped after {TIMEOUT} s", file=sys.stderr)
        rc = 124
    return rc, time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="run all benchmarks in bench/")
    p.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    p.add_argument("--only", action="append", metavar="NAME", help="e.g. echo, checksum")
    p.add_argument(
        "--build",
        choices=("compiled", "pure"),
        help="the build every benchmark measures (default: each one's own)",
    )
    a = p.parse_args(argv)
    names = discover()
    if a.only:
        unknown = sorted(set(a.only) - set(names))
        if unknown:
            p.error(f"no such benchmark: {', '.join(unknown)} (have: {', '.join(names)})")
        names = [n for n in names if n in a.only]
    failed: list[str] = []
    for name in names:
        print(f"\n=== bench_{name}.py{' (quick)' if a.quick else ''}", flush=True)
        rc, secs = run_one(name, a.quick, a.build)
        print(f"=== bench_{name}.py: {'ok' if rc == 0 else f'FAILED ({rc})'} in {secs:.0f} s")
        if rc != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
