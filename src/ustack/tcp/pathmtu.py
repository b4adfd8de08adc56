"""Segments that fit the path MTU (RFC 1191), for one connection.

The layer keeps the path MTU estimate per destination (``net.pmtu``) and,
once an ICMP "fragmentation needed" passed RFC 5927's checks, tells the
connection the path MTU now in force; here the send MSS follows it.
"""

from __future__ import annotations

from ustack.tcp import output
from ustack.tcp import seq as sq
from ustack.tcp.states import State
from ustack.tcp.tcb import TS_OPTION_LEN, Tcb


def path_mtu(tp: Tcb, mtu: int, now: float) -> bool:
    """The path MTU towards the peer is ``mtu`` (RFC 1191): segments
    are cut to fit it, never beyond the MSS negotiated (RFC 9293 3.7.1);
    True if that lowered the MSS.  Then what was in flight was too big
    and dropped on the way: it is resent at once in the new size, as
    much as the congestion window allows (not a loss of congestion, so
    cwnd stays: Linux's tcp_simple_retransmit).  Called with the
    interface's MTU when a lower estimate expires, it raises the MSS
    back.  Not in SYN-SENT: no segment of ours but the SYN, which fits
    any MTU, and the SYN-ACK sets the MSS (from the layer's estimate)."""
    if tp.state is State.SYN_SENT:
        return False
    old = tp.mss
    tp.set_mss()
    cap = mtu - 40 - (TS_OPTION_LEN if tp.ts_ok else 0)
    if cap < tp.mss:
        tp.mss = max(cap, 64)
        tp.cc.set_mss(tp.mss)
    if tp.mss >= old:
        return False
    if (not tp.rec.active and tp.rec.rtx_nxt is None
            and tp.state is not State.SYN_RECEIVED):
        seq = tp.snd_una
        limit = tp.cc.cwnd
        while sq.lt(seq, tp.snd_nxt) and sq.sub(seq, tp.snd_una) < limit:
            n = output.retransmit_at(tp, seq, now)
            if not n:
                break
            seq = sq.add(seq, n)
    return True
