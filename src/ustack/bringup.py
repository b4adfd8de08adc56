"""One way to bring a Stack up on a real link: ``LinkOptions`` and ``LinkedStack``.

The ``ustack`` command (``up``, ``tcp``, ``run``), ``ustack.aio.running``
and the benchmarks that run a stack on a TAP or an AF_PACKET interface take
the same options: the link, our address (and how many after it are ours
too, ``sources``), and optional gateway, MAC, the kernel side of a TAP, a
pcap file, injected faults and the virtio-net header.
``LinkOptions`` holds them and checks what can be checked without touching
the system: each value, the gateway on our subnet, the kernel side's
address not ours, our MAC unicast (``ValueError``, one line starting with
the option as the command spells it, ``--gw 10.0.0.1: ...``).
``LinkedStack`` opens the device, wraps it (pcap tee, fault injector),
gives a TAP's kernel side its address, creates the Stack with its interface
and gateway, and closes all of it again::

    options = LinkOptions("tap:u0", "198.18.0.2/24", host_ip="198.18.0.1/24")
    with LinkedStack(options) as up:
        up.stack.run()

Opening fails with ``LinkError`` (the device, the kernel side of a TAP,
the pcap file: every ``OSError`` of the bring-up comes out as one, naming
what failed) or ``ValueError`` (an address the stack refuses), after
closing what was already open.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any, Final, TypeVar

from ustack.claim import check_kernel_addresses, interface_warnings, probe
from ustack.link.base import Device
from ustack.link.errors import LinkError, from_os_error
from ustack.link.fault import FaultSpec
from ustack.link.netif import configure_host_side
from ustack.link.open import open_link, parse_link, wrap
from ustack.net.interface import Interface
from ustack.stack import Stack
from ustack.tracefile import TraceFile, open_trace, warn
from ustack.wire import ethernet, ipv4

T = TypeVar("T")

# --sources at most: a /16's worth, 64 KB of addresses to answer ARP for
# and announce at start (one gratuitous ARP frame each).
MAX_SOURCES: Final = 65536


@dataclass(frozen=True)
class LinkOptions:
    """The link options of the ``ustack`` command, checked when made.

    The one list of them: ``ustack.cli.common.link_options`` reads the
    command's options by these fields' names, ``ustack.aio.running`` takes
    these arguments.
    """

    link: str  # "tap:NAME" (a TAP device) or "packet:IFACE" (AF_PACKET on IFACE)
    ip: str  # our address with its prefix length, "198.18.0.2/24"
    _: KW_ONLY  # the rest by name
    gw: str | None = None  # default gateway
    mac: str | bytes | None = None  # our MAC (default: random, locally administered)
    host_ip: str | None = None  # tap only: the kernel side's address, "198.18.0.1/24"
    pcap: str | None = None  # file for every frame in and out
    fault: str | None = None  # e.g. "loss=2%,dup=1%,seed=7"
    vnet_hdr: bool = False  # checksum and segmentation offload
    sources: int = 1  # how many addresses, from --ip's up (``addresses``)
    dad: bool = True  # probe for our addresses before taking them (``ustack.claim``)
    trace: str | None = None  # file for the TCP event trace, JSON lines (tcp/trace.py)

    def __post_init__(self) -> None:
        # Each line starts with the option it is about, as the command
        # spells it (the same reason reads alike for --ip and --host-ip).
        try:
            kind, _ = parse_link(self.link, "--link")
        except LinkError as e:
            raise ValueError(str(e)) from None
        ip, prefix = _checked("--ip", ipv4.parse_cidr, self.ip)
        mac = _checked("--mac", self.mac_bytes)
        if mac is not None and (ethernet.is_multicast(mac) or not any(mac)):
            # A station's own address is an individual one, not zero (IEEE
            # 802-2014 8.2; Linux is_valid_ether_addr): ARP would announce a
            # group address as a host's.
            why = "a group (multicast) address" if ethernet.is_multicast(mac) else "all zero"
            raise ValueError(f"--mac {ethernet.mac_to_str(mac)}: {why}; our MAC must be "
                             "unicast (the first octet even)")
        first = int.from_bytes(ip, "big")
        last = first + self._checked_sources(ip, prefix) - 1
        if self.gw:
            gw = _checked("--gw", ipv4.addr_from_str, self.gw)
            if first <= int.from_bytes(gw, "big") <= last:
                raise ValueError(f"--gw {self.gw}: that is our own address (--ip)")
            if not _same_subnet(gw, ip, prefix):
                # A next hop must be on the link (RFC 1122 3.3.1.1).
                raise ValueError(f"--gw {self.gw}: not on the subnet of --ip {self.ip}")
        if self.host_ip:
            host, _ = _checked("--host-ip", ipv4.parse_cidr, self.host_ip)
            if kind != "tap":
                raise ValueError("--host-ip only applies to --link tap:NAME")
            if first <= int.from_bytes(host, "big") <= last:
                raise ValueError(f"--host-ip {self.host_ip}: the same address as --ip; the "
                                 "kernel's side of the TAP needs an address of its own")
        if self.fault is not None:
            _checked("--fault", FaultSpec.parse, self.fault)

    def _checked_sources(self, ip: bytes, prefix: int) -> int:
        """``sources``, checked: at least one, at most ``MAX_SOURCES``, and
        every address on --ip's subnet short of its broadcast address."""
        n = self.sources
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SOURCES:
            raise ValueError(f"--sources {n}: between 1 and {MAX_SOURCES} addresses")
        mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
        first = int.from_bytes(ip, "big")
        # The last address of ours: below the broadcast address, except
        # where the subnet has none (/31, RFC 3021; /32).
        top = first | (~mask & 0xFFFFFFFF)
        if prefix < 31:
            top -= 1
        if first + n - 1 > top:
            raise ValueError(f"--sources {n}: {n} addresses from {ipv4.addr_to_str(ip)} run "
                             f"past {ipv4.addr_to_str(top.to_bytes(4, 'big'))}, the last of "
                             f"--ip {self.ip}'s subnet")
        return n

    def addresses(self) -> list[str]:
        """Our addresses: --ip's and the ``sources - 1`` after it."""
        ip, _ = ipv4.parse_cidr(self.ip)
        first = int.from_bytes(ip, "big")
        return [ipv4.addr_to_str((first + i).to_bytes(4, "big")) for i in range(self.sources)]

    @property
    def kind(self) -> str:
        """``tap`` or ``packet``, as ``open_link`` reads ``link`` (``parse_link``)."""
        return parse_link(self.link)[0]

    @property
    def device_name(self) -> str:
        """The TAP's or the interface's name, as ``open_link`` reads it."""
        return parse_link(self.link)[1]

    def mac_bytes(self) -> bytes | None:
        if isinstance(self.mac, str):
            return ethernet.mac_from_str(self.mac) if self.mac else None
        if self.mac is not None and len(self.mac) != 6:
            raise ValueError(f"a MAC address is 6 bytes, not {len(self.mac)}")
        return self.mac


