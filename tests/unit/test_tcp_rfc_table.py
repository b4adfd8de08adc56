"""Segment arrival in every state, as a table: RFC 9293 3.10.7 row by row.

The rules come first, as data (h11's _state.py style): one row per (state,
kind of arriving segment) giving what the stack must answer, the state the
connection is in afterwards and whether the segment's text reaches the
application.  The test below the table drives ustack into each state with
the scripted peer of ``tcp_peer`` (fake clock, scapy segments), sends the
one segment and checks the row, once on a connection that negotiated
timestamps (RFC 7323) and once on one that did not.  A row whose outcome
depends on timestamps has a second ``Row`` for the timestamped connection;
three kinds exist only there (RFC 7323 5 PAWS: an old TSval).

How each state is reached (``reach``): CLOSED is a port nobody listens on;
LISTEN a listener; SYN-SENT ``connect`` (its SYN unanswered); SYN-RECEIVED a
listener that answered the peer's SYN; ESTABLISHED a completed passive
open; FIN-WAIT-1 ``shutdown(SHUT_WR)`` (the application keeps its socket,
so data is still taken: an orphan's data is answered with RST instead, see
test_tcp_rfc_close); FIN-WAIT-2 the ACK of that FIN; CLOSE-WAIT the peer's
FIN; CLOSING the peer's FIN crossing ours; LAST-ACK ``shutdown`` in
CLOSE-WAIT; TIME-WAIT the peer's FIN in FIN-WAIT-2, then 10 s (so a restart
of the 2 MSL timer shows).  The stack has sent no data, so SND.UNA is its
ISS + 1 (ISS in SYN-SENT and SYN-RECEIVED), or the sequence number of its
FIN while that is unacknowledged.

The kinds of segment (``KINDS``), with RCV.NXT, SND.UNA and SND.NXT the
stack's (in CLOSED and LISTEN there are none: the segment starts at the
peer's ISN and acknowledges an arbitrary 0x1000; in SYN-SENT it starts at
the peer's ISN).  Every segment but a SYN carries ACK = SND.NXT, the
peer's natural acknowledgment, unless its kind says otherwise:

=============  ===========================================================
SYN            SYN, SEQ = RCV.NXT, no ACK
SYN+data       the same with 10 bytes of text
SYN-1          SYN, SEQ = RCV.NXT - 1 (left of the window: in SYN-RECEIVED the
               peer's SYN retransmitted)
SYN,ACK        SYN,ACK, SEQ = RCV.NXT
ACK            bare ACK, SEQ = RCV.NXT (in the window)
ACK<UNA        bare ACK, ACK = SND.UNA - 1 (an old duplicate)
ACK>NXT        bare ACK, ACK = SND.NXT + 1000 (acks data never sent)
RST@RCV.NXT    RST,ACK, SEQ = RCV.NXT
RST~window     RST,ACK, SEQ = RCV.NXT + 1000 (in the window, not at RCV.NXT)
RST!window     RST,ACK, SEQ = RCV.NXT + 2**30 (outside the window)
FIN            FIN,ACK, SEQ = RCV.NXT
data           5 bytes, SEQ = RCV.NXT
data+FIN       5 bytes and FIN, SEQ = RCV.NXT
FIN-1          FIN,ACK, SEQ = RCV.NXT - 1 (left of the window: the peer's
               FIN retransmitted, once it was taken)
data/oldTS     data with TSval older than TS.Recent (timestamps only)
ACK/oldTS      ACK with an old TSval (timestamps only)
RST/oldTS      RST@RCV.NXT with an old TSval (timestamps only)
=============  ===========================================================

Replies (``Row.reply``); SND.NXT and RCV.NXT are the stack's before the
segment, SEG.* the arriving segment's:

=========  ===================================================================
``-``      nothing
ACK        <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> (it takes nothing of the segment)
ACK'       <SEQ=SND.NXT><ACK=SEG.SEQ+SEG.LEN><CTL=ACK> (text and FIN taken; may
           be delayed by the delayed-ACK time, RFC 1122 4.2.3.2)
CHACK      a challenge ACK (RFC 5961 3.2, 4.2, 5.2): ACK's shape, counted as
           TcpExtTCPChallengeACK (and rate limited)
RST        <SEQ=SEG.ACK><CTL=RST>
RST,ACK    <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>
SYN,ACK    <SEQ=ISS><ACK=SEG.SEQ+1><CTL=SYN,ACK> (a new ISS when a new connection
           answers)
=========  ===================================================================

``after`` is the state of the connection on the segment's 4-tuple (CLOSED:
there is none; a listener stays LISTEN whatever happens).  A SYN+FIN
segment is not a row: the layer drops it before any state is looked at
(hardening, counted).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Final

import pytest
from tcp_peer import (
    PEER_IP,
    PEER_ISN,
    PEER_TS_BASE,
    Flow,
    Peer,
    Seg,
    peer,
    seq_add,
    state,
)

from ustack.tcp.socket import TcpListener, TcpSocket
from ustack.tcp.states import State


@dataclass(frozen=True)
class Row:
    reply: str  # "-", "ACK", "ACK'", "CHACK", "RST", "RST,ACK", "SYN,ACK"
    after: State
    delivered: bool = False  # the segment's text is readable by the application
    # The rule's source beyond the section's own text, or where it departs from
    # the letter of RFC 9293 and why it may (a SHOULD, a later RFC, Linux/FreeBSD).
    why: str = ""
    # TIME-WAIT only: the 2 MSL timer starts again (RFC 9293 3.10.7.4 fifth and eighth).
    restarts_2msl: bool = False


S = State
CLOSED, LISTEN, SYN_SENT, SYN_RCVD = S.CLOSED, S.LISTEN, S.SYN_SENT, S.SYN_RECEIVED
ESTAB, FW1, FW2, CLOSE_WAIT = S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT
CLOSING, LAST_ACK, TIME_WAIT = S.CLOSING, S.LAST_ACK, S.TIME_WAIT

SYN, SYN_DATA, SYN_OLD, SYN_ACK = "SYN", "SYN+data", "SYN-1", "SYN,ACK"
ACK, ACK_OLD, ACK_UNSENT = "ACK", "ACK<UNA", "ACK>NXT"
RST_AT, RST_IN, RST_OUT = "RST@RCV.NXT", "RST~window", "RST!window"
FIN, DATA, DATA_FIN, FIN_OLD = "FIN", "data", "data+FIN", "FIN-1"
DATA_PAWS, ACK_PAWS, RST_PAWS = "data/oldTS", "ACK/oldTS", "RST/oldTS"
KINDS: Final = (SYN, SYN_DATA, SYN_OLD, SYN_ACK, ACK, ACK_OLD, ACK_UNSENT, RST_AT, RST_IN, RST_OUT,
                FIN, DATA, DATA_FIN, FIN_OLD)
TS_KINDS: Final = (DATA_PAWS, ACK_PAWS, RST_PAWS)

_SYN_DATA_DROPPED = ("RFC 9293 3.10.7.2 says other text of a SYN 'should be queued'; "
                     "dropped and not acknowledged, as Linux (without TFO), FreeBSD's "
                     "and NetBSD's SYN caches: the peer sends it again")
_RST_SYN_SENT = ("RFC 5961 3.2 / RFC 9293 3.10.7.3: the ACK acknowledges our SYN; RCV.NXT "
                 "is not known yet, so the sequence number cannot be checked (Linux, "
                 "FreeBSD)")
_PAWS = "RFC 7323 5.3 R1: not acceptable, ACK and drop"
_SYN_OLD = ("RFC 5961 4.2: a challenge ACK 'irrespective of the sequence number' "
            "(counted and rate limited), not only the first check's ACK")

RULES: Final[dict[tuple[State, str], Row]] = {
    # -- RFC 9293 3.10.7.1 CLOSED: anything but a RST is answered with a RST,
    # its numbers taken from the segment; a RST is dropped.
    (CLOSED, SYN):          Row("RST,ACK", CLOSED),
    (CLOSED, SYN_DATA):     Row("RST,ACK", CLOSED),
    (CLOSED, SYN_OLD):      Row("RST,ACK", CLOSED),
    (CLOSED, SYN_ACK):      Row("RST", CLOSED),
    (CLOSED, ACK):          Row("RST", CLOSED),
    (CLOSED, ACK_OLD):      Row("RST", CLOSED),
    (CLOSED, ACK_UNSENT):   Row("RST", CLOSED),
    (CLOSED, RST_AT):       Row("-", CLOSED),
    (CLOSED, RST_IN):       Row("-", CLOSED),
    (CLOSED, RST_OUT):      Row("-", CLOSED),
    (CLOSED, FIN):          Row("RST", CLOSED),
    (CLOSED, DATA):         Row("RST", CLOSED),
    (CLOSED, DATA_FIN):     Row("RST", CLOSED),
    (CLOSED, FIN_OLD):      Row("RST", CLOSED),

    # -- RFC 9293 3.10.7.2 LISTEN: first a RST is ignored; second any ACK is
    # answered <SEQ=SEG.ACK><CTL=RST>; third a SYN makes a connection in
    # SYN-RECEIVED and is answered with SYN,ACK.
    (LISTEN, SYN):          Row("SYN,ACK", SYN_RCVD),
    (LISTEN, SYN_DATA):     Row("SYN,ACK", SYN_RCVD, why=_SYN_DATA_DROPPED),
    (LISTEN, SYN_OLD):      Row("SYN,ACK", SYN_RCVD),
    (LISTEN, SYN_ACK):      Row("RST", CLOSED),
    (LISTEN, ACK):          Row("RST", CLOSED),
    (LISTEN, ACK_OLD):      Row("RST", CLOSED),
    (LISTEN, ACK_UNSENT):   Row("RST", CLOSED),
    (LISTEN, RST_AT):       Row("-", CLOSED),
    (LISTEN, RST_IN):       Row("-", CLOSED),
    (LISTEN, RST_OUT):      Row("-", CLOSED),
    (LISTEN, FIN):          Row("RST", CLOSED),
    (LISTEN, DATA):         Row("RST", CLOSED),
    (LISTEN, DATA_FIN):     Row("RST", CLOSED),
    (LISTEN, FIN_OLD):      Row("RST", CLOSED),

    # -- RFC 9293 3.10.7.3 SYN-SENT: first the ACK (=< ISS or > SND.NXT: RST
    # unless it is one); second the RST (with an acceptable ACK: reset);
    # fourth the SYN (our SYN acknowledged: ESTABLISHED and ACK; else the
    # simultaneous open: SYN-RECEIVED and SYN,ACK); fifth neither SYN nor
    # RST: drop.
    (SYN_SENT, SYN):        Row("SYN,ACK", SYN_RCVD),
    (SYN_SENT, SYN_DATA):   Row("SYN,ACK", SYN_RCVD, why=(
        "RFC 9293 3.10.7.3 queues the text until ESTABLISHED; Linux drops it too "
        "(tcp_rcv_synsent_state_process: 'discard packet for sanity')")),
    (SYN_SENT, SYN_OLD):    Row("SYN,ACK", SYN_RCVD),
    (SYN_SENT, SYN_ACK):    Row("ACK'", ESTAB),
    (SYN_SENT, ACK):        Row("-", SYN_SENT),
    (SYN_SENT, ACK_OLD):    Row("RST", SYN_SENT),
    (SYN_SENT, ACK_UNSENT): Row("RST", SYN_SENT),
    (SYN_SENT, RST_AT):     Row("-", CLOSED),
    (SYN_SENT, RST_IN):     Row("-", CLOSED, why=_RST_SYN_SENT),
    (SYN_SENT, RST_OUT):    Row("-", CLOSED, why=_RST_SYN_SENT),
    (SYN_SENT, FIN):        Row("-", SYN_SENT),
    (SYN_SENT, DATA):       Row("-", SYN_SENT),
    (SYN_SENT, DATA_FIN):   Row("-", SYN_SENT),
    (SYN_SENT, FIN_OLD):    Row("-", SYN_SENT),

    # -- RFC 9293 3.10.7.4 SYN-RECEIVED (a passive open): first the sequence
    # number (unacceptable: ACK); second the RST (RFC 5961 3.2: at RCV.NXT the
    # connection goes back to LISTEN, i.e. is deleted silently, elsewhere in
    # the window a challenge ACK); fourth the SYN; fifth the ACK (SND.UNA <
    # SEG.ACK =< SND.NXT: ESTABLISHED, and processing goes on there; else
    # <SEQ=SEG.ACK><CTL=RST>, the state unchanged).
    (SYN_RCVD, SYN):        Row("CHACK", SYN_RCVD, why=(
        "RFC 9293 3.10.7.4 fourth: a passive SYN-RECEIVED 'returns to LISTEN'; ustack "
        "answers any SYN with a challenge ACK as in the later states (RFC 5961 4), "
        "which keeps the half-open connection from being deleted blindly and still "
        "lets a restarted peer reset it (its RST at RCV.NXT); FreeBSD's SYN cache "
        "also keeps the entry (it resends its SYN,ACK), Linux resets it")),
    (SYN_RCVD, SYN_DATA):   Row("CHACK", SYN_RCVD, why="as SYN"),
    (SYN_RCVD, SYN_OLD):    Row("SYN,ACK", SYN_RCVD, why=(
        "the peer's SYN repeated: our SYN,ACK was lost, so it goes again at once, "
        "as Linux and FreeBSD do; RFC 9293 3.10.7.4 "
        "first check's <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> would be dropped by a peer "
        "still in SYN-SENT (3.10.7.3) and leave it waiting for our retransmission")),
    (SYN_RCVD, SYN_ACK):    Row("CHACK", SYN_RCVD, why="as SYN"),
    (SYN_RCVD, ACK):        Row("-", ESTAB),
    (SYN_RCVD, ACK_OLD):    Row("RST", SYN_RCVD),
    (SYN_RCVD, ACK_UNSENT): Row("RST", SYN_RCVD, why=(
        "the SYN-RECEIVED rule of the fifth check (Linux, FreeBSD); RFC 5961 5.2's "
        "ACK-and-drop is for the synchronized states")),
    (SYN_RCVD, RST_AT):     Row("-", CLOSED),
    (SYN_RCVD, RST_IN):     Row("CHACK", SYN_RCVD),
    (SYN_RCVD, RST_OUT):    Row("-", SYN_RCVD),
    (SYN_RCVD, FIN):        Row("ACK'", CLOSE_WAIT),
    (SYN_RCVD, DATA):       Row("ACK'", ESTAB, delivered=True),
    (SYN_RCVD, DATA_FIN):   Row("ACK'", CLOSE_WAIT, delivered=True),
    (SYN_RCVD, FIN_OLD):    Row("ACK", SYN_RCVD),

    # -- RFC 9293 3.10.7.4 ESTABLISHED: first the sequence number; second the
    # RST (RFC 5961 3.2); fourth any SYN: challenge ACK (RFC 5961 4.2); fifth
    # the ACK (> SND.NXT: ACK and drop, RFC 5961 5.2; a duplicate is
    # ignored); seventh the text; eighth the FIN (CLOSE-WAIT).
    (ESTAB, SYN):           Row("CHACK", ESTAB),
    (ESTAB, SYN_DATA):      Row("CHACK", ESTAB),
    (ESTAB, SYN_OLD):       Row("CHACK", ESTAB, why=_SYN_OLD),
    (ESTAB, SYN_ACK):       Row("CHACK", ESTAB),
    (ESTAB, ACK):           Row("-", ESTAB),
    (ESTAB, ACK_OLD):       Row("-", ESTAB),
    (ESTAB, ACK_UNSENT):    Row("CHACK", ESTAB),
    (ESTAB, RST_AT):        Row("-", CLOSED),
    (ESTAB, RST_IN):        Row("CHACK", ESTAB),
    (ESTAB, RST_OUT):       Row("-", ESTAB),
    (ESTAB, FIN):           Row("ACK'", CLOSE_WAIT),
    (ESTAB, DATA):          Row("ACK'", ESTAB, delivered=True),
    (ESTAB, DATA_FIN):      Row("ACK'", CLOSE_WAIT, delivered=True),
    (ESTAB, FIN_OLD):       Row("ACK", ESTAB),

    # -- FIN-WAIT-1 (our FIN unacknowledged): as ESTABLISHED; fifth, the ACK
    # of our FIN moves to FIN-WAIT-2; eighth, a FIN: TIME-WAIT if ours is
    # acknowledged (perhaps by this segment), else CLOSING.
    (FW1, SYN):             Row("CHACK", FW1),
    (FW1, SYN_DATA):        Row("CHACK", FW1),
    (FW1, SYN_OLD):         Row("CHACK", FW1, why=_SYN_OLD),
    (FW1, SYN_ACK):         Row("CHACK", FW1),
    (FW1, ACK):             Row("-", FW2),
    (FW1, ACK_OLD):         Row("-", FW1),
    (FW1, ACK_UNSENT):      Row("CHACK", FW1),
    (FW1, RST_AT):          Row("-", CLOSED),
    (FW1, RST_IN):          Row("CHACK", FW1),
    (FW1, RST_OUT):         Row("-", FW1),
    (FW1, FIN):             Row("ACK'", TIME_WAIT),
    (FW1, DATA):            Row("ACK'", FW2, delivered=True),
    (FW1, DATA_FIN):        Row("ACK'", TIME_WAIT, delivered=True),
    (FW1, FIN_OLD):         Row("ACK", FW1),

    # -- FIN-WAIT-2: as ESTABLISHED; eighth, a FIN: TIME-WAIT.
    (FW2, SYN):             Row("CHACK", FW2),
    (FW2, SYN_DATA):        Row("CHACK", FW2),
    (FW2, SYN_OLD):         Row("CHACK", FW2, why=_SYN_OLD),
    (FW2, SYN_ACK):         Row("CHACK", FW2),
    (FW2, ACK):             Row("-", FW2),
    (FW2, ACK_OLD):         Row("-", FW2),
    (FW2, ACK_UNSENT):      Row("CHACK", FW2),
    (FW2, RST_AT):          Row("-", CLOSED),
    (FW2, RST_IN):          Row("CHACK", FW2),
    (FW2, RST_OUT):         Row("-", FW2),
    (FW2, FIN):             Row("ACK'", TIME_WAIT),
    (FW2, DATA):            Row("ACK'", FW2, delivered=True),
    (FW2, DATA_FIN):        Row("ACK'", TIME_WAIT, delivered=True),
    (FW2, FIN_OLD):         Row("ACK", FW2),

    # -- CLOSE-WAIT (the peer's FIN taken): as ESTABLISHED; seventh, text
    # "should not occur": ignored; eighth, a FIN leaves the state as it is.
    (CLOSE_WAIT, SYN):        Row("CHACK", CLOSE_WAIT),
    (CLOSE_WAIT, SYN_DATA):   Row("CHACK", CLOSE_WAIT),
    (CLOSE_WAIT, SYN_OLD):    Row("CHACK", CLOSE_WAIT, why=_SYN_OLD),
    (CLOSE_WAIT, SYN_ACK):    Row("CHACK", CLOSE_WAIT),
    (CLOSE_WAIT, ACK):        Row("-", CLOSE_WAIT),
    (CLOSE_WAIT, ACK_OLD):    Row("-", CLOSE_WAIT),
    (CLOSE_WAIT, ACK_UNSENT): Row("CHACK", CLOSE_WAIT),
    (CLOSE_WAIT, RST_AT):     Row("-", CLOSED),
    (CLOSE_WAIT, RST_IN):     Row("CHACK", CLOSE_WAIT),
    (CLOSE_WAIT, RST_OUT):    Row("-", CLOSE_WAIT),
    (CLOSE_WAIT, FIN):        Row("ACK", CLOSE_WAIT, why=(
        "a second FIN beyond the first: acknowledged, not taken (RCV.NXT is past the "
        "peer's FIN; the eighth check's 'advance RCV.NXT over the FIN' is for the first)")),
    (CLOSE_WAIT, DATA):       Row("-", CLOSE_WAIT),
    (CLOSE_WAIT, DATA_FIN):   Row("ACK", CLOSE_WAIT, why="as FIN; the text is ignored"),
    (CLOSE_WAIT, FIN_OLD):    Row("ACK", CLOSE_WAIT),

    # -- CLOSING (both FINs sent, ours unacknowledged): fifth, the ACK of our
    # FIN enters TIME-WAIT, which then ignores text and acknowledges a FIN.
    (CLOSING, SYN):         Row("CHACK", CLOSING),
    (CLOSING, SYN_DATA):    Row("CHACK", CLOSING),
    (CLOSING, SYN_OLD):     Row("CHACK", CLOSING, why=_SYN_OLD),
    (CLOSING, SYN_ACK):     Row("CHACK", CLOSING),
    (CLOSING, ACK):         Row("-", TIME_WAIT),
    (CLOSING, ACK_OLD):     Row("-", CLOSING),
    (CLOSING, ACK_UNSENT):  Row("CHACK", CLOSING),
    (CLOSING, RST_AT):      Row("-", CLOSED),
    (CLOSING, RST_IN):      Row("CHACK", CLOSING),
    (CLOSING, RST_OUT):     Row("-", CLOSING),
    (CLOSING, FIN):         Row("ACK", TIME_WAIT),
    (CLOSING, DATA):        Row("-", TIME_WAIT),
    (CLOSING, DATA_FIN):    Row("ACK", TIME_WAIT),
    (CLOSING, FIN_OLD):     Row("ACK", CLOSING),

    # -- LAST-ACK: fifth, the ACK of our FIN deletes the connection and
    # processing stops there (nothing is answered).
    (LAST_ACK, SYN):        Row("CHACK", LAST_ACK),
    (LAST_ACK, SYN_DATA):   Row("CHACK", LAST_ACK),
    (LAST_ACK, SYN_OLD):    Row("CHACK", LAST_ACK, why=_SYN_OLD),
    (LAST_ACK, SYN_ACK):    Row("CHACK", LAST_ACK),
    (LAST_ACK, ACK):        Row("-", CLOSED),
    (LAST_ACK, ACK_OLD):    Row("-", LAST_ACK),
    (LAST_ACK, ACK_UNSENT): Row("CHACK", LAST_ACK),
    (LAST_ACK, RST_AT):     Row("-", CLOSED),
    (LAST_ACK, RST_IN):     Row("CHACK", LAST_ACK),
    (LAST_ACK, RST_OUT):    Row("-", LAST_ACK),
    (LAST_ACK, FIN):        Row("-", CLOSED),
    (LAST_ACK, DATA):       Row("-", CLOSED),
    (LAST_ACK, DATA_FIN):   Row("-", CLOSED),
    (LAST_ACK, FIN_OLD):    Row("ACK", LAST_ACK),

    # -- TIME-WAIT: the peer's FIN again is acknowledged and restarts the 2 MSL
    # timer (fifth and eighth); a SYN may open a new connection (RFC 6191,
    # below for timestamps), else it gets a challenge ACK.
    (TIME_WAIT, SYN):        Row("CHACK", TIME_WAIT, why=(
        "RFC 6191 / RFC 1122 4.2.2.13: without timestamps a SYN reopens only above "
        "RCV.NXT (Linux: after(seq, rcv_nxt)); this one is at RCV.NXT")),
    (TIME_WAIT, SYN_DATA):   Row("CHACK", TIME_WAIT, why="as SYN"),
    (TIME_WAIT, SYN_OLD):    Row("CHACK", TIME_WAIT, why=_SYN_OLD),
    (TIME_WAIT, SYN_ACK):    Row("CHACK", TIME_WAIT),
    (TIME_WAIT, ACK):        Row("-", TIME_WAIT),
    (TIME_WAIT, ACK_OLD):    Row("-", TIME_WAIT),
    (TIME_WAIT, ACK_UNSENT): Row("CHACK", TIME_WAIT),
    (TIME_WAIT, RST_AT):     Row("-", TIME_WAIT, why=(
        "RFC 9293 3.10.7.4 second: CLOSED; ignored instead, RFC 1337 (TIME-WAIT "
        "assassination), as FreeBSD (tcp_twcheck) and Linux with tcp_rfc1337=1")),
    (TIME_WAIT, RST_IN):     Row("CHACK", TIME_WAIT),
    (TIME_WAIT, RST_OUT):    Row("-", TIME_WAIT),
    (TIME_WAIT, FIN):        Row("ACK", TIME_WAIT, restarts_2msl=True),
    (TIME_WAIT, DATA):       Row("-", TIME_WAIT),
    (TIME_WAIT, DATA_FIN):   Row("ACK", TIME_WAIT, restarts_2msl=True),
    (TIME_WAIT, FIN_OLD):    Row("ACK", TIME_WAIT, restarts_2msl=True),
}

# Rows for a connection that negotiated timestamps where the outcome differs,
# and the PAWS kinds (RFC 7323 5.3: R1 drops a non-RST segment whose TSval
# is older than TS.Recent, with an ACK; a RST is not subject to PAWS).
# PAWS needs TS.Recent, which CLOSED, LISTEN and SYN-SENT do not have: there
# the old TSval changes nothing.
TS_RULES: Final[dict[tuple[State, str], Row]] = {
    (TIME_WAIT, SYN):      Row("SYN,ACK", SYN_RCVD, why=(
        "RFC 6191 / RFC 9293 3.10.7.4 first (the note on [40]): a SYN whose TSval is "
        "newer than TS.Recent opens a new connection when a listener is there")),
    (TIME_WAIT, SYN_DATA): Row("SYN,ACK", SYN_RCVD, why=_SYN_DATA_DROPPED),
    (TIME_WAIT, SYN_OLD):  Row("SYN,ACK", SYN_RCVD, why="as SYN: the timestamp decides"),
}
for _st in (CLOSED, LISTEN, SYN_SENT):
    TS_RULES[(_st, DATA_PAWS)] = RULES[(_st, DATA)]
    TS_RULES[(_st, ACK_PAWS)] = RULES[(_st, ACK)]
    TS_RULES[(_st, RST_PAWS)] = RULES[(_st, RST_AT)]
for _st in (SYN_RCVD, ESTAB, FW1, FW2, CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT):
    TS_RULES[(_st, DATA_PAWS)] = Row("ACK", _st, why=_PAWS)
    TS_RULES[(_st, ACK_PAWS)] = Row("ACK", _st, why=_PAWS)
    TS_RULES[(_st, RST_PAWS)] = RULES[(_st, RST_AT)]

STATES: Final = (CLOSED, LISTEN, SYN_SENT, SYN_RCVD, ESTAB, FW1, FW2, CLOSE_WAIT, CLOSING,
                 LAST_ACK, TIME_WAIT)
NO_PEER_ACK: Final = 0x1000  # the ACK field where the stack has no SND.NXT yet
OLD_TSVAL: Final = PEER_TS_BASE - 1000  # older than any TSval the peer sent
TW_IDLE: Final = 10.0  # seconds spent in TIME-WAIT before the segment arrives
MSL2: Final = 60.0


def rule(st: State, kind: str, ts: bool) -> Row:
    if ts and (st, kind) in TS_RULES:
        return TS_RULES[(st, kind)]
    return RULES[(st, kind)]


def test_the_table_is_complete() -> None:
    assert set(RULES) == {(s, k) for s in STATES for k in KINDS}
    assert {k for _, k in TS_RULES} >= set(TS_KINDS)
    assert {(s, k) for s in STATES for k in TS_KINDS} <= set(TS_RULES)


# -- reaching a state -----------------------------------------------------------------


@dataclass
class Ctx:
    """A connection (or none) in the state of a row; ``f.snd_nxt`` is the
    stack's RCV.NXT, ``snd_una``/``snd_nxt`` its SND.UNA/SND.NXT."""

    p: Peer
    f: Flow
    snd_una: int
    snd_nxt: int
    sock: TcpSocket | None = None
    listener: TcpListener | None = None
    tw_since: float = 0.0

    def key(self) -> tuple[bytes, int, bytes, int]:
        return (socket.inet_aton("198.18.0.1"), self.f.dport, socket.inet_aton(PEER_IP),
                self.f.sport)

    def current(self) -> TcpSocket | None:
        """The socket on the flow's 4-tuple now."""
        return self.p.stack.tcp.conns.get(self.key())


