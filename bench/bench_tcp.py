"""TCP goodput and short-connection rate: ustack against the Linux kernel.

Three figures per row, each measured by the C tool bench/tcpgen.c running in
the kernel's namespace (so the client is the same for every row):

  recv MB/s   the stack under test receives: ``tcpgen bulk-send`` to a
              discard server (kernel: ``tcpgen server -m discard``; ustack:
              ``--service tcp-discard:9``)
  send MB/s   the stack under test sends: ``tcpgen bulk-recv`` from a source
              (kernel: ``tcpgen server -m source``; ustack: ``tcp-chargen:19``)
  conn/s      connect, send a 64-byte line, read it back, close, with C
              connections in flight (``tcpgen crr``; kernel: ``tcpgen server
              -m echo``; ustack: ``tcp-echo:7``)

Rows:

  kernel veth, offloads on     the reference: both ends of a veth pair are
                               kernel stacks in two namespaces, with the
                               veth's default offloads (TSO/GSO/GRO,
                               checksum); every ratio is to this row
  kernel veth, offloads off    the same with ``ethtool -K ... off`` (context)
  ustack AF_PACKET, off / on   ``ustack up --link packet:VETH`` [``--vnet-hdr``];
                               with offload the veth's offloads are on too
  ustack TAP, off / on         ``ustack up --link tap:NAME`` [``--vnet-hdr``]

Every figure is min / median / max over several runs; runs of the three
figures alternate so drift of a shared machine spreads over all of them.
Client and server are pinned to different cores.  The ustack rows need the
TCP services; a stack that answers "unknown service" is reported and its rows
skipped.  A transfer check follows each ustack row when ``ustack tcp
send``/``recv`` exist: a file sent each way with SHA-256 compared.  Raw
numbers go to bench/results/tcp-<timestamp>.json.

The ustack rows (and the transfer checks) run the compiled build, or with
``--build pure`` the pure-Python one (``USTACK_PURE=1``); a ``build:`` line
says which.  Without the compiled build (not installed) the benchmark stops
with status 1 unless given ``--build pure``.

    python3 bench/bench_tcp.py [--quick] [--runs N] [--seconds S] [--link packet|tap]
                               [--build compiled|pure]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import harness  # bench/harness.py: run as a script, bench/ is on sys.path
import tcpgen
from harness import GEN_BOUND, flush_neighbours

from ustack_testbed import (
    Testbed,
    TestbedError,
    Topology,
    UstackProcess,
    packet_topology,
    tap_topology,
)

ECHO_PORT, DISCARD_PORT, CHARGEN_PORT = 7, 9, 19
# Ports of the kernel servers the transfer checks talk to.
CHECK_SINK_PORT, CHECK_SOURCE_PORT = 5009, 5019
METRICS = ("recv", "send", "crr")
LINKS = ("packet", "tap")
LINK_TITLES = {"veth": "veth", "packet": "AF_PACKET", "tap": "TAP"}
REFERENCE = ("kernel", "veth", True)
# Goals from issue 3: bulk with offload at least this share of the
# reference; short connections at least this many per second.
# Issue 10's goals: bulk with offload at least 0.9 of kernel-to-kernel each way;
# short connections at least 15,000 per second on one core.
GOAL_BULK_SHARE = 0.9
GOAL_CONN_RATE = 15000.0
CHECK_SEED = 20
CRR_LINE = 64  # bytes per short connection's line, newline included
# A `ustack tcp` transfer check gives up after this many seconds without
# progress, and in all after CHECK_BASE seconds plus one per CHECK_RATE
# bytes: a transfer slower than 1 MB/s is a failure, not worth waiting for.
CHECK_IDLE = 10
CHECK_BASE = 15.0
CHECK_RATE = 1e6
# Server errors that are the normal end of a benchmark connection: the
# client aborts what is in flight when its time is up.
EXPECTED_SERVER_ERRORS = ("ECONNRESET", "EPIPE")


RowKey = tuple[str, str, bool]  # (stack, link, offload)


@dataclass(slots=True)
class Cell(harness.Figure):
    """All runs of one figure of one row."""

    values: list[float] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    foreign: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    raw: list[dict[str, Any]] = field(default_factory=list)

    def samples(self) -> list[float]:
        return self.values


@dataclass(slots=True)
class Config:
    runs: int
    seconds: float
    warmup: float
    concurrency: int
    links: tuple[str, ...]
    offloads: tuple[bool, ...]
    verify_bytes: int
    gen_cpu: int | None
    resp_cpu: int | None
    build: str = "compiled"  # the ustack build the ustack rows run


@dataclass(slots=True)
class Report:
    config: Config
    cells: dict[tuple[RowKey, str], Cell] = field(default_factory=dict)
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ustack_skip: str | None = None
    build: str = ""  # ``ustack --version``'s words for the build measured

    def cell(self, row: RowKey, metric: str) -> Cell:
        return self.cells.setdefault((row, metric), Cell())

    def median(self, row: RowKey, metric: str) -> float | None:
        c = self.cells.get((row, metric))
        return None if c is None else c.median()


# --------------------------------------------------------------------------
# One figure
# --------------------------------------------------------------------------


def client_argv(cfg: Config, metric: str, addr: str) -> list[str]:
    binary = tcpgen.build()
    if metric == "crr":
        spec = tcpgen.CrrSpec(
            addr,
            ECHO_PORT,
            concurrency=cfg.concurrency,
            size=CRR_LINE,
            seconds=cfg.seconds,
            warmup=cfg.warmup,
        )
        return spec.argv(binary)
    mode, port = ("bulk-send", DISCARD_PORT) if metric == "recv" else ("bulk-recv", CHARGEN_PORT)
    bulk = tcpgen.BulkSpec(mode, addr, port, seconds=cfg.seconds, warmup=cfg.warmup)
    return bulk.argv(binary)


def run_once(report: Report, topo: Topology, row: RowKey, metric: str, server_pid: int) -> None:
    """One client run against the server ``server_pid`` answering at the stack IP."""
    cfg = report.config
    cell = report.cell(row, metric)
    try:
        meter = harness.UsageMeter(server_pid)
    except FileNotFoundError:
        cell.failures.append(f"server (pid {server_pid}) is gone")
        return
    argv = [*harness.taskset(cfg.gen_cpu), *client_argv(cfg, metric, topo.stack_ip)]
    try:
        proc = topo.peer_ns.run(argv, check=False, timeout=cfg.seconds + cfg.warmup + 30)
    except TestbedError as exc:  # the client itself hung: record, go on
        cell.failures.append(str(exc))
        return
    usage = meter.stop()  # a server that died during the run used no CPU since
    try:
        if metric == "crr":
            crr = tcpgen.parse_crr(proc.stdout)
            cell.raw.append(asdict(crr))
            cell.values.append(crr.rate)
            cell.client_cpu.append(crr.cpu)
            if crr.fail:
                errors = ",".join(f"{k}:{v}" for k, v in crr.errors.items())
                cell.failures.append(f"{crr.fail} failed ({errors or '-'}; bad {crr.bad})")
        else:
            bulk = tcpgen.parse_bulk(proc.stdout)
            cell.raw.append(asdict(bulk))
            if not bulk.ok:
                cell.failures.append(f"ended by {bulk.end} after {bulk.total} bytes")
                return
            cell.values.append(bulk.mb_per_s)
            cell.client_cpu.append(bulk.cpu)
    except tcpgen.TcpgenError as exc:
        cell.failures.append(f"{exc} {proc.stderr.strip()[-200:]}")
        return
    cell.server_cpu.append(usage.cpu)
    cell.foreign.append(usage.foreign)


def measure_row(report: Report, topo: Topology, row: RowKey, pids: dict[str, int]) -> None:
    """All runs of the three figures of ``row``; ``pids``: server pid by metric."""
    for _ in range(report.config.runs):
        for metric in METRICS:
            run_once(report, topo, row, metric, pids[metric])


def budget(cfg: Config) -> float:
    """A hard time bound for one server process (it stops by itself)."""
    return cfg.runs * len(METRICS) * (cfg.seconds + cfg.warmup + 7.0) + 60.0


# --------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------


def set_veth_offloads(topo: Topology, on: bool) -> None:
    """Both ends of the AF_PACKET topology's veth: offloads on (the veth
    default) or off (what a stack without the virtio-net header needs)."""
    for ns, iface in ((topo.peer_ns, topo.peer_if), (topo.stack_ns, topo.stack_if)):
        if on:
            ns.run(["ethtool", "-K", iface, "tx", "on", "tso", "on", "gso", "on", "gro", "on"])
        else:
            ns.disable_offloads(iface)


def measure_kernel(report: Report, topo: Topology, offload: bool) -> None:
    """The stack side's veth end with the kernel's own TCP and tcpgen servers."""
    cfg = report.config
    row: RowKey = ("kernel", "veth", offload)
    set_veth_offloads(topo, offload)
    flush_neighbours(topo)
    servers: dict[str, tcpgen.ServerProcess] = {}
    try:
        for metric, mode, port in (
            ("crr", "echo", ECHO_PORT),
            ("recv", "discard", DISCARD_PORT),
            ("send", "source", CHARGEN_PORT),
        ):
            spec = tcpgen.ServerSpec(mode, topo.stack_ip, port, seconds=budget(cfg))
            servers[metric] = tcpgen.ServerProcess(
                spec, popen=topo.stack_ns.popen, prefix=harness.taskset(cfg.resp_cpu)
            )
        measure_row(report, topo, row, {m: s.pid for m, s in servers.items()})
        if cfg.verify_bytes:
            check_kernel_transfer(report, topo, row)
    finally:
        for metric, server in servers.items():
            summary = server.stop()
            # Resets are expected (the clients abort what is in flight at
            # the end of a run); anything else is worth a look.
            odd = {k: v for k, v in summary.errors.items() if k not in EXPECTED_SERVER_ERRORS}
            if odd:
                report.notes.append(f"kernel {metric} server errors: {odd}")


def start_ustack(report: Report, topo: Topology, offload: bool) -> UstackProcess | None:
    extra = [
        "--service",
        f"tcp-echo:{ECHO_PORT}",
        "--service",
        f"tcp-discard:{DISCARD_PORT}",
        "--service",
        f"tcp-chargen:{CHARGEN_PORT}",
        "--name",
        f"bench-tcp-{topo.stack_if}",
    ]
    if offload:
        extra.append("--vnet-hdr")
    build = report.config.build
    try:
        proc = topo.start_ustack(*extra, timeout=20.0, env=harness.build_env(build))
    except TestbedError as exc:
        text = str(exc)
        if "unknown service" in text:
            report.ustack_skip = (
                "ustack rows skipped: `ustack up` has no TCP services yet "
                "(unknown service tcp-echo/tcp-discard/tcp-chargen)"
            )
        else:
            last = text.strip().splitlines()[-1:] or [""]
            report.notes.append(
                f"ustack on {topo.kind} (offload {offload}) did not start: {last[0]}"
            )
        return None
    try:
        harness.check_running_build(proc.pid, build, f"ustack up on {topo.kind}")
    except harness.BuildUnavailable:
        proc.kill()
        raise
    return proc


def measure_ustack(report: Report, topo: Topology, offload: bool) -> None:
    row: RowKey = ("ustack", topo.kind, offload)
    if topo.kind == "packet":
        set_veth_offloads(topo, offload)
    flush_neighbours(topo)
    proc = start_ustack(report, topo, offload)
    if proc is None:
        return
    key = f"{topo.kind}/offload-{'on' if offload else 'off'}"
    try:
        harness.pin(proc.pid, report.config.resp_cpu)
        measure_row(report, topo, row, dict.fromkeys(METRICS, proc.pid))
        record_device_stats(report, proc, key)
    finally:
        try:
            report.counters[key] = proc.stop(timeout=15)
        except TestbedError as exc:
            report.notes.append(f"ustack on {topo.kind} did not stop cleanly: {exc}")
    if report.config.verify_bytes:
        flush_neighbours(topo)
        check_ustack_transfers(report, topo, row)


def record_device_stats(report: Report, proc: UstackProcess, key: str) -> None:
    """The link device's counters (not in the stack's exit output): a frame
    truncated by a receive ring explains a transfer that stalls."""
    try:
        interfaces = proc.report().get("interfaces") or []
    except TestbedError as exc:
        report.notes.append(f"ustack {key}: no stats: {exc}")
        return
    for iface in interfaces:
        device = iface.get("device") if isinstance(iface, dict) else None
        if not isinstance(device, dict):
            continue
        stats = {str(k): v for k, v in device.items() if isinstance(v, int)}
        report.counters[f"{key}/device"] = stats
        if stats.get("rx_truncated"):
            report.notes.append(
                f"ustack {key}: {stats['rx_truncated']} received frames truncated by the "
                "link (rx_truncated): super-frames larger than the receive ring's slots"
            )


# --------------------------------------------------------------------------
# Transfer checks (SHA-256 end to end)
# --------------------------------------------------------------------------


def check_kernel_transfer(report: Report, topo: Topology, row: RowKey) -> None:
    """One hashed transfer each way between the kernels: the tool's own check."""
    n = report.config.verify_bytes
    want = tcpgen.pattern_sha256(CHECK_SEED, n)
    binary = tcpgen.build()
    for direction, mode, server_mode in (
        ("recv", "bulk-send", "discard"),
        ("send", "bulk-recv", "source"),
    ):
        spec = tcpgen.ServerSpec(
            server_mode,
            topo.stack_ip,
            CHECK_SINK_PORT,
            seconds=60,
            max_conns=1,
            bytes_per_conn=n if server_mode == "source" else None,
            hash=True,
            verbose=True,
            seed=CHECK_SEED,
        )
        with tcpgen.ServerProcess(spec, popen=topo.stack_ns.popen) as server:
            bulk = tcpgen.BulkSpec(
                mode,
                topo.stack_ip,
                CHECK_SINK_PORT,
                seconds=60,
                warmup=0,
                nbytes=n if mode == "bulk-send" else None,
                hash=True,
                seed=CHECK_SEED,
            )
            proc = topo.peer_ns.run(bulk.argv(binary), check=False, timeout=90)
            summary = server.wait(30)
        got = tcpgen.parse_bulk(proc.stdout)
        conn = summary.conns[0] if summary.conns else None
        far = None if conn is None else (conn.sha256_rx if mode == "bulk-send" else conn.sha256_tx)
        ok = got.sha256 == want == far and got.total == n
        report.checks.append(
            {
                "row": list(row),
                "direction": direction,
                "tool": "tcpgen",
                "bytes": got.total,
                "ok": ok,
                "mb_per_s": got.mb_per_s,
            }
        )


