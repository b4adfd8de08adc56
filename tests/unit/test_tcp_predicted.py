"""Header prediction (TcpConnection.receive_predicted) against the general path.

The predicted path claims to leave exactly the state ``receive`` would
leave, for the segments it accepts, and to touch nothing for the ones it
refuses.  Two connections built alike take the same steps in lockstep; each
segment goes to one through ``receive_predicted`` (and, when refused, then
through ``receive``) and to the other through ``receive``, and every field of
both is compared (send and receive queues, sequence variables, timers, RTT
estimator, congestion control, events).  Twins, not copies: a compiled
connection cannot be deep-copied.
The segments come from hypothesis: mostly what a real peer sends (in-order
data, ACKs of what we sent, moving windows) with old timestamps, ACKs
beyond SND.NXT, out-of-window and out-of-order sequence numbers, zero
windows and duplicate ACKs mixed in.
"""

from __future__ import annotations

import types
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.tcp.connection import Segment, TcpConfig, TcpConnection
from ustack.tcp.states import State
from ustack.wire.tcp import ACK, SYN, TcpOptions

MASK = 0xFFFFFFFF
PEER_ISN = 0xFFFFFF00  # near the wrap, so modular comparisons are exercised
OUR_ISN = 0xFFFFFFF0


def _opts(ts: tuple[int, int] | None, wscale: int | None = None, mss: int | None = None,
          sack_permitted: bool = False) -> TcpOptions:
    return TcpOptions(mss, wscale, sack_permitted, (), ts[0] if ts else None,
                      ts[1] if ts else None, ())


def established(ts: bool, wscale: bool, keepalive: bool = False) -> TcpConnection:
    cfg = TcpConfig(nodelay=True, timestamps=ts, window_scaling=wscale, rcvbuf=1 << 16,
                    keepalive=keepalive, keepalive_idle=0.5)
    conn = TcpConnection((b"\xc6\x12\x00\x01", 7), (b"\xc6\x12\x00\x02", 40000), OUR_ISN, cfg,
                         100.0)
    syn = Segment(PEER_ISN, 0, SYN, 65535, b"",
                  _opts((1000, 0) if ts else None, 7 if wscale else None, 1460, True))
    conn.accept_syn(syn, 100.0)
    conn.segments_to_send(100.0)
    ack = Segment((PEER_ISN + 1) & MASK, (OUR_ISN + 1) & MASK, ACK, 512, b"",
                  _opts((1001, conn.ts_now(100.0)) if ts else None))
    conn.receive(ack, 100.01)
    conn.segments_to_send(100.01)
    while conn.next_event():
        pass
    assert conn.state is State.ESTABLISHED
    return conn


def attribute_names(obj: object) -> list[str]:
    """The instance attributes of ``obj``: its ``__slots__`` (member
    descriptors), a compiled class's attributes (getset descriptors) and its
    ``__dict__``; the same names in both builds."""
    names = [name for klass in type(obj).__mro__ for name, v in vars(klass).items()
             if isinstance(v, (types.MemberDescriptorType, types.GetSetDescriptorType))
             and not name.startswith("__")]
    names.extend(getattr(obj, "__dict__", {}))
    return names


def snapshot(obj: Any, depth: int = 0) -> Any:
    """Every field of ``obj`` (and of the objects it holds), comparable with ==."""
    if isinstance(obj, (int, float, str, bytes, bool, type(None), State)):
        return obj
    if isinstance(obj, (bytearray, memoryview)):
        return bytes(obj)
    if isinstance(obj, (list, tuple)):
        return [snapshot(x, depth + 1) for x in obj]
    if callable(obj) and not hasattr(obj, "__dict__") and not hasattr(obj, "__slots__"):
        return "<callable>"
    if depth > 5:  # deep enough for every queue's blocks; a name, not an address
        return type(obj).__name__
    names = attribute_names(obj)
    out = {}
    for name in names:
        if name in ("cfg", "_challenge_allowed"):
            continue
        value = getattr(obj, name, None)
        out[name] = snapshot(list(value) if name == "events" else value, depth + 1)
    return out


def test_snapshot_sees_the_fields_in_either_build() -> None:
    """The comparison below is not vacuous: a compiled connection (no
    ``__slots__``, no ``__dict__``) shows its fields as a pure one does."""
    snap = snapshot(established(True, True))
    assert {"snd_una", "snd_nxt", "rcv_nxt", "sendq", "rcvq", "cc", "rtt"} <= snap.keys()
    assert snap["sendq"] and snap["rtt"], snap