def _shutdown(ctx: Ctx) -> Seg:
    ctx.f.s.shutdown_write()
    ctx.p.flush()
    return ctx.f.expect1("FA")


def reach(p: Peer, st: State, ts: bool) -> Ctx:
    if st in (CLOSED, LISTEN):
        lst = p.listen(80) if st is LISTEN else None
        f = Flow(p, p.new_port(), 80 if lst else 81, PEER_ISN)
        f.ts_ok = ts
        f.rcv_nxt = NO_PEER_ACK
        return Ctx(p, f, NO_PEER_ACK, NO_PEER_ACK, listener=lst)
    if st is SYN_SENT:
        sock = p.stack.tcp_connect((PEER_IP, 80))
        p.flush()
        [syn] = p.take()
        f = Flow(p, 80, sock.conn.local[1], PEER_ISN)
        f.sock = sock
        f.ts_ok = ts
        f.ts_recent = 0
        f.rcv_nxt = seq_add(syn.seq, 1)
        return Ctx(p, f, syn.seq, seq_add(syn.seq, 1), sock=sock)
    if st is SYN_RCVD:
        lst = p.listen(80)
        f = Flow(p, p.new_port(), 80, PEER_ISN)
        f.send_syn(mss=1460, sack=True, ts=ts, wscale=7, win=65535)
        sa = f.expect1("SA")
        f.adopt_syn(sa, offered_ts=ts, offered_ws=7)
        ctx = Ctx(p, f, sa.seq, seq_add(sa.seq, 1), listener=lst)
        ctx.sock = ctx.current()
        return ctx
    lst = p.listen(80)
    f = p.accept(ts=ts, listener=lst)
    assert f.ts_ok is ts
    ctx = Ctx(p, f, f.rcv_nxt, f.rcv_nxt, sock=f.s, listener=lst)
    if st in (FW1, FW2, CLOSING, TIME_WAIT):
        fin = _shutdown(ctx)
        ctx.snd_una, ctx.snd_nxt = fin.seq, fin.end
        if st is CLOSING:
            f.send("FA", ack=fin.seq)  # the FINs cross
            f.expect1("A")
        elif st in (FW2, TIME_WAIT):
            f.send("A", ack=fin.end)
            ctx.snd_una = fin.end
            if st is TIME_WAIT:
                f.send("FA")
                f.expect1("A")
                ctx.tw_since = p.now
                p.advance(TW_IDLE)
    elif st in (CLOSE_WAIT, LAST_ACK):
        f.send("FA")
        f.expect1("A")
        if st is LAST_ACK:
            fin = _shutdown(ctx)
            ctx.snd_una, ctx.snd_nxt = fin.seq, fin.end
    assert not f.take()
    return ctx


