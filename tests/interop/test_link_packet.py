"""PacketDevice on one end of a veth pair; the kernel owns the other end.

Both ends live in one namespace the testbed creates and deletes.  The device
is opened in a thread that joined the namespace (``Netns.call``); the socket
keeps that namespace.  Every test runs in each receive mode.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable

import pytest
from scapy.layers.inet import UDP
from scapy.layers.l2 import ARP, Ether

from ustack.link import LinkError
from ustack.link.netif import interface_mac
from ustack.link.packet import PacketDevice
from ustack.link.vnet import CsumOkFrame, finish_csum
from ustack.wire.checksum import pseudo_header_sum, verify
from ustack_testbed import Netns, Testbed

pytestmark = pytest.mark.root

MODES = ["v3", "v2", "none"]
OUR_MAC = "02:00:00:00:00:01"
HOST_IP = "198.18.41.1"
OUR_IP = "198.18.41.2"
MARK = b"\x88\xb5"  # IEEE local experimental EtherType


def arp_request() -> bytes:
    return bytes(
        Ether(dst="ff:ff:ff:ff:ff:ff", src=OUR_MAC)
        / ARP(op=1, hwsrc=OUR_MAC, psrc=OUR_IP, hwdst="00:00:00:00:00:00", pdst=HOST_IP)
    )


def marked(i: int, size: int = 64) -> bytes:
    body = (i.to_bytes(4, "big") * (size // 4))[: size - 14]
    return b"\x02\x00\x00\x00\x00\x02" + bytes.fromhex(OUR_MAC.replace(":", "")) + MARK + body


def wait_for(dev: PacketDevice, match: Callable[[bytes], bool], timeout: float = 3.0) -> bytes:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        select.select([dev.fileno()], [], [], 0.05)
        for f in dev.recv_batch(64, time.monotonic()):
            if match(f):
                return f
    raise AssertionError("expected frame did not arrive")


def collect_marked(dev: PacketDevice, n: int, timeout: float = 3.0) -> list[bytes]:
    """The first ``n`` marked frames, in order of arrival."""
    got: list[bytes] = []
    end = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < end:
        select.select([dev.fileno()], [], [], 0.05)
        got += [f for f in dev.recv_batch(64, time.monotonic()) if f[12:14] == MARK]
    return got


def veth(
    tb: Testbed, *, offloads_off: bool = True, mtu: int | None = None
) -> tuple[Netns, str, str]:
    ns = tb.netns("pkt")
    ours, kernel = tb.veth(ns, ns, None, f"{HOST_IP}/24", offloads_off=offloads_off, mtu=mtu)
    return ns, ours, kernel


def counter_socket(ns: Netns, ifname: str) -> socket.socket:
    """A plain AF_PACKET socket on the kernel's end, big enough for a burst."""

    def make() -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        s.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE
        s.bind((ifname, 0x0003))
        s.settimeout(0.5)
        return s

    return ns.call(make)


@pytest.mark.parametrize("mode", MODES)
def test_arp_exchange_and_a_1000_frame_burst(testbed: Testbed, mode: str) -> None:
    ns, ours, kernel = veth(testbed)
    dev = ns.call(lambda: PacketDevice(ours, rx_ring=mode))
    counter = counter_socket(ns, kernel)
    try:
        assert dev.hwaddr == ns.call(lambda: interface_mac(ours))
        assert dev.caps.mtu == 1500 and not dev.caps.vnet_hdr
        # Our own MAC is not the interface's: promiscuous mode lets the reply in.
        assert dev.send_batch([arp_request()], 0.0) == 1
        reply = Ether(wait_for(dev, lambda f: f[12:14] == b"\x08\x06" and f[21] == 2))
        assert (reply[ARP].psrc, reply[ARP].hwdst, reply[ARP].pdst) == (HOST_IP, OUR_MAC, OUR_IP)
        assert reply[ARP].hwsrc == ns.call(lambda: interface_mac(kernel)).hex(":")

        assert dev.send_batch([marked(i) for i in range(1000)], 0.0) == 1000
        seen: set[int] = set()
        try:
            while len(seen) < 1000:
                f = counter.recv(2048)
                if f[12:14] == MARK:
                    seen.add(int.from_bytes(f[14:18], "big"))
        except TimeoutError:
            pass
        assert seen == set(range(1000))
        # Our own transmissions never come back to us.
        time.sleep(0.01)
        assert not [f for f in dev.recv_batch(2000, 0.0) if f[12:14] == MARK]
        s = dev.stats()
        assert s["tx_frames"] == 1001 and s["tx_bytes"] == 42 + 64_000
        assert s["rx_frames"] >= 1 and s["rx_kernel_drops"] == 0
    finally:
        counter.close()
        dev.close()
    dev.close()  # idempotent
    with pytest.raises(LinkError, match="closed"):
        dev.recv_batch(1, 0.0)
    with pytest.raises(LinkError, match="closed"):
        dev.send_batch([arp_request()], 0.0)
    with pytest.raises(LinkError, match="closed"):
        dev.fileno()


