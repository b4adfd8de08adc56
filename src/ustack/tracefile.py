"""``--trace FILE``: a stack's TCP event trace written to a file.

The tracer (``ustack.tcp.trace``) is part of the compiled core and does no
I/O; this module gives it a file to write to and closes it.  Opening the
file fails with ``TraceFileError``, an ``OSError`` whose ``filename`` is
``--trace FILE``, so the ``ustack`` command prints one line naming the
option and the file (``ustack up: --trace /x/t.jsonl: No such file or
directory``) and exits 1.

The file is written as the stack runs, not only when it closes: each batch
of lines the tracer hands over is written whole and flushed, and a stack
timer flushes the tracer every ``FLUSH_EVERY`` seconds even when no event
comes (a long-running ``serve --trace`` is readable while it runs; a killed
worker loses at most that much).  A write that fails (a full disk, EIO)
must not come out of TCP processing, which called the tracer: tracing
stops, with one warning line (``--trace FILE: No space left on device;
tracing stopped``), and the stack runs on.

A forked child (``os.fork`` in a program under ``ustack run``) inherits the
buffered lines and the open file: only the process that opened the trace
writes or closes it, and a child's buffered lines are dropped at the fork.
"""

from __future__ import annotations

import os
import sys
import weakref
from collections.abc import Callable
from typing import TextIO

from ustack.stack import Stack
from ustack.tcp.trace import FLUSH_EVERY, Tracer


class TraceFileError(OSError):
    """The trace file could not be opened (``filename`` is ``--trace FILE``)."""


def warn(line: str) -> None:
    """A warning's one line on stderr (the default of ``TraceFile``'s and
    ``LinkedStack``'s ``warn``)."""
    print(f"ustack: warning: {line}", file=sys.stderr, flush=True)


# The open trace files of this process, for the fork handler.
_open: weakref.WeakSet[TraceFile] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for tf in list(_open):
        tf.tracer.lines.clear()  # the parent writes them; the child must not


os.register_at_fork(after_in_child=_after_fork_in_child)


class TraceFile:
    """A Tracer set on ``stack``'s TCP layer, writing to ``out``.

    ``warn`` gets the one line to show when writing fails (tracing stops).
    """

    def __init__(self, stack: Stack, out: TextIO, name: str = "",
                 warn: Callable[[str], None] = warn) -> None:
        self.out = out
        self.stack = stack
        self.name = name or getattr(out, "name", "?")
        self.warn = warn
        self.pid = os.getpid()
        self.error: OSError | None = None  # the write that stopped tracing
        self.tracer = Tracer(self._write, lambda: stack.now)
        stack.tcp.tracer = self.tracer
        stack.call_at(stack.now + FLUSH_EVERY, self._tick)
        _open.add(self)

    def _write(self, text: str) -> None:
        """One batch of whole lines, written and flushed; never raises."""
        if os.getpid() != self.pid or self.error is not None:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except (OSError, ValueError) as e:  # ValueError: the file was closed under us
            self._stop(e if isinstance(e, OSError) else OSError(str(e)))

    def _stop(self, e: OSError) -> None:
        self.error = e
        self.tracer.closed = True  # events of connections traced already are dropped
        self.tracer.lines.clear()
        if self.stack.tcp.tracer is self.tracer:
            self.stack.tcp.tracer = None
        self.warn(f"--trace {self.name}: {e.strerror or e}; tracing stopped")

    def _tick(self, now: float) -> None:
        if self.tracer.closed or os.getpid() != self.pid:
            return
        self.tracer.flush()
        self.stack.call_at(now + FLUSH_EVERY, self._tick)

    def flush(self) -> None:
        self.tracer.flush()

    def close(self) -> None:
        """Write what is buffered and close; connections made later are not
        traced, and events of those traced already are dropped.  Nothing
        in a forked child (the parent owns the file)."""
        if os.getpid() != self.pid:
            return
        _open.discard(self)
        if self.stack.tcp.tracer is self.tracer:
            self.stack.tcp.tracer = None
        try:
            self.tracer.close()
        finally:
            try:
                self.out.close()
            except OSError as e:  # the last flush of the file object itself
                if self.error is None:
                    self._stop(e)


def open_trace(stack: Stack, path: str, warn: Callable[[str], None] = warn) -> TraceFile:
    """Trace ``stack``'s connections into ``path`` (created or truncated)."""
    try:
        # Line buffering is not wanted: the tracer hands over whole batches,
        # each written and flushed at once.
        out = open(path, "w", encoding="utf-8")  # noqa: SIM115 (TraceFile closes it)
    except OSError as e:
        raise TraceFileError(e.errno, e.strerror or type(e).__name__,
                             f"--trace {path}") from None
    return TraceFile(stack, out, path, warn)
