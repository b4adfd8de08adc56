"""TIME-WAIT without the connection: a small record per closed 4-tuple.

A connection the application has closed has nothing left to do in
TIME-WAIT but the few things RFC 9293 asks of the state for 2 MSL: answer
a retransmitted FIN, keep old duplicates of this incarnation out of the
next one, and let a new SYN reopen the 4-tuple when it is clearly newer
(RFC 6191).  A server that closes first (HTTP's Connection: close) holds
every connection it served in TIME-WAIT, a minute each: kept whole (a
socket, its connection and a dozen parts) they were tens of thousands of
objects for the garbage collector to walk and as many entries in the timer
heap, about a sixth of the server's time (issue 12).  So once the
application has closed a connection in TIME-WAIT, the layer keeps only
this record (Linux's ``inet_timewait_sock``, FreeBSD's ``tcptw``) and lets
the connection go.  A connection the application still holds (after
``shutdown``) stays whole: it can still be asked its state.

What the record does with a segment is what the whole connection does in
TIME-WAIT (``TcpConnection._receive_synchronized``; a test feeds both the
same segments and compares what they answer):

* RFC 7323 5.3, PAWS: a timestamp older than TS.Recent -> ACK, dropped.
* RFC 9293 3.10.7.4 first check: a segment outside the window -> ACK
  (a RST: dropped silently); a FIN among them is the peer's FIN again, its
  ACK was lost: the 2 MSL start over (eighth check).  Duplicate data is
  reported as a D-SACK block when SACK is on (RFC 2883 4.1.1).
* Second check: a RST at RCV.NXT is ignored (RFC 1337: TIME-WAIT
  assassination), elsewhere in the window it earns a challenge ACK (RFC
  5961 3.2).
* Fourth: a SYN earns a challenge ACK (RFC 5961 4.2); a newer SYN never
  reaches the record, the layer reopens the 4-tuple with it.
* Fifth: no ACK -> dropped; an ACK beyond SND.NXT or older than the window
  the peer ever offered -> challenge ACK (RFC 5961 5.2).
* Seventh: text is ignored (the peer's FIN came before it).
* Eighth: a FIN -> ACK, and the 2 MSL start over.

Expiry costs no heap: records of one 2 MSL duration expire in the order
they were made, so each duration has a FIFO, and the layer keeps one timer
for the earliest head.  A record that starts its 2 MSL over is queued
again at the tail; the entry left behind is skipped when it comes up.
"""

from __future__ import annotations

import bisect
from collections import deque
from typing import Final

from ustack.tcp import seq as sq
from ustack.tcp.connection import TcpConnection
from ustack.tcp.segment import OutSegment
from ustack.wire import tcp as wtcp
from ustack.wire.tcp import ACK, FIN, RST, SYN

Key = tuple[bytes, int, bytes, int]

# RFC 7323 5.5: TS.Recent older than 24 days is invalid (PAWS stops there).
_PAWS_IDLE_MAX: Final = 24 * 86400.0
# Queue entries left behind (restarted or removed records) are dropped
# when the queues hold this many more entries than there are records.
_SLACK: Final = 1024


