"""The parent of ``--workers N``: start N worker processes, watch them,
restart one that dies, stop them all on SIGINT/SIGTERM, and merge their
counters.

Each worker is a ``fork()`` of the parent running ``work(index, channel)``;
it tells the parent what happens on a pipe of its own (``Channel``, JSON
lines): ``ready`` once its stack is up, ``error`` with the one line of a
failure the user caused, ``counters`` when it stops.  Nothing else is
shared: the parent never touches a stack.

Workers run in a process group of their own, so a Ctrl-C on the terminal
reaches the parent only, which then stops each worker with SIGTERM: a
worker's exit is a crash exactly when the parent did not ask for it (no
race between the two signals).  A worker whose parent dies gets SIGTERM
(PR_SET_PDEATHSIG) and stops too.

A worker that dies is started again after a delay that doubles while it
keeps dying young (``stable_after``), up to ``max_delay``, so one that
crashes at once does not spin; one line on stderr names it and how it
ended.  The counters of a worker's earlier lives are kept when it handed
them over (it stopped on SIGTERM); a worker killed outright loses them.
If a worker fails before the first ``ready`` of all of them, the start
failed: the others are stopped, and its line (or how it ended) is printed.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from ustack.cli.common import EXIT_ERROR, EXIT_USAGE, UsageError

Counters = list[dict[str, int]]

_PR_SET_PDEATHSIG = 1


class Channel:
    """The worker's end of its pipe to the parent."""

    def __init__(self, fd: int, life: int = 0) -> None:
        self.fd = fd
        # Which life of its worker this is: 0 for the first, one more for
        # each restart (a restarted worker must not overwrite the files of
        # the life before it: they tell why it died).
        self.life = life

    def _send(self, **message: object) -> None:
        data = (json.dumps(message) + "\n").encode()
        with contextlib.suppress(BrokenPipeError):
            while data:
                data = data[os.write(self.fd, data):]

    def ready(self, text: str) -> None:
        self._send(ready=text)

    def error(self, text: str) -> None:
        self._send(error=text)

    def counters(self, counters: Counters) -> None:
        self._send(counters=counters)

    def result(self, doc: dict[str, Any]) -> None:
        """What a one-shot worker hands over at its end (``Supervisor.results``)."""
        self._send(result=doc)


WorkerMain = Callable[[int, Channel], int]


def merge(lives: list[Counters]) -> Counters:
    """Element-wise sums: the i-th dict of the result adds up the i-th
    dicts of all ``lives``, names in the order they first appear."""
    out: Counters = []
    for counters in lives:
        for i, d in enumerate(counters):
            if i == len(out):
                out.append({})
            total = out[i]
            for name, value in d.items():
                total[name] = total.get(name, 0) + value
    return out


def describe(status: int) -> str:
    """How a process ended, from ``waitpid``'s status."""
    if os.WIFSIGNALED(status):
        n = os.WTERMSIG(status)
        try:
            name = signal.Signals(n).name
        except ValueError:
            name = f"signal {n}"
        return f"killed by signal {n} ({name})"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


class _Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.pid = 0
        self.last_pid = 0  # the pid of its latest life, for the log once it ended
        self.fd = -1  # the parent's end of the pipe
        self.buf = b""
        self.ready = False
        self.error: str | None = None
        self.counters: Counters | None = None
        self.result: dict[str, Any] | None = None
        self.done = False  # one-shot: it ended (no restart)
        self.started = 0.0
        self.fails = 0  # deaths in a row, each younger than stable_after
        self.restart_at: float | None = None
        self.lives = 0  # lives started so far