# -- the segment of a kind --------------------------------------------------------------

PAYLOAD: Final = b"hello"
SYN_PAYLOAD: Final = b"syn-text.."


def send(ctx: Ctx, kind: str, ts: bool) -> tuple[int, int, int, bool]:
    """Send the segment of ``kind``; returns its SEQ, SEG.LEN, ACK and whether
    the ACK bit was set."""
    f = ctx.f
    rcv_nxt = f.snd_nxt
    seq, ack, flags, payload = rcv_nxt, ctx.snd_nxt, "A", b""
    tsval: int | None = None
    if kind in (SYN, SYN_DATA, SYN_OLD, SYN_ACK):
        flags = "SA" if kind == SYN_ACK else "S"
        if kind == SYN_OLD:
            seq = seq_add(rcv_nxt, -1)
        payload = SYN_PAYLOAD if kind == SYN_DATA else b""
        opts: list[tuple[str, object]] = [("MSS", 1460)]
        if ts:
            opts += [("NOP", None), ("NOP", None),
                     ("Timestamp", (f.tsval(), f.ts_recent if kind == SYN_ACK else 0))]
        f.send(flags, payload, seq=seq, ack=ack, options=opts)
    else:
        if kind == ACK_OLD:
            ack = seq_add(ctx.snd_una, -1)
        elif kind == ACK_UNSENT:
            ack = seq_add(ctx.snd_nxt, 1000)
        elif kind in (RST_AT, RST_PAWS):
            flags = "RA"
        elif kind == RST_IN:
            flags, seq = "RA", seq_add(rcv_nxt, 1000)
        elif kind == RST_OUT:
            flags, seq = "RA", seq_add(rcv_nxt, 1 << 30)
        elif kind == FIN:
            flags = "FA"
        elif kind in (DATA, DATA_PAWS):
            flags, payload = "PA", PAYLOAD
        elif kind == DATA_FIN:
            flags, payload = "FPA", PAYLOAD
        elif kind == FIN_OLD:
            flags, seq = "FA", seq_add(rcv_nxt, -1)
        if kind in TS_KINDS:
            tsval = OLD_TSVAL
        f.send(flags, payload, seq=seq, ack=ack, tsval=tsval)
    seg_len = len(payload) + ("S" in flags) + ("F" in flags)
    return seq, seg_len, ack, "A" in flags


