"""The Stack's one timer structure (ustack.timers) and how poll() drives it."""

from __future__ import annotations

import random
import time

from test_net_harness import Harness

from ustack.stack import HOUSEKEEPING_INTERVAL
from ustack.timers import TimerHeap


def test_timers_fire_in_deadline_order() -> None:
    """Whatever the order of arming, callbacks run by deadline."""
    heap = TimerHeap()
    fired: list[float] = []
    deadlines = [5.0, 1.0, 3.0, 2.0, 4.0, 0.5]
    for d in deadlines:
        heap.call_at(d, lambda now, d=d: fired.append(d))
    assert heap.run_due(10.0) == len(deadlines)
    assert fired == sorted(deadlines)


def test_only_due_timers_fire() -> None:
    """run_due(now) fires deadlines <= now, the rest wait for a later call."""
    heap = TimerHeap()
    fired: list[str] = []
    heap.call_at(1.0, lambda now: fired.append("a"))
    heap.call_at(2.0, lambda now: fired.append("b"))
    assert heap.run_due(0.999) == 0
    assert heap.run_due(1.0) == 1  # a deadline equal to now is due
    assert fired == ["a"]
    assert heap.next_deadline() == 2.0
    assert heap.run_due(5.0) == 1
    assert fired == ["a", "b"]
    assert heap.next_deadline() is None


def test_same_deadline_fires_in_arming_order() -> None:
    """Equal deadlines keep FIFO order (a sequence number breaks ties), so a
    retransmission armed before a keepalive at the same instant runs first."""
    heap = TimerHeap()
    fired: list[int] = []
    for i in range(50):
        heap.call_at(7.0, lambda now, i=i: fired.append(i))
    heap.run_due(7.0)
    assert fired == list(range(50))


def test_callback_gets_the_current_time() -> None:
    """A late timer learns the real time, to re-arm relative to it."""
    heap = TimerHeap()
    seen: list[float] = []
    heap.call_at(1.0, seen.append)
    heap.run_due(3.5)
    assert seen == [3.5]


def test_cancelled_timer_never_fires() -> None:
    heap = TimerHeap()
    fired: list[str] = []
    t = heap.call_at(1.0, lambda now: fired.append("cancelled"))
    heap.call_at(2.0, lambda now: fired.append("kept"))
    t.cancel()
    assert heap.next_deadline() == 2.0  # the cancelled head is skipped
    assert heap.run_due(10.0) == 1
    assert fired == ["kept"]


def test_cancel_after_fire_and_double_cancel_are_harmless() -> None:
    heap = TimerHeap()
    fired: list[int] = []
    t = heap.call_at(1.0, lambda now: fired.append(1))
    heap.run_due(1.0)
    t.cancel()
    t.cancel()
    assert heap.run_due(2.0) == 0
    assert fired == [1]


def test_callback_may_cancel_a_later_timer_due_in_the_same_run() -> None:
    """A callback that cancels a timer due in the same run_due stops it."""
    heap = TimerHeap()
    fired: list[str] = []
    later = heap.call_at(2.0, lambda now: fired.append("later"))
    heap.call_at(1.0, lambda now: (fired.append("first"), later.cancel()))
    heap.run_due(5.0)
    assert fired == ["first"]


def test_callback_may_arm_a_new_timer() -> None:
    """Re-arming from a callback (ARP retry, housekeeping) schedules for later;
    a timer re-armed into the future does not fire in the same run."""
    heap = TimerHeap()
    fired: list[float] = []

    def periodic(now: float) -> None:
        fired.append(now)
        if len(fired) < 5:
            heap.call_at(now + 1.0, periodic)

    heap.call_at(1.0, periodic)
    for t in range(1, 10):
        heap.run_due(float(t))
    assert fired == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_random_arming_and_cancelling_matches_a_model() -> None:
    """Against a sorted-list model: random deadlines (with ties) and cancels."""
    rng = random.Random(1234)
    heap = TimerHeap()
    fired: list[int] = []
    model: list[tuple[float, int]] = []
    handles = []
    for i in range(2000):
        d = float(rng.randrange(100))
        handles.append(heap.call_at(d, lambda now, i=i: fired.append(i)))
        model.append((d, i))
    cancelled = set(rng.sample(range(2000), 500))
    for i in cancelled:
        handles[i].cancel()
    for now in range(0, 106, 7):  # the last call is past every deadline
        heap.run_due(float(now))
    expect = [i for d, i in sorted(model) if i not in cancelled]
    assert fired == expect
    assert heap.next_deadline() is None


