"""Per-connection settings: the layer's defaults, changed per socket."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final


@dataclass(slots=True)
class TcpConfig:
    """What a connection is told, not what it learns (that is the TCB's).

    The layer keeps one as its defaults (``TcpLayer.config``); every
    connection gets a copy, changed by the listener's or the socket's options
    (``TcpLayer.listen(**options)``, ``connect(**options)``, socket options).
    """

    mss: int = 1460  # the MSS we advertise: MTU - 40 (RFC 9293 3.7.1)
    rcvbuf: int = 1 << 20
    # Receive buffer autotuning (Linux's tcp_moderate_rcvbuf, ceiling
    # tcp_rmem[2]): while the application reads what arrives, the buffer,
    # and so the window, grows from rcvbuf up to this (rcvq.py); the window
    # scale is chosen for it.  0 (or not above rcvbuf): a fixed buffer.
    # Setting rcvbuf as an option (SO_RCVBUF) fixes it, as Linux's lock.
    rcvbuf_max: int = 6 << 20
    sndbuf: int = 1 << 20
    # Send buffer autotuning (Linux's tcp_sndbuf_expand, ceiling
    # tcp_wmem[2]): while the congestion window grows, the buffer grows to
    # hold twice it, up to this, so that a path that holds more than
    # sndbuf is not left waiting on the application's next write (a 20 MB
    # send over 20 +- 10 ms: 1.68 s with 1 MB fixed, 1.04 s with 4 MB;
    # the kernel 0.96 s).  0 (or not above sndbuf): a fixed buffer;
    # setting sndbuf as an option (SO_SNDBUF) fixes it, as Linux's lock.
    sndbuf_max: int = 4 << 20
    nodelay: bool = False
    cc: str = "cubic"
    sack: bool = True
    timestamps: bool = True
    window_scaling: bool = True
    delack: float = 0.040  # RFC 1122 4.2.3.2: < 0.5 s; Linux's minimum
    initial_rto: float = 1.0
    min_rto: float = 0.2
    max_rto: float = 120.0
    # RFC 9293 MUST-23: at least 3 minutes for a SYN; 7 retries give up at
    # about 4 minutes (Linux's default of 6 stops at 127 s, short of it).
    syn_retries: int = 7
    synack_retries: int = 6  # a passive half-open connection holds a backlog slot: 127 s
    retries1: int = 3  # RFC 9293 3.8.3: R1, after which the application hears a soft error
    retries2: int = 15  # R2 (Linux tcp_retries2): well beyond the 100 s MUST-20 minimum
    msl: float = 30.0  # TIME-WAIT lasts 2*MSL = 60 s, as on Linux
    fin_timeout: float = 60.0  # orphaned FIN-WAIT-2 is reaped after this (Linux)
    keepalive: bool = False
    keepalive_idle: float = 7200.0  # RFC 1122 4.2.3.6: >= 2 hours by default
    keepalive_interval: float = 75.0
    keepalive_probes: int = 9
    # Loss recovery with SACK: RACK (RFC 8985 6) marks losses, and a tail
    # loss probe (RFC 8985 7) goes before the RTO; as Linux's
    # net.ipv4.tcp_recovery=1 and tcp_early_retrans=3, with Proportional
    # Rate Reduction (RFC 6937) for how much goes during recovery.  With
    # rack off, a SACK sender uses RFC 6675 alone (DupThresh, IsLost,
    # NextSeg, cwnd - pipe), as FreeBSD does by default.
    rack: bool = True
    tlp: bool = True
    # HyStart++ (RFC 9406) in the initial slow start: off by default.  On
    # the impairment relay's 20 +- 10 ms jitter its delay test fired every
    # round and a 20 MB send took 4.3 s against 1.7 s without it (bench_loss,
    # 3 runs); Linux runs the older HyStart in CUBIC, not this.
    hystart: bool = False
    max_segment: int = 0  # largest payload per segment handed down (TSO); 0 = one MSS
    # The IPv4 header of our segments (IP_TTL, IP_TOS): the TTL is
    # configurable (RFC 9293 3.9.1.9, MUST-49), the Differentiated Services
    # field is the application's (MUST-48) and may change on a live
    # connection (SHLD-21); 64 is ustack.net.ipv4.DEFAULT_TTL, Linux's.
    ttl: int = 64
    tos: int = 0

    def copy(self) -> TcpConfig:
        """A copy for one connection, field by field (``dataclasses.replace``
        took 4 us of every connection's setup; this is one native call).
        tests/unit/test_tcp_stack.py checks it copies every field."""
        return TcpConfig(
            self.mss, self.rcvbuf, self.rcvbuf_max, self.sndbuf, self.sndbuf_max, self.nodelay,
            self.cc, self.sack, self.timestamps, self.window_scaling, self.delack, self.initial_rto,
            self.min_rto, self.max_rto, self.syn_retries, self.synack_retries, self.retries1,
            self.retries2, self.msl, self.fin_timeout, self.keepalive, self.keepalive_idle,
            self.keepalive_interval, self.keepalive_probes, self.rack, self.tlp, self.hystart,
            self.max_segment, self.ttl, self.tos
        )



# The names ``TcpLayer.connect``/``listen`` and ``set_options`` accept.
OPTION_NAMES: Final = frozenset(f.name for f in fields(TcpConfig))


def apply_options(cfg: TcpConfig, options: dict[str, object]) -> None:
    """Set ``options`` (checked names) on a connection's ``cfg``.  A receive
    or send buffer the application chose is not autotuned (Linux: SO_RCVBUF
    and SO_SNDBUF set SOCK_RCVBUF_LOCK, SOCK_SNDBUF_LOCK), unless it gave
    the ceiling too."""
    for name, value in options.items():
        if name not in OPTION_NAMES:
            raise TypeError(f"unknown TCP option {name!r}")
        setattr(cfg, name, value)
    if "rcvbuf" in options and "rcvbuf_max" not in options:
        cfg.rcvbuf_max = 0
    if "sndbuf" in options and "sndbuf_max" not in options:
        cfg.sndbuf_max = 0
