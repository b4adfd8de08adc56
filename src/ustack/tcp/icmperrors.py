"""ICMP errors about a connection's segments (RFC 9293 3.9.2.2, RFC 1122
4.2.3.9, RFC 5461, RFC 1191): hard, soft, or path MTU discovery's.

The layer has already matched the error to the connection and checked it
as RFC 5927 4.1 says (the quoted sequence number within SND.UNA..SND.NXT);
what the error then does to the connection is here.
"""

from __future__ import annotations

import errno
from typing import Final

from ustack.tcp import pathmtu
from ustack.tcp.segment import Event
from ustack.tcp.states import Ev, State
from ustack.tcp.tcb import Tcb

# ICMP destination unreachable codes as the socket error they become
# (RFC 1122 4.2.3.9; Linux's icmp_err_convert): net, host, protocol, port,
# (4: fragmentation needed, path MTU discovery's), source route failed, net
# and host unknown, source host isolated, net and host prohibited, net and
# host unreachable for the TOS; communication prohibited and the rest are
# EHOSTUNREACH.
_UNREACH_ERRNO: Final = {0: errno.ENETUNREACH, 1: errno.EHOSTUNREACH, 2: errno.ENOPROTOOPT,
                         3: errno.ECONNREFUSED, 5: errno.EOPNOTSUPP, 6: errno.ENETUNREACH,
                         7: errno.EHOSTDOWN, 8: errno.ENONET, 9: errno.ENETUNREACH,
                         10: errno.EHOSTUNREACH, 11: errno.ENETUNREACH, 12: errno.EHOSTUNREACH}


def icmp_error(tp: Tcb, type_: int, code: int, mtu: int, now: float) -> None:
    """An ICMP error about one of our segments (RFC 9293 3.9.2.2, RFC
    1122 4.2.3.9, RFC 5461); the layer checked it is about this
    connection (RFC 5927 4.1).

    Protocol or port unreachable -- hard errors, SHLD-26 -- abort a
    connection in SYN-SENT at once (nothing listens there: RFC 5461 4,
    as Linux), with ENOPROTOOPT or ECONNREFUSED.  Any other error, and a
    hard one in a synchronized state (where RFC 5461 4 has it soft, so
    a forged one cannot kill a connection), is a soft error: reported
    (SOFT_ERROR, SO_ERROR) and what the application learns if the
    connection later times out (MUST-56).  Fragmentation needed is
    ``pathmtu.path_mtu``'s, with ``mtu`` the path MTU now (the layer's
    estimate).
    """
    if type_ == 3 and code == 4:
        if mtu >= 68:
            pathmtu.path_mtu(tp, mtu, now)
        return
    err = _UNREACH_ERRNO.get(code, errno.EHOSTUNREACH) if type_ == 3 else (
        errno.EHOSTUNREACH)
    if type_ == 3 and (code == 2 or code == 3) and tp.state is State.SYN_SENT:
        tp.close_now(err, Ev.RCV_ICMP_HARD)
        return
    tp.soft_error = err
    tp.events.append(Event.SOFT_ERROR)