def sha256_of_file(path: Path) -> str | None:
    if not path.exists():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def ustack_tcp_help(build: str) -> str | None:
    """``ustack tcp send --help`` text, or None when there is no ``ustack tcp``."""
    proc = subprocess.run(
        [sys.executable, "-m", "ustack.cli", "tcp", "send", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env=harness.build_env(build),
    )
    return proc.stdout if proc.returncode == 0 else None


_MBPS_RE = re.compile(r"([0-9.]+)\s*MB/s")


def check_ustack_transfers(report: Report, topo: Topology, row: RowKey) -> None:
    """``ustack tcp send`` to a kernel sink, ``ustack tcp recv`` from a kernel
    source: the file's SHA-256 must arrive intact both ways."""
    build = report.config.build
    help_text = ustack_tcp_help(build)
    if help_text is None:
        note = "transfer checks skipped: no `ustack tcp send/recv` yet"
        if note not in report.notes:
            report.notes.append(note)
        return
    n = report.config.verify_bytes
    want = tcpgen.pattern_sha256(CHECK_SEED, n)
    limit = CHECK_BASE + n / CHECK_RATE
    link_args = ["--link", topo.link, "--ip", topo.stack_cidr]
    if topo.kind == "tap":
        link_args += ["--host-ip", topo.peer_cidr]
    if row[2] and "--vnet-hdr" in help_text:
        link_args.append("--vnet-hdr")
    if "--timeout" in help_text:
        # Give up after this long without progress: a stalled transfer must
        # cost seconds, not the whole time bound below.
        link_args += ["--timeout", str(CHECK_IDLE)]
    with tempfile.TemporaryDirectory(prefix="bench-tcp-") as tmp:
        src = Path(tmp) / "send.bin"
        src.write_bytes(tcpgen.pattern_bytes(CHECK_SEED, n))
        dst = Path(tmp) / "recv.bin"
        for direction, sub, server_mode, port, path in (
            ("send", "send", "discard", CHECK_SINK_PORT, src),
            ("recv", "recv", "source", CHECK_SOURCE_PORT, dst),
        ):
            spec = tcpgen.ServerSpec(
                server_mode,
                "0.0.0.0",
                port,
                seconds=limit + 40,
                max_conns=1,
                bytes_per_conn=n if server_mode == "source" else None,
                hash=True,
                verbose=True,
                seed=CHECK_SEED,
            )
            entry: dict[str, Any] = {"row": list(row), "direction": direction, "tool": "ustack tcp"}
            cmd = [sys.executable, "-m", "ustack.cli", "tcp", sub, *link_args]
            cmd += ["--to", f"{topo.peer_ip}:{port}", str(path)]
            proc: subprocess.CompletedProcess[str] | None = None
            try:
                # The wildcard address: on a TAP the kernel's address only
                # exists once `ustack tcp` has created the device.
                with tcpgen.ServerProcess(spec, popen=topo.peer_ns.popen) as server:
                    t0 = time.monotonic()
                    proc = topo.stack_ns.run(
                        cmd, check=False, timeout=limit, env=harness.build_env(build)
                    )
                    entry["seconds"] = time.monotonic() - t0
                    summary = server.wait(30) if proc.returncode == 0 else server.stop()
            except (TestbedError, tcpgen.TcpgenError) as exc:
                said = "" if proc is None else (proc.stderr.strip() or proc.stdout.strip())
                entry.update(ok=False, error=f"{exc} {said}"[-300:])
                report.checks.append(entry)
                continue
            conn = summary.conns[0] if summary.conns else None
            if direction == "send":
                got = None if conn is None else conn.sha256_rx
                size = 0 if conn is None else conn.rx
            else:
                got = sha256_of_file(dst)
                size = dst.stat().st_size if dst.exists() else 0
            m = _MBPS_RE.search(proc.stdout + proc.stderr)
            entry.update(
                ok=proc.returncode == 0 and got == want and size == n,
                bytes=size,
                exit=proc.returncode,
                mb_per_s=float(m.group(1)) if m else None,
            )
            if proc.returncode != 0:
                entry["error"] = (proc.stderr.strip() or proc.stdout.strip())[-300:]
            report.checks.append(entry)


# --------------------------------------------------------------------------


def measure(cfg: Config) -> Report:
    report = Report(cfg)
    # Before anything is measured: the build asked for must be there.
    report.build = harness.ustack_build(cfg.build)
    skip = harness.ustack_available()
    if skip:
        report.ustack_skip = skip
    tcpgen.build()
    with Testbed() as tb:
        topo = packet_topology(tb)
        # The reference: the kernel on both ends of the same veth pair.
        topo.stack_ns.add_address(topo.stack_if, topo.stack_cidr)
        try:
            for offload in (True, False):
                measure_kernel(report, topo, offload)
        finally:
            topo.stack_ns.ip("addr", "del", topo.stack_cidr, "dev", topo.stack_if, check=False)
        if "packet" in cfg.links:
            for offload in cfg.offloads:
                if report.ustack_skip is None:
                    measure_ustack(report, topo, offload)
        if "tap" in cfg.links:
            tap = tap_topology(tb)
            for offload in cfg.offloads:
                if report.ustack_skip is None:
                    measure_ustack(report, tap, offload)
    return report


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def fmt_value(metric: str, x: float) -> str:
    if metric == "crr":
        return f"{x / 1000:.2f}k"
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}"


