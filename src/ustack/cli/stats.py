"""``ustack stats``: the counters of a running stack, read from its control
socket (``control.py``)."""

from __future__ import annotations

import argparse
import json

from ustack.cli.common import UsageError, print_counters

HELP = "print the counters of a running stack"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", help="which stack (default: the only one running)")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.add_argument("--all", action="store_true", help="include counters that are zero")


def main(args: argparse.Namespace) -> int:
    from ustack.cli.control import ControlError, query

    try:
        report = query(args.name)
    except ControlError as e:
        raise UsageError(f"ustack stats: {e}") from None
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print_counters(report["counters"], all_=args.all)
    return 0