step = st.fixed_dictionaries({
    "seq_off": st.sampled_from([0, 0, 0, 0, 0, 1, -1, 1000, -2000, 70000]),
    "data": st.sampled_from([0, 0, 1, 100, 1024, 1448, 3000]),
    "ack": st.sampled_from(["all", "all", "some", "none", "none", "beyond", "old"]),
    "window": st.sampled_from([512, 512, 0, 0, 100, 65535]),
    "ts": st.sampled_from(["new", "new", "new", "same", "old", "absent"]),
    "app_send": st.sampled_from([0, 0, 10, 1024, 5000]),
    "app_read": st.booleans(),
    "dt": st.sampled_from([0.0, 0.0001, 0.01, 0.3]),
    "fire_timer": st.sampled_from([False, False, False, True]),
    "ts_ecr": st.sampled_from(["fresh", "fresh", "zero", "stale"]),
})


@settings(max_examples=300, deadline=None)
@given(ts=st.booleans(), wscale=st.booleans(), keepalive=st.booleans(),
       ts_base=st.sampled_from([2000, 0xFFFFFFF0]),  # the second wraps 2**32
       steps=st.lists(step, min_size=1, max_size=25))
def test_prediction_leaves_the_state_the_general_path_leaves(
        ts: bool, wscale: bool, keepalive: bool, ts_base: int,
        steps: list[dict[str, Any]]) -> None:
    conn = established(ts, wscale, keepalive)  # takes every segment through receive
    fast = established(ts, wscale, keepalive)  # receive_predicted first
    both = (conn, fast)
    now = 100.02
    peer_seq = (PEER_ISN + 1) & MASK
    peer_ts = ts_base
    predicted = 0
    for s in steps:
        now += s["dt"]
        deadline = conn.next_timer()
        if s["fire_timer"] and deadline is not None:
            # RTO, persist, delayed ACK: backoffs and recovery state to predict around.
            now = max(now, deadline)
            for c in both:
                c.handle_timer(now)
                c.segments_to_send(now)
        if s["app_send"]:
            for c in both:
                c.send(b"x" * s["app_send"], now)
                c.segments_to_send(now)
        una, nxt = conn.snd_una, conn.snd_nxt
        ack = {"all": nxt, "some": (una + (nxt - una) // 2) & MASK, "none": una,
               "beyond": (nxt + 10) & MASK, "old": (una - 5) & MASK}[s["ack"]]
        seq = (peer_seq + s["seq_off"]) & MASK
        payload = bytes([0x61 + len(steps) % 26]) * s["data"]
        if s["ts"] == "new":
            peer_ts = (peer_ts + 3) & MASK
        tsval = {"new": peer_ts, "same": peer_ts, "old": (peer_ts - 100) & MASK,
                 "absent": -1}[s["ts"]]
        ts_ecr = {"fresh": conn.ts_now(now - 0.001), "zero": 0,
                  "stale": conn.ts_now(now - 90.0)}[s["ts_ecr"]] if ts else 0
        opts = _opts((tsval, ts_ecr) if tsval >= 0 else None)
        seg = Segment(seq, ack, ACK, s["window"], payload, opts)
        before = snapshot(fast)
        took = fast.receive_predicted(seq, ack, s["window"], payload, tsval,
                                      ts_ecr if tsval >= 0 else 0, now)
        conn.receive(seg, now)
        if took:
            predicted += 1
            assert snapshot(fast) == snapshot(conn), s
        else:
            assert snapshot(fast) == before, f"refused, yet changed the state: {s}"
            fast.receive(seg, now)
            assert snapshot(fast) == snapshot(conn), s
        if seq == peer_seq and conn.rcv_nxt != peer_seq:
            peer_seq = conn.rcv_nxt
        for c in both:
            if s["app_read"]:
                c.recv(1 << 20)
            c.segments_to_send(now)
            while c.next_event():
                pass
        if conn.state is not State.ESTABLISHED:
            break


def test_in_order_data_and_acks_are_predicted() -> None:
    """The common case does take the predicted path (the test above would
    pass vacuously if nothing ever were)."""
    conn = established(True, True)
    now = 100.1
    conn.send(b"q" * 100, now)
    conn.segments_to_send(now)
    seq = (PEER_ISN + 1) & MASK
    assert conn.receive_predicted(seq, conn.snd_nxt, 512, b"r" * 100, 5000,
                                  conn.ts_now(now), now + 0.001)
    assert conn.rcv_nxt == (seq + 100) & MASK
    assert conn.snd_una == conn.snd_nxt
    # A pure duplicate ACK is left to the general path (RFC 5681 dupack rules).
    assert not conn.receive_predicted(conn.rcv_nxt, conn.snd_una, 512, b"", 5001, 0, now)
