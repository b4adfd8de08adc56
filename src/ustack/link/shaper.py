"""A wrapper device that models a bottleneck link: rate, delay, a bounded queue.

The fault injector (fault.py) loses and delays frames at random; it has no
notion of capacity, so a sender can never fill a pipe or overflow a router.
The shaper adds what a simulation of goodput needs: frames sent through it
are serialised one after another at ``rate`` bytes per second, then travel
``delay`` seconds (one way, propagation), and wait for the line in a FIFO of
at most ``queue`` bytes.  A frame that does not fit is dropped at the tail,
as a drop-tail router does (the default queue that RFC 7567 section 2
describes; TCP reads its drops as congestion, RFC 5681 3).

The model, per frame of ``n`` bytes entering at ``now`` (in order):

* the bytes still waiting for the line are ``(busy_until - now) * rate``
  (``busy_until``: when the line finishes the frames already accepted);
* if those plus ``n + overhead`` exceed ``queue``, the frame is dropped;
* otherwise it leaves the line at ``busy_until = max(now, busy_until) +
  (n + overhead) / rate`` and reaches the inner device ``delay`` later.

``overhead`` is the per-frame cost on the wire that the frame itself does not
hold (Ethernet preamble, start delimiter, FCS and inter-frame gap: 24 bytes),
so that a shaped Ethernet carries what a real one does.

Only the send side is shaped (a router's egress queue): wrap both ends of a
link to shape both directions.  Like fault.py, the shaper never reads the
clock: ``now`` comes from the Stack, frames that are due go to the inner
device during any later ``send_batch`` or ``recv_batch`` (an empty batch is
fine) and ``next_deadline()`` says when the next one is due.  Same calls,
same times, same result: the simulation tests depend on that.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ustack.link.base import Device, Frame
from ustack.link.errors import LinkError
from ustack.link.wrapper import DeviceWrapper

ETHERNET_OVERHEAD = 24  # preamble 7 + SFD 1 + FCS 4 + inter-frame gap 12 (IEEE 802.3)

_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_RATE = re.compile(rf"^\s*{_NUMBER}\s*([a-z]*)\s*$")
_SIZE = re.compile(rf"^\s*{_NUMBER}\s*([a-z]*)\s*$")
_DURATION = re.compile(rf"^\s*{_NUMBER}\s*(s|ms|us|ns)?\s*$")
# tc(8) units: "bit" words are bits per second, "bps" words bytes per second.
_RATE_UNITS = {
    "": 1.0,
    "bps": 1.0,
    "kbps": 1e3,
    "mbps": 1e6,
    "gbps": 1e9,
    "bit": 1 / 8,
    "kbit": 1e3 / 8,
    "mbit": 1e6 / 8,
    "gbit": 1e9 / 8,
}
# tc(8) sizes: k and m are binary multiples.
_SIZE_UNITS = {"": 1.0, "b": 1.0, "k": 1024.0, "kb": 1024.0, "m": 1048576.0, "mb": 1048576.0}
_TIME_UNITS = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_KEYS = ("rate", "delay", "queue", "overhead")


def _bad(msg: str) -> ValueError:
    return ValueError(f"shaper spec: {msg}")


def _scaled(pattern: re.Pattern[str], units: dict[str, float], key: str, text: str,
            example: str) -> float:
    m = pattern.match(text.lower())
    if m is None or (m.group(2) or "") not in units:
        raise _bad(f"{key} must look like {example}, got {text!r}")
    return float(m.group(1)) * units[m.group(2) or ""]


@dataclass(frozen=True, slots=True)
class ShaperSpec:
    """The bottleneck: ``rate`` bytes/s, one-way ``delay`` s, ``queue`` bytes."""

    rate: float
    delay: float = 0.0
    queue: int = 256 * 1024
    overhead: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.rate < math.inf:
            raise _bad(f"rate must be a finite number of bytes/s > 0, got {self.rate!r}")
        if not 0.0 <= self.delay < math.inf:
            raise _bad(f"delay must be a finite duration >= 0, got {self.delay!r}")
        if self.queue < 1:
            raise _bad(f"queue must be >= 1 byte, got {self.queue!r}")
        if self.overhead < 0:
            raise _bad(f"overhead must be >= 0 bytes, got {self.overhead!r}")

    @classmethod
    def parse(cls, text: str) -> ShaperSpec:
        """``"rate=100mbit,delay=5ms,queue=128k,overhead=24"``.

        rate (required) in tc units: bit/kbit/mbit/gbit per second, or
        bps/kbps/mbps/gbps *bytes* per second (a bare number is bytes/s);
        delay a duration (5ms, 200us, 0.1s; bare = seconds); queue a size in
        bytes (k, m = 1024, 1024*1024); overhead bytes per frame.  Raises
        ValueError on a bad spec.
        """
        values: dict[str, float | int] = {}
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            key, eq, raw = part.partition("=")
            key = key.strip().lower()
            if not eq or not key:
                raise _bad(f"expected key=value, got {part!r}")
            if key not in _KEYS:
                raise _bad(f"unknown key {key!r} (known: {', '.join(_KEYS)})")
            if key in values:
                raise _bad(f"key {key!r} given twice")
            if key == "rate":
                values[key] = _scaled(_RATE, _RATE_UNITS, key, raw, "100mbit or 12.5mbps")
            elif key == "delay":
                values[key] = _scaled(_DURATION, _TIME_UNITS, key, raw, "5ms or 0.1s")
            else:
                size = _scaled(_SIZE, _SIZE_UNITS, key, raw, "128k or 1500")
                if size != int(size):
                    raise _bad(f"{key} must be a whole number of bytes, got {raw!r}")
                values[key] = int(size)
        if "rate" not in values:
            raise _bad("rate is required")
        return cls(**values)  # type: ignore[arg-type]

    def __str__(self) -> str:
        """The spec in ``parse`` syntax, exact: rate in bytes/s, delay in seconds."""
        return (f"rate={self.rate!r}bps,delay={self.delay!r},queue={self.queue},"
                f"overhead={self.overhead}")


class Shaper(DeviceWrapper):
    """Wrap ``inner`` so that what is sent crosses the bottleneck ``spec``."""

    kind = "shaper"

    def __init__(self, inner: Device, spec: ShaperSpec | str) -> None:
        if isinstance(spec, str):
            spec = ShaperSpec.parse(spec)
        # Offloaded super-frames would cross as one frame; plain frames only.
        super().__init__(inner, replace(inner.caps, tso=False))
        self.spec = spec
        self._rate = spec.rate
        self._delay = spec.delay
        self._queue = spec.queue
        self._overhead = spec.overhead
        self._busy_until = -math.inf
        self._wire: deque[tuple[float, bytes]] = deque()  # (arrival time, frame)
        self.passed = 0
        self.passed_bytes = 0
        self.dropped = 0
        self.dropped_bytes = 0
        self.queue_peak = 0

    def backlog(self, now: float) -> int:
        """Bytes (with overhead) accepted but not yet serialised at ``now``."""
        return max(0, math.ceil((self._busy_until - now) * self._rate))

    def recv_batch(self, max_frames: int, now: float) -> list[bytes]:
        if self._wire and self._wire[0][0] <= now:
            self._release(now)
        return self.inner.recv_batch(max_frames, now)

    def send_batch(self, frames: Sequence[Frame], now: float) -> int:
        """Takes every frame: one dropped at the tail is taken and lost, as on a wire."""
        wire = self._wire
        rate = self._rate
        limit = self._queue
        overhead = self._overhead
        busy = self._busy_until
        if busy < now:
            busy = now
        arrive = self._delay
        append = wire.append
        for f in frames:
            n = len(f) + overhead
            waiting = (busy - now) * rate
            if waiting + n > limit:
                self.dropped += 1
                self.dropped_bytes += n - overhead
                continue
            if waiting + n > self.queue_peak:
                self.queue_peak = math.ceil(waiting + n)
            busy += n / rate
            append((busy + arrive, f if type(f) is bytes else bytes(f)))
            self.passed += 1
            self.passed_bytes += n - overhead
        self._busy_until = busy
        if wire and wire[0][0] <= now:
            self._release(now)
        return len(frames)

    def _release(self, now: float) -> None:
        wire = self._wire
        popleft = wire.popleft
        out: list[Frame] = []
        while wire and wire[0][0] <= now:
            out.append(popleft()[1])
        self.inner.send_batch(out, now)

    def send_gso(self, items: Sequence[tuple[bytes, Frame]], now: float) -> int:
        raise LinkError(f"shaper {self.name}: send_gso would bypass the bottleneck")

    def _own_deadline(self) -> float | None:
        return self._wire[0][0] if self._wire else None

    def _own_stats(self) -> dict[str, int]:
        return {
            "shaper_passed": self.passed,
            "shaper_passed_bytes": self.passed_bytes,
            "shaper_dropped": self.dropped,
            "shaper_dropped_bytes": self.dropped_bytes,
            "shaper_queue_peak_bytes": self.queue_peak,
            "shaper_waiting": len(self._wire),
        }