# -- the test ---------------------------------------------------------------------------

CASES: Final = ([(s, k, ts) for s in STATES for k in KINDS for ts in (False, True)]
                + [(s, k, True) for s in STATES for k in TS_KINDS])


@pytest.mark.parametrize(("st", "kind", "ts"), CASES,
                         ids=[f"{s.value}-{k}-{'ts' if ts else 'nots'}" for s, k, ts in CASES])
def test_segment_arrives(st: State, kind: str, ts: bool) -> None:
    row = rule(st, kind, ts)
    with peer() as p:
        ctx = reach(p, st, ts)
        f = ctx.f
        before = ctx.sock
        if before is not None:
            assert state(before) is st
        rcv_nxt = f.snd_nxt
        challenges = p.stack.counters.TcpExtTCPChallengeACK
        seq, seg_len, ack, has_ack = send(ctx, kind, ts)
        p.advance(p.cfg.delack + 0.001)  # a delayed ACK goes within this
        replies = f.take()
        _check_reply(row, replies, ctx, rcv_nxt, seq, seg_len, ack, has_ack)
        assert p.stack.counters.TcpExtTCPChallengeACK - challenges == (row.reply == "CHACK")

        now_sock = ctx.current()
        after = now_sock.state if now_sock is not None else CLOSED
        assert after is row.after, f"state {after.value}, the table says {row.after.value}"
        if ctx.listener is not None:  # a listener stays LISTEN whatever happens
            assert not ctx.listener.closed
            assert p.stack.tcp.listeners[(bytes(4), 80)] is ctx.listener
        # Whose receive queue: the socket the segment met, or the one it made.
        reader = before if before is not None else now_sock
        got = reader.conn.readable_bytes if reader is not None else 0
        want = len(PAYLOAD) if row.delivered else 0
        assert got == want, f"{got} bytes readable, the table says {want}"

        if st is TIME_WAIT and after is TIME_WAIT:
            # Just past 2 MSL from entering TIME-WAIT: still there iff restarted.
            p.run_to(ctx.tw_since + MSL2 + 0.001)
            gone = ctx.current() is None
            assert gone is not row.restarts_2msl, (
                "2 MSL restarted" if not gone else "2 MSL not restarted")


