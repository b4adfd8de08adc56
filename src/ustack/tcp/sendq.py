"""The send queue: the bytes of the stream the peer has not acknowledged.

RFC 9293 3.3.1: every byte from SND.UNA on stays queued, sent or not, until
it is acknowledged (retransmissions are sent from here).  The queue knows
the sequence number of its first byte (``seq``) and of the byte after its
last (``end``: where our FIN sits once the application closes); all the
sequence arithmetic of the send side that is about bytes lives here.
"""

from __future__ import annotations

from ustack.tcp import seq as sq


class SendQueue:
    __slots__ = ("buf", "end", "seq")

    def __init__(self, seq: int) -> None:
        self.buf = bytearray()
        self.seq = seq  # sequence number of buf[0]: ISS + 1 until data is acknowledged
        self.end = seq  # seq + len(buf): append moves it (an ACK moves seq and buf together)

    def free(self, sndbuf: int) -> int:
        """Room left in a send buffer of ``sndbuf`` bytes (never negative)."""
        n = sndbuf - len(self.buf)
        return n if n > 0 else 0

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data``: bytes, or a view of bytes (format "B": its length
        counts bytes; ``TcpConnection.send`` casts every other buffer)."""
        self.buf += data
        self.end = sq.add(self.end, len(data))

    def unsent(self, snd_nxt: int) -> int:
        """Bytes queued at or after ``snd_nxt`` (not sent yet)."""
        sent = sq.sub(snd_nxt, self.seq)
        n = len(self.buf) - (sent if sent > 0 else 0)
        return n if n > 0 else 0  # (our FIN is past the last byte)

    def ack(self, una: int, ack: int, acked: int) -> int:
        """The peer acknowledged ``acked`` bytes of sequence space up to
        ``ack`` (SND.UNA was ``una``): drop those bytes; returns how many
        data bytes that was (a SYN or FIN in the range is not in the queue)."""
        buf = self.buf
        if una == self.seq and acked <= len(buf):
            del buf[:acked]  # the common case: data only, from the front
            self.seq = ack
            return acked
        # Our SYN sits just before ``seq`` and our FIN at ``end``: the data
        # acknowledged is what the queue holds below ``ack``.
        data = sq.sub(ack, self.seq)
        if data <= 0:
            return 0
        if data > len(buf):
            data = len(buf)
        del buf[:data]
        self.seq = sq.add(self.seq, data)
        return data

    def peek(self, seq: int, max_len: int) -> bytes | None:
        """Up to ``max_len`` queued bytes from ``seq`` on (None if before the queue)."""
        off = sq.sub(seq, self.seq)
        if off < 0:
            return None
        # One copy (a slice of the bytearray would be copied twice); the view
        # is gone before the queue next changes size.
        return bytes(memoryview(self.buf)[off:off + max_len])
