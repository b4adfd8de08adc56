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
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, BinaryIO, NoReturn

from ustack import __version__

if TYPE_CHECKING:
    from ustack.bringup import LinkedStack, LinkOptions
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

    # `ustack conform ARGS...` goes straight to the conformance runner (main
    # below); this entry only lists it in `ustack --help`.
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


def _link_options_of(args: argparse.Namespace, prog: str) -> LinkOptions:
    """The link options given, checked (one-line UsageError otherwise)."""
    from ustack.bringup import LinkOptions

    try:
        options = LinkOptions(args.link, args.ip, gw=args.gw, mac=args.mac,
                              host_ip=args.host_ip, pcap=args.pcap, fault=args.fault,
                              vnet_hdr=args.vnet_hdr)
    except ValueError as e:
        raise UsageError(f"{prog}: {e}") from None
    if os.geteuid() != 0:
        raise UsageError(f"{prog}: needs root (CAP_NET_ADMIN) to open a TAP or AF_PACKET link")
    return options


@contextlib.contextmanager
def _linked(options: LinkOptions, prog: str) -> Iterator[LinkedStack]:
    """``ustack.bringup.LinkedStack``, its failures one-line UsageErrors."""
    from ustack.bringup import LinkedStack
    from ustack.link.errors import LinkError

    up = LinkedStack(options)
    try:
        up.open()
    except (LinkError, ValueError) as e:
        raise UsageError(f"{prog}: {e}") from None
    try:
        yield up
    finally:
        up.close()


@contextlib.contextmanager
def _stop_on_signals(stack: Stack) -> Iterator[None]:
    """SIGINT and SIGTERM make ``stack.run()`` return at once: the handlers
    only set a flag, and the wake-up descriptor makes the loop notice."""
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    old_fd = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    old = {sig: signal.signal(sig, lambda *_: stack.stop())
           for sig in (signal.SIGINT, signal.SIGTERM)}

    def drain_wakeups() -> None:
        with contextlib.suppress(OSError):
            wake_r.recv(512)

    stack.add_reader(wake_r.fileno(), drain_wakeups)
    try:
        yield
    finally:
        stack.remove_reader(wake_r.fileno())
        for sig, handler in old.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(old_fd)
        wake_r.close()
        wake_w.close()


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
    options = _link_options_of(args, "ustack up")
    with _linked(options, "ustack up") as up, _stop_on_signals(up.stack):
        stack = up.stack
        control = None
        try:
            names = [services.install(stack, spec) for spec in args.service]
            control = ControlServer(stack, args.name or options.device_name)
            print(f"ready: link={args.link} mac={ethernet.mac_to_str(up.iface.mac)} "
                  f"ip={args.ip}" + (f" services={','.join(names)}" if names else ""),
                  flush=True)
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
    options = _link_options_of(args, prog)
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
        stack = cleanup.enter_context(_linked(options, prog)).stack
        cleanup.enter_context(_stop_on_signals(stack))
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


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["conform"]:
        from ustack.conformance.runner import main as conform_main

        return conform_main(args_list[1:])
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
