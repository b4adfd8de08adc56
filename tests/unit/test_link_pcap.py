"""pcap files: read back by dpkt, scapy and tshark; the tee records both ways."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import dpkt  # type: ignore[import-untyped]
import pytest
from scapy.utils import rdpcap

from ustack.link.errors import LinkError
from ustack.link.pcap import PcapTee, PcapWriter
from ustack.link.pipe import pipe_pair

# An ARP request and a UDP datagram, built by hand (the oracles parse them).
ARP = bytes.fromhex(
    "ffffffffffff02000000000108060001080006040001020000000001c6120002000000000000c6120001"
)
UDP = bytes.fromhex(
    "020000000002020000000001080045000021000100004011f86ac6120001c6120002"
    "1f900035000d0000" + "68656c6c6f"
)


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.25) -> None:
        self.t = t
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.t


def frames(n: int) -> list[bytes]:
    return [(ARP if i % 2 else UDP) + i.to_bytes(2, "big") for i in range(n)]


def test_dpkt_and_scapy_read_back_equal_bytes(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    sent = frames(50)
    with PcapWriter(path) as w:
        for i, f in enumerate(sent):
            w.write(f, 1_700_000_000 + i * 0.001)
    with open(path, "rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB
        got = list(reader)
    assert [bytes(buf) for _, buf in got] == sent
    for i, (ts, _) in enumerate(got):
        assert ts == pytest.approx(1_700_000_000 + i * 0.001, abs=1e-6)
    assert [bytes(p) for p in rdpcap(str(path))] == sent


def test_microsecond_timestamps_survive(tmp_path: Path) -> None:
    path = tmp_path / "ts.pcap"
    with PcapWriter(path) as w:
        w.write(UDP, 1_700_000_000.123456)
        w.write(UDP, 1_700_000_000.9999999)  # rounds within the same second
    raw = path.read_bytes()
    sec, usec = int.from_bytes(raw[24:28], "little"), int.from_bytes(raw[28:32], "little")
    assert (sec, usec) == (1_700_000_000, 123456)
    rec2 = 24 + 16 + len(UDP)
    usec2 = int.from_bytes(raw[rec2 + 4 : rec2 + 8], "little")
    assert usec2 < 1_000_000


def test_tshark_opens_it(tmp_path: Path) -> None:
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark not installed")
    path = tmp_path / "t.pcap"
    with PcapWriter(path) as w:
        w.write_batch([ARP, UDP], 1_700_000_000.0)
    out = subprocess.run(
        [tshark, "-n", "-r", str(path), "-T", "fields", "-e", "frame.len", "-e", "frame.protocols"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    assert out[0].split("\t") == [str(len(ARP)), "eth:ethertype:arp"]
    assert out[1].startswith(f"{len(UDP)}\teth:ethertype:ip:udp")


def test_snaplen_truncates_but_keeps_original_length() -> None:
    buf = io.BytesIO()
    w = PcapWriter(buf, snaplen=40)
    w.write(UDP + bytes(100), 1.0)
    w.flush()
    buf.seek(0)
    ((_, data),) = list(dpkt.pcap.Reader(buf))
    assert len(data) == 40
    raw = buf.getvalue()
    assert int.from_bytes(raw[36:40], "little") == len(UDP) + 100  # orig_len
    assert w.truncated == 1
    w.close()


def test_buffered_and_flushed_by_count_and_interval(tmp_path: Path) -> None:
    clock = FakeClock(100.0)
    path = tmp_path / "f.pcap"
    w = PcapWriter(path, flush_frames=10, flush_interval=1.0, clock=clock)
    header_only = path.stat().st_size
    assert header_only == 24
    for _ in range(9):
        w.write(UDP, 100.0)
    assert path.stat().st_size == header_only  # still buffered
    w.write(UDP, 100.0)
    assert path.stat().st_size == 24 + 10 * (16 + len(UDP))
    w.write(UDP, 100.5)
    w.maybe_flush()
    assert path.stat().st_size == 24 + 10 * (16 + len(UDP))
    clock.t = 101.5
    w.maybe_flush()  # nothing new arrives, yet the interval has passed
    assert path.stat().st_size == 24 + 11 * (16 + len(UDP))
    w.close()
    w.close()
    with pytest.raises(ValueError):
        w.write(UDP, 1.0)


def test_bad_writer_parameters() -> None:
    with pytest.raises(ValueError):
        PcapWriter(io.BytesIO(), snaplen=0)


def test_tee_records_received_and_sent_frames(tmp_path: Path) -> None:
    clock = FakeClock()
    a, b = pipe_pair()
    path = tmp_path / "tee.pcap"
    tee = PcapTee(b, path, clock=clock)
    assert tee.name == b.name and tee.caps == b.caps and tee.hwaddr is None
    assert tee.fileno() == b.fileno()
    a.send_batch([ARP, UDP], 0.0)
    calls = clock.calls
    assert tee.recv_batch(10, 0.0) == [ARP, UDP]
    assert clock.calls == calls + 1  # one timestamp per batch
    clock.t += 0.5
    assert tee.send_batch([UDP + b"x"], 0.0) == 1
    assert a.recv_batch(10, 0.0) == [UDP + b"x"]
    assert tee.recv_batch(10, 0.0) == []
    assert tee.stats()["pcap_frames"] == 3
    assert tee.stats()["rx_frames"] == 2
    tee.close()
    with pytest.raises(Exception, match="closed"):
        b.fileno()  # closing the tee closed the device
    with open(path, "rb") as fh:
        got = list(dpkt.pcap.Reader(fh))
    assert [bytes(f) for _, f in got] == [ARP, UDP, UDP + b"x"]
    assert got[2][0] - got[0][0] == pytest.approx(0.5, abs=1e-6)


def test_send_gso_without_virtio_net_headers_is_refused_before_recording() -> None:
    """A device without virtio-net headers (the pipe) refuses send_gso; the
    tee over it says so in its own name and records nothing first."""
    a, b = pipe_pair()
    buf = io.BytesIO()
    tee = PcapTee(b, buf, clock=FakeClock())
    items = [(bytes(12), UDP)]
    with pytest.raises(LinkError, match=rf"^{b.name}: send_gso needs vnet_hdr=True"):
        b.send_gso(items, 0.0)
    with pytest.raises(LinkError, match=rf"^pcap {b.name}: send_gso needs vnet_hdr=True"):
        tee.send_gso(items, 0.0)
    assert tee.stats()["pcap_frames"] == 0
    assert a.recv_batch(10, 0.0) == []
    tee.close()
