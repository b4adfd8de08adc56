"""The Stack in a background thread, and calls into it from other threads.

The Stack is not thread-safe (docs/architecture.md, principle 2: one loop, no threads in
the core), so in this mode exactly one thread, the runtime's, touches it.
Application threads hand it work with ``call(fn, *args)``: the call goes on a
queue, an eventfd the Stack polls (``Stack.add_reader``) wakes the loop, the
loop runs the function and releases a lock the caller sleeps on.  That lock
is the per-call future: the cheapest one-shot wait in CPython.

The queue needs no lock of its own: ``deque.append``/``popleft`` are atomic,
and the caller appends before it writes the eventfd while the loop reads the
eventfd before it empties the queue, so no call is ever left behind.  That
also makes ``post`` (fire and forget) safe from a finaliser running in any
thread, including the runtime's own.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ustack.tcp.states import State

if TYPE_CHECKING:
    from ustack.stack import Stack

T = TypeVar("T")

# States in which a connection the application closed still owes the peer
# data or a FIN: the runtime lingers for these when it stops.
_OWING = frozenset({State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_1, State.CLOSING,
                    State.LAST_ACK, State.SYN_RECEIVED})


class StackDown(OSError):
    """The runtime is stopped (or its thread died): no stack to call into."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ENETDOWN, message)


class _Call:
    __slots__ = ("args", "done", "error", "fn", "result")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Lock()
        self.done.acquire()


class Runtime:
    """Runs ``stack`` in one daemon thread; other threads ``call`` into it."""

    def __init__(self, stack: Stack, *, name: str = "ustack") -> None:
        self.stack = stack
        self.name = name
        self._calls: deque[_Call | Callable[[], None]] = deque()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._thread: threading.Thread | None = None
        self._ident = -1
        self._stopping = False
        self._down: str | None = None  # why calls fail, once stopped or dead
        # Called (in the runtime thread) when it stops, e.g. to wake sockets.
        self.on_stop: list[Callable[[], None]] = []

    # -- life cycle -----------------------------------------------------

    def start(self) -> Runtime:
        if self._thread is not None:
            raise RuntimeError("runtime already started")
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()
        return self

    def _main(self) -> None:
        self._ident = threading.get_ident()
        stack = self.stack
        stack.add_reader(self._wake, self._drain)
        try:
            stack.run(until=self._stop_requested)
            self._down = "ustack runtime stopped"
        except BaseException as e:  # the loop died: fail every caller, never hang one
            self._down = f"ustack stack thread died: {type(e).__name__}: {e}"
            raise
        finally:
            stack.remove_reader(self._wake)
            for cb in self.on_stop:
                with contextlib.suppress(Exception):
                    cb()
            self._fail_pending()

    def _stop_requested(self) -> bool:
        return self._stopping

    def stop(self, linger: float = 0.0) -> None:
        """Stop the thread; first wait up to ``linger`` seconds while
        connections the application closed still owe the peer data or a FIN
        (the kernel keeps such orphans alive after a process exits)."""
        if self._thread is None or self._down is not None:
            self._stopping = True
            return
        deadline = time.monotonic() + linger
        while linger > 0 and time.monotonic() < deadline:
            try:
                if not self.call(self._orphans_owing):
                    break
            except StackDown:
                break
            time.sleep(0.01)
        self._stopping = True
        self._kick()
        if threading.get_ident() != self._ident:
            self._thread.join(5.0)

    def _orphans_owing(self) -> bool:
        return any(s.closed and s.conn.state in _OWING
                   for s in self.stack.tcp.conns.values())

    @property
    def alive(self) -> bool:
        return self._down is None and self._thread is not None

    def in_thread(self) -> bool:
        return threading.get_ident() == self._ident

    # -- calls ------------------------------------------------------------

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the stack thread; return its result or raise
        its exception here.  From the stack thread itself it runs at once."""
        if threading.get_ident() == self._ident:
            return fn(*args)
        if self._down is not None or self._thread is None:
            raise StackDown(self._down or "ustack runtime not started")
        c = _Call(fn, args)
        self._calls.append(c)
        self._kick()
        # A timed wait only so that a thread dying between our check of
        # ``_down`` and the append cannot leave us asleep forever.
        while not c.done.acquire(timeout=1.0):
            thread = self._thread
            if self._down is not None and (thread is None or not thread.is_alive()):
                self._fail_pending()
        if c.error is not None:
            raise c.error
        return c.result  # type: ignore[no-any-return]

    def post(self, fn: Callable[[], None]) -> bool:
        """Run ``fn()`` in the stack thread later; never waits (finalisers,
        and calls whose caller needs no answer).  False when the runtime is
        down and ``fn`` will not run.  Posted functions run in order with
        calls; one still queued when the runtime stops runs then."""
        if self._down is not None:
            return False
        self._calls.append(fn)
        with contextlib.suppress(OSError):
            self._kick()
        return True

    def _kick(self) -> None:
        os.eventfd_write(self._wake, 1)

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._wake)
        # The stack's clock moves with each poll, and the loop may have slept
        # since the last one; calls must see the time now (RTT samples,
        # timers they arm).
        self.stack.advance(time.monotonic())
        calls = self._calls
        while calls:
            c = calls.popleft()
            if type(c) is _Call:
                try:
                    c.result = c.fn(*c.args)
                except BaseException as e:
                    c.error = e
                c.done.release()
            else:
                with contextlib.suppress(Exception):  # a finaliser's: nobody to tell
                    c()  # type: ignore[operator]

    def _fail_pending(self) -> None:
        calls = self._calls
        while calls:
            c = calls.popleft()
            if type(c) is _Call:
                c.error = StackDown(self._down or "ustack runtime stopped")
                c.done.release()
            else:
                # A posted close() or send(): its caller was told it is done,
                # so it still runs (a close releases its descriptors).  The
                # stack thread is gone; nothing else touches the stack now.
                with contextlib.suppress(Exception):
                    c()  # type: ignore[operator]

    def close(self) -> None:
        """Stop (without lingering) and release the wake-up descriptor."""
        self.stop()
        if self._thread is None or not self._thread.is_alive():
            with contextlib.suppress(OSError):
                os.close(self._wake)


# The runtime ``ustack.socket`` uses when a call names none (``attach``).
_default: Runtime | None = None


def set_default(rt: Runtime | None) -> None:
    """Make ``rt`` the default runtime (None: no default)."""
    global _default
    _default = rt


def current_default() -> Runtime | None:
    """The default runtime, if one was set (alive or not)."""
    return _default


def default_runtime() -> Runtime:
    """The attached runtime, or OSError(ENETDOWN) when none is."""
    rt = _default
    if rt is None:
        raise OSError(errno.ENETDOWN, "ustack.socket: no stack attached (call "
                      "ustack.socket.attach(stack), or run the program under `ustack run`)")
    return rt
