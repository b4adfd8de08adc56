"""Classic pcap capture files, and a wrapper that tees a device into one.

The format (https://www.tcpdump.org/manpages/pcap-savefile.5.html): a
24-byte global header (magic 0xa1b2c3d4 in the writer's byte order, version
2.4, snaplen, link type), then per frame a 16-byte record header (seconds,
microseconds, captured length, original length) and the captured bytes.
LINKTYPE_ETHERNET (1) frames start with the destination MAC, exactly what a
``Device`` moves.  tcpdump, tshark and Wireshark read it.

Records are collected in a buffer and written when ``flush_frames`` records
or ``flush_interval`` seconds (by the writer's clock) have accumulated, and
on ``close()``; a crash loses at most that much.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Sequence
from typing import BinaryIO

from ustack.link.base import Device, Frame, no_vnet_hdr
from ustack.link.wrapper import DeviceWrapper

LINKTYPE_ETHERNET = 1
PCAP_MAGIC = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D  # the same with nanoseconds in the records
PCAPNG_MAGIC = 0x0A0D0D0A  # a pcapng section header: another format
DEFAULT_SNAPLEN = 262144  # tcpdump's default; holds 64 KiB GSO frames whole

_GLOBAL = struct.Struct("=IHHiIII")
_RECORD = struct.Struct("=IIII")


class PcapFormatError(ValueError):
    """Not a classic pcap file: ``reason`` says what it is instead
    (``short``, ``pcapng``, ``unknown``), for the reader's own words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_pcap(data: bytes) -> tuple[int, list[tuple[float, bytes]]]:
    """The link type and the records (time in seconds, captured bytes) of a
    classic pcap file, in either byte order, with micro- or nanosecond
    times (tcpdump -w, ``PcapWriter``).  A last record cut off mid-write (a
    capture killed while writing) is left out."""
    if len(data) < _GLOBAL.size:
        raise PcapFormatError("short")
    if struct.unpack_from("<I", data)[0] == PCAPNG_MAGIC:
        raise PcapFormatError("pcapng")
    for order in ("<", ">"):
        magic = struct.unpack_from(order + "I", data)[0]
        if magic in (PCAP_MAGIC, PCAP_MAGIC_NS):
            break
    else:
        raise PcapFormatError("unknown")
    scale = 1e-9 if magic == PCAP_MAGIC_NS else 1e-6
    linktype: int = struct.unpack_from(order + "I", data, 20)[0] & 0xFFFF
    record = struct.Struct(order + "IIII")
    records: list[tuple[float, bytes]] = []
    off = _GLOBAL.size
    while off + record.size <= len(data):
        sec, frac, incl, _orig = record.unpack_from(data, off)
        off += record.size
        if off + incl > len(data):
            break
        records.append((sec + frac * scale, data[off:off + incl]))
        off += incl
    return linktype, records