class TimeWaitRecord:
    """What TIME-WAIT needs of a connection: sequence numbers, the window
    and timestamps for its ACKs, and when it ends."""

    __slots__ = ("deadline", "key", "last_ack_sent", "max_sndwnd", "rcv_adv", "rcv_nxt",
                 "sack_ok", "snd_nxt", "tos", "ts_offset", "ts_ok", "ts_recent",
                 "ts_recent_age", "ttl", "two_msl", "window")

    def __init__(self, key: Key, snd_nxt: int, rcv_nxt: int, rcv_adv: int, window: int,
                 last_ack_sent: int, max_sndwnd: int, ts_ok: bool, ts_recent: int,
                 ts_recent_age: float, ts_offset: int, sack_ok: bool, ttl: int, tos: int,
                 two_msl: float, deadline: float) -> None:
        self.key = key
        self.snd_nxt = snd_nxt  # our FIN + 1, acknowledged: SND.UNA = SND.NXT
        self.rcv_nxt = rcv_nxt  # the peer's FIN + 1
        self.rcv_adv = rcv_adv  # the right edge of the window last advertised
        self.window = window  # ... and the window field that says it (scaled)
        self.last_ack_sent = last_ack_sent  # RFC 7323 Last.ACK.sent
        self.max_sndwnd = max_sndwnd
        self.ts_ok = ts_ok
        self.ts_recent = ts_recent
        self.ts_recent_age = ts_recent_age
        self.ts_offset = ts_offset
        self.sack_ok = sack_ok
        self.ttl = ttl
        self.tos = tos
        self.two_msl = two_msl
        self.deadline = deadline

    def ack(self, now: float, dsack: tuple[int, int] | None = None) -> OutSegment:
        """The ACK this 4-tuple answers with (output.segment's, in TIME-WAIT)."""
        if self.ts_ok:
            ts_val = (int(now * 1000) + self.ts_offset) & sq.MASK  # Tcb.ts_now
            if dsack is None:
                options = wtcp.ts_option(ts_val, self.ts_recent)
            else:
                options = wtcp.build_options(sack_blocks=[dsack], ts=(ts_val, self.ts_recent))
        elif dsack is not None:
            options = wtcp.build_options(sack_blocks=[dsack])
        else:
            options = b""
        return OutSegment(self.snd_nxt, self.rcv_nxt, ACK, self.window, options, b"")

    def receive(self, seq: int, ack: int, flags: int, text_len: int, ts_val: int | None,
                now: float) -> tuple[str, bool, bool]:
        """One segment for this 4-tuple: (why it was dropped or "", whether
        an ACK answers it, whether that ACK is a challenge ACK, which the
        layer's RFC 5961 7 limit may withhold).  A D-SACK is the layer's to
        add (``dsack_for``)."""
        seg_len = text_len + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        rcv_nxt = self.rcv_nxt
        # RFC 7323 5.3 PAWS.
        if (self.ts_ok and ts_val is not None and not flags & RST
                and sq.lt(ts_val, self.ts_recent)
                and now - self.ts_recent_age < _PAWS_IDLE_MAX):
            return "PAWSEstab", True, False
        wnd = sq.sub(self.rcv_adv, rcv_nxt)
        if wnd <= 0 and not flags & (SYN | RST) and sq.ge(seq, rcv_nxt):
            # A zero window takes no text or FIN, but a valid ACK (3.10.7.4).
            zero_drop = seg_len > 0
            flags &= ~FIN
            seq = rcv_nxt
            seg_len = 0
            text_len = 0
        else:
            zero_drop = False
        # First check: the sequence number.
        if not sq.acceptable(rcv_nxt, wnd, seq, seg_len):
            if flags & FIN:
                self.deadline = now + self.two_msl  # the peer's FIN again (eighth)
            if flags & SYN and not flags & RST:
                return "tcp_syn_challenged", True, True
            return "tcp_invalid_sequence", not flags & RST, False
        if self.ts_ok and ts_val is not None and sq.le(seq, self.last_ack_sent):
            self.ts_recent = ts_val  # RFC 7323 4.3 (2)
            self.ts_recent_age = now
        # Second: RST.
        if flags & RST:
            if seq != rcv_nxt:
                return "tcp_rst_challenged", True, True
            return "tcp_rst_in_time_wait", False, False  # RFC 1337
        # Fourth: SYN.  (No SYN reaches here with text refused by a zero
        # window: that rewrite skips SYN and RST.)
        if flags & SYN:
            return "tcp_syn_challenged", True, True
        # Fifth: the ACK field (RFC 5961 5.2; SND.UNA = SND.NXT here).  Text
        # refused by a zero window is owed a plain ACK whatever happens now
        # (the connection's ack_now, set before these checks): not one the
        # challenge limit could withhold.
        if not flags & ACK:
            return "tcp_no_ack", zero_drop, False
        if sq.gt(ack, self.snd_nxt):
            return "tcp_ack_unsent_data", True, not zero_drop
        if sq.lt(ack, sq.add(self.snd_nxt, -self.max_sndwnd)):
            return "tcp_too_old_ack", True, not zero_drop
        # Seventh: text is not taken; eighth: a FIN is acknowledged again.
        why = "TCPZeroWindowDrop" if zero_drop else ("tcp_data_after_fin" if text_len else "")
        if flags & FIN:
            self.deadline = now + self.two_msl
            return why, True, False
        return why, zero_drop, False

    def dsack_for(self, seq: int, text_len: int, flags: int) -> tuple[int, int] | None:
        """The D-SACK block the ACK answering a segment outside the window
        reports for its text, if duplicate (RFC 2883 4.1.1), as the
        connection's first check does."""
        if (self.sack_ok and text_len and not flags & (SYN | RST)
                and sq.le(sq.add(seq, text_len), self.rcv_nxt)):
            return (seq, sq.add(seq, text_len))
        return None


