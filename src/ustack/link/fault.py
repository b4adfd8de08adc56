"""A wrapper device that loses, duplicates, reorders, corrupts and delays frames.

This kernel has no ``tc netem``, and a test wants faults that repeat: every
decision comes from a ``random.Random`` seeded from ``FaultSpec.seed`` (one
stream per direction, so receive-side faults do not shift when the send side
sees more traffic), and delays are measured against the ``now`` the Stack
passes in, never a clock read here.  Same seed, same calls, same faults.

Per frame, in this order: loss (dropped); duplication (two copies go on);
corruption (one random bit flipped in a random byte after the Ethernet
header, so the frame still reaches the IP layer and must fail a checksum);
reordering (the frame is held back until ``reorder_gap`` later frames have
passed it, or ``reorder_hold`` seconds, whichever comes first: a held frame
is never lost); delay (``delay`` plus a uniform share of ``jitter``).
Delays keep frames in order (a frame never leaves before one that entered
earlier) so that reordering is only ever the counted, explicit kind.
At most ``limit`` frames wait for their delay per direction (netem's
``limit``, 1000 by default); a frame that finds the queue full is dropped
and counted (``fault_rx_overflow``), so a fast sender behind a long delay
costs bounded memory (docs/architecture.md: every queue is bounded).

Delayed frames on the receive side come out of ``recv_batch``; delayed
frames on the send side go to the inner device during any later call to
``recv_batch`` or ``send_batch`` (an empty batch is fine).
``next_deadline()`` says when the next one is due.
"""

from __future__ import annotations

import math
import random
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import cast

from ustack.link.base import Device, Frame
from ustack.link.errors import LinkError
from ustack.link.wrapper import DeviceWrapper

