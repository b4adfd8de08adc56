"""The ``ustack`` command.

Every failure the user can cause (not root, device busy, bad address, an
unknown option, a file that cannot be written) ends in one line on stderr
starting with the command (``ustack up: ...``; ``ustack: ...`` before one is
known) and a non-zero exit status (2 for usage), never a traceback.

One module per subcommand: ``up`` (a stack on a link until interrupted),
``serve`` (the HTTP server on a stack, ``ustack.apps.http``),
``load`` (the HTTP load generator on a stack, ``ustack.apps.load``),
``flood`` (a bounded SYN flood whose answers are counted, ``ustack.apps.flood``),
``tcp`` (stream a file over ustack TCP), ``stats`` (a running stack's
counters, through ``control``), ``run`` (a Python program on ustack's
sockets); ``conform`` is the conformance runner's, reached through the
``ustack.commands`` entry points (the runtime imports no tool package).  ``common``
holds what they share: the one-line errors and exit codes, the link
options and the stack they bring up (``ustack.bringup``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence

from ustack import __version__, purepy
from ustack.cli import flood, load, plot, serve, ss, stats, tcp, up
from ustack.cli.common import (
    EXIT_ERROR,
    EXIT_SIGPIPE,
    EXIT_USAGE,
    Parser,
    UsageError,
    os_error_text,
)

# The subcommands whose options argparse parses here.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "up": up.main,
    "serve": serve.main,
    "load": load.main,
    "flood": flood.main,
    "tcp": tcp.main,
    "stats": stats.main,
    "ss": ss.main,
    "plot": plot.main,
}


class _Version(argparse.Action):
    """``--version``: the version and the build that runs (compiled or pure),
    worked out only when asked (it imports the core)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        print(f"ustack {__version__} ({purepy.describe()})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="ustack", description="A user-space TCP/IP stack: IP per process.")
    p.add_argument("--version", action=_Version, nargs=0,
                   help="show the version and the build (compiled or pure Python) and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    up.add_arguments(sub.add_parser("up", help=up.HELP, description=up.DESCRIPTION))
    serve.add_arguments(sub.add_parser("serve", help=serve.HELP, description=serve.DESCRIPTION))
    load.add_arguments(sub.add_parser("load", help=load.HELP, description=load.DESCRIPTION))
    flood.add_arguments(sub.add_parser("flood", help=flood.HELP, description=flood.DESCRIPTION))
    tcp.add_arguments(sub.add_parser("tcp", help=tcp.HELP))

    # `ustack conform ARGS...` goes straight to the conformance runner, an
    # entry point of the distribution (main below); this entry only lists
    # it in `ustack --help`.
    sub.add_parser("conform", add_help=False,
                   help="run packetdrill scripts against ustack (see ustack conform --help)")

    # `ustack run ... -- PROGRAM` goes straight to ustack.cli.run (main below).
    sub.add_parser("run", add_help=False,
                   help="run a Python program with its sockets on ustack (see ustack run --help)")

    stats.add_arguments(sub.add_parser("stats", help=stats.HELP))
    ss.add_arguments(sub.add_parser("ss", help=ss.HELP, description=ss.DESCRIPTION))
    plot.add_arguments(sub.add_parser("plot", help=plot.HELP, description=plot.DESCRIPTION))
    return p


def run_command(argv: list[str]) -> int:
    """``ustack run ... -- PROGRAM``: its own command line (``ustack.cli.run``)."""
    from ustack.cli.run import main as run_main

    return run_main(argv)


# Subcommands that take the rest of the command line as it is.
PASS_THROUGH: dict[str, Callable[[list[str]], int]] = {
    "run": run_command,
}


def entry_point_command(args: Sequence[str]) -> Callable[[list[str]], int] | None:
    """The ``ustack.commands`` entry point that ``args[0]`` names, or None.

    Tools installed beside the runtime add commands to ``ustack`` through
    this entry-point group (``conform = "ustack_conform.runner:main"`` in
    pyproject.toml), so the runtime never imports them.  Only a first word
    that is no built-in command or option is looked up: reading the
    installed distributions' metadata costs time the built-in commands
    should not pay.  The command is called with the words after its name
    and returns the exit status.
    """
    if not args or args[0].startswith("-") or args[0] in COMMANDS or args[0] in PASS_THROUGH:
        return None
    from importlib.metadata import entry_points

    for entry in entry_points(group="ustack.commands", name=args[0]):
        command: Callable[[list[str]], int] = entry.load()
        return command
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv`` names; its exit status.  Every command,
    the pass-through ones and the entry points included, runs under the
    handlers below: a ``UsageError`` is its one line (exit 2), an
    ``OSError`` that escaped is one line naming the file (exit 1)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    prog = "ustack"
    try:
        whole = PASS_THROUGH.get(args_list[0]) if args_list else None
        if whole is None:
            whole = entry_point_command(args_list)
        if whole is not None:
            prog = f"ustack {args_list[0]}"
            return whole(args_list[1:])
        if args_list[:1] == ["conform"]:
            # Listed in the help, but its entry point was not found above.
            raise UsageError("ustack conform: the conformance runner (package ustack_conform) "
                             "is not installed with this ustack; pip install -e . installs it")
        parser = build_parser()
        args, extra = parser.parse_known_args(args_list)
        prog = args.command_prog
        if extra:  # argparse would name the top command only
            raise UsageError(f"{prog}: unrecognized arguments: {' '.join(extra)} "
                             f"(see {prog} --help)")
        command = COMMANDS.get(args.command)
        if command is None:
            parser.print_help()
            return EXIT_USAGE
        return command(args)
    except UsageError as e:
        print(e if str(e).startswith("ustack") else f"{prog}: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of our output left (``ustack stats --watch | head``):
        # as a tool killed by SIGPIPE, quietly.  Later writes (Python's own
        # flush at exit) go nowhere rather than fail again.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_SIGPIPE
    except OSError as e:
        print(f"{prog}: {os_error_text(e)}", file=sys.stderr)
        return EXIT_ERROR