class TimeWaitTable:
    """The TIME-WAIT records of a layer, by 4-tuple, and their expiry."""

    __slots__ = ("_entries", "_queues", "records")

    def __init__(self) -> None:
        self.records: dict[Key, TimeWaitRecord] = {}
        # Per 2 MSL duration, (deadline, record) in deadline order, with
        # entries left behind by restarts and removals (``_entries`` counts
        # all of them): an entry is live while its deadline is its record's.
        self._queues: dict[float, deque[tuple[float, TimeWaitRecord]]] = {}
        self._entries = 0

    def __len__(self) -> int:
        return len(self.records)

    def add(self, rec: TimeWaitRecord) -> None:
        self.records[rec.key] = rec
        self._queue(rec)

    def restarted(self, rec: TimeWaitRecord) -> None:
        """``rec``'s 2 MSL started over: queue it again at its new deadline."""
        self._queue(rec)

    def remove(self, key: Key) -> None:
        del self.records[key]

    def _queue(self, rec: TimeWaitRecord) -> None:
        q = self._queues.get(rec.two_msl)
        if q is None:
            q = self._queues[rec.two_msl] = deque()
        entry = (rec.deadline, rec)
        if q and rec.deadline < q[-1][0]:
            # Older than the newest: a connection held after shutdown and
            # closed later keeps the 2 MSL that began when it entered
            # TIME-WAIT.  Rare: placed in order (expiry stops at the first
            # head not yet due).
            q.insert(bisect.bisect_right(q, rec.deadline, key=_entry_deadline), entry)
        else:
            q.append(entry)
        self._entries += 1
        if self._entries > 2 * len(self.records) + _SLACK:
            self._compact()

    def _compact(self) -> None:
        """Drop the entries left behind: each live record once, in order."""
        queues: dict[float, deque[tuple[float, TimeWaitRecord]]] = {}
        for rec in sorted(self.records.values(), key=_deadline):
            q = queues.get(rec.two_msl)
            if q is None:
                q = queues[rec.two_msl] = deque()
            q.append((rec.deadline, rec))
        self._queues = queues
        self._entries = len(self.records)

    def next_deadline(self) -> float:
        """The earliest deadline queued (-1.0: none)."""
        best = -1.0
        for q in self._queues.values():
            if q:
                d = q[0][0]
                if best < 0 or d < best:
                    best = d
        return best

    def expire(self, now: float) -> int:
        """Forget every record whose 2 MSL have passed; returns how many."""
        records = self.records
        gone = 0
        for q in self._queues.values():
            while q and q[0][0] <= now:
                deadline, rec = q.popleft()
                self._entries -= 1
                # (Not live: the record started over, queued again later,
                # or was removed.)
                if deadline == rec.deadline and records.get(rec.key) is rec:
                    del records[rec.key]
                    gone += 1
        return gone


def _deadline(rec: TimeWaitRecord) -> float:
    return rec.deadline


def _entry_deadline(entry: tuple[float, TimeWaitRecord]) -> float:
    return entry[0]


def record_of(conn: TcpConnection, now: float) -> TimeWaitRecord:
    """The record of ``conn``, in TIME-WAIT with its last ACK sent: what it
    would answer with (the window it offered, its timestamps, its TTL and
    TOS), and when its 2 MSL began (``now`` if its timer is not armed)."""
    shift = conn.rcv_wscale
    window = conn.rcvq.window(conn.rcv_nxt, conn.rcv_adv, conn.mss) >> shift
    if window > 0xFFFF:
        window = 0xFFFF
    cfg = conn.cfg
    started = conn.timers.timewait
    return TimeWaitRecord(
        (*conn.local, *conn.remote), conn.snd_nxt, conn.rcv_nxt,
        conn.rcv_adv, window, conn.last_ack_sent,
        conn.max_sndwnd, conn.ts_ok, conn.ts_recent, conn.ts_recent_age, conn.ts_offset,
        conn.sack_ok, cfg.ttl, cfg.tos, 2 * cfg.msl, started if started is not None else now)