def fmt_cell(report: Report, row: RowKey, metric: str) -> str:
    cell = report.cells.get((row, metric))
    s = None if cell is None else cell.summary()
    if cell is None or s is None:
        return "-"
    mark = " ^" if statistics.median(cell.client_cpu) >= GEN_BOUND else ""
    fail = " !" if cell.failures else ""
    return " / ".join(fmt_value(metric, v) for v in s) + mark + fail


def fmt_ratio(report: Report, row: RowKey, metric: str) -> str:
    a, b = report.median(row, metric), report.median(REFERENCE, metric)
    return "-" if a is None or not b else f"{a / b:.2f}"


def rows(report: Report) -> list[RowKey]:
    out: list[RowKey] = [("kernel", "veth", True), ("kernel", "veth", False)]
    for link in LINKS:
        if link in report.config.links:
            out += [("ustack", link, off) for off in report.config.offloads]
    return out


HEADERS = ["stack", "link", "offload", "recv MB/s", "send MB/s", "conn/s", "recv", "send", "conn"]


def table(report: Report) -> list[list[str]]:
    lines = []
    for row in rows(report):
        stack, link, offload = row
        lines.append(
            [
                stack,
                LINK_TITLES[link],
                "on" if offload else "off",
                *(fmt_cell(report, row, m) for m in METRICS),
                *(fmt_ratio(report, row, m) for m in METRICS),
            ]
        )
    return lines


