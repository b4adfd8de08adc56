"""Segments in and out of a connection, and what it tells the application.

The layer parses a received segment into a ``Segment`` (window field as
received, unscaled); the connection hands back ``OutSegment``s for the layer
to write into frames (``window`` is the field value, already scaled).
``Event``s are what the connection tells the application, through the
layer; ``TcpError`` is misuse of its API, which the socket layers map to
the standard library's OSError.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

from ustack.wire.tcp import TcpOptions


class Segment(NamedTuple):
    """An inbound segment as the layer parsed it (window unscaled)."""

    seq: int
    ack: int
    flags: int
    window: int
    payload: bytes
    opts: TcpOptions


class OutSegment(NamedTuple):
    """An outbound segment; ``window`` is the field value (already scaled)."""

    seq: int
    ack: int
    flags: int
    window: int
    options: bytes
    payload: bytes


class Event(Enum):
    CONNECTED = "connected"
    READABLE = "readable"  # data or EOF can be read
    WRITABLE = "writable"  # send buffer space opened
    CLOSED = "closed"  # the connection reached CLOSED (error says why, 0 = normally)
    RESET = "reset"  # the peer reset it (also followed by CLOSED)
    TIMED_OUT = "timed out"
    SOFT_ERROR = "soft error"  # R1 reached or ICMP error: informational


class TcpError(Exception):
    """Misuse of the connection API; the socket layers map it to OSError."""

    def __init__(self, errno_: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno_
