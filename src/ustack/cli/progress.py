"""How far a long transfer or run has got, on stderr: ``Progress`` for
``ustack tcp send|recv`` (bytes), ``RunProgress`` for ``ustack load`` (a
run of so many seconds or requests).

On a terminal: a rich progress bar (bytes, rate, and with a known size the
fraction and the time left), drawn when the transfer's loop calls
``update`` (``auto_refresh`` off: rich starts no thread, and the stack
loop decides when to spend time on the screen).  rich is imported only
then, so a command writing to a pipe or a file never loads it.

Otherwise: one plain line every ``PLAIN_EVERY`` seconds, once bytes have
moved (a log keeps a few lines of a long transfer; a short or failed one
adds none, so its stderr stays the one line it ends with).
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

PLAIN_EVERY = 10.0


class Progress:
    """``update(nbytes, now)`` while the transfer runs, ``close()`` after."""

    def __init__(self, label: str, total: int | None, *, out: TextIO | None = None,
                 fancy: bool | None = None) -> None:
        self.label = label
        self.total = total
        self.out = out if out is not None else sys.stderr
        self._start: float | None = None
        self._next_line = 0.0
        self._rich: Any = None
        self._task: Any = None
        if fancy is None:
            fancy = self.out.isatty()
        if fancy:
            self._start_rich()

    def _start_rich(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            FileSizeColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import (
            Progress as RichProgress,
        )

        columns: list[Any] = [TextColumn("{task.description}"), BarColumn()]
        if self.total is not None:
            columns += [DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
        else:  # a stream of unknown length: how much so far, no ETA
            columns += [FileSizeColumn(), TransferSpeedColumn(), TimeElapsedColumn()]
        self._rich = RichProgress(*columns, console=Console(file=self.out),
                                  auto_refresh=False, transient=False)
        self._rich.start()
        self._task = self._rich.add_task(self.label, total=self.total)

    def update(self, nbytes: int, now: float) -> None:
        if self._start is None:
            self._start = now
            self._next_line = now + PLAIN_EVERY
        if self._rich is not None:
            self._rich.update(self._task, completed=nbytes)
            self._rich.refresh()
            return
        if now >= self._next_line and nbytes:
            self._next_line = now + PLAIN_EVERY
            secs = max(now - self._start, 1e-9)
            part = f" ({100 * nbytes / self.total:.0f}%)" if self.total else ""
            self.out.write(f"{self.label}: {nbytes} bytes{part} in {secs:.1f} s, "
                           f"{nbytes / secs / 1e6:.2f} MB/s so far\n")
            self.out.flush()

    def close(self, nbytes: int | None = None) -> None:
        """Stop drawing (the bar stays on the screen at ``nbytes``)."""
        if self._rich is not None:
            if nbytes is not None:
                self._rich.update(self._task, completed=nbytes)
            self._rich.refresh()
            self._rich.stop()
            self._rich = None


class RunProgress:
    """How far a run of known length has got (``ustack load``: seconds with
    ``-d``, requests with ``-n``), with a line of what it has done so far.

    On a terminal: a rich bar (fraction, time left, the status line),
    transient, so the summary that follows stands alone.  Otherwise the
    status as a plain line every ``PLAIN_EVERY`` seconds.
    """

    def __init__(self, label: str, total: float, *, out: TextIO | None = None,
                 fancy: bool | None = None) -> None:
        self.label = label
        self.total = total
        self.out = out if out is not None else sys.stderr
        self._next_line: float | None = None
        self._rich: Any = None
        self._task: Any = None
        if fancy is None:
            fancy = self.out.isatty()
        if fancy:
            from rich.console import Console
            from rich.progress import BarColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(
                TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
                # fancy: drawn as on a terminal (out is one, or the caller says so)
                console=Console(file=self.out, force_terminal=True), auto_refresh=False,
                transient=True)
            self._rich.start()
            self._task = self._rich.add_task(label, total=total, status="")

    def update(self, done: float, status: str, now: float) -> None:
        if self._rich is not None:
            self._rich.update(self._task, completed=done, status=status)
            self._rich.refresh()
            return
        if self._next_line is None:
            self._next_line = now + PLAIN_EVERY
        elif now >= self._next_line:
            self._next_line = now + PLAIN_EVERY
            self.out.write(f"{self.label}: {status}\n")
            self.out.flush()

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None