def goal_lines(report: Report) -> list[str]:
    out = []
    ustack_rows = [r for r in rows(report) if r[0] == "ustack"]
    bulk = []
    for row in ustack_rows:
        if not row[2]:
            continue
        shares = []
        for metric in ("recv", "send"):
            a, b = report.median(row, metric), report.median(REFERENCE, metric)
            if a is not None and b:
                shares.append((metric, a / b))
        if shares:
            met = all(s >= GOAL_BULK_SHARE for _, s in shares)
            parts = ", ".join(f"{m} {s:.0%}" for m, s in shares)
            bulk.append(f"{LINK_TITLES[row[1]]} {parts}: {'met' if met else 'NOT met'}")
    crr = []
    for row in ustack_rows:
        rate = report.median(row, "crr")
        if rate is not None:
            met = rate >= GOAL_CONN_RATE
            label = f"{LINK_TITLES[row[1]]}{' +offload' if row[2] else ''}"
            crr.append(f"{label} {rate:.0f}/s: {'met' if met else 'NOT met'}")
    out.append(
        f"goal: bulk with offload >= {GOAL_BULK_SHARE:.0%} of kernel veth (offloads on): "
        + ("; ".join(bulk) if bulk else "not measured")
    )
    out.append(
        f"goal: short connections >= {GOAL_CONN_RATE:.0f}/s: "
        + ("; ".join(crr) if crr else "not measured")
    )
    return out


