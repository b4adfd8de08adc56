"""How the TCP layer counts what it drops: Linux's TcpExt counter where one
of the reason's name exists, else a named ``Drop<Reason>`` (counters.py)."""

from __future__ import annotations

from typing import Final

from ustack.counters import NAMES, Counters
from ustack.wire.errors import ParseError

# The counters a drop reason of the connection may be counted under: Linux's
# TcpExt names, where Counters declares one (``TcpExt`` + the reason).
_COUNTERS: Final = frozenset(NAMES)


def count_drop(c: Counters, reason: str) -> None:
    """Count what ``TcpConnection.receive`` reported: under ``TcpExt<reason>``
    when the Counters have that field (Linux has a counter of that name),
    otherwise as ``Drop<Reason>`` (``Counters.drop``)."""
    name = "TcpExt" + reason
    if name in _COUNTERS:
        setattr(c, name, getattr(c, name) + 1)
    else:
        c.drop(reason)


def count_header_error(c: Counters, e: ParseError) -> None:
    """Count a segment whose header (lengths, checksum) is bad, as Linux
    does: InErrs, CsumErrors for the checksum, and the drop's reason."""
    c.TcpInErrs += 1
    if e.reason == "tcp_checksum":
        c.TcpInCsumErrors += 1
    c.drop(e.reason)