class Supervisor:
    """``run()`` starts ``count`` workers and returns the exit status once
    they are stopped; ``counters`` is then the merged counters,
    ``ready_text`` the first worker's ready message."""

    def __init__(self, prog: str, count: int, work: WorkerMain, *,
                 on_ready: Callable[[str], None] | None = None,
                 restart_delay: float = 0.2, max_delay: float = 5.0,
                 stable_after: float = 2.0, stop_timeout: float = 10.0,
                 one_shot: bool = False, log: TextIO | None = None) -> None:
        self.prog = prog
        # One-shot workers run to an end of their own (``ustack load``): one
        # that ends is not started again, and the run ends when all have.
        self.one_shot = one_shot
        self.lost = 0  # one-shot workers that did not end well
        self.work = work
        self.on_ready = on_ready
        self.restart_delay = restart_delay
        self.max_delay = max_delay
        self.stable_after = stable_after
        self.stop_timeout = stop_timeout
        self.log = log
        self.workers = [_Worker(i) for i in range(count)]
        self.retired: list[Counters] = []  # counters of workers' earlier lives
        self.counters: Counters = []
        self.ready_text = ""
        self.results: list[dict[str, Any]] = []  # one-shot workers' (``Channel.result``)
        self.restarts = 0
        self._stopping = False
        self._signals_seen = 0  # SIGINT/SIGTERM received: a second one kills (``_stop_all``)
        self.killed = False  # the workers were killed on a second signal (exit 130)
        self._parent = 0
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()

    # -- the worker side ---------------------------------------------------

    def _child(self, w: _Worker, write_fd: int, mask: set[int | signal.Signals]) -> None:
        """In the forked worker: never returns."""
        code = EXIT_ERROR
        channel = Channel(write_fd, w.lives - 1)
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            # The parent's: its epoll (whose set the child's copy would
            # share) and its ends of the other workers' pipes.
            self._sel.close()
            for other in self.workers:
                if other.fd >= 0:
                    os.close(other.fd)
            self._wake_r.close()
            self._wake_w.close()
            os.setpgid(0, 0)
            _die_with_parent()
            if os.getppid() != self._parent:
                return  # the parent died before the line above: stop now
            code = self.work(w.index, channel)
        except UsageError as e:
            channel.error(str(e))
            code = EXIT_USAGE
        except KeyboardInterrupt:
            code = 130
        except BaseException as e:  # one line, whatever went wrong
            if os.environ.get("USTACK_DEBUG"):
                traceback.print_exc()
            channel.error(f"{self.prog}: worker {w.index}: {type(e).__name__}: {e}")
            code = EXIT_ERROR
        finally:
            with contextlib.suppress(BaseException):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    # -- the parent side ---------------------------------------------------

    def _start(self, w: _Worker) -> None:
        r, wfd = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        w.buf, w.ready, w.error, w.counters, w.restart_at = b"", False, None, None, None
        w.started = time.monotonic()
        w.lives += 1
        # Signals wait until the child has its own handlers: one that came
        # in between would run the parent's (a flag in the child's copy).
        sigs = {signal.SIGINT, signal.SIGTERM}
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
        try:
            pid = os.fork()
            if pid == 0:
                os.close(r)
                self._child(w, wfd, old_mask)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        os.close(wfd)
        os.set_blocking(r, False)
        w.pid, w.fd = pid, r
        self._sel.register(r, selectors.EVENT_READ, w)

    def _read(self, w: _Worker) -> bool:
        """Take what ``w`` sent; False at end of file."""
        eof = False
        while True:
            try:
                chunk = os.read(w.fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                eof = True
                break
            w.buf += chunk
        *lines, w.buf = w.buf.split(b"\n")
        for line in lines:
            try:
                msg: dict[str, Any] = json.loads(line)
            except ValueError:
                continue
            if "ready" in msg:
                w.ready = True
                if not self.ready_text:
                    self.ready_text = str(msg["ready"])
            if "error" in msg:
                w.error = str(msg["error"])
            if "counters" in msg:
                w.counters = msg["counters"]
            if "result" in msg:
                w.result = msg["result"]
        return not eof

    def _reap(self, w: _Worker, block: bool = False) -> int | None:
        """``w``'s wait status if it has ended (its pipe read to the end)."""
        if not w.pid:
            return None
        pid, status = os.waitpid(w.pid, 0 if block else os.WNOHANG)
        if pid == 0:
            return None
        os.set_blocking(w.fd, True)  # the writer is gone: read to the end
        while self._read(w):
            pass
        self._sel.unregister(w.fd)
        os.close(w.fd)
        w.fd, w.pid, w.last_pid = -1, 0, w.pid
        return status

    def _say(self, line: str) -> None:
        print(line, file=self.log or sys.stderr, flush=True)

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stopping = True
        self._signals_seen += 1

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        old_fd = signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)
        old = {s: signal.signal(s, self._on_child if s == signal.SIGCHLD else self._on_signal)
               for s in sigs}
        self._sel.register(self._wake_r.fileno(), selectors.EVENT_READ, None)
        try:
            yield
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
            signal.set_wakeup_fd(old_fd)

    def _on_child(self, signum: int, frame: object) -> None:
        pass  # only to wake the loop (the wake-up fd)

    def _wait(self, timeout: float | None) -> None:
        """Sleep until a message, a signal or ``timeout``; read what came."""
        for key, _ in self._sel.select(timeout):
            w = key.data
            if w is None:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(512)
            elif w.fd >= 0:
                self._read(w)

    def run(self) -> int:
        self._parent = os.getpid()
        try:
            with self._signals():
                status = self._run()
        finally:
            self._sel.close()
            self._wake_r.close()
            self._wake_w.close()
        return status

    def _run(self) -> int:
        for w in self.workers:
            if not self._stopping:
                self._start(w)
        # Start-up: every worker ready, or the first failure ends it all.
        while not self._stopping and not all(w.ready for w in self.workers):
            self._wait(None)
            for w in self.workers:
                status = self._reap(w)
                if status is None:
                    continue
                if not w.ready:
                    return self._failed_start(w, status)
                self._ended(w, status, time.monotonic())  # it was up
        if not self._stopping and self.on_ready is not None:
            self.on_ready(self.ready_text)
        while not self._stopping and not (self.one_shot and all(w.done for w in self.workers)):
            now = time.monotonic()
            due = [w.restart_at for w in self.workers if w.restart_at is not None]
            self._wait(None if not due else max(0.0, min(due) - now))
            now = time.monotonic()
            for w in self.workers:
                if self._stopping:
                    break
                status = self._reap(w)
                if status is not None:
                    self._ended(w, status, now)
                elif w.restart_at is not None and now >= w.restart_at:
                    self.restarts += 1
                    self._start(w)
        self._stop_all()
        return 130 if self.killed else 0

    def _ended(self, w: _Worker, status: int, now: float) -> None:
        if not self.one_shot:
            self._died(w, status, now)
            return
        w.done = True
        if status != 0:
            self.lost += 1
            why = f": {w.error}" if w.error else ""
            self._say(f"{self.prog}: worker {w.index} (pid {w.last_pid}) {describe(status)}"
                      f"{why}; its share of the run is lost")

    def _died(self, w: _Worker, status: int, now: float) -> None:
        if w.counters is not None:
            self.retired.append(w.counters)
        w.fails = w.fails + 1 if now - w.started < self.stable_after else 0
        delay = self.restart_delay if w.fails == 0 else min(
            self.max_delay, self.restart_delay * 2 ** w.fails)
        w.restart_at = now + delay
        why = f": {w.error}" if w.error else ""
        self._say(f"{self.prog}: worker {w.index} (pid {w.last_pid}) {describe(status)}{why}; "
                  f"restarting it in {delay:.1f} s")

    def _failed_start(self, failed: _Worker, status: int) -> int:
        self._stop_all(report=False)
        if failed.error:
            self._say(failed.error)
        else:
            self._say(f"{self.prog}: worker {failed.index} {describe(status)} before it "
                      "was ready")
        code = os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 0
        return EXIT_USAGE if code == EXIT_USAGE else EXIT_ERROR

    def _stop_all(self, report: bool = True) -> None:
        """SIGTERM to every live worker; SIGKILL to one that is still there
        after ``stop_timeout``, or to all at once on a signal that comes
        while they stop (a second Ctrl-C: ``killed``); then merge the
        counters."""
        for w in self.workers:
            w.restart_at = None
            if w.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.pid, signal.SIGTERM)
        now = time.monotonic()
        deadline = now + self.stop_timeout
        # Said once, when stopping takes long enough for a person to wonder.
        hint_at: float | None = now + 1.0 if report else None
        signals = self._signals_seen
        lives = list(self.retired)
        while any(w.pid for w in self.workers):
            if self._signals_seen > signals:
                self._kill_all()
                break
            now = time.monotonic()
            if hint_at is not None and now >= hint_at:
                hint_at = None
                n = sum(1 for w in self.workers if w.pid)
                self._say(f"{self.prog}: waiting for {n} worker{'s' if n > 1 else ''} "
                          "to stop (Ctrl-C again to kill them at once)")
            left = deadline - now
            if left <= 0:
                for w in self.workers:
                    if w.pid:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(w.pid, signal.SIGKILL)
                        if report:
                            self._say(f"{self.prog}: worker {w.index} (pid {w.pid}) did not "
                                      f"stop in {self.stop_timeout:g} s; killed")
                        self._reap(w, block=True)
                break
            self._wait(min(left, 0.5) if hint_at is None else max(0.0, min(left, hint_at - now)))
            for w in self.workers:
                status = self._reap(w)
                if status is not None and report and w.counters is None and w.result is None:
                    self._say(f"{self.prog}: worker {w.index} {describe(status)} without "
                              "its counters")
        for w in self.workers:
            if w.counters is not None:
                lives.append(w.counters)
        self.counters = merge(lives)
        self.results = [w.result for w in self.workers if w.result is not None]


    def _kill_all(self) -> None:
        """SIGKILL to every live worker, now; their counters are lost."""
        alive = [w for w in self.workers if w.pid]
        for w in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid, signal.SIGKILL)
        for w in alive:
            self._reap(w, block=True)
        self.killed = True
        self._say(f"{self.prog}: interrupted again: killed {len(alive)} "
                  f"worker{'s' if len(alive) > 1 else ''} (their counters are lost)")


def _die_with_parent() -> None:
    """SIGTERM to this process when its parent dies (Linux prctl)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
