"""``--trace FILE``: a stack's TCP event trace written to a file.

The tracer (``ustack.tcp.trace``) is part of the compiled core and does no
I/O; this module gives it a file to write to and closes it.  Opening the
file fails with ``TraceFileError``, an ``OSError`` whose ``filename`` is
``--trace FILE``, so the ``ustack`` command prints one line naming the
option and the file (``ustack up: --trace /x/t.jsonl: No such file or
directory``) and exits 1.
"""

from __future__ import annotations

from typing import TextIO

from ustack.stack import Stack
from ustack.tcp.trace import Tracer


class TraceFileError(OSError):
    """The trace file could not be opened (``filename`` is ``--trace FILE``)."""


class TraceFile:
    """A Tracer set on ``stack``'s TCP layer, writing to ``out``."""

    def __init__(self, stack: Stack, out: TextIO) -> None:
        self.out = out
        self.stack = stack
        self.tracer = Tracer(out.write, lambda: stack.now)
        stack.tcp.tracer = self.tracer

    def flush(self) -> None:
        self.tracer.flush()
        self.out.flush()

    def close(self) -> None:
        """Write what is buffered and close; connections made later are not
        traced, and events of those traced already are dropped."""
        if self.stack.tcp.tracer is self.tracer:
            self.stack.tcp.tracer = None
        try:
            self.tracer.close()
        finally:
            self.out.close()


def open_trace(stack: Stack, path: str) -> TraceFile:
    """Trace ``stack``'s connections into ``path`` (created or truncated)."""
    try:
        # Line buffering is not wanted: the tracer hands over whole batches.
        out = open(path, "w", encoding="utf-8")  # noqa: SIM115 (TraceFile closes it)
    except OSError as e:
        raise TraceFileError(e.errno, e.strerror or type(e).__name__,
                             f"--trace {path}") from None
    return TraceFile(stack, out)
