"""What ``ustack ss`` shows of TCP endpoints: a snapshot of each, like
Linux's ``struct tcp_info`` (``getsockopt(TCP_INFO)``, what ``ss -tni``
prints).

Read only when someone asks (the control socket, ``cli/control.py``), from
what the connection keeps anyway: nothing here runs per packet.  Each
function returns plain JSON values (times in milliseconds as ``ss`` prints
them, windows in segments where ``ss`` counts segments) so the snapshot can
cross the control socket as it is.

``ss`` names for the states (``ESTAB``, ``SYN-RECV`` ...) are the ones the
rows carry: a user compares them with the kernel's own ``ss`` output.
"""

from __future__ import annotations

from typing import Final

from ustack.tcp import seq as sq
from ustack.tcp.cc import INFINITE_SSTHRESH
from ustack.tcp.connection import TcpConnection
from ustack.tcp.socket import TcpListener
from ustack.tcp.states import State
from ustack.tcp.timewait import TimeWaitRecord
from ustack.wire import ipv4 as wip

# RFC 9293 state -> the name ``ss`` prints (iproute2's sstate_name).
SS_STATE: Final[dict[State, str]] = {
    State.CLOSED: "UNCONN",
    State.LISTEN: "LISTEN",
    State.SYN_SENT: "SYN-SENT",
    State.SYN_RECEIVED: "SYN-RECV",
    State.ESTABLISHED: "ESTAB",
    State.FIN_WAIT_1: "FIN-WAIT-1",
    State.FIN_WAIT_2: "FIN-WAIT-2",
    State.CLOSE_WAIT: "CLOSE-WAIT",
    State.CLOSING: "CLOSING",
    State.LAST_ACK: "LAST-ACK",
    State.TIME_WAIT: "TIME-WAIT",
}

Row = dict[str, object]


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def endpoint(ip: bytes, port: int) -> str:
    return f"{wip.addr_to_str(ip)}:{port}"


def connection_row(conn: TcpConnection, now: float) -> Row:
    """The columns of one connection: state, Recv-Q (bytes received and not
    read), Send-Q (bytes queued and not acknowledged), both ends, and its
    pending timers (``timers``)."""
    lip, lport = conn.local
    rip, rport = conn.remote
    return {
        "state": SS_STATE[conn.state],
        "recv_q": len(conn.rcvq.buf),
        "send_q": conn.sendq.nbytes(),
        "local": endpoint(lip, lport),
        "peer": endpoint(rip, rport),
        "timers": timers(conn, now),
    }


def listener_row(listener: TcpListener) -> Row:
    """A listener as ``ss -l`` shows it: Recv-Q is the accept queue, Send-Q
    the backlog; ``syn_queue`` the connections in SYN-RECEIVED."""
    return {
        "state": "LISTEN",
        "recv_q": len(listener.accept_queue),
        "send_q": listener.backlog,
        "local": endpoint(listener.ip, listener.port),
        "peer": "0.0.0.0:*",
        "syn_queue": listener.syn_received,
    }


def time_wait_row(rec: TimeWaitRecord, now: float) -> Row:
    """A closed connection kept as a TIME-WAIT record (tcp/timewait.py)."""
    lip, lport, rip, rport = rec.key
    return {
        "state": "TIME-WAIT",
        "recv_q": 0,
        "send_q": 0,
        "local": endpoint(lip, lport),
        "peer": endpoint(rip, rport),
        "timers": [_timer("timewait", rec.deadline, now, 0)],
    }


def _timer(name: str, deadline: float, now: float, count: int) -> Row:
    left = deadline - now
    return {"name": name, "ms": _ms(left if left > 0.0 else 0.0), "count": count}


def timers(conn: TcpConnection, now: float) -> list[Row]:
    """The connection's pending timers, earliest first, named as ``ss -o``
    names them where it has a name (``on``: retransmission or loss probe,
    with the retransmissions so far; ``persist``; ``keepalive`` with its
    unanswered probes; ``timewait``); ``delack`` and ``finwait2`` (an
    orphan's FIN-WAIT-2 limit) are ustack's own."""
    t = conn.timers
    out: list[Row] = []
    if t.rtx is not None:
        out.append(_timer("on", t.rtx, now, conn.retransmits))
    if t.probe is not None:
        out.append(_timer("on", t.probe, now, conn.retransmits))
    if t.persist is not None:
        out.append(_timer("persist", t.persist, now, t.persist_backoff))
    if t.keepalive is not None:
        out.append(_timer("keepalive", t.keepalive, now, t.probes))
    if t.timewait is not None:
        out.append(_timer("timewait", t.timewait, now, 0))
    if t.finwait2 is not None:
        out.append(_timer("finwait2", t.finwait2, now, 0))
    if t.delack is not None:
        out.append(_timer("delack", t.delack, now, 0))
    out.sort(key=_timer_ms)
    return out