def figure_label(row: RowKey, metric: str) -> str:
    return f"{row[0]}/{row[1]}/{'on' if row[2] else 'off'}/{metric}"


def footnotes(report: Report) -> list[str]:
    cfg = report.config
    lines = [
        harness.build_line(report.build, "the ustack rows and transfer checks"),
        harness.timing_note(cfg, "ratios are medians over the kernel veth row with offloads on"),
        "recv: the stack under test receives (tcpgen bulk-send -> discard); send: it sends "
        "(tcpgen bulk-recv <- source/chargen); MB = 10^6 bytes, acknowledged payload",
        f"conn: connect, {CRR_LINE}-byte line out and back, close; {cfg.concurrency} connections "
        "in flight; the client closes first (TIME-WAIT on the client, tcp_tw_reuse=1)",
        harness.pinning_note(cfg, "client (tcpgen)", "server"),
    ]
    if any(
        c.client_cpu and statistics.median(c.client_cpu) >= GEN_BOUND for c in report.cells.values()
    ):
        lines.append(
            f"^ the client used >= {GEN_BOUND:.0%} of its core: a lower bound on the server"
        )
    for (row, metric), c in report.cells.items():
        if c.failures:
            what = f"{row[0]}/{row[1]}/offload-{'on' if row[2] else 'off'}/{metric}"
            lines.append(f"! {what}: {len(c.failures)} run(s) with failures: {c.failures[0]}")
    cells = {figure_label(row, metric): c for (row, metric), c in report.cells.items()}
    lines += harness.cpu_share_note(
        "client/server",
        (
            (name, statistics.median(c.client_cpu), statistics.median(c.server_cpu))
            for name, c in cells.items()
            if c.client_cpu and c.server_cpu
        ),
    )
    lines += harness.busy_warning({name: max(c.foreign) for name, c in cells.items() if c.foreign})
    for check in report.checks:
        row = check["row"]
        what = f"{row[0]}/{row[1]}/offload-{'on' if row[2] else 'off'} {check['direction']}"
        rate = check.get("mb_per_s")
        speed = f", {rate:.1f} MB/s" if isinstance(rate, float) else ""
        verdict = "sha256 ok" if check.get("ok") else f"FAILED {check.get('error', '')}".strip()
        lines.append(
            f"transfer check ({check['tool']}) {what}: {check.get('bytes', 0)} bytes, "
            f"{verdict}{speed}"
        )
    if report.ustack_skip:
        lines.append(report.ustack_skip)
    lines += report.notes
    return lines


