"""Drawing a ``Series`` with matplotlib (``pip install ustack[plot]``).

Two panels sharing the time axis.  Above, the time-sequence graph in
tcptrace's style: each segment sent is a vertical bar from its first to
its last sequence number at the time it left (black; retransmissions
red), the cumulative ACK a green step line, the receive window's right
edge (ACK + advertised window) a yellow step line above it, SACK blocks
purple bars, and timeouts and recoveries marked along the top.  Below,
cwnd and ssthresh (bytes) with srtt (ms) on a second axis; for a capture,
which does not show the sender's cwnd, the bytes in flight instead.  A
trace of the receiving side only (``Series.side``) shows the text as it
arrived, RCV.NXT, our window and the blocks held beyond a gap, and srtt.
"""

from __future__ import annotations

from typing import Any

from ustack.plot.series import Series

FORMATS = ("png", "svg", "pdf")

_EVENT_STYLE = {
    "rto": ("tab:red", "RTO"),
    "fast-retransmit": ("tab:orange", "fast rtx"),
    "recovery": ("tab:orange", "recovery"),
    "tlp": ("tab:blue", "TLP"),
    "undo": ("tab:gray", "undo"),
}


class MatplotlibMissing(Exception):
    pass


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise MatplotlibMissing() from None
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt
    return plt


def _steps(points: list[tuple[float, int]], end: float) -> tuple[list[float], list[int]]:
    """x, y of a step line that holds its last value until ``end``."""
    xs = [t for t, _ in points]
    ys = [v for _, v in points]
    if points and end > xs[-1]:
        xs.append(end)
        ys.append(ys[-1])
    return xs, ys


def draw(s: Series, out: str, title: str | None = None) -> None:
    """Draw ``s`` into the file ``out`` (its extension picks the format)."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(11, 8),
                                      gridspec_kw={"height_ratios": [3, 1.4]})
    end = max([t for t, _, _ in s.sent + s.retransmitted]
              + [t for t, _ in s.acks + s.cwnd + s.inflight] + [0.0])
    receiver = s.side == "receiver"  # drawn from the receiving side's trace
    if s.window:
        x, y = _steps(s.window, end)
        top.step(x, y, where="post", color="gold", lw=1,
                 label="our receive window" if receiver else "receive window")
    if s.sent:
        top.vlines([t for t, _, _ in s.sent], [a for _, a, _ in s.sent],
                   [b for _, _, b in s.sent], colors="black", lw=1,
                   label=f"{'received' if receiver else 'sent'} ({len(s.sent)})")
    if s.retransmitted:
        # Bars and a mark on each: a resent segment is a few pixels tall.
        r = s.retransmitted
        top.vlines([t for t, _, _ in r], [a for _, a, _ in r], [b for _, _, b in r],
                   colors="red", lw=1.6)
        top.plot([t for t, _, _ in r], [b for _, _, b in r], "rD", ms=3,
                 label=f"retransmitted ({len(r)})")
    if s.sacks:
        top.vlines([t for t, _, _ in s.sacks], [a for _, a, _ in s.sacks],
                   [b for _, _, b in s.sacks], colors="tab:purple", lw=0.8, alpha=0.5,
                   label="held beyond a gap" if receiver else "SACKed")
    if s.acks:
        x, y = _steps(s.acks, end)
        top.step(x, y, where="post", color="green", lw=1,
                 label="RCV.NXT (our ACK)" if receiver else "ACK")
    seen: set[str] = set()
    for t, kind in s.events:
        color, name = _EVENT_STYLE.get(kind, ("tab:gray", kind))
        if kind == "recovery-end":
            continue
        top.axvline(t, color=color, lw=0.6, ls="--", alpha=0.6,
                    label=name if name not in seen else None)
        seen.add(name)
    top.set_ylabel("sequence number (relative)")
    if top.get_legend_handles_labels()[0]:
        top.legend(loc="upper left", fontsize="small")
    top.grid(True, alpha=0.3)
    top.set_title(title or f"{s.conn.label} ({s.source}"
                  f"{', the receiving side' if receiver else ''})")
    if s.source == "trace" and not receiver:
        if s.cwnd:
            x, y = _steps(s.cwnd, end)
            bottom.step(x, y, where="post", color="tab:blue", label="cwnd")
        if s.ssthresh:
            x, y = _steps(s.ssthresh, end)
            bottom.step(x, y, where="post", color="tab:orange", label="ssthresh")
    if s.inflight:
        x, y = _steps(s.inflight, end)
        bottom.step(x, y, where="post", color="tab:gray", lw=0.8,
                    label="in flight" if s.source == "trace" else "in flight (estimated)")
    bottom.set_ylabel("bytes")
    bottom.set_xlabel("time (s)")
    bottom.grid(True, alpha=0.3)
    handles, labels = bottom.get_legend_handles_labels()
    if s.srtt:
        rtt = bottom.twinx()
        rtt.step([t for t, _ in s.srtt], [v * 1000 for _, v in s.srtt], where="post",
                 color="tab:green", lw=1, label="srtt")
        rtt.set_ylabel("srtt (ms)")
        h2, l2 = rtt.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if handles:
        bottom.legend(handles, labels, loc="upper left", fontsize="small")
    fig.tight_layout()
    try:
        fig.savefig(out)
    finally:
        plt.close(fig)
