"""Raw frame reflect: the ceiling for any Python stack on a given link.

A loop that takes a batch of frames from a ustack link device, swaps the
Ethernet addresses, the IPv4 addresses and the UDP ports of every UDP frame
sent to its IP, and sends the batch back.  Swapping keeps every checksum valid:
the IPv4 header checksum and the UDP pseudo-header sum are sums, and a sum does
not depend on the order of its terms (RFC 1071 section 2(B)).  ICMP echo
requests are reflected too, with the type set to 0 and the checksum updated
incrementally (RFC 1624 eqn. 3), so the ICMP row of the benchmark has a
ceiling as well.  It answers ARP requests for its IP (RFC 826) so the kernel
can resolve it; it does nothing else: no IP options, no fragments, no state.

Command line, shaped like `ustack up` so bench_echo.py drives both alike:

    python3 bench/reflect.py --link tap:NAME|packet:IFACE --ip 198.18.0.2/24
        [--mac MAC] [--host-ip CIDR] [-t SECONDS] [-n MAX_FRAMES]

prints one ``ready:`` line when it is ready, runs until SIGINT/SIGTERM, the
time bound or the frame bound, then prints ``Name value`` counters.
"""

from __future__ import annotations

import argparse
import ipaddress
import select
import signal
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from ustack.link.base import Device
from ustack.link.errors import LinkError
from ustack.link.netif import configure_host_side
from ustack.link.open import open_link

BATCH = 64

# Ethernet + the IPv4 header up to the addresses + UDP ports (or ICMP type,
# code and checksum), in pieces the reflection reassembles in swapped order.
# One unpack per frame; the 14-byte middle carries ethertype, version/IHL
# and protocol for the classification.
_FRAME = struct.Struct("!6s6s14s4s4s2s2s")
_FRAME_LEN = _FRAME.size  # 38
_ICMP_CSUM = struct.Struct("!H")
# ARP over Ethernet/IPv4 (RFC 826): htype ptype hlen plen oper sha spa tha tpa.
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_ARP_HEAD = b"\x00\x01\x08\x00\x06\x04"
_ETH_IPV4_IHL5 = b"\x08\x00\x45"
_ETH_ARP = b"\x08\x06"
_UDP = 17
_ICMP = 1


@dataclass(slots=True)
class Counters:
    """What the loop did, by kind of frame (names in the `Name value` output)."""

    frames_in: int = 0
    udp_reflected: int = 0
    icmp_reflected: int = 0
    arp_replied: int = 0
    ignored: int = 0
    send_short: int = 0
    batches: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        rows = [
            ("ReflectFramesIn", self.frames_in),
            ("ReflectUdpOut", self.udp_reflected),
            ("ReflectIcmpOut", self.icmp_reflected),
            ("ReflectArpReplies", self.arp_replied),
            ("ReflectIgnored", self.ignored),
            ("ReflectSendShort", self.send_short),
            ("ReflectBatches", self.batches),
        ]
        rows += sorted(self.extra.items())
        return [f"{name} {value}" for name, value in rows]


def arp_reply(frame: bytes, ip: bytes, mac: bytes) -> bytes | None:
    """The ARP reply to ``frame`` if it is a request for ``ip``, else None."""
    if len(frame) < 14 + _ARP.size or frame[14:20] != _ARP_HEAD:
        return None
    _, _, _, _, oper, sha, spa, _, tpa = _ARP.unpack_from(frame, 14)
    if oper != 1 or tpa != ip:
        return None
    reply: bytes = sha + mac + _ETH_ARP + _ARP.pack(1, 0x0800, 6, 4, 2, mac, ip, sha, spa)
    return reply


