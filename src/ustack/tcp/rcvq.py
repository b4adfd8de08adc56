"""The receive queue: bytes received in order and not yet read, the
out-of-order segments beyond them, and the window they leave to offer.

RCV.NXT and the right edge of the window last advertised stay in the TCB
(RFC 9293 3.3.1); this holds the bytes and the receive-window rules that
only depend on how many there are: what is free of the receive buffer, and
the window field receiver SWS avoidance lets us advertise (RFC 9293
3.8.6.2.2), never moving the right edge left (3.8.6).
"""

from __future__ import annotations

from ustack.tcp import seq as sq
from ustack.tcp.config import TcpConfig
from ustack.tcp.reassembly import ReassemblyQueue


class ReceiveQueue:
    __slots__ = ("buf", "cfg", "ooo", "space", "space_due", "space_seq")

    def __init__(self, cfg: TcpConfig) -> None:
        # cfg.rcvbuf (SO_RCVBUF): the window offered is what it leaves of
        # in-order and out-of-order bytes together (free, window); the
        # out-of-order queue alone is capped at it as well.
        self.cfg = cfg
        self.buf = bytearray()  # in order, unread: RCV.NXT - len(buf) .. RCV.NXT
        self.ooo = ReassemblyQueue(cfg.rcvbuf)  # beyond a gap, until it fills
        # Autotuning (``autotune``): bytes the application read in the last
        # measured round trip, from which sequence number, and when the
        # round trip being measured ends (0: not started).
        self.space = 10 * cfg.mss
        self.space_seq = 0
        self.space_due = 0.0

    def free(self) -> int:
        """The window we could offer now: the receive buffer not yet used."""
        n = self.cfg.rcvbuf - len(self.buf) - self.ooo.nbytes
        return n if n > 0 else 0

    def read(self, max_bytes: int) -> bytes:
        """Take up to ``max_bytes`` from the front."""
        buf = self.buf
        if max_bytes >= len(buf):
            data = bytes(buf)
            buf.clear()
            return data
        data = bytes(memoryview(buf)[:max_bytes])
        del buf[:max_bytes]
        return data

    def clip(self, seq: int, data: bytes, rcv_nxt: int, rcv_adv: int) -> tuple[int, bytes, bool]:
        """The part of ``data`` (text at ``seq``) the window takes, and where it
        starts: what we already have is cut from the front, what lies past
        the right edge we advertised (``rcv_adv``) from the back (RFC 9293
        3.10.7.4, seventh: "trimmed").  The flag says that a tail was cut."""
        off = sq.sub(rcv_nxt, seq)
        if off > 0:
            data = data[off:]
            seq = rcv_nxt
        right = rcv_adv if sq.gt(rcv_adv, rcv_nxt) else rcv_nxt
        room = sq.sub(right, seq)
        if room < len(data):
            return seq, data[:max(room, 0)], True
        return seq, data, False

    def window(self, rcv_nxt: int, rcv_adv: int, mss: int) -> int:
        """The window to advertise (bytes, unscaled) with RCV.NXT ``rcv_nxt``
        when the right edge last advertised is ``rcv_adv``.

        Receiver SWS avoidance (RFC 9293 3.8.6.2.2): the window opens only
        by at least min(RCV.BUFF/2, MSS) (or to the whole buffer, or from
        zero to a full MSS); it never shrinks (3.8.6), so at worst the old
        right edge is offered again.
        """
        cur = sq.sub(rcv_adv, rcv_nxt)
        if cur < 0:
            cur = 0
        rcvbuf = self.cfg.rcvbuf
        free = rcvbuf - len(self.buf) - self.ooo.nbytes
        if free > cur and (free == rcvbuf or free - cur >= min(rcvbuf // 2, mss) or (
                cur == 0 and free >= mss)):
            return free
        return cur

    def opened_enough(self, adv: int, mss: int) -> bool:
        """With ``adv`` bytes of window still advertised, would a window
        update now open it by enough to be worth a segment (by at least
        min(RCV.BUFF/2, MSS): the receiver side of SWS avoidance, RFC 9293
        3.8.6.2.2)?"""
        after = self.free()
        return after > adv and after - adv >= min(self.cfg.rcvbuf // 2, mss)

    def autotune(self, copied_seq: int, now: float, rtt: float | None, mss: int) -> None:
        """Receive buffer autotuning, once per round trip (Linux's dynamic
        right-sizing, tcp_rcv_space_adjust).  ``copied_seq``: the sequence
        number up to which the application has read.

        A fixed buffer caps the sender at rcvbuf per round trip (1 MB over
        40 ms: 25 MB/s), whatever the path could carry.  When the
        application read more in the last round trip than in the one
        before, the buffer grows to twice that (to ride out a loss) plus
        the sender's growth (slow start doubles per round trip), up to
        cfg.rcvbuf_max; an application that does not read keeps it where
        it is.  Never shrinks: the right edge never moves left (RFC 9293
        3.8.6)."""
        cfg = self.cfg
        if cfg.rcvbuf_max <= cfg.rcvbuf or rtt is None or rtt <= 0.0:
            self.space_due = now + 1.0  # (nothing to do: look again later)
            return
        if self.space_due:
            copied = sq.sub(copied_seq, self.space_seq)
            space = self.space
            if copied > space:
                win = 2 * copied + 16 * mss
                win += 2 * win * (copied - space) // space
                if win > cfg.rcvbuf:
                    cfg.rcvbuf = win if win < cfg.rcvbuf_max else cfg.rcvbuf_max
                    self.ooo.max_bytes = cfg.rcvbuf
                self.space = copied
        self.space_seq = copied_seq
        self.space_due = now + rtt
