"""The send queue: the bytes of the stream the peer has not acknowledged.

RFC 9293 3.3.1: every byte from SND.UNA on stays queued, sent or not, until
it is acknowledged (retransmissions are sent from here).  The queue knows
the sequence number of its first byte (``seq``) and of the byte after its
last (``end``: where our FIN sits once the application closes); all the
sequence arithmetic of the send side that is about bytes lives here.

Besides bytes the application gave (copied into a bytearray), the queue
holds runs of a ``Presegmented`` response by reference (``append_static``):
its pieces are ``buf``, the ordinary bytes at the front, then ``more``, a
list whose first piece is a ``StaticRun`` and whose others are runs or
bytearrays in stream order.  While ``more`` is empty (a bulk sender's
queue, always) every operation is the single-bytearray one it always was.
A segment never spans two pieces (``peek`` stops at the boundary), so each
response's segments leave on the boundaries they were cut at, with their
stored sums (``peek_sum``).
"""

from __future__ import annotations

from ustack.tcp import seq as sq
from ustack.tcp.presegment import Presegmented, run_sum


class StaticRun:
    """Bytes ``start`` up to ``stop`` of a ``Presegmented``, queued by
    reference.  ``stop`` is a segment boundary; ``start`` is one until an
    ACK takes part of a segment."""

    __slots__ = ("p", "start", "stop")

    def __init__(self, p: Presegmented, start: int, stop: int) -> None:
        self.p = p
        self.start = start
        self.stop = stop