def _check_reply(row: Row, replies: list[Seg], ctx: Ctx, rcv_nxt: int, seq: int, seg_len: int,
                 ack: int, has_ack: bool) -> None:
    if row.reply == "-":
        assert replies == [], f"the table says nothing is sent: {replies}"
        return
    assert len(replies) == 1, f"the table says {row.reply}: {replies}"
    [r] = replies
    got = (r.flags, r.seq, r.ack)
    if row.reply in ("ACK", "CHACK"):
        assert got == ("A", ctx.snd_nxt, rcv_nxt), f"{row.reply}: {r}"
    elif row.reply == "ACK'":
        assert got == ("A", ctx.snd_nxt, seq_add(seq, seg_len)), f"{row.reply}: {r}"
    elif row.reply == "RST":
        assert has_ack
        assert got == ("R", ack, 0), f"{row.reply}: {r}"
    elif row.reply == "RST,ACK":
        assert got == ("RA", 0, seq_add(seq, seg_len)), f"{row.reply}: {r}"
    elif row.reply == "SYN,ACK":
        assert (r.flags, r.ack) == ("SA", seq_add(seq, 1)), f"{row.reply}: {r}"
        if ctx.sock is not None and ctx.current() is ctx.sock:
            assert r.seq == ctx.snd_una  # our own SYN,ACK: ISS
    else:  # pragma: no cover
        raise AssertionError(f"unknown reply {row.reply!r}")
    assert not r.payload
