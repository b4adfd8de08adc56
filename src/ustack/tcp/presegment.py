"""Responses cut once into segments, each with its payload sum (Sandstorm's
pre-segmented, pre-checksummed responses).

A server that sends the same bytes many times (a static file's response)
cuts them once per MSS and sums each segment's payload once (RFC 1071).
The send queue then holds the ``Presegmented`` by reference
(``SendQueue.append_static``), and a segment that leaves exactly on the
stored boundaries takes its payload from the stored bytes (a view, no copy
in Python) and folds the stored sum into its header checksum instead of
summing the payload again (RFC 1071 2(B): sums of consecutive chunks add;
RFC 1624 for the update of a stored sum); only the per-connection header
fields are written at send time.

Sums follow ``wire.checksum``'s convention: ``sums[i]`` is
``checksum.sum_mod`` of segment ``i``'s bytes on their own, an int in
0..0xFFFE congruent to the one's-complement sum of its 16-bit words (the
form ``wire.tcp.pack_header_into`` takes as ``payload_sum``).
"""

from __future__ import annotations

from ustack.wire.checksum import sum_mod, sum_span


class Presegmented:
    """A response (or any bytes) cut into segments of one MSS, each with its
    payload sum.

    Segment 0 is ``head`` (its own bytes object, 1..mss bytes: the caller
    puts the HTTP head and the first bytes of the body there); segment
    ``i >= 1`` is ``body[(i - 1) * mss : i * mss]``, the last one maybe
    shorter.  ``body`` is kept as a memoryview (format "B") of the buffer
    given, so a segment of it is a slice of the view (no copy).  There are
    ``len(sums)`` segments and ``nbytes`` bytes.  Immutable once built: the
    send queues of many connections refer to one.
    """

    __slots__ = ("body", "head", "mss", "nbytes", "sums")

    def __init__(self, head: bytes, body: memoryview, mss: int, sums: list[int]) -> None:
        self.head = head
        self.body = body
        self.mss = mss
        self.sums = sums
        self.nbytes = len(head) + len(body)

    def offset(self, i: int) -> int:
        """The byte offset of segment ``i`` (``nbytes`` for ``len(sums)``)."""
        if i == 0:
            return 0
        o = len(self.head) + (i - 1) * self.mss
        return o if o < self.nbytes else self.nbytes

    def __repr__(self) -> str:
        return f"Presegmented(nbytes={self.nbytes}, mss={self.mss}, segments={len(self.sums)})"


def presegment(head: bytes, body: bytes | bytearray | memoryview, mss: int) -> Presegmented:
    """``head`` as segment 0 and ``body`` cut every ``mss`` bytes, each
    segment summed once.  ``body`` is referred to, not copied (a buffer the
    caller must not change afterwards)."""
    if mss < 1:
        raise ValueError(f"mss must be positive, got {mss}")
    if not 1 <= len(head) <= mss:
        raise ValueError(f"head must hold 1..mss ({mss}) bytes, got {len(head)}")
    view = body if type(body) is memoryview else memoryview(body)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    sums = [sum_mod(head)]
    n = len(view)
    if type(body) is bytes:
        # Summed in place (compiled: no copy of each segment).
        for start in range(0, n, mss):
            sums.append(sum_span(body, start, start + mss if start + mss < n else n))
    else:
        for start in range(0, n, mss):
            sums.append(sum_mod(view[start:start + mss]))
    return Presegmented(bytes(head), view, mss, sums)


def with_head(p: Presegmented, head: bytes) -> Presegmented:
    """``p`` with a new segment 0 of the same length (a new ``Date``): the
    body and the other sums are shared; only the new head is summed."""
    if len(head) != len(p.head):
        raise ValueError(f"the new head must be {len(p.head)} bytes, got {len(head)}")
    sums = p.sums.copy()
    sums[0] = sum_mod(head)
    return Presegmented(bytes(head), p.body, p.mss, sums)


def run_sum(p: Presegmented, first: int, last: int) -> int:
    """The payload sum of segments ``first`` up to ``last`` (excluded) as
    one payload, from the stored sums: a segment that starts at an odd
    offset of that payload has its bytes swapped in the 16-bit words, which
    modulo 0xFFFF is its sum times 256 (RFC 1071 2(B) byte order
    independence; only an odd-length head or an odd MSS makes that happen)."""
    sums = p.sums
    if last == first + 1:
        return sums[first]
    s = 0
    odd = False
    mss_odd = p.mss & 1 == 1
    for i in range(first, last):
        s += sums[i] * 256 if odd else sums[i]
        if (len(p.head) & 1 == 1) if i == 0 else mss_odd:
            odd = not odd
    return s % 0xFFFF
