"""``ustack tcp send|recv --to IP:PORT [FILE]``: stream a file over ustack TCP."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import BinaryIO

from ustack.cli.common import (
    Parser,
    UsageError,
    add_link_options,
    link_options,
    linked_stack,
    os_error_text,
    stop_on_signals,
)

HELP = "send or receive a stream over ustack TCP"


def add_arguments(p: argparse.ArgumentParser) -> None:
    tsub = p.add_subparsers(dest="direction", metavar="send|recv", parser_class=Parser,
                            required=True)
    for direction, what in (("send", "stream FILE (or stdin) to a TCP server"),
                            ("recv", "write what a TCP server sends to FILE (or stdout)")):
        t = tsub.add_parser(direction, help=what, description=what + "; prints bytes and "
                            "MB/s at the end on stderr")
        t.add_argument("--to", required=True, metavar="IP:PORT", help="the server")
        t.add_argument("file", nargs="?", metavar="FILE", help="- or absent: stdin/stdout")
        t.add_argument("--timeout", type=float, default=30.0,
                       help="give up when nothing moves for this many seconds")
        add_link_options(t)


def main(args: argparse.Namespace) -> int:
    from ustack.apps.transfer import Transfer, parse_endpoint
    from ustack.link.errors import LinkError

    prog = f"ustack tcp {args.direction}"
    try:
        endpoint = parse_endpoint(args.to)
    except ValueError as e:
        raise UsageError(f"{prog}: {e}") from None
    options = link_options(args, prog)
    with contextlib.ExitStack() as cleanup:
        stream: BinaryIO
        if args.file in (None, "-"):
            stream = sys.stdin.buffer if args.direction == "send" else sys.stdout.buffer
        else:
            try:
                stream = cleanup.enter_context(
                    open(args.file, "rb" if args.direction == "send" else "wb"))
            except OSError as e:
                raise UsageError(f"{prog}: {args.file}: {e.strerror}") from None
        stack = cleanup.enter_context(linked_stack(options, prog)).stack
        cleanup.enter_context(stop_on_signals(stack))
        job = Transfer(stack, endpoint, args.direction, stream, timeout=args.timeout)
        try:
            job.run()
        except LinkError as e:  # the device failed while running (as ustack up)
            raise UsageError(f"{prog}: {e}") from None
        except OSError as e:
            raise UsageError(f"{prog}: {os_error_text(e)}") from None
    secs = max(job.seconds, 1e-9)
    print(f"{args.direction}: {job.nbytes} bytes in {secs:.3f} s, "
          f"{job.nbytes / secs / 1e6:.2f} MB/s", file=sys.stderr)
    return 0
