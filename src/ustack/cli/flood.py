"""``ustack flood --to IP:PORT``: a bounded SYN flood from the stack's link."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ustack.cli.common import (
    UsageError,
    add_link_options,
    link_options,
    linked_stack,
    os_error_text,
)

if TYPE_CHECKING:
    from ustack.apps.flood.run import Flood
    from ustack.apps.load.generator import LoadConfig, LoadGenerator
    from ustack.net.interface import Interface
    from ustack.stack import Stack

HELP = "send a bounded SYN flood from the stack's addresses and count the answers"
DESCRIPTION = (
    "Send SYNs to each --to IP:PORT from a stack with its own MAC and addresses, until "
    "--count SYNs are sent or --duration seconds have passed (both bounded, defaults "
    "100000 and 10), as fast as the link takes them or at --rate SYNs/s; then wait "
    "--grace seconds for late answers and report, per target, the SYN-ACKs, the RSTs "
    "and the SYNs that got nothing.  Source addresses are the stack's own: --ip "
    "ADDR/PREFIX with --sources N, or --ip FIRST-LAST/PREFIX (a range, e.g. "
    "198.18.1.10-198.18.1.250/24), used in turn or at random (--rand-source); "
    "the stack answers ARP for all of them and never answers the target's SYN-ACKs.  "
    "Source ports are random, sequence numbers too (a keyed hash that lets each answer "
    "name its SYN), and the SYNs carry the options a Linux client sends unless "
    "--syn-options none.  On an AF_PACKET link the SYNs are written straight into the "
    "TX ring.  Only for networks you own: every SYN goes to the --to addresses and "
    "nowhere else.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--to", action="append", required=True, metavar="IP:PORT",
                   help="a target; again for more (the SYNs go to them in turn)")
    add_link_options(p)
    p.add_argument("--count", type=int, default=100_000, metavar="N",
                   help="SYNs to send in all at most (default 100000)")
    p.add_argument("--duration", type=float, default=10.0, metavar="S",
                   help="seconds of sending at most (default 10)")
    p.add_argument("--rate", type=float, metavar="PPS",
                   help="SYNs per second in all (default: as fast as possible)")
    p.add_argument("--rand-source", action="store_true",
                   help="each SYN from one of our addresses at random (default: in turn)")
    p.add_argument("--syn-options", choices=["linux", "none"], default="linux",
                   help="linux: MSS, SACK-permitted, timestamps, NOP, window scale 7 "
                        "(default); none: a bare 20-byte header")
    p.add_argument("--grace", type=float, default=1.0, metavar="S",
                   help="seconds to wait for late answers after the last SYN (default 1)")
    p.add_argument("--batch", type=int, default=256, metavar="N",
                   help="SYNs per send call (default 256)")
    p.add_argument("--seed", type=int, metavar="N", help=argparse.SUPPRESS)
    p.add_argument("--json", metavar="FILE", help="write everything counted to FILE as JSON")
    p.add_argument("--mix-load", metavar="URL",
                   help="meanwhile, legitimate clients: ustack load's connection-per-request "
                   "GETs of URL from other addresses of ours (the ones after the flood's), "
                   "for the flood's duration; their success rate and latency are reported")
    p.add_argument("--mix-sources", type=int, default=10, metavar="N",
                   help="addresses for --mix-load (default 10)")
    p.add_argument("--mix-conns", type=int, default=8, metavar="C",
                   help="--mix-load's connections at a time (default 8)")


def _targets(specs: list[str], prog: str) -> tuple[tuple[bytes, int], ...]:
    from ustack.wire import ipv4

    out = []
    for spec in specs:
        host, sep, port = spec.rpartition(":")
        if not sep or not port.isdecimal() or not port.isascii():
            raise UsageError(f"{prog}: --to {spec}: expected IP:PORT, e.g. 198.18.1.1:80")
        try:
            ip = ipv4.addr_from_str(host)
        except ValueError:
            raise UsageError(f"{prog}: --to {spec}: {host!r} is not an IPv4 address") from None
        out.append((ip, int(port)))
    return tuple(out)


def _range(args: argparse.Namespace, prog: str) -> None:
    """``--ip FIRST-LAST/PREFIX``: rewritten as ``--ip FIRST/PREFIX
    --sources LAST-FIRST+1`` (the link options know only that form)."""
    from ustack.wire import ipv4

    text: str = args.ip
    if "-" not in text:
        return
    span, sep, prefix = text.partition("/")
    first_s, _, last_s = span.partition("-")
    if not sep:
        raise UsageError(f"{prog}: --ip {text}: a range needs the prefix length, "
                         "FIRST-LAST/PREFIX (e.g. 198.18.1.10-198.18.1.250/24)")
    try:
        first = int.from_bytes(ipv4.addr_from_str(first_s.strip()), "big")
        last = int.from_bytes(ipv4.addr_from_str(last_s.strip()), "big")
    except ValueError as e:
        raise UsageError(f"{prog}: --ip {text}: {e}") from None
    if last < first:
        raise UsageError(f"{prog}: --ip {text}: the range ends before it starts")
    if args.sources != 1:
        raise UsageError(f"{prog}: --ip {text}: a range or --sources, not both")
    args.ip = f"{first_s.strip()}/{prefix}"
    args.sources = last - first + 1


def _check_reach(args: argparse.Namespace, targets: tuple[tuple[bytes, int], ...],
                 prog: str) -> None:
    """Each target on --ip's subnet (or behind --gw), and none ours; checked
    before the link (a bad --ip is link_options' to report)."""
    from ustack.wire import ipv4

    try:
        ours, prefix = ipv4.parse_cidr(args.ip)
    except ValueError:
        return
    first = int.from_bytes(ours, "big")
    mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    for ip, _ in targets:
        dst = int.from_bytes(ip, "big")
        name = ipv4.addr_to_str(ip)
        if first <= dst < first + max(args.sources, 1):
            raise UsageError(f"{prog}: --to {name}: one of our own source addresses "
                             f"(--ip {args.ip}, --sources {args.sources})")
        if (dst ^ first) & mask and not args.gw:
            raise UsageError(f"{prog}: --to {name}: not on --ip {args.ip}'s subnet and no --gw "
                             "is given: no route to it")


@contextlib.contextmanager
def _stop_on_signals(flood: Flood) -> Iterator[None]:
    """SIGINT/SIGTERM end the sending at the next batch; the report still comes."""
    old = {sig: signal.signal(sig, lambda *_: flood.stop())
           for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _link_drops(kind: str, name: str) -> dict[str, int]:
    """The kernel's drop counters of an AF_PACKET link's interface: a
    frame the kernel dropped on its way in (a receive backlog full, as on a
    veth whose other end is a busy namespace) never reached the stack, and
    one dropped on its way out never reached the target."""
    out: dict[str, int] = {}
    if kind != "packet":
        return out
    for counter in ("rx_dropped", "tx_dropped"):
        with contextlib.suppress(OSError, ValueError), open(
                f"/sys/class/net/{name}/statistics/{counter}", encoding="ascii") as f:
            out[counter] = int(f.read())
    return out


def main(args: argparse.Namespace) -> int:
    from ustack.apps.flood.report import build, summary
    from ustack.apps.flood.run import Flood, FloodConfig, FloodError
    from ustack.cli.load import linger
    from ustack.link.errors import LinkError
    from ustack.wire import ipv4

    prog = "ustack flood"
    targets = _targets(args.to, prog)
    _range(args, prog)
    for flag, value in (("--duration", args.duration), ("--rate", args.rate),
                        ("--grace", args.grace)):
        if value is not None and not math.isfinite(value):
            raise UsageError(f"{prog}: {flag} {value}: a finite number")
    try:
        cfg = FloodConfig(targets, count=args.count, duration=args.duration, rate=args.rate,
                          rand_source=args.rand_source, options=args.syn_options == "linux",
                          grace=args.grace, batch=args.batch, seed=args.seed)
    except ValueError as e:
        raise UsageError(f"{prog}: {e}") from None
    _check_reach(args, targets, prog)
    mix = _mix_config(args, targets, cfg.duration, prog) if args.mix_load else None
    options = link_options(args, prog)
    if args.json is not None and not os.access(os.path.dirname(os.path.abspath(args.json)),
                                               os.W_OK):
        raise UsageError(f"{prog}: --json {args.json}: cannot write there")
    first = int.from_bytes(ipv4.parse_cidr(options.ip)[0], "big")
    with linked_stack(options, prog) as up:
        try:
            flood = Flood(up.stack, up.iface, cfg, (first, options.sources))
            flood.resolve(time.monotonic)
            gen = _mix_start(up.stack, up.iface, mix, first + options.sources) if mix else None
            before = _link_drops(options.kind, options.device_name)
            with _stop_on_signals(flood):
                flood.run()
            after = _link_drops(options.kind, options.device_name)
            if gen is not None:
                gen.stop()  # (when the count ended the flood before its duration)
                linger(up.stack, gen)  # (ustack load's: the last closes finish)
        except FloodError as e:
            print(f"{prog}: {e}", file=sys.stderr)
            return 1
        except (LinkError, ValueError) as e:
            raise UsageError(f"{prog}: {e}") from None
        except OSError as e:
            raise UsageError(f"{prog}: {os_error_text(e)}") from None
        device = up.iface.device.stats()
        for name, value in after.items():
            device["link_" + name] = value - before.get(name, 0)
        report = build(flood, device)
        if gen is not None and mix is not None:
            report["mix_load"] = _mix_report(gen, mix)
    text = summary(report)
    if "mix_load" in report:
        text += "\n" + _mix_summary(report["mix_load"])
    print(text, flush=True)
    if args.json is not None:
        try:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(report, f, indent=1)
                f.write("\n")
        except OSError as e:
            raise UsageError(f"{prog}: --json {os_error_text(e)}") from None
    return 0 if flood.sent else 1


# -- --mix-load: legitimate clients during the flood ----------------------------


def _mix_config(args: argparse.Namespace, targets: tuple[tuple[bytes, int], ...],
                duration: float, prog: str) -> LoadConfig:
    """ustack load's configuration for ``--mix-load`` (checked before the
    link: the URL, the counts, the addresses after the flood's on the subnet)."""
    from ustack.apps.load.generator import LoadConfig
    from ustack.apps.load.target import build_request, parse_url
    from ustack.wire import ipv4

    if not 1 <= args.mix_sources <= 4096 or not 1 <= args.mix_conns <= 10_000:
        raise UsageError(f"{prog}: --mix-sources must be 1..4096 and --mix-conns 1..10000")
    try:
        target = parse_url(args.mix_load)
        request = build_request(target, "GET", [], b"", close=True)
        ours, prefix = ipv4.parse_cidr(args.ip)
    except ValueError as e:
        raise UsageError(f"{prog}: --mix-load {args.mix_load}: {e}") from None
    first = int.from_bytes(ours, "big") + max(args.sources, 1)
    mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    last = first + args.mix_sources - 1
    if (last ^ first) & mask or (first ^ int.from_bytes(ours, "big")) & mask \
            or (last & ~mask & 0xFFFFFFFF) == ~mask & 0xFFFFFFFF:
        raise UsageError(f"{prog}: --mix-sources {args.mix_sources}: the {args.mix_sources} "
                         f"addresses after the flood's do not fit --ip {args.ip}'s subnet")
    dst = int.from_bytes(ipv4.addr_from_str(target.ip), "big")
    if first <= dst <= last:
        raise UsageError(f"{prog}: --mix-load {args.mix_load}: one of our own addresses")
    sources = [ipv4.addr_to_str((first + i).to_bytes(4, "big")) for i in range(args.mix_sources)]
    try:
        return LoadConfig(target.ip, target.port, request, sources,
                          connections=args.mix_conns, duration=duration, close=True)
    except ValueError as e:
        raise UsageError(f"{prog}: --mix-load: {e}") from None


def _mix_start(stack: Stack, iface: Interface, cfg: LoadConfig, first: int) -> LoadGenerator:
    """The legitimate clients' addresses on the link, and their generator started."""
    from ustack.apps.load.generator import LoadGenerator

    for ip in cfg.sources:
        stack.add_address(iface, ip)
    gen = LoadGenerator(stack, cfg)
    gen.start()
    return gen


def _mix_report(gen: LoadGenerator, cfg: LoadConfig) -> dict[str, Any]:
    from ustack.apps.load.report import build as build_load

    r = build_load(gen.stats, cfg, url=f"http://{cfg.ip}:{cfg.port}/", method="GET")
    # A connection per request: each connection opened is one attempt,
    # whether or not its handshake got through the flood to send it.
    opened = r["connections"]["opened"]
    r["success_rate"] = round(r["requests"]["succeeded"] / opened, 4) if opened else 0.0
    return r


def _mix_summary(r: dict[str, Any]) -> str:
    req = r["requests"]
    lat = r["latency_us"]
    conn = lat.get("connect", {})
    ttlb = lat.get("ttlb", {})

    def ms(d: dict[str, Any], key: str) -> str:
        v = d.get(key)
        return "-" if v is None or not d.get("count") else f"{v / 1000:.2f}"

    errors = ", ".join(f"{k} {v}" for k, v in sorted(r["errors"].items()) if v) or "none"
    c = r["connections"]
    return (f"legitimate clients (--mix-load, {len(r['sources'])} addresses, a connection "
            f"per request): {c['opened']} connections opened, {c['established']} established "
            f"({c['syn_retransmits']} SYN retransmissions); {req['sent']} requests sent, "
            f"{req['succeeded']} succeeded: {100 * r['success_rate']:.1f} % of the attempts; "
            f"{req['failed']} failed, {req['unfinished']} unfinished; errors: {errors}\n"
            f"  connect p50/p99 {ms(conn, 'p50')}/{ms(conn, 'p99')} ms, "
            f"last byte p50/p99 {ms(ttlb, 'p50')}/{ms(ttlb, 'p99')} ms")