class PcapWriter:
    """Append Ethernet frames to a pcap file (path or binary file object).

    ``write(frame, ts)`` with ``ts`` in seconds since the epoch; ``clock``
    is used only by ``maybe_flush`` to honour ``flush_interval`` when no
    frames arrive.
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | BinaryIO,
        *,
        snaplen: int = DEFAULT_SNAPLEN,
        linktype: int = LINKTYPE_ETHERNET,
        flush_frames: int = 1024,
        flush_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if snaplen <= 0 or flush_frames <= 0 or flush_interval < 0:
            raise ValueError("pcap: snaplen and flush_frames must be > 0, flush_interval >= 0")
        if isinstance(target, (str, os.PathLike)):
            self._file: BinaryIO = open(target, "wb")  # noqa: SIM115 - closed in close()
            self._owns = True
        else:
            self._file = target
            self._owns = False
        self.snaplen = snaplen
        self._flush_frames = flush_frames
        self._flush_interval = flush_interval
        self._clock = clock
        self._buf = bytearray(_GLOBAL.pack(PCAP_MAGIC, 2, 4, 0, 0, snaplen, linktype))
        self._pending = 0
        self._last_flush = 0.0
        self._closed = False
        self.frames = 0
        self.truncated = 0
        self.flush(clock())

    def write(self, frame: Frame, ts: float) -> None:
        """Add one frame captured at ``ts`` (seconds since the epoch)."""
        self.write_batch((frame,), ts)

    def write_batch(self, frames: Sequence[Frame], ts: float) -> None:
        """Add frames that share one timestamp (one run-loop batch)."""
        if not frames:
            return
        if self._closed:
            raise ValueError("pcap: write to a closed writer")
        sec = int(ts)
        usec = int((ts - sec) * 1_000_000)
        if usec >= 1_000_000:  # float rounding just below a whole second
            sec, usec = sec + 1, 0
        buf = self._buf
        pack = _RECORD.pack
        snaplen = self.snaplen
        for f in frames:
            n = len(f)
            if n > snaplen:
                buf += pack(sec, usec, snaplen, n)
                buf += f[:snaplen]
                self.truncated += 1
            else:
                buf += pack(sec, usec, n, n)
                buf += f
        self.frames += len(frames)
        self._pending += len(frames)
        if self._pending >= self._flush_frames or ts - self._last_flush >= self._flush_interval:
            self.flush(ts)

    def maybe_flush(self) -> None:
        """Flush when ``flush_interval`` has passed since the last flush."""
        if self._pending and self._clock() - self._last_flush >= self._flush_interval:
            self.flush()

    def flush(self, now: float | None = None) -> None:
        if self._closed:
            return
        if self._buf:
            self._file.write(self._buf)
            self._buf.clear()
        self._file.flush()
        self._pending = 0
        self._last_flush = self._clock() if now is None else now

    def close(self) -> None:
        if not self._closed:
            self.flush()
            self._closed = True
            if self._owns:
                self._file.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PcapTee(DeviceWrapper):
    """A device that passes everything through ``inner`` and records it.

    Every frame returned by ``recv_batch`` and every frame handed to
    ``send_batch`` (whether or not ``inner`` took it: the capture shows
    what the stack sent) is written with a timestamp from ``clock`` (read
    once per batch).  ``close()`` flushes the file and closes ``inner``.
    Capabilities are the inner device's: a tee records offloaded frames as
    they are handed over.
    """

    kind = "pcap tee"

    def __init__(
        self,
        inner: Device,
        path: str | os.PathLike[str] | BinaryIO,
        *,
        clock: Callable[[], float] = time.time,
        snaplen: int = DEFAULT_SNAPLEN,
        flush_frames: int = 1024,
        flush_interval: float = 1.0,
    ) -> None:
        super().__init__(inner)
        self._clock = clock
        self.writer = PcapWriter(
            path,
            snaplen=snaplen,
            flush_frames=flush_frames,
            flush_interval=flush_interval,
            clock=clock,
        )

    def recv_batch(self, max_frames: int, now: float) -> list[bytes]:
        frames = self.inner.recv_batch(max_frames, now)
        if frames:
            self.writer.write_batch(frames, self._clock())
        else:
            self.writer.maybe_flush()
        return frames

    def send_batch(self, frames: Sequence[Frame], now: float) -> int:
        if frames:
            self.writer.write_batch(frames, self._clock())
        return self.inner.send_batch(frames, now)

    def send_gso(self, items: Sequence[tuple[bytes, Frame]], now: float) -> int:
        """Record the super-frames as handed over, then send them on."""
        if not self.inner.caps.vnet_hdr:  # refuse before recording anything
            raise no_vnet_hdr(f"pcap {self.name}")
        if items:
            self.writer.write_batch([f for _, f in items], self._clock())
        return self.inner.send_gso(items, now)

    def _own_stats(self) -> dict[str, int]:
        return {"pcap_frames": self.writer.frames, "pcap_truncated": self.writer.truncated}

    def close(self) -> None:
        try:
            self.writer.close()
        finally:
            super().close()
