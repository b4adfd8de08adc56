"""Open a device from a short spec string, and wrap it in tee and faults.

``open_link("tap:u0")`` or ``open_link("packet:veth0", rx_ring="v2")`` is
what the CLI and the apps call; ``wrap(dev, pcap="x.pcap", fault="loss=1%")``
adds the optional layers.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable
from typing import Any, BinaryIO

from ustack.link.base import Device
from ustack.link.errors import LinkError
from ustack.link.fault import FaultInjector, FaultSpec
from ustack.link.packet import PacketDevice
from ustack.link.pcap import PcapTee
from ustack.link.tap import TapDevice

_KINDS: dict[str, type[TapDevice] | type[PacketDevice]] = {
    "tap": TapDevice,
    "packet": PacketDevice,
}


def parse_link(spec: str, what: str = "link") -> tuple[str, str]:
    """``(kind, name)`` of ``"tap:NAME"`` or ``"packet:IFACE"``: the one
    reading of a link spec (``open_link``, ``bringup.LinkOptions``).

    The kind is case-insensitive and returned lower-case; blanks around
    either part are dropped (``"TAP: u0"`` is ``("tap", "u0")``).  Anything
    else is a ``LinkError`` "``what``: expected tap:NAME or packet:IFACE, got ...".
    """
    kind, sep, name = spec.partition(":")
    kind, name = kind.strip().lower(), name.strip()
    if not sep or kind not in _KINDS or not name:
        raise LinkError(f"{what}: expected tap:NAME or packet:IFACE, got {spec!r}")
    return kind, name


def open_link(spec: str, *, vnet_hdr: bool = False, **opts: Any) -> Device:
    """A device for ``"tap:NAME"`` or ``"packet:IFACE"`` (``parse_link``).

    ``opts`` go to the device's constructor (``TapDevice`` or
    ``PacketDevice``); an unknown option is a ``LinkError``, like a bad spec.
    """
    kind, name = parse_link(spec)
    cls = _KINDS[kind]
    try:
        inspect.signature(cls).bind(name, vnet_hdr=vnet_hdr, **opts)
    except TypeError as exc:
        raise LinkError(f"link {spec}: {exc}") from None
    return cls(name, vnet_hdr=vnet_hdr, **opts)


def wrap(
    device: Device,
    *,
    pcap: str | os.PathLike[str] | BinaryIO | None = None,
    fault: FaultSpec | str | None = None,
    clock: Callable[[], float] = time.time,
) -> Device:
    """``device`` with an optional fault injector and an optional pcap tee.

    The tee goes outside the injector, so the capture shows what the stack
    saw and sent: frames lost on receive are absent, frames lost on send are
    present (they left the stack).  A fault spec string that does not parse
    is a ``ValueError`` with the reason.
    """
    dev: Device = device
    if fault is not None:
        spec = FaultSpec.parse(fault) if isinstance(fault, str) else fault
        if spec.active:
            dev = FaultInjector(dev, spec)
    if pcap is not None:
        dev = PcapTee(dev, pcap, clock=clock)
    return dev
