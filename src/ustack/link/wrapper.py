"""The base of the wrapper devices: everything passes through to ``inner``.

A wrapper (``FaultInjector``, ``Shaper``, ``PcapTee``) is a Device in front
of another Device that changes only part of what passes: its frames, or
what is recorded of them.  The rest of the Device protocol is the inner
device's, and lives here once: the name, capabilities and MAC, the
descriptor to poll, the earlier of the two deadlines, the inner counters
with the wrapper's own added, closing, and a fall-through for whatever
extras the inner device has (``kernel_mac``, ``pending``, ...).

A subclass overrides ``recv_batch``/``send_batch`` where it acts, and the
two hooks ``_own_deadline`` (when frames it holds back are due) and
``_own_stats`` (its counters).
"""

from __future__ import annotations

from collections.abc import Sequence

from ustack.link.base import Capabilities, Device, Frame


class DeviceWrapper:
    """A device that passes everything through ``inner``.

    ``caps`` given: the wrapper's own fixed capabilities (a wrapper that
    must see every frame turns the offloads off that would bypass it);
    None: always the inner device's, as they are at the time.
    """

    #: The wrapper's name in error messages: "<kind> <device name>: ...".
    kind = "wrapper"

    def __init__(self, inner: Device, caps: Capabilities | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self._caps = caps

    @property
    def caps(self) -> Capabilities:
        caps = self._caps
        return self.inner.caps if caps is None else caps

    @property
    def hwaddr(self) -> bytes | None:
        return self.inner.hwaddr

    def fileno(self) -> int:
        return self.inner.fileno()

    def recv_batch(self, max_frames: int, now: float) -> list[bytes]:
        return self.inner.recv_batch(max_frames, now)

    def send_batch(self, frames: Sequence[Frame], now: float) -> int:
        return self.inner.send_batch(frames, now)

    def send_gso(self, items: Sequence[tuple[bytes, Frame]], now: float) -> int:
        """Offloaded frames with their virtio-net headers, passed on as they are."""
        return self.inner.send_gso(items, now)

    def _own_deadline(self) -> float | None:
        """When frames this wrapper holds back are next due; None: it holds none."""
        return None

    def next_deadline(self) -> float | None:
        own = self._own_deadline()
        inner = self.inner.next_deadline()
        if own is None:
            return inner
        return own if inner is None or own <= inner else inner

    def _own_stats(self) -> dict[str, int]:
        """The wrapper's counters, added after the inner device's."""
        return {}

    def stats(self) -> dict[str, int]:
        s = self.inner.stats()
        s.update(self._own_stats())
        return s

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, attr: str) -> object:
        # Only called for what the wrapper lacks: device-specific extras pass
        # through.  "inner" itself is missing only while __init__ has not run
        # (copy, pickle): looking it up on itself would recurse.
        if attr == "inner":
            raise AttributeError(attr)
        return getattr(self.inner, attr)
