"""A flood's report: ``build`` makes one dict of everything counted (what
``--json`` writes) and ``summary`` prints that same dict as text, so the
two cannot disagree."""

from __future__ import annotations

from typing import Any, Final

from ustack.apps.flood.run import Flood
from ustack.apps.flood.syn import FloodTarget

# A --rate run that sent below this share of the rate asked did not reach it.
RATE_REACHED: Final = 0.95


def _addr(a: int) -> str:
    return f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}"


def _target(t: FloodTarget, send_seconds: float) -> dict[str, Any]:
    # The target's SYN-ACK rate: its distinct SYN-ACKs over the time from
    # the first SYN to its last answer (its answers may lag the SYNs).
    span = t.last_answer - t.first_answer if t.synack > 1 else 0.0
    return {
        "target": t.name(),
        "syn_sent": t.sent,
        "synack": t.synack,
        "rst": t.rst,
        "unanswered": t.unanswered,
        "answered_fraction": round(t.answered / t.sent, 6) if t.sent else 0.0,
        "synack_fraction": round(t.synack / t.sent, 6) if t.sent else 0.0,
        "synack_per_s": round(t.synack / span, 1) if span > 0 else None,
        "repeated_answers": t.dup,
        "unmatched": t.unmatched,
        "other": t.other,
    }


def build(flood: Flood, device: dict[str, int] | None = None) -> dict[str, Any]:
    """Everything counted, as a JSON-able dict."""
    cfg = flood.config
    tm = flood.times
    send_s = flood.send_seconds
    first, n = flood.sources
    pps = flood.pps
    sent = flood.sent
    rate: dict[str, Any] | None = None
    if cfg.rate is not None:
        rate = {"asked": cfg.rate, "reached": pps >= RATE_REACHED * cfg.rate,
                "achieved_fraction": round(pps / cfg.rate, 4)}
    cpu = tm.user_cpu + tm.system_cpu
    stopped_by = ("count" if sent >= cfg.count else "signal" if flood.interrupted
                  else "duration")

    def per_syn(seconds: float) -> float | None:
        return round(seconds / sent * 1e6, 3) if sent else None

    return {
        "sent": sent,
        "send_seconds": round(send_s, 6),
        "pps": round(pps, 1),
        "stopped_by": stopped_by,
        "bounds": {"count": cfg.count, "duration": cfg.duration},
        "rate": rate,
        "grace_seconds": cfg.grace,
        "path": flood.path,
        "frame_bytes": flood.frame_len,
        "syn_options": "linux" if cfg.options else "none",
        "sources": {"first": _addr(first), "last": _addr(first + n - 1), "count": n,
                    "order": "random" if cfg.rand_source else "in turn"},
        "targets": [_target(t, send_s) for t in flood.targets],
        "profile": {
            "user_cpu_s": round(tm.user_cpu, 4),
            "system_cpu_s": round(tm.system_cpu, 4),
            "cpu_share": round(cpu / send_s, 3) if send_s > 0 else None,
            "write_us_per_syn": round(tm.write_ns / 1000.0, 4),
            "send_us_per_syn": per_syn(tm.send_wall),
            "receive_us_per_syn": per_syn(tm.receive_wall),
            "wait_us_per_syn": per_syn(tm.wait_wall),
            "batches": tm.batches,
            "ring_full_batches": tm.ring_full,
        },
        "device": dict(device or {}),
    }


def _n(v: float) -> str:
    return f"{v:,.0f}"


def summary(r: dict[str, Any]) -> str:
    """The report as plain text, from the dict ``build`` made."""
    src = r["sources"]
    lines = [
        f"{_n(r['sent'])} SYNs in {r['send_seconds']:.3f} s: {_n(r['pps'])} SYNs/s "
        f"(stopped by {r['stopped_by']}; path {r['path']}, {r['frame_bytes']}-byte frames, "
        f"options {r['syn_options']})",
        f"sources: {src['count']} address{'es' if src['count'] != 1 else ''} "
        f"{src['first']}" + (f"..{src['last']}" if src['count'] > 1 else "")
        + f" ({src['order']}), random ports 1024-65535",
    ]
    rate = r["rate"]
    if rate is not None and not rate["reached"]:
        lines.append(f"rate NOT reached: {_n(rate['asked'])} SYNs/s asked, {_n(r['pps'])} sent "
                     f"({rate['achieved_fraction']:.0%}): the generator could not go faster "
                     "(see the profile line)")
    for t in r["targets"]:
        sa_rate = t["synack_per_s"]
        lines.append(
            f"{t['target']}: {_n(t['syn_sent'])} SYNs, {_n(t['synack'])} SYN-ACKs "
            f"({t['synack_fraction']:.1%}"
            + (f", {_n(sa_rate)}/s" if sa_rate is not None else "") + "), "
            f"{_n(t['rst'])} RSTs, {_n(t['unanswered'])} unanswered"
            + (f", {_n(t['repeated_answers'])} repeated answers" if t["repeated_answers"] else "")
            + (f", {_n(t['unmatched'])} unmatched" if t["unmatched"] else ""))
    p = r["profile"]
    if r["sent"]:
        lines.append(
            f"profile: CPU {p['user_cpu_s']:.2f} s user + {p['system_cpu_s']:.2f} s system "
            f"({p['cpu_share']:.0%} of the sending time); per SYN: writing "
            f"{p['write_us_per_syn']:.3f} us, send calls {p['send_us_per_syn']:.3f} us, "
            f"receiving {p['receive_us_per_syn']:.3f} us"
            + (f", waiting for the rate {p['wait_us_per_syn']:.3f} us"
               if rate is not None else "")
            + (f"; {p['ring_full_batches']} of {p['batches']} batches found the TX ring full"
               if p["ring_full_batches"] else ""))
    dev = r["device"]
    lost = dev.get("rx_kernel_drops", 0)
    if lost:
        lines.append(f"warning: {_n(lost)} frames lost by the kernel before the stack read "
                     "them (receive ring full): answers among them count as unanswered")
    lost = dev.get("link_rx_dropped", 0)
    if lost:
        lines.append(f"warning: {_n(lost)} frames dropped by the kernel on the link's way in "
                     "(rx_dropped: a receive backlog full), before the stack could see "
                     "them: answers among them count as unanswered")
    lost = dev.get("link_tx_dropped", 0)
    if lost:
        lines.append(f"warning: {_n(lost)} frames dropped by the kernel on the link's way out "
                     "(tx_dropped): SYNs among them never reached the target")
    return "\n".join(lines)
