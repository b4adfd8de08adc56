"""The receiver's out-of-order queue (RFC 9293 3.10.7.4, RFC 2018 section 4).

RFC 9293 3.10.7.4 ("seventh, process the segment text") lets a receiver keep
segments that arrive beyond RCV.NXT and deliver them once the gap before them
fills.  This module holds those segments as a short list of disjoint blocks
sorted by sequence number, each a run of contiguous bytes kept as a list of
chunks (the segments' own ``bytes`` objects, joined only when the block is
delivered), and reports them as SACK blocks.

Rules:

* "First wins" (as in ``ustack.net.reassembly``): a segment only fills bytes
  still missing, so an overlapping segment can never rewrite queued bytes.
  When the queue is not empty, the caller passes in-order segments through
  ``add()`` too (``seq == rcv_nxt`` is accepted) and takes ``pop_ready()``:
  then the rule holds for every byte the application sees.
* Adjacent or overlapping blocks are merged, so two blocks never touch: each
  block is exactly one SACK block (RFC 2018 section 3: the bytes just below
  and just above a block have not been received).
* The out-of-order bytes held are bounded by ``max_bytes``, and the number
  of blocks by ``MAX_BLOCKS``; a segment that would exceed a bound is
  refused whole and its new bytes are counted in ``dropped``.  A segment
  starting at RCV.NXT is exempt: the caller takes it out with
  ``pop_ready()`` at once, and the receive window bounds it.
* Every sequence number is compared modulo 2**32 (``ustack.tcp.seq``); all
  blocks lie within the receive window, less than 2**31 above RCV.NXT.

The common case -- a loss, then a train of segments each extending the
highest block -- costs O(1) per segment: the search looks at the top block
first; any other segment costs a binary search.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Final

from ustack.tcp.seq import MASK, gt, le, lt

_QUARTER: Final = 1 << 30


class _Block:
    """A run of contiguous queued bytes ``[start, end)`` in sequence space."""

    __slots__ = ("chunks", "end", "start")

    def __init__(self, start: int, end: int, chunks: list[bytes]) -> None:
        self.start = start
        self.end = end
        self.chunks = chunks


# The empty block lists every queue starts with (never changed: see __init__).
_NO_BLOCKS: Final[list[_Block]] = []


class ReassemblyQueue:
    # Bound on separate blocks, whatever their size: each costs a search
    # step and ~200 bytes of objects, and 1-byte segments at every other
    # sequence number must not make the queue huge (cf. Linux charging
    # skb truesize to the out-of-order queue).  2048 blocks hold the holes of
    # a 6 MB window losing every other full-sized segment.
    MAX_BLOCKS: Final = 2048

    __slots__ = ("_blocks", "_recent", "dropped", "dup", "max_bytes", "nbytes", "same_first")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.dropped = 0  # bytes refused because of max_bytes
        # Sorted by start, disjoint, never adjacent; and the same blocks, most
        # recently received-into first (RFC 2018 section 4).  Both start as
        # the shared _NO_BLOCKS, never appended to: most connections never
        # see a segment out of order, and two empty lists are a tenth of an
        # idle connection (issue 12).  ``add`` makes them on the first block.
        self._blocks = _NO_BLOCKS
        self._recent = _NO_BLOCKS
        # Bytes held (out of order, waiting for the gap before them).  A
        # plain attribute, read on every segment: not to be set from outside.
        self.nbytes = 0
        # The first range of the last ``add`` that was queued already, or
        # None: what a D-SACK block reports (RFC 2883 4.1.2).
        self.dup: tuple[int, int] | None = None
        # Did the last ``add`` land in the block that was the first SACK
        # block before it (extending it, or merged into one holding it)?
        # Then that first block alone reports what the segment changed, and
        # every other block is where it was in the SACK option's order.
        self.same_first = False

    def __len__(self) -> int:
        return len(self._blocks)

    def __bool__(self) -> bool:
        return bool(self._blocks)

    def clear(self) -> None:
        self._blocks.clear()
        self._recent.clear()
        self.nbytes = 0

    def add(self, seq: int, data: bytes, rcv_nxt: int) -> int:
        """Queue ``data`` at ``seq``; returns the number of new bytes stored.

        Bytes before ``rcv_nxt`` are trimmed (already delivered); bytes already
        queued are kept as they are.  The block that ends up holding the
        segment becomes the first SACK block (also for a duplicate).  A
        segment ending more than 2**30 beyond ``rcv_nxt`` is ignored (no
        window is that large); blocks ``rcv_nxt`` has passed are discarded.
        """
        n = len(data)
        self.dup = None
        self.same_first = False
        if n == 0:
            return 0
        seq &= MASK
        end = (seq + n) & MASK
        if le(end, rcv_nxt):
            return 0  # entirely old: a duplicate of delivered data
        if ((end - rcv_nxt) & MASK) > _QUARTER:
            return 0  # beyond any receive window (2**30, RFC 7323 2.3)
        blocks = self._blocks
        while blocks and le(blocks[0].end, rcv_nxt):
            self._discard(0)  # passed by in-order data the caller delivered
        if lt(seq, rcv_nxt):
            data = data[(rcv_nxt - seq) & MASK:]
            seq = rcv_nxt
            n = len(data)
        nblocks = len(blocks)
        # j: the last block starting at or before our end (touching counts, so
        # an adjacent block merges); i: the first block reaching our start.
        # The top block first: new data usually extends it.  Otherwise a
        # binary search on distances from a base 2**30 below RCV.NXT, which
        # orders everything in the receive window (at most 2**30, RFC 7323).
        if nblocks == 0 or le(blocks[-1].start, end):
            j = nblocks - 1
        else:
            base = (rcv_nxt - _QUARTER) & MASK
            j = bisect_right(blocks, (end - base) & MASK,
                             key=lambda b: (b.start - base) & MASK) - 1
        if j < 0 or lt(blocks[j].end, seq):
            i = j + 1
        elif j == 0 or lt(blocks[j - 1].end, seq):
            i = j
        else:
            base = (rcv_nxt - _QUARTER) & MASK
            i = bisect_left(blocks, (seq - base) & MASK, 0, j,
                            key=lambda b: (b.end - base) & MASK)
        if i > j:
            # Touches nothing: a new block between j and j + 1.
            if seq != rcv_nxt and (self.nbytes + n > self.max_bytes
                                   or nblocks >= self.MAX_BLOCKS):
                self.dropped += n
                return 0
            blk = _Block(seq, end, [data])
            if blocks is _NO_BLOCKS:
                self._blocks = blocks = []
                self._recent = []
            blocks.insert(i, blk)
            self._recent.insert(0, blk)
            self.nbytes += n
            return n
        for k in range(i, j + 1):  # the blocks we touch: the first overlap is a duplicate
            b = blocks[k]
            lo = seq if gt(seq, b.start) else b.start
            hi = end if lt(end, b.end) else b.end
            if lt(lo, hi):
                self.dup = (lo, hi)
                break
        first = blocks[i]
        recent = self._recent
        if i == j and le(first.start, seq) and le(end, first.end):
            self.same_first = recent[0] is first
            self._touch(first)  # a duplicate inside one block
            return 0
        if i == j and first.end == seq:
            # The common case: the segment extends a block at its top.
            if seq != rcv_nxt and self.nbytes + n > self.max_bytes:
                self.dropped += n
                return 0
            self.same_first = recent[0] is first
            first.chunks.append(data)
            first.end = end
            self.nbytes += n
            self._touch(first)
            return n
        # General case: fill the gaps between blocks i..j with our bytes and
        # merge everything into one block.
        start = seq if lt(seq, first.start) else first.start
        chunks: list[bytes] = []
        pos = start
        new = 0
        for k in range(i, j + 1):
            b = blocks[k]
            if lt(pos, b.start):
                piece = data[(pos - seq) & MASK:(b.start - seq) & MASK]
                chunks.append(piece)
                new += len(piece)
            chunks.extend(b.chunks)
            pos = b.end
        if lt(pos, end):
            piece = data[(pos - seq) & MASK:]
            chunks.append(piece)
            new += len(piece)
            pos = end
        if new and seq != rcv_nxt and self.nbytes + new > self.max_bytes:
            self.dropped += new
            return 0
        merged = _Block(start, pos, chunks)
        top = recent[0]
        for k in range(i, j + 1):
            if blocks[k] is top:
                self.same_first = True
            recent.remove(blocks[k])
        blocks[i:j + 1] = [merged]
        recent.insert(0, merged)
        self.nbytes += new
        return new

    def first_overlap(self, seq: int, end: int) -> tuple[int, int] | None:
        """The queued part of ``[seq, end)``, a segment starting at RCV.NXT
        (below every block, so only the first can overlap it), or None."""
        if not self._blocks:
            return None
        b = self._blocks[0]
        if not lt(b.start, end):
            return None
        return b.start, (end if lt(end, b.end) else b.end)

    def _touch(self, blk: _Block) -> None:
        recent = self._recent
        if recent[0] is not blk:
            recent.remove(blk)
            recent.insert(0, blk)

    def pop_ready(self, rcv_nxt: int) -> bytes:
        """Remove and return the queued bytes that start exactly at ``rcv_nxt``.

        Blocks that ``rcv_nxt`` has passed (in-order data covered them) are
        discarded; a block it has entered is cut there.  b"" when the first
        block still lies beyond ``rcv_nxt``.
        """
        blocks = self._blocks
        while blocks:
            b = blocks[0]
            if gt(b.start, rcv_nxt):
                return b""
            self._discard(0)
            if lt(rcv_nxt, b.end):
                out = b.chunks[0] if len(b.chunks) == 1 else b"".join(b.chunks)
                skip = (rcv_nxt - b.start) & MASK
                return out[skip:] if skip else out
        return b""

    def _discard(self, k: int) -> None:
        b = self._blocks.pop(k)
        self._recent.remove(b)
        self.nbytes -= (b.end - b.start) & MASK

    def sack_blocks(self, limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` SACK blocks ``(left, right)``, right edge exclusive.

        RFC 2018 section 4: the first block contains the most recently
        received segment; the others repeat the most recently reported
        blocks.  Merged blocks replace the ones they absorbed, so no block
        is a subset of another.
        """
        return [(b.start, b.end) for b in self._recent[:limit]]

    def blocks(self) -> list[tuple[int, int]]:
        """All blocks in sequence order (for statistics and tests)."""
        return [(b.start, b.end) for b in self._blocks]
