"""The state table is the only way a connection changes state.

``states.next_state`` raises for an event the table has no row for (a
missing row used to keep the state silently), and nothing in ``ustack.tcp``
assigns a connection's ``state`` except the TCB's ``move`` (and its
``__init__``, which starts in CLOSED).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ustack.tcp
from ustack.tcp.config import TcpConfig
from ustack.tcp.connection import TcpConnection
from ustack.tcp.states import TRANSITIONS, Ev, State, TransitionError, next_state


def test_a_missing_row_raises() -> None:
    assert (State.ESTABLISHED, Ev.APP_CONNECT) not in TRANSITIONS
    with pytest.raises(TransitionError, match=r"APP_CONNECT.*ESTABLISHED"):
        next_state(State.ESTABLISHED, Ev.APP_CONNECT)


def test_every_row_is_returned_as_written() -> None:
    for (state, ev), after in TRANSITIONS.items():
        assert next_state(state, ev) is after


def test_abort_has_a_row_from_every_state() -> None:
    """abort() has a row from every state (RFC 9293 3.10.5): nothing in between
    can make it raise, whatever the connection went through."""
    for state in State:
        assert next_state(state, Ev.APP_ABORT) is State.CLOSED


def test_a_connection_moves_only_through_the_table() -> None:
    """No ``.state = `` assignment in ustack.tcp outside Tcb.__init__ and Tcb.move."""
    root = Path(ustack.tcp.__file__).parent
    offenders = []
    for path in sorted(root.glob("*.py")):
        tree = ast.parse(path.read_text())
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef):
                continue
            for node in ast.walk(func):
                targets = node.targets if isinstance(node, ast.Assign) else (
                    [node.target] if isinstance(node, ast.AugAssign | ast.AnnAssign) else [])
                for t in targets:
                    if isinstance(t, ast.Attribute) and t.attr == "state" and not (
                            path.name == "tcb.py" and func.name in ("__init__", "move")):
                        offenders.append(f"{path.name}:{node.lineno} in {func.name}")
    assert offenders == []


def test_close_of_a_closed_connection_needs_no_row() -> None:
    """close() and abort() on a connection that never opened: CLOSED, and told so."""
    conn = TcpConnection((b"\xc6\x12\x00\x01", 1), (b"\xc6\x12\x00\x02", 2), 1000,
                         TcpConfig(), 0.0)
    conn.close(0.0)
    assert conn.state is State.CLOSED
    conn.abort(0.0)
    assert conn.state is State.CLOSED


def test_the_enums_of_the_per_segment_path_hash_in_c() -> None:
    """State, Ev and Event are hashed on every transition and event lookup
    (``next_state``'s (state, event) key): Enum's own ``__hash__`` is Python
    code, an interpreted call per lookup from compiled code (issue 12: 6
    calls per HTTP connection, a fifth of the server's connection rate).
    Hashing by identity is right for singletons and is object's, in C."""
    from ustack.tcp.segment import Event
    from ustack.tcp.states import Ev, State

    for enum in (State, Ev, Event):
        assert enum.__hash__ is object.__hash__, enum
