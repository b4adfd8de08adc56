"""``sysctl`` lines of a script, mapped onto ustack's TCP defaults.

The FreeBSD suite starts every script by setting the system defaults it
relies on (`` `sysctl -w net.inet.tcp.recvspace=65536` ``, keepalive
timers, SACK, RFC 1323 options ...); Linux scripts do the same with
``net.ipv4.tcp_*``.  ``apply`` plays one such command against the layer's
``TcpConfig`` (what the connections opened after it start from), as the
kernel would at that point of the script.  A name ustack has an equivalent
for changes that field; a name for a behaviour ustack has fixed (RFC 5961
always on, no host cache ...) or lacks is left alone, and every such name
gives a note saying which, so that a script that relies on it fails with
the reason at hand (``ustack conform -v`` prints the notes).

Usage::

    notes = apply("sysctl -w net.inet.tcp.recvspace=65536", stack.tcp.config)
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import NamedTuple

from ustack.tcp.config import TcpConfig

__all__ = ["FIXED", "MAPPED", "apply", "is_sysctl"]


class _Field(NamedTuple):
    """A sysctl that sets TcpConfig fields: ``convert`` turns the text into their value."""

    fields: tuple[str, ...]
    convert: Callable[[str], object]


def _ms(text: str) -> float:
    return int(text) / 1000.0  # FreeBSD keeps TCP times in milliseconds


def _s(text: str) -> float:
    return float(int(text))


def _flag(text: str) -> bool:
    return int(text) != 0


def _count(text: str) -> int:
    v = int(text)
    if v < 0:
        raise ValueError(text)
    return v


def _size(text: str) -> int:
    parts = text.split()
    # Linux's tcp_rmem/tcp_wmem are "min default max": a new socket gets the default.
    v = int(parts[1]) if len(parts) == 3 else int(text)
    if v <= 0:
        raise ValueError(text)
    return v


# Names with a ustack equivalent: the TcpConfig fields they set.
MAPPED: dict[str, _Field] = {
    # FreeBSD (tcp(4), the suite's preambles).
    "net.inet.tcp.recvspace": _Field(("rcvbuf",), _size),
    "net.inet.tcp.sendspace": _Field(("sndbuf",), _size),
    "net.inet.tcp.rfc1323": _Field(("timestamps", "window_scaling"), _flag),
    "net.inet.tcp.sack.enable": _Field(("sack",), _flag),
    "net.inet.tcp.delacktime": _Field(("delack",), _ms),
    "net.inet.tcp.rexmit_initial": _Field(("initial_rto",), _ms),
    "net.inet.tcp.rexmit_min": _Field(("min_rto",), _ms),
    "net.inet.tcp.msl": _Field(("msl",), _ms),
    "net.inet.tcp.keepidle": _Field(("keepalive_idle",), _ms),
    "net.inet.tcp.keepintvl": _Field(("keepalive_interval",), _ms),
    "net.inet.tcp.keepcnt": _Field(("keepalive_probes",), _count),
    "net.inet.tcp.always_keepalive": _Field(("keepalive",), _flag),
    # Linux (ip-sysctl.rst).
    "net.ipv4.tcp_rmem": _Field(("rcvbuf",), _size),
    "net.ipv4.tcp_wmem": _Field(("sndbuf",), _size),
    "net.ipv4.tcp_sack": _Field(("sack",), _flag),
    "net.ipv4.tcp_timestamps": _Field(("timestamps",), _flag),
    "net.ipv4.tcp_window_scaling": _Field(("window_scaling",), _flag),
    "net.ipv4.tcp_keepalive_time": _Field(("keepalive_idle",), _s),
    "net.ipv4.tcp_keepalive_intvl": _Field(("keepalive_interval",), _s),
    "net.ipv4.tcp_keepalive_probes": _Field(("keepalive_probes",), _count),
    "net.ipv4.tcp_syn_retries": _Field(("syn_retries",), _count),
    "net.ipv4.tcp_synack_retries": _Field(("synack_retries",), _count),
    "net.ipv4.tcp_retries1": _Field(("retries1",), _count),
    "net.ipv4.tcp_retries2": _Field(("retries2",), _count),
    "net.ipv4.tcp_fin_timeout": _Field(("fin_timeout",), _s),
}

# Names for a behaviour ustack has fixed: the value it behaves as (None: it
# has no such thing at all) and what it does.  Setting the value ustack has
# is a no-op; another value is noted as not honoured.
FIXED: dict[str, tuple[str | None, str]] = {
    "net.inet.tcp.insecure_rst": ("0", "RSTs are checked as RFC 5961 3.2 says"),
    "net.inet.tcp.insecure_syn": ("0", "SYNs in a synchronized state get a challenge ACK "
                                       "(RFC 5961 4.2)"),
    "net.inet.tcp.drop_synfin": ("0", "a SYN+FIN is taken as a SYN (no RFC rule drops it)"),
    "net.inet.tcp.blackhole": ("0", "a segment for no connection gets a RST "
                                    "(RFC 9293 3.10.7.1)"),
    "net.inet.tcp.hostcache.purgenow": (None, "ustack keeps no host cache: nothing to purge"),
    "net.inet.tcp.ecn.enable": ("0", "ustack does not negotiate ECN (RFC 3168)"),
    "net.inet.tcp.ecn.maxretries": (None, "ustack does not negotiate ECN (RFC 3168)"),
    "kern.ipc.maxsockbuf": (None, "ustack has no system-wide buffer limit; the window "
                                  "scale follows the socket's receive buffer (RFC 7323 2.3)"),
    "net.inet.tcp.rexmit_slop": ("0", "the RTO is RFC 6298's, without FreeBSD's slop"),
    "net.inet.tcp.rexmit_drop_options": ("0", "a retransmitted SYN keeps its options"),
    "net.inet.tcp.keepinit": (None, "ustack has no connection-establishment timeout "
                                    "(TCP_KEEPINIT); SYNs are retried syn_retries times"),
    "net.inet.tcp.icmp_may_rst": ("1", "ICMP errors are checked against SND.UNA..SND.NXT "
                                       "(RFC 5927 4.1)"),
    "net.inet.tcp.udp_tunneling_port": ("0", "ustack has no UDP encapsulation"),
    "net.inet.tcp.udp_tunneling_overhead": (None, "ustack has no UDP encapsulation"),
}


def is_sysctl(command: str) -> bool:
    """Whether a backtick command is a ``sysctl`` call (the only kind ``apply`` plays)."""
    words = command.split()
    return bool(words) and words[0].rsplit("/", 1)[-1] == "sysctl"


def apply(command: str, cfg: TcpConfig) -> list[str]:
    """Play ``sysctl [-w|-q...] name=value ...`` on ``cfg``; the notes it gives.

    A read (``sysctl name``, no ``=``) changes nothing.  Never raises: a
    value that is not a number, or a name ustack has nothing for, is a note.
    """
    try:
        words = shlex.split(command)
    except ValueError:
        return [f"`{command}`: unreadable shell command, ignored"]
    notes: list[str] = []
    for w in words[1:]:
        if w.startswith("-"):
            continue  # -w, -q, -n: how sysctl reports, not what it sets
        name, eq, value = w.partition("=")
        if not eq:
            continue
        notes.extend(_set(name, value, cfg))
    return notes


def _set(name: str, value: str, cfg: TcpConfig) -> list[str]:
    m = MAPPED.get(name)
    if m is not None:
        try:
            v = m.convert(value)
        except ValueError:
            return [f"sysctl {name}={value}: not a valid value, ignored"]
        for f in m.fields:
            setattr(cfg, f, v)
        return []
    fixed = FIXED.get(name)
    if fixed is not None:
        has, what = fixed
        if has is not None and value.strip() == has:
            return []  # what ustack does anyway
        if has is None and name.endswith("purgenow"):
            return []
        return [f"sysctl {name}={value}: not honoured ({what})"]
    return [f"sysctl {name}={value}: unknown to ustack, ignored"]