ETH_HLEN = 14

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|ms|us|ns)?\s*$")
_UNITS = {None: 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_KEYS = {
    "loss": "loss",
    "dup": "dup",
    "reorder": "reorder",
    "corrupt": "corrupt",
    "delay": "delay",
    "jitter": "jitter",
    "seed": "seed",
    "dir": "direction",
    "direction": "direction",
    "gap": "reorder_gap",
    "hold": "reorder_hold",
    "limit": "limit",
}
_RATES = ("loss", "dup", "reorder", "corrupt")
_DIRECTIONS = ("rx", "tx", "both")


def _bad(msg: str) -> ValueError:
    return ValueError(f"fault spec: {msg}")


def _rate(key: str, text: str) -> float:
    t = text.strip()
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:  # also rejects nan
        raise _bad(f"{key} must be a probability in [0, 1] or a percentage, got {text!r}")
    return value


def _duration(key: str, text: str) -> float:
    m = _DURATION.match(text)
    if m is None:
        raise _bad(f"{key} must be a duration like 5ms, 200us or 0.1s, got {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _fmt_duration(seconds: float) -> str:
    return f"{seconds * 1e3:g}ms"


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """What to inject.  Rates are probabilities per frame; times in seconds."""

    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0
    seed: int = 0
    direction: str = "both"
    reorder_gap: int = 1
    reorder_hold: float = 0.01
    limit: int = 1000

    def __post_init__(self) -> None:
        for key in _RATES:
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise _bad(f"{key} must be a probability in [0, 1], got {value!r}")
        for key in ("delay", "jitter", "reorder_hold"):
            value = getattr(self, key)
            if not 0.0 <= value < math.inf:
                raise _bad(f"{key} must be a finite duration >= 0, got {value!r}")
        if self.direction not in _DIRECTIONS:
            raise _bad(f"dir must be rx, tx or both, got {self.direction!r}")
        if self.reorder_gap < 1:
            raise _bad(f"gap must be >= 1, got {self.reorder_gap!r}")
        if self.limit < 1:
            raise _bad(f"limit must be >= 1, got {self.limit!r}")

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """``"loss=0.02,dup=1%,delay=5ms,jitter=1ms,seed=7,dir=both"``.

        Keys: loss, dup, reorder, corrupt (rates: 0.02 or 2%), delay, jitter,
        hold (durations: 5ms, 200us, 0.1s; a bare number is seconds), seed
        (integer), dir (rx, tx, both), gap (frames that overtake a held one),
        limit (frames waiting for their delay per direction, beyond which
        they are dropped).
        An empty string injects nothing.  Raises ValueError on a bad spec.
        """
        values: dict[str, object] = {}
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            key, eq, raw = part.partition("=")
            key = key.strip().lower()
            raw = raw.strip()
            if not eq or not key:
                raise _bad(f"expected key=value, got {part!r}")
            if key not in _KEYS:
                known = ", ".join(k for k in _KEYS if k != "direction")
                raise _bad(f"unknown key {key!r} (known: {known})")
            name = _KEYS[key]
            if name in values:
                raise _bad(f"key {key!r} given twice")
            if name in _RATES:
                values[name] = _rate(key, raw)
            elif name in ("delay", "jitter", "reorder_hold"):
                values[name] = _duration(key, raw)
            elif name in ("seed", "reorder_gap", "limit"):
                try:
                    values[name] = int(raw, 0)
                except ValueError:
                    raise _bad(f"{key} must be an integer, got {raw!r}") from None
            else:
                values[name] = raw.lower()
        return cls(**values)  # type: ignore[arg-type]

    def __str__(self) -> str:
        """The spec in ``parse`` syntax, listing only what differs from the defaults."""
        parts: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value == f.default:
                continue
            key = {"direction": "dir", "reorder_gap": "gap", "reorder_hold": "hold"}.get(
                f.name, f.name
            )
            if f.name in ("delay", "jitter", "reorder_hold"):
                parts.append(f"{key}={_fmt_duration(value)}")
            else:
                parts.append(f"{key}={value}")
        return ",".join(parts)

    @property
    def active(self) -> bool:
        """True when the spec injects anything at all."""
        rates = self.loss or self.dup or self.reorder or self.corrupt
        return bool(rates or self.delay or self.jitter)


class _Lane:
    """The faults of one direction: its random stream, held and delayed frames."""

    __slots__ = (
        "corrupted",
        "delayed",
        "duplicated",
        "held",
        "held_left",
        "held_until",
        "last_release",
        "lost",
        "overflow",
        "queue",
        "reordered",
        "rnd",
        "s",
    )

    def __init__(self, spec: FaultSpec, rng: random.Random) -> None:
        self.s = spec
        self.rnd = rng.random
        self.queue: deque[tuple[float, bytes]] = deque()
        self.held: bytes | None = None
        self.held_left = 0
        self.held_until = 0.0
        self.last_release = -math.inf
        self.lost = 0
        self.duplicated = 0
        self.corrupted = 0
        self.reordered = 0
        self.delayed = 0
        self.overflow = 0

    def push(self, frames: Sequence[Frame], now: float, out: list[Frame] | deque[Frame]) -> None:
        s = self.s
        rnd = self.rnd
        loss, dup, corrupt, reorder = s.loss, s.dup, s.corrupt, s.reorder
        for f in frames:
            if loss and rnd() < loss:
                self.lost += 1
                continue
            if dup and rnd() < dup:
                self.duplicated += 1
                copies: tuple[Frame, ...] = (f, f)
            else:
                copies = (f,)
            for c in copies:
                if corrupt and rnd() < corrupt:
                    c = self._flip(c)
                if reorder and self.held is None and rnd() < reorder:
                    self.reordered += 1
                    self.held = bytes(c)
                    self.held_left = s.reorder_gap
                    self.held_until = now + s.reorder_hold
                    continue
                self._emit(c, now, out)
                if self.held is not None:
                    self.held_left -= 1
                    if not self.held_left:
                        held, self.held = self.held, None
                        self._emit(held, now, out)

    def _flip(self, f: Frame) -> bytes:
        n = len(f)
        if n <= ETH_HLEN:
            return bytes(f)
        self.corrupted += 1
        b = bytearray(f)
        b[ETH_HLEN + int(self.rnd() * (n - ETH_HLEN))] ^= 1 << int(self.rnd() * 8)
        return bytes(b)

    def _emit(self, f: Frame, now: float, out: list[Frame] | deque[Frame]) -> None:
        s = self.s
        if not (s.delay or s.jitter):
            out.append(f)
            return
        if len(self.queue) >= s.limit:
            self.overflow += 1
            return
        t = now + s.delay
        if s.jitter:
            t += self.rnd() * s.jitter
        # FIFO: never release before a frame that entered earlier.
        if t < self.last_release:
            t = self.last_release
        self.last_release = t
        self.delayed += 1
        self.queue.append((t, f if type(f) is bytes else bytes(f)))

    def due(self, now: float, out: list[Frame] | deque[Frame]) -> None:
        """Move frames whose time has come to ``out``."""
        if self.held is not None and now >= self.held_until:
            held, self.held = self.held, None
            self._emit(held, now, out)
        q = self.queue
        while q and q[0][0] <= now:
            out.append(q.popleft()[1])

    def deadline(self) -> float | None:
        t = self.queue[0][0] if self.queue else None
        if self.held is not None and (t is None or self.held_until < t):
            t = self.held_until
        return t

    def counters(self, prefix: str) -> dict[str, int]:
        return {
            f"{prefix}_lost": self.lost,
            f"{prefix}_duplicated": self.duplicated,
            f"{prefix}_corrupted": self.corrupted,
            f"{prefix}_reordered": self.reordered,
            f"{prefix}_delayed": self.delayed,
            f"{prefix}_overflow": self.overflow,
            f"{prefix}_waiting": len(self.queue) + (self.held is not None),
        }


class FaultInjector(DeviceWrapper):
    """Wrap ``inner`` and inject ``spec`` (a FaultSpec or its text form)."""

    kind = "fault"

    def __init__(self, inner: Device, spec: FaultSpec | str) -> None:
        if isinstance(spec, str):
            spec = FaultSpec.parse(spec)
        on = spec.active
        rx_faults = on and spec.direction in ("rx", "both")
        tx_faults = on and spec.direction in ("tx", "both")
        caps = inner.caps
        if tx_faults:
            # Offloaded super-frames would bypass the faults; plain frames only.
            caps = replace(caps, csum_tx=False, tso=False)
        super().__init__(inner, caps)
        self.spec = spec
        self._rx = _Lane(spec, random.Random(f"{spec.seed}:rx")) if rx_faults else None
        self._tx = _Lane(spec, random.Random(f"{spec.seed}:tx")) if tx_faults else None
        self._ready: deque[Frame] = deque()
        self._ready_at = 0.0

    def recv_batch(self, max_frames: int, now: float) -> list[bytes]:
        if self._tx is not None:
            self._release_tx(now)
        lane = self._rx
        if lane is None:
            return self.inner.recv_batch(max_frames, now)
        ready = self._ready
        lane.due(now, ready)
        room = max_frames - len(ready)
        if room > 0:
            frames = self.inner.recv_batch(room, now)
            if frames:
                lane.push(frames, now, ready)
        if len(ready) <= max_frames:
            out = list(ready)
            ready.clear()
        else:
            popleft = ready.popleft
            out = [popleft() for _ in range(max_frames)]
            self._ready_at = now
        # Received frames are bytes and every fault keeps them bytes.
        return cast(list[bytes], out)

    def _release_tx(self, now: float) -> None:
        assert self._tx is not None
        out: list[Frame] = []
        self._tx.due(now, out)
        if out:
            self.inner.send_batch(out, now)

    def send_batch(self, frames: Sequence[Frame], now: float) -> int:
        """Takes every frame (a lost frame is taken and dropped, as on a wire)."""
        lane = self._tx
        if lane is None:
            return self.inner.send_batch(frames, now)
        out: list[Frame] = []
        lane.due(now, out)
        lane.push(frames, now, out)
        if out:
            self.inner.send_batch(out, now)
        return len(frames)

    def send_gso(self, items: Sequence[tuple[bytes, Frame]], now: float) -> int:
        """Pass offloaded sends through, unless send-side faults are on."""
        if self._tx is not None:
            raise LinkError(f"fault {self.name}: send_gso bypasses send-side faults")
        return super().send_gso(items, now)

    def next_deadline(self) -> float | None:
        if self._ready:
            return self._ready_at  # frames are waiting: due since then
        return super().next_deadline()

    def _own_deadline(self) -> float | None:
        rx = self._rx.deadline() if self._rx else None
        tx = self._tx.deadline() if self._tx else None
        if rx is None or (tx is not None and tx < rx):
            return tx
        return rx

    def _own_stats(self) -> dict[str, int]:
        s: dict[str, int] = {}
        if self._rx is not None:
            s.update(self._rx.counters("fault_rx"))
        if self._tx is not None:
            s.update(self._tx.counters("fault_tx"))
        return s
