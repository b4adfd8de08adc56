"""TapDevice against the Linux kernel, inside a namespace the testbed deletes.

The device is opened in a helper thread that joined the namespace
(``Netns.call``): the TAP is created in that namespace and its fd then works
from any thread.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Callable

import pytest
from scapy.layers.inet import TCP, UDP
from scapy.layers.l2 import ARP, Ether

from ustack.link import LinkError, vnet
from ustack.link.netif import interface_index, interface_mac, interface_mtu
from ustack.link.tap import TapDevice, configure_host_side
from ustack.link.vnet import GSO_UDP_L4, gso_header
from ustack.wire.checksum import fold, pseudo_header_sum
from ustack_testbed import Netns, Testbed

pytestmark = pytest.mark.root

OUR_MAC = "02:00:00:00:00:01"
HOST_IP = "198.18.40.1"
OUR_IP = "198.18.40.2"


def arp_request() -> bytes:
    return bytes(
        Ether(dst="ff:ff:ff:ff:ff:ff", src=OUR_MAC)
        / ARP(op=1, hwsrc=OUR_MAC, psrc=OUR_IP, hwdst="00:00:00:00:00:00", pdst=HOST_IP)
    )


def wait_for(dev: TapDevice, match: Callable[[bytes], bool], timeout: float = 3.0) -> bytes:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        select.select([dev.fileno()], [], [], 0.05)
        for f in dev.recv_batch(64, time.monotonic()):
            if match(f):
                return f
    raise AssertionError("expected frame did not arrive")


def is_arp_reply(f: bytes) -> bool:
    return f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x02"


def open_tap(tb: Testbed, ns: Netns, **kw: object) -> tuple[str, TapDevice]:
    name = tb.ifname("t", ns)
    dev = ns.call(lambda: TapDevice(name, **kw))  # type: ignore[arg-type]
    return name, dev


@pytest.mark.parametrize("vnet_hdr", [False, True], ids=["plain", "vnet"])
def test_arp_exchange_with_the_kernel(testbed: Testbed, vnet_hdr: bool) -> None:
    ns = testbed.netns("tap")
    name, dev = open_tap(testbed, ns, vnet_hdr=vnet_hdr)
    try:
        assert dev.name == name and dev.hwaddr is None
        assert dev.caps.vnet_hdr is vnet_hdr and dev.caps.tso is vnet_hdr
        ns.call(lambda: configure_host_side(name, f"{HOST_IP}/24"))
        addr = ns.run(["ip", "-4", "-o", "addr", "show", "dev", name]).stdout
        assert f"inet {HOST_IP}/24 brd 198.18.40.255" in addr
        assert f"198.18.40.0/24 dev {name}" in ns.run(["ip", "route"]).stdout
        kmac = ns.call(lambda: interface_mac(name))
        assert dev.send_batch([arp_request()], 0.0) == 1
        reply = Ether(wait_for(dev, is_arp_reply))
        assert reply[ARP].op == 2
        assert (reply[ARP].hwsrc, reply[ARP].psrc) == (kmac.hex(":"), HOST_IP)
        assert (reply[ARP].hwdst, reply[ARP].pdst) == (OUR_MAC, OUR_IP)
        assert reply.dst == OUR_MAC
        s = dev.stats()
        assert s["tx_frames"] == 1 and s["tx_bytes"] == 42
        assert s["rx_frames"] >= 1 and s["rx_bytes"] >= 42
    finally:
        dev.close()
        dev.close()
    with pytest.raises(LinkError, match="no such interface"):
        ns.call(lambda: interface_index(name))  # a non-persistent TAP goes with its fd
    with pytest.raises(LinkError, match="closed"):
        dev.recv_batch(1, 0.0)
    with pytest.raises(LinkError, match="closed"):
        dev.send_batch([arp_request()], 0.0)


def _checksum_ok(frame: bytes) -> bool:
    """scapy recomputes the transport checksum; equal means ours was right."""
    pkt = Ether(frame)
    l4 = pkt[TCP] if TCP in pkt else pkt[UDP]
    got = l4.chksum
    del l4.chksum
    want = Ether(bytes(pkt))[type(l4)].chksum
    return bool(got == want or {got, want} == {0, 0xFFFF})


@pytest.mark.parametrize("offload", [True, False], ids=["offload", "no-offload"])
def test_partial_checksums_are_completed(testbed: Testbed, offload: bool) -> None:
    ns = testbed.netns("tap")
    name, dev = open_tap(testbed, ns, vnet_hdr=True, offload=offload)
    try:
        ns.call(lambda: configure_host_side(name, f"{HOST_IP}/24"))
        ns.ip("neigh", "replace", OUR_IP, "lladdr", OUR_MAC, "dev", name, "nud", "permanent")
        udp = ns.socket()
        tcp = ns.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            udp.sendto(b"checksum me" * 50, (OUR_IP, 9))
            tcp.setblocking(False)
            tcp.connect_ex((OUR_IP, 80))  # the SYN is all we need
            is_udp = lambda f: f[12:14] == b"\x08\x00" and f[23] == 17  # noqa: E731
            is_tcp = lambda f: f[12:14] == b"\x08\x00" and f[23] == 6  # noqa: E731
            for f, field in ((wait_for(dev, is_udp), 6), (wait_for(dev, is_tcp), 16)):
                if offload:
                    # Left partial by the kernel: marked, and completing it verifies.
                    assert type(f) is vnet.CsumOkFrame
                    done = vnet.finish_csum(f, 34, field)
                    assert done is not None and _checksum_ok(done)
                else:
                    assert type(f) is not vnet.CsumOkFrame and _checksum_ok(f)
        finally:
            udp.close()
            tcp.close()
        trusted = dev.stats()["rx_csum_trusted"]
        # With offload the kernel leaves both checksums to us; without, none.
        assert trusted >= 2 if offload else trusted == 0
    finally:
        dev.close()


def _udp_partial(payload: bytes, sport: int = 5000, dport: int = 9000) -> bytes:
    """A UDP frame to the host whose checksum field holds the pseudo sum."""
    kmac = b"\xff" * 6  # broadcast MAC: the kernel takes it whatever its own MAC
    ulen = 8 + len(payload)
    src, dst = socket.inet_aton(OUR_IP), socket.inet_aton(HOST_IP)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 1, 0, 64, 17, 0, src, dst))
    struct.pack_into("!H", ip, 10, ~fold(int.from_bytes(ip, "big")) & 0xFFFF)
    udp = struct.pack("!HHHH", sport, dport, ulen, fold(pseudo_header_sum(src, dst, 17, ulen)))
    return kmac + bytes.fromhex(OUR_MAC.replace(":", "")) + b"\x08\x00" + bytes(ip) + udp + payload


def test_send_gso_lets_the_kernel_finish_the_checksum(testbed: Testbed) -> None:
    ns = testbed.netns("tap")
    name, dev = open_tap(testbed, ns, vnet_hdr=True)
    try:
        ns.call(lambda: configure_host_side(name, f"{HOST_IP}/24"))
        rx = ns.socket()
        try:
            rx.bind((HOST_IP, 9000))
            rx.settimeout(3.0)
            hdr = gso_header(12, csum_start=34, csum_offset=6)
            assert dev.send_gso([(hdr, _udp_partial(b"offloaded"))], 0.0) == 1
            assert rx.recv(100) == b"offloaded"
            # A UDP super-frame cut into 100-byte datagrams by the kernel (USO).
            payload = bytes(range(250)) * 4
            big = _udp_partial(payload)
            hdr = gso_header(
                12, csum_start=34, csum_offset=6, gso_type=GSO_UDP_L4, gso_size=100, hdr_len=42
            )
            sent = dev.send_gso([(hdr, big)], 0.0)
            if sent == 1:
                got = [rx.recv(2000) for _ in range(10)]
                assert b"".join(got) == payload and {len(g) for g in got} == {100}
            else:  # pragma: no cover - kernels before 6.2 refuse USO
                assert dev.stats()["tx_invalid"] == 1
        finally:
            rx.close()
    finally:
        dev.close()
    _, plain = open_tap(testbed, ns)
    try:
        with pytest.raises(LinkError, match="send_gso needs vnet_hdr=True"):
            plain.send_gso([], 0.0)
    finally:
        plain.close()


def test_busy_missing_and_existing_devices(testbed: Testbed) -> None:
    ns = testbed.netns("tap")
    name, dev = open_tap(testbed, ns)
    try:
        with pytest.raises(LinkError) as info:
            ns.call(lambda: TapDevice(name))
        assert str(info.value) == f"tap {name}: device busy (another process holds it)"
    finally:
        dev.close()
    missing = testbed.ifname("t", ns)
    with pytest.raises(LinkError) as info:
        ns.call(lambda: TapDevice(missing, create=False))
    assert str(info.value) == f"tap: no such interface {missing}"
    # A persistent TAP made by iproute2 is attached to, not recreated.
    existing = testbed.tap(ns)
    dev = ns.call(lambda: TapDevice(existing, create=False, mtu=9000))
    try:
        assert ns.call(lambda: interface_mtu(existing)) == 9000
        assert dev.caps.mtu == 9000 and dev.caps.max_frame == 9014
    finally:
        dev.close()
    assert ns.call(lambda: interface_index(existing)) > 0  # persistent: still there


def test_multi_queue_spreads_one_device_over_fds(testbed: Testbed) -> None:
    ns = testbed.netns("tap")
    name, q0 = open_tap(testbed, ns, multi_queue=True)
    q1 = ns.call(lambda: TapDevice(name, multi_queue=True))
    try:
        ns.call(lambda: configure_host_side(name, f"{HOST_IP}/24"))
        assert q0.send_batch([arp_request()], 0.0) == 1
        assert q1.send_batch([arp_request()], 0.0) == 1
        replies = 0
        end = time.monotonic() + 3.0
        while replies < 2 and time.monotonic() < end:
            select.select([q0.fileno(), q1.fileno()], [], [], 0.05)
            for q in (q0, q1):
                replies += sum(is_arp_reply(f) for f in q.recv_batch(64, 0.0))
        assert replies == 2
    finally:
        q0.close()
        q1.close()


def test_bad_frames_and_a_down_link_are_counted(testbed: Testbed) -> None:
    ns = testbed.netns("tap")
    name, dev = open_tap(testbed, ns)
    try:
        # The kernel side is still down: tun refuses writes (EIO).
        assert dev.send_batch([arp_request(), arp_request()], 0.0) == 0
        assert dev.stats()["tx_link_down"] == 2
        ns.call(lambda: configure_host_side(name, f"{HOST_IP}/24"))
        assert dev.send_batch([bytes(10), arp_request()], 0.0) == 1
        s = dev.stats()
        assert (s["tx_invalid"], s["tx_frames"], s["tx_link_down"]) == (1, 1, 2)
        assert dev.recv_batch(0, 0.0) == []
    finally:
        dev.close()