def _checked(flag: str, check: Callable[..., T], *args: object) -> T:
    """``check(*args)``, its ValueError prefixed with ``flag``."""
    try:
        return check(*args)
    except ValueError as e:
        raise ValueError(f"{flag}: {e}") from None


def _same_subnet(a: bytes, b: bytes, prefix: int) -> bool:
    mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")) & mask == 0


class LinkedStack:
    """A Stack on the link ``options`` describe; ``close()`` (or the end of
    the ``with`` block) closes the stack and the device."""

    stack: Stack
    iface: Interface

    def __init__(self, options: LinkOptions, link_opts: dict[str, Any] | None = None,
                 device: Device | None = None) -> None:
        self.options = options
        # More arguments for the device (``open_link``): a worker's share of
        # a link, ``fanout_group=...`` or ``multi_queue=True`` (cli/workers.py).
        self.link_opts = link_opts or {}
        # Or the device itself, already open on ``options.link`` (a worker's
        # queue of a multi-queue TAP, which its parent holds across lives).
        self._given = device
        self.device: Device | None = None
        # What the user should know but need not stop for (a packet:
        # interface down, or with an address of its own), one line each.
        self.warnings: list[str] = []
        # Shows a warning that comes while the stack runs (a --trace file
        # that cannot be written any more), one line.
        self.warn: Callable[[str], None] = warn
        self.trace_file: TraceFile | None = None
        # The process that opened it: a forked child (a program under
        # ``ustack run`` that forks) must not close the parent's stack,
        # device, pcap or trace, whose buffers it inherited.
        self.pid = os.getpid()

    def open(self) -> LinkedStack:
        """Open and configure everything; on failure close what was opened.

        With ``dad``, our addresses are refused when the kernel holds one
        here (``ustack.claim.check_kernel_addresses``) and probed for before
        the stack takes them (``ustack.claim.probe``, about 0.2 s):
        ``AddressConflict`` (a ``LinkError``) when one is someone else's."""
        o = self.options
        if o.dad:
            # The kernel of this namespace never sees the probes (they leave
            # on the device): ask it for its own addresses first.
            check_kernel_addresses([ipv4.addr_from_str(a) for a in o.addresses()])
        if o.kind == "packet":
            self.warnings = interface_warnings(o.device_name)
        self.device = self._given or open_link(o.link, vnet_hdr=o.vnet_hdr, **self.link_opts)
        self.stack = Stack()
        try:
            if o.host_ip:
                configure_host_side(o.device_name, o.host_ip)
            try:
                dev = wrap(self.device, pcap=o.pcap, fault=o.fault)
            except OSError as e:  # creating the pcap file
                raise _pcap_error(o.pcap, e) from e
            self.iface = self.stack.add_interface(dev, o.ip, mac=o.mac_bytes())
            for addr in o.addresses()[1:]:
                self.stack.add_address(self.iface, addr)
            if o.dad:
                try:
                    probe(dev, self.iface.mac, list(self.iface.addrs))
                except OSError as e:
                    raise from_os_error(f"{o.link}: probing for {o.ip}", e) from e
            if o.gw:
                self.stack.set_default_gateway(o.gw)
            if o.trace:
                self.trace_file = open_trace(self.stack, o.trace, self.warn)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if os.getpid() != self.pid:
            return  # a forked child: the parent closes them (and writes their buffers)
        device, self.device = self.device, None
        trace, self.trace_file = self.trace_file, None
        try:
            if device is not None:
                self.stack.close()  # the interfaces' devices: the wrappers, pcap file included
                device.close()
        finally:
            if trace is not None:
                trace.close()  # whatever failed above: the trace is written whole

    def __enter__(self) -> LinkedStack:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pcap_error(path: str | None, e: OSError) -> LinkError:
    """``--pcap FILE: <cause>``; a folder on the way that is not there is
    named, since the file itself need not exist."""
    folder = os.path.dirname(path or "")
    if e.errno == errno.ENOENT and folder and not os.path.isdir(folder):
        return LinkError(f"--pcap {path}: no such directory {folder}", e.errno)
    return from_os_error(f"--pcap {path}", e)
