"""``ustack tcp send|recv --to IP:PORT [FILE]``: stream a file over ustack TCP.

Interrupted (SIGINT, SIGTERM) before the stream is whole, the command
resets the connection, says how many bytes it moved on one line
(``ustack tcp recv: interrupted after N bytes; FILE is incomplete``) and
exits 130, the shell's status for a command ended by SIGINT: a script
must never take a truncated file for a whole one.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from typing import BinaryIO

from ustack.cli.common import (
    CommandFailed,
    Parser,
    UsageError,
    add_link_options,
    control_server,
    link_options,
    linked_stack,
    os_error_text,
    stop_on_signals,
)

HELP = "send or receive a stream over ustack TCP"
# The exit status of a transfer cut short by a signal (128 + SIGINT).
EXIT_INTERRUPTED = 130


def add_arguments(p: argparse.ArgumentParser) -> None:
    tsub = p.add_subparsers(dest="direction", metavar="send|recv", parser_class=Parser,
                            required=True)
    for direction, what in (("send", "stream FILE (or stdin) to a TCP server"),
                            ("recv", "write what a TCP server sends to FILE (or stdout)")):
        t = tsub.add_parser(direction, help=what, description=what + "; shows progress on "
                            "stderr (a bar on a terminal) and prints bytes and MB/s at the "
                            "end; interrupted, says so and exits 130")
        t.add_argument("--to", required=True, metavar="IP:PORT", help="the server")
        t.add_argument("file", nargs="?", metavar="FILE", help="- or absent: stdin/stdout")
        t.add_argument("--timeout", type=float, default=30.0,
                       help="give up when nothing moves for this many seconds")
        t.add_argument("--name", help="name of the control socket, for ustack stats "
                       "(default: the device name)")
        add_link_options(t)


def main(args: argparse.Namespace) -> int:
    from ustack.apps.transfer import Transfer, parse_endpoint, stream_size
    from ustack.cli.control import ControlError, check_name
    from ustack.cli.progress import Progress
    from ustack.link.errors import LinkError

    prog = f"ustack tcp {args.direction}"
    try:
        endpoint = parse_endpoint(args.to)
        if args.name is not None:
            check_name(args.name)
    except (ValueError, ControlError) as e:
        raise UsageError(f"{prog}: {e}") from None
    options = link_options(args, prog)
    where = "stdin" if args.direction == "send" else "stdout"
    with contextlib.ExitStack() as cleanup:
        stream: BinaryIO
        if args.file in (None, "-"):
            std = sys.stdin if args.direction == "send" else sys.stdout
            if std is None:  # started with it closed (<&- or >&-): Python's None
                raise UsageError(f"{prog}: {where} is closed")
            stream = std.buffer
        else:
            where = args.file
            try:
                stream = cleanup.enter_context(
                    open(args.file, "rb" if args.direction == "send" else "wb"))
            except OSError as e:
                raise UsageError(f"{prog}: {args.file}: {e.strerror}") from None
        stack = cleanup.enter_context(linked_stack(options, prog)).stack
        cleanup.enter_context(stop_on_signals(stack))
        control = control_server(stack, args.name, options.device_name, prog)
        if control is not None:
            cleanup.callback(control.close)
        job = Transfer(stack, endpoint, args.direction, stream, timeout=args.timeout,
                       stream_name=where)
        bar = Progress(args.direction,
                       stream_size(stream) if args.direction == "send" else None)
        job.on_progress = lambda n: bar.update(n, time.monotonic())
        try:
            job.run()
        except LinkError as e:  # the device failed while running (as ustack up)
            raise UsageError(f"{prog}: {e}") from None
        except OSError as e:  # the connection's (refused, reset, unreachable) or the stream's
            if e.filename == "stdout":
                _quiet_stdout()
            raise CommandFailed(f"{prog}: {os_error_text(e)}") from None
        finally:
            bar.close(job.nbytes)
    secs = max(job.seconds, 1e-9)
    rate = f"{job.nbytes / secs / 1e6:.2f} MB/s"
    if job.interrupted:
        what = "sent" if args.direction == "send" else f"received; {where} is incomplete"
        print(f"{prog}: interrupted after {job.nbytes} bytes {what} ({secs:.3f} s, {rate})",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"{args.direction}: {job.nbytes} bytes in {secs:.3f} s, {rate}", file=sys.stderr)
    return 0


def _quiet_stdout() -> None:
    """stdout failed (a pipe whose reader is gone): point it at /dev/null, so
    the interpreter's last flush of it at exit adds no second message."""
    fd = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(fd, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(fd)