def test_stack_poll_fires_due_timers_and_reports_next_deadline() -> None:
    """Stack.poll(now) runs due timers; next_deadline() tells a run loop how
    long it may sleep (docs/architecture.md, principle 2: one timer structure, one loop)."""
    with Harness(start=False) as h:
        stack = h.stack
        fired: list[float] = []
        stack.call_at(0.5, fired.append)
        h.poll()  # t=0: starts the stack (housekeeping armed), nothing due
        assert fired == []
        assert stack.next_deadline() == 0.5
        h.advance(0.25)
        assert fired == []
        h.advance(0.5)
        assert fired == [0.75]
        assert stack.next_deadline() == HOUSEKEEPING_INTERVAL


def test_run_returns_as_soon_as_a_poll_makes_until_true() -> None:
    """``run`` asks ``until`` after each poll, before it sleeps: a datagram
    already on the link when ``run`` starts ends it at once.  It used to
    sleep ``max_wait`` first, which made every ``ustack tcp recv`` send its
    FIN 200 ms after the peer's, and ``ustack tcp send`` last 0.2 s for one
    byte (issue 11, item 6).  With ``max_wait`` at 30 s, a regression shows
    as a 30-second run, far from the bound below."""
    h = Harness()
    sock = h.stack.udp_socket()
    sock.bind(("198.18.0.1", 7))
    assert h.peer.send_batch([bytes(h.udp_in(b"x"))], h.now) == 1
    got: list[bytes] = []

    def arrived() -> bool:
        try:
            got.append(sock.recv())
        except BlockingIOError:
            return False
        return True

    t0 = time.monotonic()
    h.stack.run(until=arrived, max_wait=30.0)
    assert got == [b"x"]
    assert time.monotonic() - t0 < 10.0


def test_a_cancelled_timer_lets_go_of_what_its_callback_holds() -> None:
    """The heap keeps a cancelled entry until its deadline; it must not keep
    the callback's objects alive that long (a connection's timer kept the
    whole connection for the collector to find: issue 12)."""
    import gc
    import weakref

    class Owner:
        def fire(self, now: float) -> None:
            raise AssertionError("a cancelled timer fired")

    heap = TimerHeap()
    owner = Owner()
    gone = weakref.ref(owner)
    t = heap.call_at(60.0, owner.fire)
    t.cancel()
    gc.disable()  # freed by reference counting, at once, not by a collection
    try:
        del owner
        assert gone() is None
    finally:
        gc.enable()
    assert len(heap) == 1
    assert heap.run_due(61.0) == 0


def test_cancelled_entries_do_not_pile_up() -> None:
    """Short connections cancel nearly every timer they arm; the heap stays
    within a small multiple of the live timers, and order is kept."""
    heap = TimerHeap()
    fired: list[float] = []
    live = [heap.call_at(1000.0 + i, lambda now, i=i: fired.append(1000.0 + i)) for i in range(10)]
    for i in range(100_000):
        heap.call_at(500.0 + i * 1e-3, lambda now: fired.append(-1.0)).cancel()
        assert len(heap) <= 2 * (10 + 64) + 1
    assert heap.next_deadline() == 1000.0
    assert heap.run_due(2000.0) == 10
    assert fired == [1000.0 + i for i in range(10)] and live