class SendQueue:
    __slots__ = ("buf", "end", "more", "peek_sum", "seq")

    def __init__(self, seq: int) -> None:
        # The ordinary bytes at the front of the queue: all of its bytes
        # while ``more`` is empty.
        self.buf = bytearray()
        # (A list: a few pieces at most, and an empty deque is 600 bytes.)
        self.more: list[StaticRun | bytearray] = []
        self.seq = seq  # sequence number of the first byte: ISS + 1 until data is acknowledged
        self.end = seq  # seq + nbytes(): append moves it (an ACK moves seq and the bytes together)
        # What the last ``peek`` returned is known to sum to (checksum.sum_mod
        # of the payload, from a Presegmented's stored sums); -1 when not known.
        self.peek_sum = -1

    def nbytes(self) -> int:
        """The bytes queued, sent or not."""
        return len(self.buf) if not self.more else sq.sub(self.end, self.seq)

    def free(self, sndbuf: int) -> int:
        """Room left in a send buffer of ``sndbuf`` bytes (never negative)."""
        n = sndbuf - (len(self.buf) if not self.more else sq.sub(self.end, self.seq))
        return n if n > 0 else 0

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data``: bytes, or a view of bytes (format "B": its length
        counts bytes; ``TcpConnection.send`` casts every other buffer)."""
        more = self.more
        if not more:
            self.buf += data
        else:
            last = more[-1]
            if isinstance(last, bytearray):
                last += data
            else:
                more.append(bytearray(data))
        self.end = sq.add(self.end, len(data))

    def append_static(self, p: Presegmented, first: int, sndbuf: int) -> int:
        """Queue segments ``first``, ``first + 1`` ... of ``p`` by reference,
        whole segments while a send buffer of ``sndbuf`` bytes has room, and
        always one when it has any room (so a response always progresses,
        as ``send(force=True)`` would for that segment).  Returns the index
        of the first segment not queued (``len(p.sums)``: all of them)."""
        count = len(p.sums)
        room = self.free(sndbuf)
        if first >= count or room <= 0:
            return first
        start = p.offset(first)
        stop = p.offset(first + 1)
        last = first + 1
        room -= stop - start
        if room > 0 and last < count:
            # Whole segments of one MSS after segment 0; the last maybe shorter.
            k = room // p.mss
            last = last + k if last + k < count else count
            stop = p.offset(last)
            if last == count - 1 and p.nbytes - stop <= room - k * p.mss:
                last = count
                stop = p.nbytes
        more = self.more
        tail = more[-1] if more else None
        if isinstance(tail, StaticRun) and tail.p is p and tail.stop == start:
            tail.stop = stop  # the rest of the response a previous call began
        else:
            more.append(StaticRun(p, start, stop))
        self.end = sq.add(self.end, stop - start)
        return last

    def ends_in_run(self) -> bool:
        """The last bytes queued are a Presegmented run's (a response's end,
        unless the send buffer cut it: ``append_static``)."""
        more = self.more
        return bool(more) and isinstance(more[-1], StaticRun)

    def unsent(self, snd_nxt: int) -> int:
        """Bytes queued at or after ``snd_nxt`` (not sent yet)."""
        sent = sq.sub(snd_nxt, self.seq)
        n = self.nbytes() - (sent if sent > 0 else 0)
        return n if n > 0 else 0  # (our FIN is past the last byte)

    def ack(self, una: int, ack: int, acked: int) -> int:
        """The peer acknowledged ``acked`` bytes of sequence space up to
        ``ack`` (SND.UNA was ``una``): drop those bytes; returns how many
        data bytes that was (a SYN or FIN in the range is not in the queue)."""
        buf = self.buf
        if not self.more and una == self.seq and acked <= len(buf):
            del buf[:acked]  # the common case: data only, from the front
            self.seq = ack
            return acked
        # Our SYN sits just before ``seq`` and our FIN at ``end``: the data
        # acknowledged is what the queue holds below ``ack``.
        data = sq.sub(ack, self.seq)
        if data <= 0:
            return 0
        total = self.nbytes()
        if data > total:
            data = total
        if self.more:
            self._drop(data)
        else:
            del buf[:data]
        self.seq = sq.add(self.seq, data)
        return data

    def _drop(self, n: int) -> None:
        """Take ``n`` bytes (no more than queued) off the front of the pieces."""
        buf = self.buf
        k = len(buf)
        if n <= k:
            del buf[:n]
            return
        del buf[:]
        n -= k
        more = self.more
        while n > 0:
            piece = more[0]
            if isinstance(piece, StaticRun):
                left = piece.stop - piece.start
                if n < left:
                    piece.start += n
                    return
                more.pop(0)
                n -= left
            else:
                left = len(piece)
                if n < left:
                    del piece[:n]
                    break
                more.pop(0)
                n -= left
        if more and isinstance(more[0], bytearray):
            # Ordinary bytes at the front again: they are ``buf`` (which is
            # empty: it went first).
            piece = more.pop(0)
            assert isinstance(piece, bytearray)
            self.buf = piece

    def peek(self, seq: int, max_len: int) -> bytes | memoryview | None:
        """Up to ``max_len`` queued bytes from ``seq`` on (None if before the
        queue), never past the end of a piece.  ``peek_sum`` then says what
        they sum to, when stored sums give it (-1 otherwise)."""
        off = sq.sub(seq, self.seq)
        if off < 0:
            return None
        if self.more:
            return self._peek_pieces(off, max_len)
        self.peek_sum = -1
        # One copy (a slice of the bytearray would be copied twice); the view
        # is gone before the queue next changes size.
        return bytes(memoryview(self.buf)[off:off + max_len])

    def _peek_pieces(self, off: int, max_len: int) -> bytes | memoryview:
        self.peek_sum = -1
        buf = self.buf
        k = len(buf)
        if off < k:
            return bytes(memoryview(buf)[off:off + max_len if off + max_len < k else k])
        off -= k
        for piece in self.more:
            if isinstance(piece, StaticRun):
                k = piece.stop - piece.start
                if off < k:
                    return self._peek_static(piece, piece.start + off, max_len)
            else:
                k = len(piece)
                if off < k:
                    return bytes(memoryview(piece)[off:off + max_len])
            off -= k
        return b""

    def _peek_static(self, r: StaticRun, o: int, max_len: int) -> bytes | memoryview:
        """Up to ``max_len`` bytes of run ``r`` from byte ``o`` of its
        response.  From a segment boundary, with room for that segment:
        whole stored segments (the head alone, or consecutive ones of the
        body: a view, no copy) with their stored sum.  Otherwise a copy of
        the bytes to sum as any others, which stops at the next boundary
        when the segments fit (so the following ones are whole again)."""
        p = r.p
        head = p.head
        hl = len(head)
        mss = p.mss
        if o < hl:
            i = 0
            seg_start = 0
            seg_end = hl
        else:
            i = 1 + (o - hl) // mss
            seg_start = hl + (i - 1) * mss
            seg_end = seg_start + mss if seg_start + mss < p.nbytes else p.nbytes
        stop = r.stop
        if o == seg_start and seg_end - o <= max_len:
            if i == 0:
                self.peek_sum = p.sums[0]
                return head
            # As many whole segments as ``max_len`` and the run hold.
            k = (max_len - (seg_end - o)) // mss
            end = seg_end + k * mss
            if end >= stop or stop - end <= max_len - (end - o):
                end = stop  # (then a short last segment fits too)
            j = 1 + (end - hl) // mss if end < p.nbytes else len(p.sums)
            self.peek_sum = run_sum(p, i, j)
            return p.body[o - hl:end - hl]
        end = o + max_len
        if max_len >= mss and end > seg_end:
            end = seg_end  # realign: the next segment starts on a boundary
        if end > stop:
            end = stop
        if i == 0 and end <= hl:
            return head[o:end]
        if o >= hl:
            return bytes(p.body[o - hl:end - hl])
        return head[o:] + bytes(p.body[:end - hl])
