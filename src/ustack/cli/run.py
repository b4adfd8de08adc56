"""``ustack run``: an unmodified Python program on its own IP address.

    ustack run --link tap:u0 --ip 198.18.0.2/24 --host-ip 198.18.0.1/24 \\
        -- python3 -m http.server 80

brings a stack up on the link (the options of ``ustack up``), starts it in a
background thread (``ustack.socket``), replaces the AF_INET parts of the
standard ``socket`` module with ustack's (``ustack.api.socket.patch``) and
runs the program in this process: ``python3 -m MODULE ARGS``, ``python3 SCRIPT ARGS``,
``python3 -c CODE ARGS`` or ``SCRIPT.py ARGS``, with ``sys.argv`` and
``sys.path[0]`` as Python would set them.  The exit status is the program's.

SIGINT raises KeyboardInterrupt in the program, as it would without ustack;
SIGTERM raises SystemExit(143) so ``finally`` blocks and the link clean-up
run.  When the program ends, connections it closed get up to ``--linger``
seconds to deliver what they still owe the peer (the kernel would keep them
after the process exits), then the stack goes down.  A child the program
forks and that comes to its end exits there, leaving the stack, its files
and its control socket to the parent.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import runpy
import signal
import sys
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import NoReturn

from ustack.cli.common import (
    Parser,
    UsageError,
    add_link_options,
    control_server,
    link_options,
    linked_stack,
)

PROG = "ustack run"
_PYTHON = re.compile(r"^python(\d+(\.\d+)?)?$")
# Interpreter flags accepted (and ignored: this interpreter is already running).
_IGNORED_FLAGS = {"-u", "-B", "-E", "-s", "-S", "-I", "-q", "-O", "-OO"}


@dataclass
class Program:
    kind: str  # "module", "script" or "code"
    target: str  # module name, script path or code
    argv: list[str]  # sys.argv for the program


def parse_program(words: Sequence[str]) -> Program:
    """The program after ``--``: ``python3 -m M ...``, ``python3 S ...``,
    ``python3 -c C ...`` or ``S.py ...`` (UsageError otherwise)."""
    if not words:
        raise UsageError(f"{PROG}: no program after -- (e.g. -- python3 -m http.server 80)")
    first = words[0]
    if not (_PYTHON.match(os.path.basename(first)) or first == sys.executable):
        if first.endswith(".py") or os.path.isfile(first):
            return Program("script", first, list(words))
        raise UsageError(f"{PROG}: {first}: not a Python program; ustack run runs Python "
                         "in-process (python3 -m MODULE | python3 SCRIPT | SCRIPT.py)")
    rest = list(words[1:])
    while rest and rest[0] in _IGNORED_FLAGS:
        rest.pop(0)
    if not rest:
        raise UsageError(f"{PROG}: the interactive interpreter is not supported")
    opt = rest[0]
    if opt in ("-m", "-c"):
        if len(rest) < 2:
            raise UsageError(f"{PROG}: argument expected for the {opt} option")
        if opt == "-m":
            return Program("module", rest[1], [rest[1], *rest[2:]])
        return Program("code", rest[1], ["-c", *rest[2:]])
    if opt.startswith("-"):
        raise UsageError(f"{PROG}: python option {opt} is not supported")
    return Program("script", opt, rest)


def check_program(prog: Program) -> None:
    """UsageError, before any link is touched, for a program that cannot
    start: a script that is not there, a top-level module not found.

    Of a dotted module only the top-level package is looked up: finding
    the rest imports the packages on the way, which must see the patched
    ``socket`` module (a submodule not found is reported once the program
    runs, after the link came up).
    """
    if prog.kind == "script" and not os.path.exists(prog.target):
        raise UsageError(f"{PROG}: can't open file {prog.target!r}: No such file")
    if prog.kind == "module":
        top = prog.target.partition(".")[0]
        with _path_first(os.getcwd()):
            if importlib.util.find_spec(top) is None:
                raise UsageError(f"{PROG}: No module named {top}")


@contextlib.contextmanager
def _path_first(folder: str) -> Iterator[None]:
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        sys.path.remove(folder)


def _raised_by_runpy(e: BaseException) -> bool:
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_globals.get("__name__") == "runpy"


def run_program(prog: Program) -> int:
    """Run ``prog`` here as ``__main__``; its exit status."""
    sys.argv = prog.argv
    if prog.kind == "module":
        sys.path[0] = os.getcwd()
        try:
            runpy.run_module(prog.target, run_name="__main__", alter_sys=True)
        except ImportError as e:
            if _raised_by_runpy(e):  # not found, before any of its code ran
                raise UsageError(f"{PROG}: {e}") from None
            raise
    elif prog.kind == "script":
        sys.path[0] = os.path.dirname(os.path.abspath(prog.target))
        runpy.run_path(prog.target, run_name="__main__")
    else:
        sys.path[0] = ""
        code = compile(prog.target, "<string>", "exec")
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
    return 0


def _exit_status(e: SystemExit) -> int:
    code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description="Run a Python program with its AF_INET sockets on "
                "ustack: ustack run --link ... --ip CIDR [--gw IP] [--host-ip CIDR] -- "
                "PROGRAM ARGS...")
    add_link_options(p)
    p.add_argument("--name", help="name of the control socket, for ustack stats "
                   "(default: the device name)")
    p.add_argument("--linger", type=float, default=2.0, metavar="SECONDS",
                   help="after the program ends, wait up to this long for closed "
                        "connections to finish sending (default 2)")
    return p


def main(argv: Sequence[str]) -> int:
    """``ustack run`` (``ustack.cli.main`` hands over everything after ``run``
    and prints the one line of a ``UsageError`` this raises)."""
    from ustack.api.socket import functions, patch
    from ustack.cli.control import ControlError, check_name
    from ustack.wire import ethernet

    argv = list(argv)
    if "--" in argv:
        cut = argv.index("--")
        opts, words = argv[:cut], argv[cut + 1:]
    else:
        opts, words = argv, []
    args = _parser().parse_args(opts)
    if not words:
        raise UsageError(f"{PROG}: give the program after --, e.g. "
                         "-- python3 -m http.server 80 (see ustack run --help)")
    prog = parse_program(words)
    check_program(prog)
    try:
        if args.name is not None:
            check_name(args.name)
    except ControlError as e:
        raise UsageError(f"{PROG}: {e}") from None
    options = link_options(args, PROG)
    with linked_stack(options, PROG) as up, contextlib.ExitStack() as cleanup:
        # Made before the runtime thread runs the stack: the reader is
        # registered from this thread while nothing else touches the stack,
        # and served from the stack's loop from then on; closed (below, in
        # reverse order) once that thread has stopped.
        control = control_server(up.stack, args.name, options.device_name, PROG)
        if control is not None:
            cleanup.callback(control.close)
        # Signals belong to the program, as they would without ustack.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _on_sigterm)
        print(f"{PROG}: link={args.link} mac={ethernet.mac_to_str(up.iface.mac)} "
              f"ip={args.ip}", file=sys.stderr, flush=True)
        rt = functions.attach(up.stack)
        patch.patch(rt)
        pid = os.getpid()
        status = 1
        try:
            status = _run_guarded(prog)
        finally:
            if os.getpid() != pid:
                _leave_child(status)
            patch.unpatch()
            sys.stdout.flush()
            functions.detach(linger=max(0.0, args.linger))
        return status


def _run_guarded(prog: Program) -> int:
    """``run_program``, the program's exit status however it ends."""
    try:
        return run_program(prog)
    except SystemExit as e:
        return _exit_status(e)
    except UsageError:
        raise
    except KeyboardInterrupt:
        traceback.print_exc()
        return 128 + signal.SIGINT
    except Exception:  # the program's own failure: as python would show it
        traceback.print_exc()
        return 1


def _leave_child(status: int) -> NoReturn:
    """End a child the program forked, which came back here when its code
    ended: the stack, its runtime thread (not in the child: stopping it
    would wait forever), the control socket, the pcap and trace files are
    the parent's, and closing them here would wait, unlink or write twice."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(status)
