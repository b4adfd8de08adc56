"""Build and drive the C load generator (bench/loadgen.c).

The generator is C on purpose: a Python client would measure itself, not the
responder.  It is compiled on demand with ``cc -O2`` into bench/bin/ (git
ignored) and rebuilt when the source is newer than the binary (cbuild.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cbuild import compile_c

BENCH = Path(__file__).resolve().parent
SOURCE = BENCH / "loadgen.c"
BINARY = BENCH / "bin" / "loadgen"


class LoadgenError(RuntimeError):
    """No compiler, a failed build, or a run that printed no result line."""


def build() -> Path:
    """The loadgen binary, compiled first if missing or older than its source."""
    return compile_c(SOURCE, BINARY, error=LoadgenError)


@dataclass(frozen=True, slots=True)
class Result:
    """One client run: ``replies=N ... sent=T cpu=C wait=W``.

    ``cpu`` is the generator's CPU time over wall time while counting,
    ``wait`` its time waiting on a run queue for a CPU (-1: unknown).
    """

    replies: int
    seconds: float
    rate: float
    lost: int
    late: int
    bad: int
    sent: int
    cpu: float
    wait: float


def parse_result(text: str) -> Result:
    """The result line of a client run (the last line starting ``replies=``)."""
    for line in reversed(text.splitlines()):
        if line.startswith("replies="):
            kv = dict(word.split("=", 1) for word in line.split() if "=" in word)
            try:
                return Result(
                    replies=int(kv["replies"]),
                    seconds=float(kv["seconds"]),
                    rate=float(kv["rate"]),
                    lost=int(kv["lost"]),
                    late=int(kv["late"]),
                    bad=int(kv["bad"]),
                    sent=int(kv["sent"]),
                    cpu=float(kv["cpu"]),
                    wait=float(kv["wait"]),
                )
            except (KeyError, ValueError) as exc:
                raise LoadgenError(f"bad loadgen result line: {line!r}") from exc
    raise LoadgenError(f"loadgen printed no result line: {text.strip()[-300:]!r}")


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """What one closed-loop client run does (see loadgen.c for the flags)."""

    mode: str  # "udp" or "icmp"
    addr: str
    port: int = 7
    size: int = 64
    window: int = 768
    seconds: float = 2.0
    warmup: float = 0.25
    count: int = 50_000_000
    timeout_ms: float = 100.0

    def argv(self, binary: Path) -> list[str]:
        return [
            str(binary),
            self.mode,
            "-a",
            self.addr,
            "-p",
            str(self.port),
            "-s",
            str(self.size),
            "-w",
            str(self.window),
            "-t",
            str(self.seconds),
            "-u",
            str(self.warmup),
            "-n",
            str(self.count),
            "-T",
            str(self.timeout_ms),
        ]


def server_argv(binary: Path, addr: str, port: int, seconds: float) -> list[str]:
    """The kernel UDP echo server (recvmmsg/sendmmsg), bounded by ``seconds``."""
    return [str(binary), "server", "-a", addr, "-p", str(port), "-t", str(seconds)]
