"""Sequence arithmetic of the send side: what an ACK takes out of the send
queue (tcp/sendq.py) when the range it covers holds our SYN or FIN, which
are not bytes of the queue (RFC 9293 3.4: each occupies one sequence
number); the window-update test of tcp/seq.py."""

from __future__ import annotations

import pytest

from ustack.tcp import seq as sq
from ustack.tcp.sendq import SendQueue

MASK = 0xFFFFFFFF


@pytest.mark.parametrize("iss", [100, MASK, MASK - 3])  # the last two cross the wrap
def test_an_ack_covering_our_syn_counts_only_the_data_bytes(iss: int) -> None:
    q = SendQueue((iss + 1) & MASK)
    q.append(b"0123456789")
    assert q.ack(iss, (iss + 6) & MASK, 6) == 5  # SYN + 5 bytes
    assert bytes(q.buf) == b"56789" and q.seq == (iss + 6) & MASK
    assert q.end == (iss + 11) & MASK


def test_an_ack_of_only_our_syn_takes_no_data() -> None:
    q = SendQueue(101)
    q.append(b"abc")
    assert q.ack(100, 101, 1) == 0
    assert bytes(q.buf) == b"abc" and q.seq == 101


def test_an_ack_covering_our_fin_counts_only_the_data_bytes() -> None:
    q = SendQueue(101)
    q.append(b"0123456789")
    assert q.ack(101, 104, 3) == 3  # the common case
    assert q.ack(104, 112, 8) == 7  # 7 bytes and the FIN
    assert not q.buf and q.seq == q.end == 111


def test_an_ack_covering_syn_data_and_fin() -> None:
    q = SendQueue(101)
    q.append(b"0123456789")
    assert q.ack(100, 112, 12) == 10
    assert not q.buf and q.seq == q.end == 111


@pytest.mark.parametrize("wl1", [0, 1000, MASK - 5, 0x80000000])
def test_pair_le_is_the_window_update_test_of_rfc_9293(wl1: int) -> None:
    """seq.pair_le(SND.WL1, SND.WL2, SEG.SEQ, SEG.ACK) is RFC 9293 3.10.7.4's
    "SND.WL1 < SEG.SEQ or (SND.WL1 = SEG.SEQ and SND.WL2 =< SEG.ACK)", with
    seq.lt and seq.le (2**31 apart: neither before nor after)."""
    wl2 = (wl1 * 7 + 3) & MASK
    for dseq in (0, 1, 5, -1, 0x7FFFFFFF, 0x80000000, -0x7FFFFFFF):
        for dack in (0, 1, -1, 0x80000000):
            s = (wl1 + dseq) & MASK
            a = (wl2 + dack) & MASK
            expect = sq.lt(wl1, s) or (wl1 == s and sq.le(wl2, a))
            assert sq.pair_le(wl1, wl2, s, a) is expect, (dseq, dack)
