"""The device interface every link implements, and the wrappers compose.

A device moves whole Ethernet frames in batches: the Stack asks for up to N
received frames per call and hands over every frame it produced in one loop
iteration at once, so a link can use one system call (or one ring kick) for
many frames.  Devices never read the clock: the Stack passes ``now`` (seconds,
monotonic) so wrappers that delay frames stay deterministic in tests.

``Device`` is the protocol the Stack calls; ``DeviceBase`` holds what the
devices that own a link share (tap, packet, pipe).  Wrappers derive from
``wrapper.DeviceWrapper`` instead.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol, Self, runtime_checkable

from ustack.link.errors import LinkError

Frame = bytes | bytearray | memoryview


def no_vnet_hdr(who: str) -> LinkError:
    """What ``send_gso`` raises on a device without virtio-net headers
    (``who``: the device's kind and name, as its other errors say it)."""
    return LinkError(f"{who}: send_gso needs vnet_hdr=True (a device with virtio-net headers)")


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a device can do beyond moving plain frames.

    ``vnet_hdr``: frames cross the kernel boundary with a virtio-net header,
    so checksum and segmentation offload are available (TAP with
    IFF_VNET_HDR, AF_PACKET with PACKET_VNET_HDR).  ``csum_tx``: the device
    completes partial checksums on transmit.  ``tso``: it accepts TCP
    super-frames up to ``max_frame`` bytes and cuts them.  ``rx_csum_marks``:
    the device hands over the frames whose checksum the kernel vouches for as
    ``vnet.CsumOkFrame`` (it verified it, or the frame was built on this host
    with the checksum left partial and never crossed a wire), so the stack
    skips verifying them and verifies every other frame.  AF_PACKET has
    this whether or not ``vnet_hdr`` is asked for: its socket always reads
    the header, so a veth peer's partial checksums (offloads on, the
    default) are not taken for corruption.  Only a device with
    ``vnet_hdr`` takes ``Device.send_gso``.
    """

    mtu: int = 1500
    max_frame: int = 1514
    vnet_hdr: bool = False
    vnet_hdr_len: int = 0  # bytes of virtio-net header per frame (10 or 12)
    csum_tx: bool = False
    tso: bool = False
    rx_csum_marks: bool = False


@runtime_checkable
class Device(Protocol):
    """A link that moves Ethernet frames (dst MAC first, no preamble/FCS)."""

    name: str

    @property
    def caps(self) -> Capabilities: ...

    @property
    def hwaddr(self) -> bytes | None:
        """The MAC of the underlying interface, if it has one of its own."""
        ...

    def fileno(self) -> int:
        """A descriptor that polls readable when ``recv_batch`` has frames."""
        ...

    def recv_batch(self, max_frames: int, now: float) -> list[bytes]:
        """Up to ``max_frames`` received frames; never blocks; [] when idle."""
        ...

    def send_batch(self, frames: Sequence[Frame], now: float) -> int:
        """Transmit frames in order; returns how many the device took.

        A full device queue drops the rest (counted by the device, see
        ``stats``); it never blocks the poll loop.
        """
        ...

    def send_gso(self, items: Sequence[tuple[bytes, Frame]], now: float) -> int:
        """Transmit ``(virtio-net header, frame)`` pairs in order, as ``send_batch``.

        Each header (``vnet.gso_header``) may ask the kernel to finish the
        frame's checksum and to cut a TCP super-frame (TSO).  A device
        without ``caps.vnet_hdr`` raises LinkError.
        """
        ...

    def next_deadline(self) -> float | None:
        """When a wrapper holding delayed frames next needs a call, or None."""
        ...

    def stats(self) -> dict[str, int]:
        """Device counters (frames/bytes in and out, drops by reason)."""
        ...

    def close(self) -> None: ...


class DeviceBase(ABC):
    """What the devices that own a link (tap, packet, pipe) have in common.

    Capabilities and MAC are fixed when the device opens (``_caps``, and
    ``_hwaddr`` for a device whose interface MAC is ours to use).  A device
    holds no frames back, so it has no deadline.  Counters are plain int
    attributes that the hot paths bump in place; the ones every device keeps
    start at 0 here as class attributes (a device declares its own the same
    way), so opening a device sets none of them, and ``stats()`` reports the
    names in ``COUNTERS``, in that order.
    """

    name: str
    _caps: Capabilities
    _hwaddr: bytes | None = None

    #: The counters ``stats()`` reports, in order.
    COUNTERS: ClassVar[tuple[str, ...]] = ()
    rx_frames = 0
    rx_bytes = 0
    tx_frames = 0
    tx_bytes = 0
    tx_queue_full = 0  # dropped: the kernel (or the peer's queue) had no room

    @property
    def caps(self) -> Capabilities:
        return self._caps

    @property
    def hwaddr(self) -> bytes | None:
        return self._hwaddr

    @abstractmethod
    def fileno(self) -> int: ...

    @abstractmethod
    def recv_batch(self, max_frames: int, now: float) -> list[bytes]: ...

    @abstractmethod
    def send_batch(self, frames: Sequence[Frame], now: float) -> int: ...

    def send_gso(self, items: Sequence[tuple[bytes, Frame]], now: float) -> int:
        raise no_vnet_hdr(self.name)

    def next_deadline(self) -> float | None:
        return None

    def stats(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.COUNTERS}

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
