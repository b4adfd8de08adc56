"""The device interface every link implements, and the wrappers compose.

A device moves whole Ethernet frames in batches: the Stack asks for up to N
received frames per call and hands over every frame it produced in one loop
iteration at once, so a link can use one system call (or one ring kick) for
many frames.  Devices never read the clock: the Stack passes ``now`` (seconds,
monotonic) so wrappers that delay frames stay deterministic in tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

Frame = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a device can do beyond moving plain frames.

    ``vnet_hdr``: frames cross the kernel boundary with a virtio-net header,
    so checksum and segmentation offload are available (TAP with
    IFF_VNET_HDR, AF_PACKET with PACKET_VNET_HDR).  ``csum_tx``: the device
    completes partial checksums on transmit.  ``tso``: it accepts TCP
    super-frames up to ``max_frame`` bytes and cuts them.  ``rx_csum_valid``:
    received frames were checksummed by the kernel and need no verification.
    A device with ``tso`` also has ``send_gso(items, now)`` taking
    ``(virtio-net header, frame)`` pairs.
    """

    mtu: int = 1500
    max_frame: int = 1514
    vnet_hdr: bool = False
    vnet_hdr_len: int = 0  # bytes of virtio-net header per frame (10 or 12)
    csum_tx: bool = False
    tso: bool = False
    rx_csum_valid: bool = False


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

    def next_deadline(self) -> float | None:
        """When a wrapper holding delayed frames next needs a call, or None."""
        ...

    def stats(self) -> dict[str, int]:
        """Device counters (frames/bytes in and out, drops by reason)."""
        ...

    def close(self) -> None: ...