def reflect_batch(frames: list[bytes], ip: bytes, mac: bytes, c: Counters) -> list[bytes]:
    """The frames to send back for one received batch (the hot path)."""
    out: list[bytes] = []
    append = out.append
    unpack = _FRAME.unpack_from
    join = b"".join
    for f in frames:
        if len(f) < _FRAME_LEN:
            c.ignored += 1
            continue
        dst, src, mid, sip, dip, a, b = unpack(f)
        if dip == ip and mid[:3] == _ETH_IPV4_IHL5:
            proto = mid[11]
            if proto == _UDP:
                append(join((src, dst, mid, dip, sip, b, a, f[38:])))
                c.udp_reflected += 1
                continue
            if proto == _ICMP and a == b"\x08\x00":
                # Echo request -> reply: the 16-bit word type/code goes from
                # 0x0800 to 0x0000, so by RFC 1624 eqn. 3 the checksum
                # HC' = ~(~HC + ~m + m') = ~(~HC + 0xF7FF).
                s = (~_ICMP_CSUM.unpack(b)[0] & 0xFFFF) + 0xF7FF
                s = (s & 0xFFFF) + (s >> 16)
                csum = _ICMP_CSUM.pack(~s & 0xFFFF)
                append(join((src, dst, mid, dip, sip, b"\x00\x00", csum, f[38:])))
                c.icmp_reflected += 1
                continue
        elif mid[:2] == _ETH_ARP:
            reply = arp_reply(f, ip, mac)
            if reply is not None:
                append(reply)
                c.arp_replied += 1
                continue
        c.ignored += 1
    return out


def run(
    dev: Device,
    ip: bytes,
    mac: bytes,
    seconds: float,
    max_frames: int,
    stop: Callable[[], bool],
) -> Counters:
    """Reflect until ``stop()``, ``seconds`` have passed or ``max_frames`` came in."""
    c = Counters()
    poller = select.poll()
    poller.register(dev.fileno(), select.POLLIN)
    clock = time.monotonic
    end = clock() + seconds
    recv = dev.recv_batch
    send = dev.send_batch
    while not stop():
        now = clock()
        if now >= end or c.frames_in >= max_frames:
            break
        frames = recv(BATCH, now)
        if not frames:
            # Idle: sleep in poll, but wake often enough to see a signal.
            poller.poll(max(1, min(50, int((end - now) * 1000))))
            continue
        c.frames_in += len(frames)
        c.batches += 1
        out = reflect_batch(frames, ip, mac, c)
        if out:
            sent = send(out, now)
            if sent < len(out):
                c.send_short += len(out) - sent
    return c


def open_device(link: str, rx_ring: str) -> Device:
    """The device for ``tap:NAME`` or ``packet:IFACE``, as ustack opens it."""
    try:
        if link.startswith("packet:"):
            return open_link(link, rx_ring=rx_ring)
        return open_link(link)
    except LinkError as exc:
        raise SystemExit(f"reflect: {exc}") from exc


def parse_mac(text: str) -> bytes:
    parts = text.split(":")
    if len(parts) != 6:
        raise SystemExit(f"reflect: bad MAC {text!r}")
    return bytes(int(p, 16) for p in parts)


def default_mac(ip: bytes) -> bytes:
    """A locally administered unicast MAC that shows the IP (02:00 + address)."""
    return b"\x02\x00" + ip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="reflect", description=__doc__.splitlines()[0])
    p.add_argument("--link", required=True, help="tap:NAME or packet:IFACE")
    p.add_argument("--ip", required=True, help="our address, CIDR or plain")
    p.add_argument("--mac", help="our MAC (default: the interface's, or 02:00:<ip>)")
    p.add_argument("--host-ip", help="tap only: give the kernel side this CIDR and bring it up")
    p.add_argument(
        "--rx-ring",
        choices=("v3", "v2", "none"),
        default="v3",
        help="packet only: PacketDevice receive mode (default v3, as ustack)",
    )
    p.add_argument("-t", "--seconds", type=float, default=60.0, help="stop after (default 60)")
    p.add_argument("-n", "--max-frames", type=int, default=50_000_000, help="stop after frames")
    a = p.parse_args(argv)
    ip = ipaddress.IPv4Interface(a.ip).ip.packed

    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    dev = open_device(a.link, a.rx_ring)
    try:
        if a.host_ip:
            if not a.link.startswith("tap:"):
                raise SystemExit("reflect: --host-ip only applies to tap: links")
            try:
                configure_host_side(dev.name, a.host_ip)
            except LinkError as exc:
                raise SystemExit(f"reflect: {exc}") from exc
        if a.mac:
            mac = parse_mac(a.mac)
        else:
            mac = dev.hwaddr if (dev.hwaddr and a.link.startswith("packet:")) else default_mac(ip)
        print(
            f"ready: link={a.link} mac={mac.hex(':')} ip={a.ip} services=reflect",
            flush=True,
        )
        c = run(dev, ip, mac, a.seconds, a.max_frames, lambda: stopping)
        c.extra.update({f"Dev{k[:1].upper()}{k[1:]}": v for k, v in dev.stats().items()})
    finally:
        dev.close()
    print("\n".join(c.lines()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
