"""What the subcommands of ``ustack`` share: one-line errors, exit codes,
the link options, and the stack they bring up.

Every failure the user can cause ends as a ``UsageError`` whose text is the
one line ``main`` prints on stderr (``ustack up: ...``); argparse's own
errors are made one line too (``Parser``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from ustack.bringup import LinkedStack, LinkOptions
    from ustack.cli.control import ControlServer
    from ustack.link.base import Device
    from ustack.stack import Stack

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_SIGPIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool its reader left


class UsageError(Exception):
    """One line for the user; the command exits with ``status`` (2: a
    usage mistake, the default)."""

    status = EXIT_USAGE


class CommandFailed(UsageError):
    """One line for the user, for a failure of what the command was asked
    to do rather than of how it was asked (an address in use): exit 1."""

    status = EXIT_ERROR


def os_error_text(e: OSError) -> str:
    """An ``OSError`` as the tail of one line: what failed and why, e.g.
    ``/run/ustack/x.sock: No such file or directory`` (never ``[Errno 2]``)."""
    why = e.strerror or str(e) or type(e).__name__
    return f"{e.filename}: {why}" if e.filename is not None else why


class Parser(argparse.ArgumentParser):
    """argparse, but an error is one line, not usage + message.

    The parsed namespace's ``command_prog`` is the innermost command's name
    (``ustack tcp recv``): a subcommand's defaults override its parent's.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.set_defaults(command_prog=self.prog)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def add_link_options(p: argparse.ArgumentParser) -> None:
    """The options every command that brings up a stack takes: one per
    field of ``ustack.bringup.LinkOptions``, of the same name."""
    p.add_argument("--link", required=True, metavar="tap:NAME|packet:IFACE",
                   help="tap:NAME creates a TAP device; packet:IFACE attaches AF_PACKET "
                        "to an existing interface")
    p.add_argument("--ip", required=True, metavar="CIDR", help="our address, e.g. 198.18.0.2/24")
    p.add_argument("--sources", type=int, default=1, metavar="N",
                   help="N addresses of ours, from --ip's up on its subnet (at most 65536; "
                        "default 1)")
    p.add_argument("--gw", metavar="IP", help="default gateway")
    p.add_argument("--mac", help="our MAC (default: random, locally administered)")
    p.add_argument("--host-ip", metavar="CIDR",
                   help="tap only: give the kernel's side of the TAP this address, bring it up")
    p.add_argument("--pcap", metavar="FILE", help="write every frame in and out to FILE")
    p.add_argument("--fault", metavar="SPEC",
                   help="inject faults, e.g. loss=2%%,dup=1%%,reorder=1%%,seed=7")
    p.add_argument("--vnet-hdr", action="store_true",
                   help="use the virtio-net header (checksum/segmentation offload)")
    p.add_argument("--no-dad", dest="dad", action="store_false",
                   help="take our addresses without first probing the link for them "
                        "(RFC 5227 ARP probes, about 0.2 s: a conflict ends the command)")
    add_trace_option(p)


def add_trace_option(p: argparse.ArgumentParser) -> None:
    """``--trace FILE`` (LinkOptions.trace): every TCP connection's events as
    JSON lines (ustack.tcp.trace), for ``ustack plot``."""
    p.add_argument("--trace", metavar="FILE",
                   help="write a per-connection TCP event trace (JSON lines) to FILE; "
                        "draw it with ustack plot FILE")


def link_options(args: argparse.Namespace, prog: str) -> LinkOptions:
    """The link options given, checked (one-line UsageError otherwise)."""
    from ustack.bringup import LinkOptions

    # add_link_options names each option after its LinkOptions field
    # (--host-ip is host_ip); tests/unit/test_cli_commands.py holds the two
    # lists equal.
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(LinkOptions)}
    try:
        options = LinkOptions(**given)
    except ValueError as e:
        raise UsageError(f"{prog}: {e}") from None
    if os.geteuid() != 0:
        # What each link needs: a TAP is created with TUNSETIFF, an
        # AF_PACKET socket is raw (and made promiscuous, also CAP_NET_RAW).
        cap = "CAP_NET_ADMIN" if options.kind == "tap" else "CAP_NET_RAW"
        raise UsageError(f"{prog}: needs root ({cap}) to open --link {options.link}")
    return options


# The names of ustack.apps.services.SERVICES, for --service's help without
# importing the core to build a parser (a unit test holds the two equal).
SERVICE_NAMES = ("udp-echo", "udp-discard", "tcp-echo", "tcp-discard", "tcp-chargen")


def service_help() -> str:
    """``--service``'s help: every built-in service."""
    return ("run a built-in service on PORT: " + ", ".join(SERVICE_NAMES)
            + " (e.g. udp-echo:7); repeatable")


def check_services(specs: list[str]) -> list[tuple[str, int]]:
    """The ``--service NAME:PORT`` specs parsed, ValueError (one line) for a
    bad one or for two on one port of one protocol (which would otherwise
    fail half-way through start-up with "Address already in use")."""
    from ustack.apps.services import parse_service

    owners: dict[tuple[str, int], str] = {}
    parsed = []
    for spec in specs:
        name, port = parse_service(spec)
        proto = name.partition("-")[0]
        other = owners.get((proto, port))
        if other is not None:
            raise ValueError(f"--service {name}:{port}: {proto.upper()} port {port} is "
                             f"already taken by --service {other}:{port}")
        owners[(proto, port)] = name
        parsed.append((name, port))
    return parsed


