"""The ``ustack`` command.

Every failure the user can cause (not root, device busy, bad address, an
unknown option) ends in one line on stderr starting with ``ustack:`` and a
non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, BinaryIO, NoReturn

from ustack import __version__

if TYPE_CHECKING:
    from ustack.net.interface import Interface
    from ustack.stack import Stack

EXIT_ERROR = 1
EXIT_USAGE = 2


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line, not usage + message."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _link_options(p: argparse.ArgumentParser) -> None:
    """The options every command that brings up a stack takes."""
    p.add_argument("--link", required=True, metavar="tap:NAME|packet:IFACE",
                   help="tap:NAME creates a TAP device; packet:IFACE attaches AF_PACKET "
                        "to an existing interface")
    p.add_argument("--ip", required=True, metavar="CIDR", help="our address, e.g. 198.18.0.2/24")
    p.add_argument("--gw", metavar="IP", help="default gateway")
    p.add_argument("--mac", help="our MAC (default: random, locally administered)")
    p.add_argument("--host-ip", metavar="CIDR",
                   help="tap only: give the kernel's side of the TAP this address, bring it up")
    p.add_argument("--pcap", metavar="FILE", help="write every frame in and out to FILE")
    p.add_argument("--fault", metavar="SPEC",
                   help="inject faults, e.g. loss=2%%,dup=1%%,reorder=1%%,seed=7")
    p.add_argument("--vnet-hdr", action="store_true",
                   help="use the virtio-net header (checksum/segmentation offload)")


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ustack", description="A user-space TCP/IP stack: IP per process.")
    p.add_argument("--version", action="version", version=f"ustack {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    up = sub.add_parser("up", help="bring a stack up on a link and run until interrupted",
                        description="Bring a stack up with its own MAC and IP address and run "
                                    "until SIGINT/SIGTERM, then print its counters.")
    _link_options(up)
    up.add_argument("--service", action="append", default=[], metavar="NAME:PORT",
                    help="run a built-in service (udp-echo:7, udp-discard:9); repeatable")
    up.add_argument("--name", help="name of the control socket (default: the device name)")

    tcp = sub.add_parser("tcp", help="send or receive a stream over ustack TCP")
    tsub = tcp.add_subparsers(dest="direction", metavar="send|recv", parser_class=_Parser,
                              required=True)
    for direction, what in (("send", "stream FILE (or stdin) to a TCP server"),
                            ("recv", "write what a TCP server sends to FILE (or stdout)")):
        t = tsub.add_parser(direction, help=what, description=what + "; prints bytes and "
                            "MB/s at the end on stderr")
        t.add_argument("--to", required=True, metavar="IP:PORT", help="the server")
        t.add_argument("file", nargs="?", metavar="FILE", help="- or absent: stdin/stdout")
        t.add_argument("--timeout", type=float, default=30.0,
                       help="give up when nothing moves for this many seconds")
        _link_options(t)

    # `ustack conform ARGS...` goes straight to the conformance runner, the
    # ustack.commands entry point of ustack_conform (main below); this entry
    # only lists it in `ustack --help`.
    sub.add_parser("conform", add_help=False,
                   help="run packetdrill scripts against ustack (see ustack conform --help)")

    # `ustack run ... -- PROGRAM` goes straight to ustack.run (main below).
    sub.add_parser("run", add_help=False,
                   help="run a Python program with its sockets on ustack (see ustack run --help)")

    st = sub.add_parser("stats", help="print the counters of a running stack")
    st.add_argument("--name", help="which stack (default: the only one running)")
    st.add_argument("--json", action="store_true", help="print the whole report as JSON")
    st.add_argument("--all", action="store_true", help="include counters that are zero")
    return p


def _print_counters(counters: dict[str, int], *, all_: bool = False) -> None:
    for name, value in counters.items():
        if value or all_:
            print(f"{name} {value}")


class _LinkedStack:
    """A Stack on the link the common options describe, closed on exit.

    ``with _LinkedStack(args, "ustack up") as (stack, iface):`` validates the
    options (one-line UsageError otherwise), opens and configures the link,
    installs SIGINT/SIGTERM handlers that stop ``stack.run()`` at once, and
    releases everything when the block ends.
    """

    def __init__(self, args: argparse.Namespace, prog: str) -> None:
        from ustack.wire import ethernet, ipv4

        self.args = args
        self.prog = prog
        try:
            ipv4.parse_cidr(args.ip)
            self.mac = ethernet.mac_from_str(args.mac) if args.mac else None
            if args.gw:
                ipv4.addr_from_str(args.gw)
            if args.host_ip:
                ipv4.parse_cidr(args.host_ip)
        except ValueError as e:
            raise UsageError(f"{prog}: {e}") from None
        kind, _, self.devname = args.link.partition(":")
        if args.host_ip and kind != "tap":
            raise UsageError(f"{prog}: --host-ip only applies to --link tap:NAME")
        if os.geteuid() != 0:
            raise UsageError(f"{prog}: needs root (CAP_NET_ADMIN) to open a TAP or AF_PACKET link")

    def __enter__(self) -> tuple[Stack, Interface]:
        from ustack.link.errors import LinkError
        from ustack.link.open import open_link, wrap
        from ustack.stack import Stack

        args, prog = self.args, self.prog
        try:
            self.device = open_link(args.link, vnet_hdr=args.vnet_hdr)
        except LinkError as e:
            raise UsageError(f"{prog}: {e}") from None
        self.stack = stack = Stack()
        try:
            if args.host_ip:
                from ustack.link.tap import configure_host_side

                configure_host_side(self.devname, args.host_ip)
            dev = wrap(self.device, pcap=args.pcap, fault=args.fault)
            iface = stack.add_interface(dev, args.ip, mac=self.mac)
            if args.gw:
                stack.set_default_gateway(args.gw)
        except (LinkError, ValueError) as e:
            self.__exit__()
            raise UsageError(f"{prog}: {e}") from None
        except BaseException:
            self.__exit__()
            raise
        # Signals only set a flag; the wake-up fd makes the loop notice at once.
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        self._wake = (wake_r, wake_w)
        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stack.stop())

        def drain_wakeups() -> None:
            with contextlib.suppress(OSError):
                wake_r.recv(512)

        stack.add_reader(wake_r.fileno(), drain_wakeups)
        return stack, iface

    def __exit__(self, *exc: object) -> None:
        self.stack.close()
        self.device.close()


def cmd_up(args: argparse.Namespace) -> int:
    from ustack.apps import services
    from ustack.control import ControlError, ControlServer
    from ustack.link.errors import LinkError
    from ustack.wire import ethernet

    try:
        for spec in args.service:
            services.parse_service(spec)
    except ValueError as e:
        raise UsageError(f"ustack up: {e}") from None
    linked = _LinkedStack(args, "ustack up")
    with linked as (stack, iface):
        control = None
        try:
            names = [services.install(stack, spec) for spec in args.service]
            control = ControlServer(stack, args.name or linked.devname)
            print(f"ready: link={args.link} mac={ethernet.mac_to_str(iface.mac)} ip={args.ip}"
                  + (f" services={','.join(names)}" if names else ""), flush=True)
            stack.run()
        except (LinkError, ControlError, OSError) as e:
            raise UsageError(f"ustack up: {e}") from None
        finally:
            if control is not None:
                control.close()
    _print_counters(stack.counters.snapshot())
    return 0


def cmd_tcp(args: argparse.Namespace) -> int:
    """``ustack tcp send|recv --to IP:PORT [FILE]``: stream a file over ustack TCP."""
    from ustack.apps.transfer import Transfer, parse_endpoint

    prog = f"ustack tcp {args.direction}"
    try:
        endpoint = parse_endpoint(args.to)
    except ValueError as e:
        raise UsageError(f"{prog}: {e}") from None
    linked = _LinkedStack(args, prog)
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
        stack, _iface = cleanup.enter_context(linked)
        job = Transfer(stack, endpoint, args.direction, stream, timeout=args.timeout)
        try:
            job.run()
        except OSError as e:
            raise UsageError(f"{prog}: {e.strerror or e}") from None
    secs = max(job.seconds, 1e-9)
    print(f"{args.direction}: {job.nbytes} bytes in {secs:.3f} s, "
          f"{job.nbytes / secs / 1e6:.2f} MB/s", file=sys.stderr)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from ustack.control import ControlError, query

    try:
        report = query(args.name)
    except ControlError as e:
        raise UsageError(f"ustack stats: {e}") from None
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _print_counters(report["counters"], all_=args.all)
    return 0


def _command_entry_point(args: Sequence[str]) -> Callable[[list[str]], int] | None:
    """The ``ustack.commands`` entry point that ``args[0]`` names, or None.

    Tools installed beside the runtime add commands to ``ustack`` through
    this entry-point group (``conform = "ustack_conform.runner:main"`` in
    pyproject.toml), so the runtime never imports them.  Only a first word
    that is no built-in command or option is looked up: reading the
    installed distributions' metadata costs time the built-in commands
    should not pay.  The command is called with the words after its name
    and returns the exit status.
    """
    if not args or args[0].startswith("-") or args[0] in ("up", "tcp", "run", "stats"):
        return None
    from importlib.metadata import entry_points

    for entry in entry_points(group="ustack.commands", name=args[0]):
        command: Callable[[list[str]], int] = entry.load()
        return command
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = _command_entry_point(args_list)
    if command is not None:
        return command(args_list[1:])
    if args_list[:1] == ["run"]:
        from ustack.run import main as run_main

        return run_main(args_list[1:])
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "up":
            return cmd_up(args)
        if args.command == "stats":
            return cmd_stats(args)
        if args.command == "tcp":
            return cmd_tcp(args)
        parser.print_help()
        return EXIT_USAGE
    except UsageError as e:
        print(e if str(e).startswith("ustack") else f"ustack: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        print(f"ustack: {e.strerror or e}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
