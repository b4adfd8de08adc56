"""A per-connection event trace of TCP, as JSON lines (``--trace FILE``).

Each connection the layer makes while a ``Tracer`` is set (``TcpLayer.tracer``)
gets a small id and the tracer as its own ``tracer``; the TCP code then
calls ``Tcb.trace`` where something worth seeing happens (a segment sent or
resent, an ACK, new SACK blocks, a timeout, fast retransmit and recovery,
a state change).  Every hook is one ``if tp.tracer is not None:`` test, so
a stack that does not trace pays one compare per hook and nothing else.

One line per event, an object with at least these keys (``REQUIRED``):

    t         the stack's clock, seconds
    conn      the connection's id (the ``open`` event also has ``tuple``:
              local address, local port, peer address, peer port; and
              ``iss``, the absolute sequence number the others count from)
    ev        open, state, close, send, retransmit, ack, sack, rto, tlp,
              fast-retransmit, recovery, recovery-end, undo, recv
    state     the RFC 9293 state after the event
    una, nxt  SND.UNA and SND.NXT, relative to the ISS (our SYN is 0, the
              first data byte 1), as Wireshark's relative sequence numbers
    cwnd, ssthresh  bytes; srtt, rto  seconds (srtt null before a sample)
    inflight  what the sender counts as in flight (RFC 6675 pipe)
    sacked    the SACKed ranges above SND.UNA, [[start, end], ...], relative
    rwnd      the peer's advertised window (SND.WND, scaled)
    wnd       our advertised window (RCV.ADV - RCV.NXT)

and ``send``/``retransmit`` add ``seq`` and ``len`` (sequence space: a SYN
or FIN counts one), ``retransmit`` the range ``rtx`` = [seq, seq + len].
``recv`` (data arrived) has the receiver's side, relative to the peer's
ISS (its SYN is 0): ``seq`` and ``len`` of the segment's text, ``rcv``
(RCV.NXT after it) and ``ooo``, the blocks held beyond a gap.

Where the hooks are: ``TcpLayer._socket`` (open), ``Tcb.move`` (state,
close), ``output._send_new`` and the SYN in ``output.segments_to_send``
(send), ``output.retransmit_at`` and a resent SYN (retransmit),
``TcpConnection.receive_predicted`` and ``_ack_new_data`` (ack, once cwnd
and the send window have taken it),
``TcpConnection._process_ack`` (sack, when new blocks arrived),
``_recovery_ack`` (recovery-end), ``timeouts._retransmission`` (rto),
``losses`` (tlp, fast-retransmit, recovery, undo), and
``TcpConnection.receive_predicted`` and ``_accept_data`` (recv).

The tracer keeps lines in memory and hands them to ``write`` (a file's, in
``ustack.tracefile``) as one batch of whole lines when an event comes
``FLUSH_EVERY`` seconds after the last batch, every ``FLUSH_LINES`` lines,
and when it is flushed (the trace file does so from a stack timer every
``FLUSH_EVERY`` seconds, so a quiet stack's file is current too) or closed:
a trace is whole when the command ends, normally or by Ctrl-C (the bring-up
closes it).  It never touches a file itself (the core does no I/O of its
own), and ``write`` must not raise: it is called from inside TCP processing
(the trace file catches its write errors and stops tracing).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final

# How long lines may wait in memory, and how many (a bulk transfer makes a
# few events per segment: a write per event would cost more than the event).
FLUSH_EVERY: Final = 1.0
FLUSH_LINES: Final = 512

REQUIRED: Final = ("t", "conn", "ev", "state", "una", "nxt", "cwnd", "ssthresh", "srtt",
                   "rto", "inflight", "sacked", "rwnd", "wnd")


class Tracer:
    """Collects events as JSON lines and hands them to ``write`` in batches.

    ``clock`` is the stack's clock (``Host.now``): every event is stamped
    with it, so the hooks need not carry the time.
    """

    def __init__(self, write: Callable[[str], object], clock: Callable[[], float]) -> None:
        self.write = write
        self.clock = clock
        self.lines: list[str] = []
        self.next_id = 1
        self.last_flush = clock()
        self.events = 0
        self.closed = False

    def new_id(self) -> int:
        n = self.next_id
        self.next_id = n + 1
        return n

    def record(self, fields: dict[str, object]) -> None:
        """One event (``Tcb.trace`` fills the fields but the time)."""
        if self.closed:
            return
        now = self.clock()
        fields["t"] = round(now, 6)
        self.lines.append(json.dumps(fields, separators=(",", ":")))
        self.events += 1
        if len(self.lines) >= FLUSH_LINES or now - self.last_flush >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        self.last_flush = self.clock()
        if self.lines:
            text = "\n".join(self.lines) + "\n"
            self.lines.clear()
            self.write(text)

    def close(self) -> None:
        """Flush; later events are dropped (the stack may outlive the file)."""
        if not self.closed:
            self.flush()
            self.closed = True
