"""The TCP connection states and the transitions between them, as a table.

Rules (RFC 9293 3.3.2 and figure 5, plus the states it leaves implicit):

* The eleven RFC states are the states the application and ``netstat``
  see.  Conditions the RFC leaves implicit are flags of the connection,
  not extra states, and each is named here so the table stays honest:

  - ``fin_queued``: close()/shutdown(SHUT_WR) was called.  The state moves
    at once (ESTABLISHED -> FIN_WAIT_1, CLOSE_WAIT -> LAST_ACK: what the
    application sees, as on Linux), but the FIN is sent only after every
    queued byte (it is the last "byte" of the send stream, so it also waits
    for send window like data, and is probed like data against a zero
    window).
  - a FIN that arrives while ours still waits behind data: FIN_WAIT_1 +
    FIN -> CLOSING, the same row as when ours was sent, because in both
    cases our FIN is not acknowledged.  A FIN that comes with the ACK of
    ours takes two rows: the ACK field is checked before the FIN bit (RFC
    9293 3.10.7.4, fifth and eighth), FIN_WAIT_1 -> FIN_WAIT_2 -> TIME_WAIT.
  - ``orphan``: the application called close() and holds no handle.  New
    data that arrives for an orphan (in FIN_WAIT_1 or FIN_WAIT_2: text is
    taken in no other state it can be in) is answered with RST and the
    connection is dropped (RFC 9293 3.10.7.4 and RFC 2525 2.17; Linux).
    An orphan in FIN_WAIT_2 is reaped after ``fin_timeout``.
* Every transition is one row below; the tests enumerate the table.  Events
  that are answered without a state change (a challenge ACK, a duplicate)
  are not events of the table: the connection does not call ``next_state``
  for them; nor is an acceptable RST in TIME-WAIT, which the connection
  ignores (RFC 1337).  Rows are for what a connection can meet: an event
  the table has no row for, in the state the connection is in, is a bug in
  the connection: ``next_state`` raises ``TransitionError`` instead of
  leaving the state as it was.
"""

from __future__ import annotations

from enum import Enum


class State(Enum):
    # Enum's own __hash__ is Python code (hash of the name); every segment
    # tests the state against a frozenset, so hash by identity, in C.
    __hash__ = object.__hash__

    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"


class Ev(Enum):
    """What can move a connection: the application, the peer, a timer."""

    # ``next_state`` looks up (state, event) for every transition: hash by
    # identity, in C, as State does (Enum's __hash__ is Python code).
    __hash__ = object.__hash__

    APP_CONNECT = "connect()"
    APP_LISTEN = "listen()"
    APP_CLOSE = "close() or shutdown(SHUT_WR)"
    APP_ABORT = "abort()"
    RCV_SYN = "SYN received"
    RCV_SYN_ACK = "SYN-ACK received (acceptable)"
    RCV_ACK_OF_SYN = "ACK of our SYN"
    RCV_FIN = "FIN received (in order)"
    RCV_ACK_OF_FIN = "ACK of our FIN"
    RCV_RST = "acceptable RST"
    RCV_ICMP_HARD = "ICMP protocol or port unreachable (SYN-SENT)"
    RCV_DATA_AFTER_CLOSE = "new data for an orphan"
    TIMEOUT = "retransmission limit (R2) or keepalive"
    TIMEWAIT_EXPIRED = "2*MSL elapsed"
    FINWAIT2_EXPIRED = "orphan FIN-WAIT-2 timeout"


S, E = State, Ev
_ANY_SYNC = (S.SYN_RECEIVED, S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT,
             S.CLOSING, S.LAST_ACK)

TRANSITIONS: dict[tuple[State, Ev], State] = {
    # Opening (RFC 9293 3.5, figure 6 and the simultaneous open of figure 7).
    (S.CLOSED, E.APP_CONNECT): S.SYN_SENT,
    (S.CLOSED, E.APP_LISTEN): S.LISTEN,
    (S.LISTEN, E.RCV_SYN): S.SYN_RECEIVED,
    (S.SYN_SENT, E.RCV_SYN_ACK): S.ESTABLISHED,
    (S.SYN_SENT, E.RCV_SYN): S.SYN_RECEIVED,  # simultaneous open
    (S.SYN_SENT, E.APP_CLOSE): S.CLOSED,
    (S.SYN_RECEIVED, E.RCV_ACK_OF_SYN): S.ESTABLISHED,
    (S.SYN_RECEIVED, E.APP_CLOSE): S.FIN_WAIT_1,
    # Closing: we close first (RFC 9293 3.6, figure 12).
    (S.ESTABLISHED, E.APP_CLOSE): S.FIN_WAIT_1,
    (S.FIN_WAIT_1, E.RCV_ACK_OF_FIN): S.FIN_WAIT_2,
    (S.FIN_WAIT_1, E.RCV_FIN): S.CLOSING,  # simultaneous close, or our FIN still queued
    (S.FIN_WAIT_2, E.RCV_FIN): S.TIME_WAIT,
    (S.FIN_WAIT_2, E.FINWAIT2_EXPIRED): S.CLOSED,
    (S.CLOSING, E.RCV_ACK_OF_FIN): S.TIME_WAIT,
    (S.TIME_WAIT, E.TIMEWAIT_EXPIRED): S.CLOSED,
    # Closing: the peer closes first.
    (S.ESTABLISHED, E.RCV_FIN): S.CLOSE_WAIT,
    (S.CLOSE_WAIT, E.APP_CLOSE): S.LAST_ACK,
    (S.LAST_ACK, E.RCV_ACK_OF_FIN): S.CLOSED,
    # Failure: reset, abort, timeout, data after close (RFC 9293 3.5.2, 3.8.3).
    (S.SYN_SENT, E.RCV_RST): S.CLOSED,
    (S.SYN_SENT, E.RCV_ICMP_HARD): S.CLOSED,  # RFC 9293 3.9.2.2 SHLD-26, RFC 5461 4
    (S.SYN_SENT, E.APP_ABORT): S.CLOSED,
    (S.SYN_SENT, E.TIMEOUT): S.CLOSED,
}
for _s in _ANY_SYNC:
    TRANSITIONS[(_s, E.RCV_RST)] = S.CLOSED
    TRANSITIONS[(_s, E.APP_ABORT)] = S.CLOSED
    TRANSITIONS[(_s, E.TIMEOUT)] = S.CLOSED
for _s in (S.FIN_WAIT_1, S.FIN_WAIT_2):
    TRANSITIONS[(_s, E.RCV_DATA_AFTER_CLOSE)] = S.CLOSED
TRANSITIONS[(S.TIME_WAIT, E.APP_ABORT)] = S.CLOSED
# abort() of a connection that never synchronized (a listener's, or one
# already closed) only has to be sure it is CLOSED.
TRANSITIONS[(S.LISTEN, E.APP_ABORT)] = S.CLOSED
TRANSITIONS[(S.CLOSED, E.APP_ABORT)] = S.CLOSED

SYNCHRONIZED = frozenset(_ANY_SYNC) | {S.TIME_WAIT}
# States in which the peer may still send us data (RFC 9293 3.10.7.4 step 7).
RECEIVING = frozenset({S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2})
# States in which the application may still queue data to send.
SENDING = frozenset({S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED, S.CLOSE_WAIT})


class TransitionError(LookupError):
    """An event the state table has no row for: a bug, never the peer's doing."""


def next_state(state: State, event: Ev) -> State:
    """The state after ``event``; TransitionError when the table has no row."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise TransitionError(f"no transition for {event.name} in {state.value}") from None