@pytest.mark.parametrize("mode", MODES)
def test_frames_from_the_kernel_arrive_whole(testbed: Testbed, mode: str) -> None:
    """A local sender with checksum offload leaves UDP/TCP checksums partial;
    the device hands such a frame over marked CsumOkFrame (the kernel built
    it: nothing to verify) with the pseudo-header sum in the checksum field,
    in every mode; completing it from the standard offsets verifies."""
    ns, ours, kernel = veth(testbed, offloads_off=False)
    dev = ns.call(lambda: PacketDevice(ours, rx_ring=mode))
    try:
        ns.ip("neigh", "replace", OUR_IP, "lladdr", OUR_MAC, "dev", kernel, "nud", "permanent")
        udp = ns.socket()
        try:
            udp.sendto(b"complete me" * 40, (OUR_IP, 9))
        finally:
            udp.close()
        f = wait_for(dev, lambda f: f[12:14] == b"\x08\x00" and f[23] == 17)
        assert type(f) is CsumOkFrame
        done = finish_csum(f, 34, 6)  # UDP checksum field: 6 bytes into the header
        assert done is not None
        seg = done[34:]
        assert verify(seg, pseudo_header_sum(f[26:30], f[30:34], 17, len(seg)))
        assert Ether(f)[UDP].load == b"complete me" * 40
        assert dev.stats()["rx_csum_trusted"] == 1
    finally:
        dev.close()


@pytest.mark.parametrize("mode", ["v3", "v2"])
def test_frames_larger_than_a_ring_slot_arrive_whole(testbed: Testbed, mode: str) -> None:
    """A veth peer with offloads on hands over 64 KB super-frames.  A V3
    block always holds one (its size is raised to fit); a V2 slot keeps its
    small size and the frame comes whole from the socket's queue
    (PACKET_COPY_THRESH, counted ``rx_copied``), in order with the rest."""
    ns, ours, kernel = veth(testbed, mtu=9000)
    dev = ns.call(
        lambda: PacketDevice(ours, rx_ring=mode, block_size=8192, block_count=4, frame_size=2048)
    )
    sender = counter_socket(ns, kernel)
    try:
        big = marked(1, 8500)  # more than a 2048-byte slot or an 8 KB block
        sender.send(marked(0))
        sender.send(big)
        sender.send(marked(2))
        got = collect_marked(dev, 3)
        assert got == [marked(0), big, marked(2)]
        s = dev.stats()
        assert s["rx_truncated"] == 0
        assert s["rx_copied"] == (1 if mode == "v2" else 0)
    finally:
        sender.close()
        dev.close()


def test_a_big_frame_the_queue_has_no_room_for_is_counted_and_dropped(testbed: Testbed) -> None:
    """With the socket's queue full (the smallest receive buffer, already
    holding one copy) the kernel cuts the next big frame to its V2 slot and
    queues no copy: it is counted ``rx_truncated`` and dropped, and the
    frames around it still arrive."""
    ns, ours, kernel = veth(testbed, mtu=9000)
    dev = ns.call(lambda: PacketDevice(ours, rx_ring="v2", frame_size=2048, rcvbuf=1))
    sender = counter_socket(ns, kernel)
    try:
        sender.send(marked(1, 8500))
        sender.send(marked(2, 8500))
        sender.send(marked(3))
        got = collect_marked(dev, 2)
        assert got == [marked(1, 8500), marked(3)]
        s = dev.stats()
        assert (s["rx_copied"], s["rx_truncated"]) == (1, 1)
    finally:
        sender.close()
        dev.close()


def test_full_tx_ring_drops_and_counts(testbed: Testbed) -> None:
    ns, ours, _ = veth(testbed)
    dev = ns.call(
        lambda: PacketDevice(ours, rx_ring="v2", block_size=4096, frame_size=2048, tx_frames=8)
    )
    try:
        assert dev.send_batch([marked(i) for i in range(100)], 0.0) == 8
        s = dev.stats()
        assert (s["tx_frames"], s["tx_ring_full"]) == (8, 92)
        assert dev.send_batch([bytes(10), bytes(3000)], 0.0) == 0
        s = dev.stats()
        assert (s["tx_runt"], s["tx_oversize"]) == (1, 1)
        # Once the kernel has sent them, the slots are free again.
        for _ in range(100):
            if dev.send_batch([marked(200)], 0.0) == 1:
                break
            time.sleep(0.01)
        assert dev.stats()["tx_frames"] == 9
    finally:
        dev.close()


def test_fanout_group_shares_the_traffic(testbed: Testbed) -> None:
    ns, ours, kernel = veth(testbed)
    devs = [
        ns.call(lambda: PacketDevice(ours, rx_ring="v2", fanout_group=77, fanout_mode="lb"))
        for _ in range(2)
    ]
    sender = counter_socket(ns, kernel)
    try:
        for i in range(100):
            sender.send(marked(i))
        counts = [0, 0]
        end = time.monotonic() + 3.0
        while sum(counts) < 100 and time.monotonic() < end:
            time.sleep(0.01)
            for k, d in enumerate(devs):
                counts[k] += sum(f[12:14] == MARK for f in d.recv_batch(256, 0.0))
        assert sum(counts) == 100 and min(counts) >= 40  # round robin: 50/50
    finally:
        sender.close()
        for d in devs:
            d.close()


def test_open_errors(testbed: Testbed) -> None:
    ns, ours, _ = veth(testbed)
    with pytest.raises(LinkError, match="rx_ring must be one of"):
        ns.call(lambda: PacketDevice(ours, rx_ring="v9"))
    with pytest.raises(LinkError, match="block_size must be a multiple"):
        ns.call(lambda: PacketDevice(ours, block_size=1000))
    with pytest.raises(LinkError) as info:
        ns.call(lambda: PacketDevice("nosuch0"))
    assert str(info.value) == "packet: no such interface nosuch0"
    dev = ns.call(lambda: PacketDevice(ours, vnet_hdr=True))
    try:
        assert dev.caps.vnet_hdr and dev.caps.tso and dev.caps.csum_tx
        assert dev.send_gso([], 0.0) == 0
    finally:
        dev.close()