def print_report(report: Report) -> None:
    harness.print_table(
        "TCP: ustack vs the kernel (goodput MB/s, short connections /s; ratios to kernel veth)",
        HEADERS,
        table(report),
        label_columns=3,
    )
    for line in goal_lines(report):
        print(f"  {line}")
    for line in footnotes(report):
        print(f"  {line}")


def to_json(report: Report) -> dict[str, Any]:
    cells = []
    for (row, metric), c in report.cells.items():
        s = c.summary()
        cells.append(
            {
                "stack": row[0],
                "link": row[1],
                "offload": row[2],
                "metric": metric,
                "min": s[0] if s else None,
                "median": s[1] if s else None,
                "max": s[2] if s else None,
                "ratio_to_reference": (
                    None
                    if s is None or not report.median(REFERENCE, metric)
                    else s[1] / (report.median(REFERENCE, metric) or 1.0)
                ),
                "runs": c.raw,
                "server_cpu": c.server_cpu,
                "foreign_load": c.foreign,
                "failures": c.failures,
            }
        )
    return harness.result_document(
        "tcp",
        report.config,
        build=report.build,
        cells=cells,
        checks=report.checks,
        counters=report.counters,
        goals=goal_lines(report),
        notes=footnotes(report),
    )


# --------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> Config:
    p = argparse.ArgumentParser(description="TCP goodput and connection rate: ustack vs kernel")
    harness.add_run_options(p, LINKS)
    p.add_argument("--concurrency", type=int, default=32, help="crr connections in flight (32)")
    p.add_argument(
        "--offload",
        choices=("off", "on"),
        action="append",
        help="only ustack rows with this offload setting (repeatable)",
    )
    p.add_argument(
        "--verify-mb",
        type=float,
        help="size of the sha256-checked transfers in MB (default 20, quick 4; 0: none)",
    )
    harness.add_build_option(p)
    a = p.parse_args(argv)
    t = harness.run_timing(p, a)
    verify_mb = a.verify_mb if a.verify_mb is not None else (4.0 if a.quick else 20.0)
    if not 1 <= a.concurrency <= 4096:
        p.error("--concurrency must be 1..4096")
    if not 0 <= verify_mb <= 1000:
        p.error("--verify-mb must be in [0, 1000]")
    offloads = tuple(dict.fromkeys(o == "on" for o in (a.offload or ["off", "on"])))
    return Config(
        runs=t.runs,
        seconds=t.seconds,
        warmup=t.warmup,
        concurrency=a.concurrency,
        links=tuple(a.link or LINKS),
        offloads=offloads,
        verify_bytes=int(verify_mb * 1e6),
        gen_cpu=t.gen_cpu,
        resp_cpu=t.resp_cpu,
        build=a.build,
    )


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    return harness.run_benchmark(
        "bench_tcp",
        lambda: measure(cfg),
        print_report,
        to_json,
        errors=(tcpgen.TcpgenError,),
        tools=("ethtool",),
    )


if __name__ == "__main__":
    sys.exit(main())
