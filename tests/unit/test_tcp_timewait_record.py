"""TIME-WAIT as a record (tcp/timewait.py) answers as the whole connection does.

A connection the application closed spends TIME-WAIT as a small record; one
it still holds (after shutdown) stays whole.  The record's rules are a copy
of the connection's for that state, so the test is differential: two
connections of one stack in TIME-WAIT, one of each form, get the same
segments (hypothesis picks flags, sequence and acknowledgement numbers
around the edges of the window, text, old or current timestamps, and pauses
up to past 2 MSL), and everything observable must agree: the segments sent
back (flags, sequence, ACK, window, TSecr, D-SACK blocks), the drop
counters, and when the 4-tuple leaves TIME-WAIT.  Then the record's own
bookkeeping: the expiry queues stay bounded however often records restart.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st
from tcp_peer import Flow, Peer, Seg, peer, seq_add, seq_diff

from ustack.tcp.states import State
from ustack.tcp.timewait import TimeWaitRecord, TimeWaitTable

TWO_MSL = 60.0


def _to_time_wait(p: Peer, f: Flow, close: str) -> None:
    """Into TIME-WAIT: closed first (``close`` "before"), shut down and
    closed once in TIME-WAIT ("after"), or shut down and kept ("never").
    (A record never has a shut window: text for an application that closed
    is answered with RST, RFC 2525 2.17, and close() with unread text
    resets, so no record is made.)"""
    if close == "before":
        f.s.close()
    else:
        f.s.shutdown_write()
    p.flush()
    fin = f.expect1("FA")
    f.send("A", ack=fin.end)
    f.send("FA")
    f.expect1("A")
    if close == "after":
        f.s.close()
        p.flush()
        assert not f.take()


def _key(f: Flow) -> tuple[bytes, int, bytes, int]:
    return (*f.s.conn.local, *f.s.conn.remote)


def _state(p: Peer, f: Flow) -> State:
    tcp = p.stack.tcp
    if _key(f) in tcp.tw.records:
        return State.TIME_WAIT
    if tcp.conns.get(_key(f)) is f.s:
        return f.s.state
    return State.CLOSED


@dataclass(frozen=True)
class Step:
    flags: str
    seq_off: int  # from the peer's next sequence number (RCV.NXT of the stack)
    ack_off: int  # from the stack's SND.NXT
    text: int
    ts: str  # "now", "old" (PAWS), "none"
    pause: float  # seconds before the segment


_OFFSETS = st.sampled_from([0, 1, -1, -2, -100, 100, 65535, 65536, 200_000, -200_000,
                            -(1 << 31) + 5])
_STEPS = st.builds(
    Step,
    flags=st.sampled_from(["A", "PA", "FA", "F", "R", "RA", "S", "SA", "SF", "", "PFA"]),
    seq_off=_OFFSETS,
    ack_off=st.sampled_from([0, -1, -1000, 1, 100, -70_000, -(1 << 31) + 5]),
    text=st.sampled_from([0, 1, 50]),
    ts=st.sampled_from(["now", "old", "none"]),
    pause=st.sampled_from([0.0, 0.0, 0.3, 20.0, 59.0]),
)


def _answer(segs: list[Seg], peer_base: int, our_base: int) -> list[tuple[object, ...]]:
    """What a flow got back, relative to its own sequence spaces."""
    return [(s.flags, seq_diff(s.seq, our_base), seq_diff(s.ack, peer_base), s.win,
             s.tsecr, [(seq_diff(a, peer_base), seq_diff(b, peer_base)) for a, b in s.sack])
            for s in segs]


def _send(f: Flow, step: Step, peer_base: int, our_base: int) -> None:
    tsval = None
    options = None
    if step.ts == "old" and f.ts_ok:
        tsval = (f.tsval() - 10_000) & 0xFFFFFFFF
    elif step.ts == "none":
        options = []
    f.send(step.flags, b"x" * step.text, seq=seq_add(peer_base, step.seq_off),
           ack=seq_add(our_base, step.ack_off), tsval=tsval, options=options)


def _drops(p: Peer) -> dict[str, int]:
    return {k: v for k, v in p.stack.counters.snapshot().items()
            if k.startswith(("Drop", "TcpExt"))}


@settings(max_examples=200, deadline=None)
@given(ts=st.booleans(), sack=st.booleans(), steps=st.lists(_STEPS, min_size=1, max_size=8),
       when=st.sampled_from(["before", "after"]))
def test_a_record_answers_as_the_whole_connection(ts: bool, sack: bool, steps: list[Step],
                                                  when: str) -> None:
    """``when``: the application closed before its FIN, or once in
    TIME-WAIT after a shutdown."""
    with peer() as p:
        lst = p.listen(80)
        flows = [p.accept(listener=lst, ts=ts, sack=sack) for _ in range(2)]
        for f, close in zip(flows, (when, "never"), strict=True):
            _to_time_wait(p, f, close)
        assert _key(flows[0]) in p.stack.tcp.tw.records
        assert p.stack.tcp.conns.get(_key(flows[1])) is flows[1].s
        bases = [(f.snd_nxt, f.rcv_nxt) for f in flows]
        for step in steps:
            if step.pause:
                p.run_to(p.now + step.pause)
            seen = []
            for f, (peer_base, our_base) in zip(flows, bases, strict=True):
                before = _drops(p)
                _send(f, step, peer_base, our_base)
                after = _drops(p)
                changed = sorted(k for k in after if after[k] != before.get(k, 0))
                seen.append((_answer(f.take(), peer_base, our_base), changed,
                             _state(p, f)))
            rec, whole = seen
            if any(a[0] == "SA" for a in rec[0]) or any(a[0] == "SA" for a in whole[0]):
                # A newer SYN reopened the 4-tuple: new connections, each
                # with its own ISS; both must have taken it.
                assert [a[0] for a in rec[0]] == [a[0] for a in whole[0]] == ["SA"]
                return
            assert rec == whole, step
        p.run_to(p.now + TWO_MSL)
        assert [_state(p, f) for f in flows] == [State.CLOSED, State.CLOSED]
        assert p.stack.tcp.time_wait == 0


def _record(key_port: int, deadline: float, two_msl: float = TWO_MSL) -> TimeWaitRecord:
    return TimeWaitRecord((b"\x01" * 4, key_port, b"\x02" * 4, 80), 1, 2, 65537, 65535, 2, 65535,
                          False, 0, 0.0, 0, False, 64, 0, two_msl, deadline)


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["add", "restart", "remove", "expire"]),
                              st.integers(0, 40), st.sampled_from([60.0, 1.0])),
                    max_size=400))
def test_the_expiry_queues_stay_bounded_and_exact(
        ops: list[tuple[str, int, float]]) -> None:
    """Whatever mix of new, restarted and removed records: a record leaves
    exactly when its own deadline passes, and the queues never hold more
    than twice the records plus a constant (entries left behind are
    compacted away)."""
    table = TimeWaitTable()
    now = 0.0
    for op, port, two_msl in ops:
        now += 0.25
        key = (b"\x01" * 4, port, b"\x02" * 4, 80)
        rec = table.records.get(key)
        if op == "add" and rec is None:
            table.add(_record(port, now + two_msl, two_msl))
        elif op == "restart" and rec is not None:
            rec.deadline = now + rec.two_msl
            table.restarted(rec)
        elif op == "remove" and rec is not None:
            table.remove(key)
        elif op == "expire":
            due = {k for k, r in table.records.items() if r.deadline <= now}
            assert table.expire(now) == len(due)
            assert not due & table.records.keys()
        assert all(r.deadline > now - 0.25 or op != "expire" for r in table.records.values())
        assert table._entries <= 2 * len(table) + 1024 + 1
        if table.records:  # the layer's one timer is never late for a record
            assert 0 <= table.next_deadline() <= min(r.deadline for r in table.records.values())


def test_many_restarts_do_not_grow_the_queues() -> None:
    table = TimeWaitTable()
    rec = _record(1, 60.0)
    table.add(rec)
    for i in range(10_000):
        rec.deadline = 60.0 + i
        table.restarted(rec)
    assert len(table) == 1 and table._entries <= 1024 + 3
    assert table.expire(60.0 + 9_998) == 0
    assert table.expire(60.0 + 9_999) == 1 and not table.records


def test_a_record_made_late_expires_at_its_own_deadline() -> None:
    """A connection shut down, in TIME-WAIT at t=0 and closed at t=20, keeps
    the 2 MSL that began at 0 though a record made at 10 ends at 70."""
    with peer() as p:
        lst = p.listen(80)
        a, b = (p.accept(listener=lst) for _ in range(2))
        _to_time_wait(p, a, "never")
        t0 = p.now
        p.run_to(t0 + 10)
        _to_time_wait(p, b, "before")
        p.run_to(t0 + 20)
        a.s.close()
        p.flush()
        assert _key(a) in p.stack.tcp.tw.records and p.stack.tcp.time_wait == 2
        p.run_to(t0 + TWO_MSL + 0.001)
        assert _key(a) not in p.stack.tcp.tw.records
        assert _key(b) in p.stack.tcp.tw.records and p.stack.tcp.time_wait == 1
        p.run_to(t0 + 10 + TWO_MSL + 0.001)
        assert not p.stack.tcp.tw.records and p.stack.tcp.time_wait == 0


def test_calls_on_a_closed_socket_leave_the_record_alone() -> None:
    """Once a record, the connection is not serviced again: a call that
    kicks the closed socket neither counts it twice nor sends anything."""
    with peer() as p:
        f = p.accept()
        _to_time_wait(p, f, "before")
        rec = p.stack.tcp.tw.records[_key(f)]
        f.s.set_keepalive(True)
        p.flush()
        assert p.stack.tcp.time_wait == 1 and p.stack.tcp.tw.records[_key(f)] is rec
        f.s.abort()
        p.flush()
        p.advance(1.0)
        assert not f.take()
        assert p.stack.tcp.tw.records[_key(f)] is rec and p.stack.tcp.time_wait == 1
        p.run_to(p.now + TWO_MSL)
        assert not p.stack.tcp.tw.records and p.stack.tcp.time_wait == 0
