"""A load run's report: ``build`` makes one dict of everything counted
(what ``--json`` writes), ``summary`` prints that same dict as text
(wrk-like), so the two cannot disagree; ``hgrm_files`` names the
``--hist`` files, one per phase.
"""

from __future__ import annotations

from typing import Any, Final

from ustack.apps.load.generator import LoadConfig
from ustack.apps.load.histogram import SUMMARY, Histogram
from ustack.apps.load.outcomes import (
    CONNECTION_ERRORS,
    ERRORS,
    EXPLAIN,
    EXPLAIN_STATUS,
    REQUEST_ERRORS,
    STATUS_CLASSES,
)
from ustack.apps.load.results import PHASES, LoadStats
from ustack.apps.load.schedule import LATE_FLOOR

# The generator's CPU share of one core above which it, not the server,
# may have set the pace.
BOTTLENECK: Final = 0.9


def _columns() -> tuple[str, ...]:
    names = [name for name, _ in SUMMARY]
    names.append("max")
    return tuple(names)


# The summary's columns: Histogram.percentiles' keys, in order.
PERCENTILES: Final = _columns()


def latency(h: Histogram) -> dict[str, Any]:
    """A phase's figures in microseconds."""
    out: dict[str, Any] = {"count": h.count, "min": h.min, "mean": round(h.mean(), 1),
                           "stdev": round(h.stdev(), 1)}
    out.update(h.percentiles())
    return out


def build(stats: LoadStats, cfg: LoadConfig, *, url: str, method: str,
          cpu_user: float = 0.0, cpu_system: float = 0.0) -> dict[str, Any]:
    """Everything counted, as a JSON-able dict."""
    st = stats
    elapsed = st.elapsed
    per_s = st.completed / elapsed if elapsed > 0 else 0.0
    cpu = cpu_user + cpu_system
    share = cpu / elapsed if elapsed > 0 else 0.0
    open_loop: dict[str, Any] | None = None
    if cfg.rate is not None:
        open_loop = {
            "rate": cfg.rate, "scheduled": st.scheduled, "sent": st.scheduled - st.never_sent,
            "late": st.late, "never_sent": st.never_sent,
            "late_threshold_ms": round(max(LATE_FLOOR, 1.0 / cfg.rate) * 1000.0, 3),
        }
    sources = [{"ip": ip, "connections": st.src_conns[i], "completed": st.src_completed[i],
                "errors": st.src_errors[i]} for i, ip in enumerate(cfg.sources)]
    errors = {k: st.errors[k] for k in ERRORS}
    return {
        "url": url,
        "target": f"{cfg.ip}:{cfg.port}",
        "method": method,
        "mode": {
            "loop": "open" if cfg.rate is not None else "closed",
            "keep_alive": not cfg.close, "pipeline": cfg.pipeline, "rate": cfg.rate,
            "connections": cfg.connections, "duration": cfg.duration,
            "requests": cfg.requests, "timeout": cfg.timeout,
        },
        "elapsed": round(elapsed, 6),
        "connections": {
            "requested": cfg.connections, "held_max": st.held_max, "opened": st.opened,
            "established": st.established, "server_closes": st.server_closes,
            "syn_retransmits": st.syn_retransmits,
        },
        "requests": {
            "sent": st.sent, "completed": st.completed, "failed": st.failed,
            "unfinished": st.unfinished, "succeeded": st.succeeded,
            "per_second": round(per_s, 2),
        },
        "responses": {k: st.status[k] for k in STATUS_CLASSES},
        "errors": errors,
        "errors_total": sum(errors.values()),
        "malformed": dict(sorted(st.malformed.items())),
        "open_loop": open_loop,
        "latency_us": {phase: latency(h) for phase, h in st.histograms().items()},
        "bytes": {"in": st.bytes_in, "out": st.bytes_out},
        "cpu": {"user": round(cpu_user, 3), "system": round(cpu_system, 3),
                "share": round(share, 3), "bottleneck": share >= BOTTLENECK},
        "sources": sources,
    }


def _ms(us: int) -> str:
    return f"{us / 1000.0:.3f}"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024.0 or unit == "GB":
            return f"{n:.2f} {unit}"
        n /= 1024.0
    return f"{n:.2f} GB"