def _timer_ms(row: Row) -> float:
    ms = row["ms"]
    return ms if isinstance(ms, float) else 0.0


def data_sent(conn: TcpConnection) -> int:
    """Bytes of data sent once at least (not the SYN or FIN): those
    acknowledged (``bytes_out``, a 64-bit count) and those sent since, from
    the first unacknowledged byte of the queue to SND.NXT or the end of the
    data (the FIN sits right after it, tcb.py).  Not SND.NXT less the ISS:
    sequence space wraps every 4 GiB, and the part in flight is within a
    window, far from wrapping."""
    q = conn.sendq
    end = q.end
    last = conn.snd_nxt if sq.le(conn.snd_nxt, end) else end
    flight = sq.sub(last, q.seq)
    return conn.bytes_out + (flight if flight > 0 else 0)


def segments(nbytes: int, mss: int) -> int:
    """Bytes as the segments of ``mss`` they take, as Linux counts
    ``unacked``, ``sacked`` and ``lost`` (packets, not bytes)."""
    if nbytes <= 0:
        return 0
    return -(-nbytes // mss) if mss > 0 else 1


def connection_info(conn: TcpConnection, now: float) -> Row:
    """What ``ss -i`` shows of a connection (Linux's tcp_info), as far as
    ustack keeps it.  ``cwnd`` and ``ssthresh`` in segments of ``mss``
    (``ssthresh`` None until a loss set it, as ``ss`` leaves it out);
    ``bytes_sent`` counts retransmissions too; ``lastsnd`` is the time
    since new data last went out, ``lastrcv`` since any segment arrived;
    ``retrans`` is [consecutive timeouts now, retransmissions in all];
    ``unacked``, ``sacked`` and ``lost`` in segments, as ``ss`` prints them;
    ``delivery_rate`` in bits per second over the last round trip
    (Tcb.sample_rate)."""
    cc = conn.cc
    rtt = conn.rtt
    mss = conn.mss
    srtt = rtt.srtt
    sacked = conn.sb.sacked_bytes() if conn.sack_ok else 0
    lost = conn.rack.lost_bytes if conn.use_rack else 0
    ssthresh = cc.ssthresh
    info: Row = {
        "cc": cc.name,
        "wscale": [conn.snd_wscale, conn.rcv_wscale],
        "rto": _ms(rtt.rto),
        "backoff": rtt.backoffs,
        "rtt": None if srtt is None else _ms(srtt),
        "rttvar": _ms(rtt.rttvar),
        "minrtt": None if rtt.samples == 0 else _ms(rtt.min_rtt),
        "mss": mss,
        "peer_mss": conn.peer_mss,
        "cwnd": cc.cwnd // mss if mss else 0,
        "cwnd_bytes": cc.cwnd,
        "ssthresh": None if ssthresh >= INFINITE_SSTHRESH else ssthresh // mss,
        "bytes_sent": data_sent(conn) + conn.bytes_retrans,
        "bytes_retrans": conn.bytes_retrans,
        "bytes_acked": conn.bytes_out,
        "bytes_received": conn.bytes_in,
        "segs_out": conn.segs_out,
        "segs_in": conn.segs_in,
        "delivery_rate": int(conn.delivery_rate * 8.0),
        "lastsnd": int(_ms(now - conn.last_send)),
        "lastrcv": int(_ms(now - conn.last_activity)),
        "retrans": [conn.retransmits, conn.total_retransmits],
        "sack": conn.sack_ok,
        "timestamps": conn.ts_ok,
        "snd_wnd": conn.snd_wnd,
        "rcv_wnd": sq.sub(conn.rcv_adv, conn.rcv_nxt),
        # Segments, as Linux's tcp_info counts them (packets_out, sacked_out,
        # lost_out); the bytes beside them for a program that wants those.
        "unacked": segments(sq.sub(conn.snd_nxt, conn.snd_una), mss),
        "sacked": segments(sacked, mss),
        "lost": segments(lost, mss),
        "unacked_bytes": sq.sub(conn.snd_nxt, conn.snd_una),
        "sacked_bytes": sacked,
        "lost_bytes": lost,
        "in_flight": conn.flight(),
        "recovery": conn.rec.active,
    }
    return info