def add_syncookie_options(p: argparse.ArgumentParser) -> None:
    """SYN cookies, for the commands that listen (``ustack up``, ``serve``)."""
    p.add_argument("--syncookies", choices=("off", "on", "always"), default="on",
                   help="answer SYNs with SYN cookies: never, when a listener's SYN queue "
                        "is full (default, as Linux's tcp_syncookies=1), or always")
    p.add_argument("--syncookie-secret", metavar="FILE",
                   help="the cookies' 32-byte secret, shared by every process given the "
                        "same FILE (any of them completes a handshake another started); "
                        "created if missing")


def read_cookie_secret(path: str, prog: str) -> bytes:
    """The secret in ``path``; a new random one put there (mode 0600) when
    there is none yet.  Written to a file of its own and linked into place,
    so that the path never names a partial secret: of two processes
    starting together, one links its own and the other reads it."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise UsageError(f"{prog}: --syncookie-secret {path}: {why}") from None
    try:
        with open(path, "rb") as f:
            raw = f.read(33)
    except OSError as e:
        raise UsageError(f"{prog}: --syncookie-secret {os_error_text(e)}") from None
    if len(raw) != 32:
        raise UsageError(f"{prog}: --syncookie-secret {path}: holds {len(raw)} bytes, "
                         "a secret is 32")
    return raw


def syncookie_settings(args: argparse.Namespace, prog: str) -> Callable[[LinkedStack], None]:
    """What ``--syncookies`` and ``--syncookie-secret`` ask for, checked
    (the secret's file read) before the link is touched: a function that
    sets it on the stack once it is up, and (cookies not off) has SYN
    floods answered in the link's receive ring where it can
    (apps/cookie_tap.py)."""
    from ustack.tcp import cookies
    from ustack.tcp.syncookies import SynCookieSecret

    mode = cookies.parse_mode(args.syncookies)
    secret = None if args.syncookie_secret is None else SynCookieSecret(
        read_cookie_secret(args.syncookie_secret, prog))

    def apply(up: LinkedStack) -> None:
        from ustack.apps import cookie_tap

        tcp = up.stack.tcp
        tcp.syncookies = mode
        if secret is not None:
            tcp.cookie_secret = secret
        if mode != cookies.OFF:
            cookie_tap.attach(tcp, up.iface)
    return apply


@contextlib.contextmanager
def linked_stack(options: LinkOptions, prog: str, link_opts: dict[str, Any] | None = None,
                 device: Device | None = None) -> Iterator[LinkedStack]:
    """``ustack.bringup.LinkedStack``, its failures one-line UsageErrors (an
    address someone else holds: CommandFailed, exit 1); its warnings one
    line each on stderr."""
    from ustack.bringup import LinkedStack
    from ustack.claim import AddressConflict
    from ustack.link.errors import LinkError
    from ustack.tracefile import TraceFileError

    up = LinkedStack(options, link_opts, device)
    up.warn = lambda line: print(f"{prog}: warning: {line}", file=sys.stderr, flush=True)
    try:
        up.open()
    except AddressConflict as e:
        raise CommandFailed(f"{prog}: {e}") from None
    except TraceFileError:
        raise  # an OSError naming --trace FILE: main prints its one line, exit 1
    except (LinkError, ValueError) as e:
        raise UsageError(f"{prog}: {e}") from None
    except OSError as e:  # none is expected (bring-up turns them into LinkError)
        raise UsageError(f"{prog}: {os_error_text(e)}") from None
    for line in up.warnings:  # after open: a failure to open is one line alone
        up.warn(line)
    try:
        yield up
    finally:
        up.close()


@contextlib.contextmanager
def run_errors(prog: str) -> Iterator[None]:
    """What a command's run on its stack can raise that the user caused
    (a link that fails, a control socket name taken, a bad value, an
    OSError), as its one line: UsageError, exit 2."""
    from ustack.cli.control import ControlError
    from ustack.link.errors import LinkError

    try:
        yield
    except (LinkError, ControlError, ValueError) as e:
        raise UsageError(f"{prog}: {e}") from None
    except OSError as e:
        raise UsageError(f"{prog}: {os_error_text(e)}") from None


@contextlib.contextmanager
def stop_on_signals(stack: Stack) -> Iterator[None]:
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


def print_counters(counters: dict[str, int], *, all_: bool = False) -> None:
    for name, value in counters.items():
        if value or all_:
            print(f"{name} {value}")


def control_server(stack: Stack, name: str | None, device: str,
                   prog: str) -> ControlServer | None:
    """The control socket (``ustack.cli.control.ControlServer``) for the
    commands whose control socket is a side show (``tcp``, ``run``): named
    ``name`` when given (UsageError if it cannot be made), else the device's
    name, or ``DEVICE-PID`` when a stack of that name runs already (two
    commands on one link), or none at all, with a warning: a transfer does
    not fail for want of its statistics."""
    from ustack.cli.control import ControlError, ControlServer

    if name is not None:
        try:
            return ControlServer(stack, name)
        except ControlError as e:
            raise UsageError(f"{prog}: {e}") from None
    try:
        return ControlServer(stack, device)
    except ControlError:
        pass
    try:
        return ControlServer(stack, f"{device}-{os.getpid()}")
    except ControlError as e:
        print(f"{prog}: warning: no control socket: {e}", file=sys.stderr, flush=True)
        return None
