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

from ustack.wire.tcp import TcpOptions


class Segment:
    """An inbound segment as the layer parsed it (window unscaled).

    A plain class, not a NamedTuple: the compiled build makes it a native
    class, built and read in C (a NamedTuple is built by a Python-level
    ``__new__``)."""

    __slots__ = ("ack", "flags", "opts", "payload", "seq", "window")

    def __init__(self, seq: int, ack: int, flags: int, window: int, payload: bytes,
                 opts: TcpOptions) -> None:
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.window = window
        self.payload = payload
        self.opts = opts

    def __repr__(self) -> str:
        return (f"Segment(seq={self.seq}, ack={self.ack}, flags={self.flags:#x}, "
                f"window={self.window}, payload={self.payload!r}, opts={self.opts!r})")


class OutSegment:
    """An outbound segment; ``window`` is the field value (already scaled).
    ``payload_sum`` is ``checksum.sum_mod(payload)`` when known from a
    ``Presegmented``'s stored sums, -1 when the payload is to be summed.
    A native class in the compiled build, as ``Segment``."""

    __slots__ = ("ack", "flags", "options", "payload", "payload_sum", "seq", "window")

    def __init__(self, seq: int, ack: int, flags: int, window: int, options: bytes,
                 payload: bytes | memoryview, payload_sum: int = -1) -> None:
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.window = window
        self.options = options
        self.payload = payload
        self.payload_sum = payload_sum

    def __repr__(self) -> str:
        return (f"OutSegment(seq={self.seq}, ack={self.ack}, flags={self.flags:#x}, "
                f"window={self.window}, options={self.options!r}, payload={self.payload!r})")


class Event(Enum):
    __hash__ = object.__hash__  # as State's: by identity, in C
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
