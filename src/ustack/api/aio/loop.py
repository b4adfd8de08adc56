"""A Stack driven by a running asyncio event loop, without a thread.

The loop takes the place of ``Stack.run()``: every device's descriptor (and
every reader added with ``Stack.add_reader``) is registered with
``loop.add_reader``, so a readable link means one ``Stack.poll(loop.time())``
in the loop's own iteration; one ``loop.call_at`` handle stands for the
Stack's next deadline and is re-armed after each poll.  Application writes
(transports, datagram endpoints) only mark the stack dirty; ``kick()``
schedules one ``flush`` with ``call_soon``, so every write of one loop
iteration leaves in one batch (docs/architecture.md, principle 2).

The Stack is not thread-safe: once attached, only the loop's thread may
touch it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import AsyncIterator, Callable
from typing import ParamSpec, TypeVar

from ustack.bringup import LinkedStack, LinkOptions
from ustack.stack import BATCH, Stack

P = ParamSpec("P")
R = TypeVar("R")


def _not_started() -> float:
    raise RuntimeError("AioStack is not started")


def _driver(stack: Stack) -> AioStack | None:
    """The AioStack attached to ``stack``, if any (``Stack.driver``)."""
    d = stack.driver
    return d if isinstance(d, AioStack) else None


class AioStack:
    """Attach ``stack`` to an event loop: ``AioStack(stack).start()``, later ``close()``.

    ``loop`` defaults to the running loop at ``start()``.  ``close()``
    detaches (readers and timer removed); it does not close the devices.
    """

    def __init__(self, stack: Stack, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.stack = stack
        self._loop = loop
        # The loop's clock (its ``time``), once known: read on every wakeup.
        self._time: Callable[[], float] = _not_started if loop is None else loop.time
        self._fds: list[int] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._flush_pending = False
        self.started = False
        self.closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("AioStack is not started")
        return self._loop

    def start(self) -> AioStack:
        """Register the devices with the loop and start the stack; returns self."""
        if self.started:
            return self
        if self.closed:
            raise RuntimeError("AioStack is closed")
        other = _driver(self.stack)
        if other is not None and not other.closed:
            raise RuntimeError("this Stack is already attached to an event loop")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        loop = self._loop
        self._time = loop.time
        self.started = True
        self.stack.driver = self
        stack = self.stack
        for iface in stack.interfaces:
            fd = iface.device.fileno()
            loop.add_reader(fd, self._on_readable)
            self._fds.append(fd)
        # Control sockets and the like; they run the Stack's callbacks and
        # then a poll, since a control request may change the stack.
        for fd, cb in stack.extra_readers().items():
            loop.add_reader(fd, self._on_extra, cb)
            self._fds.append(fd)
        stack.start(loop.time())
        self._arm()
        return self

    def close(self) -> None:
        """Detach from the loop (pending frames are flushed first)."""
        if self.closed:
            return
        self.closed = True
        if not self.started:
            return
        loop = self.loop
        with contextlib.suppress(Exception):
            self.stack.flush(loop.time())
        for fd in self._fds:
            loop.remove_reader(fd)
        self._fds.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.stack.driver is self:
            self.stack.driver = None

    async def __aenter__(self) -> AioStack:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # -- driving the stack ----------------------------------------------------

    def kick(self) -> None:
        """The application queued something: flush once this loop iteration."""
        if not self._flush_pending and not self.closed:
            self._flush_pending = True
            self.loop.call_soon(self._flush)

    # The callbacks below run on every wakeup: they read the clock through
    # ``_time`` (the loop's bound ``time``) rather than the ``loop`` property
    # (a Python call that checks the loop is set, every time).

    def _flush(self) -> None:
        self._flush_pending = False
        if self.closed:
            return
        stack = self.stack
        # Segments take their timestamps and timers from stack.now; the loop
        # may have slept since the last poll.
        stack.flush(self._time())
        self._arm()

    def _on_readable(self) -> None:
        self._poll(self._time())

    def _on_extra(self, cb: Callable[[], None]) -> None:
        cb()
        self._poll(self._time())

    def _on_timer(self) -> None:
        self._timer = None
        # asyncio may run a handle up to its clock resolution early; the
        # Stack only fires timers whose deadline has passed.
        now = self._time()
        self._poll(now if now >= self._timer_when else self._timer_when)

    def _poll(self, now: float) -> None:
        if self.closed:
            return
        stack = self.stack
        # Writes made by callbacks inside the poll leave with its own flush:
        # while it runs, kick() has nothing to schedule.
        pending = self._flush_pending
        self._flush_pending = True
        try:
            # A device that delivered a full batch may hold more; take a few
            # more batches now, then let other callbacks run (the reader
            # fires again).
            for _ in range(4):
                if stack.poll(now) < BATCH:
                    break
                now = self._time()
        finally:
            self._flush_pending = pending
        self._arm()

    def _arm(self) -> None:
        """Keep one timer handle at or before the Stack's next deadline."""
        deadline = self.stack.next_deadline()
        t = self._timer
        if deadline is None:
            return  # an early handle, if any, just polls once for nothing
        if t is not None:
            if self._timer_when <= deadline:
                return  # fires early at worst, then re-arms
            t.cancel()
        self._timer_when = deadline
        self._timer = self.loop.call_at(deadline, self._on_timer)


def attach(stack: Stack | AioStack) -> AioStack:
    """The AioStack driving ``stack`` in the running loop (started if need be)."""
    if isinstance(stack, AioStack):
        return stack if stack.started else stack.start()
    aio = _driver(stack)
    if aio is not None and not aio.closed:
        return aio
    return AioStack(stack).start()


def _with_options(make: Callable[P, LinkOptions]) -> Callable[
        [Callable[[LinkOptions], R]], Callable[P, R]]:
    """``f(options)`` called as ``f(*args, **kwargs)``, the arguments being
    ``make``'s (the link options, typed and checked as LinkOptions takes
    them, listed once: in LinkOptions)."""
    def decorate(f: Callable[[LinkOptions], R]) -> Callable[P, R]:
        @functools.wraps(f)
        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            return f(make(*args, **kwargs))
        # help() and inspect show the arguments taken, not f's.
        del call.__wrapped__
        call.__signature__ = inspect.signature(make).replace(  # type: ignore[attr-defined]
            return_annotation=inspect.Signature.empty)
        return call
    return decorate


@_with_options(LinkOptions)
@contextlib.asynccontextmanager
async def running(options: LinkOptions) -> AsyncIterator[AioStack]:
    """``async with running("tap:u0", "198.18.0.2/24", host_ip="198.18.0.1/24") as aio:``

    Takes the arguments of ``ustack.bringup.LinkOptions`` (``link`` and
    ``ip``, the others by keyword), opens the link and brings a Stack up on
    it as the ``ustack`` command's link options do (``ustack.bringup``),
    attaches it to the running loop, and closes everything on exit.  ``aio.stack`` is the Stack
    to pass as ``stack=``.
    """
    with LinkedStack(options) as up:
        aio = AioStack(up.stack)
        try:
            aio.start()
            yield aio
        finally:
            aio.close()
