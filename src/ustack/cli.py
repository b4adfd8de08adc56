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
from collections.abc import Sequence
from typing import NoReturn

from ustack import __version__

EXIT_ERROR = 1
EXIT_USAGE = 2


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line, not usage + message."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ustack", description="A user-space TCP/IP stack: IP per process.")
    p.add_argument("--version", action="version", version=f"ustack {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    up = sub.add_parser("up", help="bring a stack up on a link and run until interrupted",
                        description="Bring a stack up with its own MAC and IP address and run "
                                    "until SIGINT/SIGTERM, then print its counters.")
    up.add_argument("--link", required=True, metavar="tap:NAME|packet:IFACE",
                    help="tap:NAME creates a TAP device; packet:IFACE attaches AF_PACKET "
                         "to an existing interface")
    up.add_argument("--ip", required=True, metavar="CIDR", help="our address, e.g. 198.18.0.2/24")
    up.add_argument("--gw", metavar="IP", help="default gateway")
    up.add_argument("--mac", help="our MAC (default: random, locally administered)")
    up.add_argument("--host-ip", metavar="CIDR",
                    help="tap only: give the kernel's side of the TAP this address, bring it up")
    up.add_argument("--pcap", metavar="FILE", help="write every frame in and out to FILE")
    up.add_argument("--fault", metavar="SPEC",
                    help="inject faults, e.g. loss=2%%,dup=1%%,reorder=1%%,seed=7")
    up.add_argument("--service", action="append", default=[], metavar="NAME:PORT",
                    help="run a built-in service (udp-echo:7, udp-discard:9); repeatable")
    up.add_argument("--name", help="name of the control socket (default: the device name)")
    up.add_argument("--vnet-hdr", action="store_true",
                    help="use the virtio-net header (checksum/segmentation offload)")

    st = sub.add_parser("stats", help="print the counters of a running stack")
    st.add_argument("--name", help="which stack (default: the only one running)")
    st.add_argument("--json", action="store_true", help="print the whole report as JSON")
    st.add_argument("--all", action="store_true", help="include counters that are zero")
    return p


def _print_counters(counters: dict[str, int], *, all_: bool = False) -> None:
    for name, value in counters.items():
        if value or all_:
            print(f"{name} {value}")


def cmd_up(args: argparse.Namespace) -> int:
    from ustack.apps import services
    from ustack.control import ControlError, ControlServer
    from ustack.link.errors import LinkError
    from ustack.link.open import open_link, wrap
    from ustack.stack import Stack
    from ustack.wire import ethernet, ipv4

    try:
        ipv4.parse_cidr(args.ip)
        mac = ethernet.mac_from_str(args.mac) if args.mac else None
        for spec in args.service:
            services.parse_service(spec)
        if args.gw:
            ipv4.addr_from_str(args.gw)
    except ValueError as e:
        raise UsageError(f"ustack up: {e}") from None
    kind, _, devname = args.link.partition(":")
    if args.host_ip and kind != "tap":
        raise UsageError("ustack up: --host-ip only applies to --link tap:NAME")
    if os.geteuid() != 0:
        raise UsageError("ustack up: needs root (CAP_NET_ADMIN) to open a TAP or AF_PACKET link")

    try:
        device = open_link(args.link, vnet_hdr=args.vnet_hdr)
    except LinkError as e:
        raise UsageError(f"ustack up: {e}") from None
    stack = Stack()
    control = None
    try:
        if args.host_ip:
            from ustack.link.tap import configure_host_side
            try:
                ipv4.parse_cidr(args.host_ip)
            except ValueError as e:
                raise UsageError(f"ustack up: --host-ip: {e}") from None
            configure_host_side(devname, args.host_ip)
        try:
            dev = wrap(device, pcap=args.pcap, fault=args.fault)
        except ValueError as e:
            raise UsageError(f"ustack up: {e}") from None
        iface = stack.add_interface(dev, args.ip, mac=mac)
        if args.gw:
            try:
                stack.set_default_gateway(args.gw)
            except ValueError as e:
                raise UsageError(f"ustack up: --gw: {e}") from None
        names = [services.install(stack, spec) for spec in args.service]
        control = ControlServer(stack, args.name or devname)

        # Signals only set a flag; the wake-up fd makes the loop notice at once.
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stack.stop())

        def drain_wakeups() -> None:
            with contextlib.suppress(OSError):
                wake_r.recv(512)

        stack.add_reader(wake_r.fileno(), drain_wakeups)

        print(f"ready: link={args.link} mac={ethernet.mac_to_str(iface.mac)} ip={args.ip}"
              + (f" services={','.join(names)}" if names else ""), flush=True)
        stack.run()
    except (LinkError, ControlError) as e:
        raise UsageError(f"ustack up: {e}") from None
    finally:
        if control is not None:
            control.close()
        stack.close()
        device.close()
    _print_counters(stack.counters.snapshot())
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
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "up":
            return cmd_up(args)
        if args.command == "stats":
            return cmd_stats(args)
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