def summary(r: dict[str, Any]) -> str:
    """The report as text, every figure from ``r`` (``build``'s dict)."""
    mode = r["mode"]
    loop = f"open loop at {mode['rate']:g} req/s" if mode["loop"] == "open" else "closed loop"
    conn_mode = "keep-alive" if mode["keep_alive"] else "connection per request (--close)"
    if mode["pipeline"] > 1:
        conn_mode += f", {mode['pipeline']} pipelined"
    lines = [f"ustack load {r['method']} {r['url']}: {r['elapsed']:.2f} s, {loop}, {conn_mode}"]
    c = r["connections"]
    lines.append(f"  connections: {c['requested']} requested, {c['held_max']} held at most, "
                 f"{c['opened']} opened, {c['established']} established, "
                 f"{c['server_closes']} closed by the server, "
                 f"{c['syn_retransmits']} SYN retransmissions")
    srcs = r["sources"]
    used = sum(1 for s in srcs if s["connections"])
    span = srcs[0]["ip"] if len(srcs) == 1 else f"{srcs[0]['ip']} .. {srcs[-1]['ip']}"
    lines.append(f"  sources: {len(srcs)} addresses ({span}), {used} used, round-robin")
    q = r["requests"]
    lines.append(f"  requests: {q['sent']} sent, {q['completed']} completed, "
                 f"{q['failed']} failed, {q['unfinished']} unfinished")
    elapsed = r["elapsed"]
    b = r["bytes"]
    rate_in = b["in"] / elapsed if elapsed > 0 else 0.0
    lines.append(f"  Requests/sec: {q['per_second']:.2f}")
    lines.append(f"  Transfer/sec: {_size(rate_in)} ({b['in']} bytes in, {b['out']} out)")
    lines.append("  responses: " + "  ".join(f"{k} {r['responses'][k]}" for k in STATUS_CLASSES))
    lines.append("  latency (ms) " + "".join(f"{name:>10}" for name in PERCENTILES)
                 + f"{'count':>10}")
    for phase in PHASES:
        h = r["latency_us"][phase]
        lines.append(f"    {phase:<10} " + "".join(f"{_ms(h[name]):>10}" for name in PERCENTILES)
                     + f"{h['count']:>10}")
    total = r["errors_total"]
    status_bad = [k for k in ("4xx", "5xx") if r["responses"][k]]
    if not total and not status_bad:
        lines.append("  errors: none")
    else:
        lines.append(f"  errors: {total}")
        fill = {"target": r["target"], "timeout": f"{mode['timeout']:g}",
                "syn_rtx": c["syn_retransmits"]}
        for kind in CONNECTION_ERRORS + REQUEST_ERRORS:
            n = r["errors"][kind]
            if n:
                explain = EXPLAIN[kind].format(**fill)
                if kind == "malformed" and r["malformed"]:
                    explain += " [" + ", ".join(f"{k} {v}" for k, v in r["malformed"].items()) + "]"
                lines.append(f"    {kind:<14} {n:>9}  {explain}")
        for k in status_bad:
            lines.append(f"    {'http_' + k:<14} {r['responses'][k]:>9}  {EXPLAIN_STATUS[k]}")
    o = r["open_loop"]
    if o is not None:
        lines.append(f"  open loop: {o['scheduled']} due, {o['sent']} sent, {o['late']} late "
                     f"(> {o['late_threshold_ms']:g} ms after due), {o['never_sent']} never sent")
    cpu = r["cpu"]
    lines.append(f"  cpu: {cpu['share']:.2f} of one core (user {cpu['user']:.2f} s, "
                 f"system {cpu['system']:.2f} s)")
    if cpu["bottleneck"]:
        lines.append(f"  warning: the generator used {cpu['share'] * 100:.0f}% of one core: "
                     "it, not the server, may have set the pace")
    return "\n".join(lines) + "\n"


def hgrm_files(base: str) -> dict[str, str]:
    """``--hist F``: the file of each phase, ``F`` without a ``.hgrm`` suffix,
    then ``.PHASE.hgrm`` (``lat.hgrm`` -> ``lat.ttlb.hgrm`` ...)."""
    stem = base[:-5] if base.endswith(".hgrm") else base
    return {phase: f"{stem}.{phase}.hgrm" for phase in PHASES}
