"""The listener's side of SYN cookies (RFC 4987 3.6; Linux's ``tcp_conn_request``
with ``want_cookie`` and ``cookie_v4_check``).

When a listener answers with a cookie it keeps nothing: ``synack`` makes
the SYN-ACK from the SYN alone, its ISS the cookie (``syncookies.py``), and
when the client sent timestamps our TSval carries the options a cookie
cannot (window scale, SACK-permitted).  When an ACK arrives for a listener
with no connection behind it, ``syn_for_ack`` checks the cookie its
acknowledgement number brings back and, if it is ours and fresh, rebuilds
the SYN it answered (the client's ISN, MSS rounded down to Linux's table,
its options from our echoed TSval); ``open_from_cookie`` then puts a new
connection where the SYN-ACK would have left it, in SYN-RECEIVED, and the
ACK itself completes the handshake as any other would (RFC 9293 3.10.7.4).

What a cookie loses, as on Linux: without timestamps, window scaling and
SACK (nothing carries them back); the MSS is rounded down to 536, 1300,
1440 or 1460; the first RTT sample, from the echoed TSval, is high by up
to 63 ms (its low bits hold the options).  Data the client sends with its
ACK is kept as on any connection.

Modes (Linux's net.ipv4.tcp_syncookies): ``OFF`` never, a SYN beyond the
backlog is dropped; ``ON`` when the listener's SYN queue is full (the
default); ``ALWAYS`` for every SYN.  Whatever the mode, a SYN is dropped
while the accept queue is full: a connection completed now would have
nowhere to wait.
"""

from __future__ import annotations

from typing import Final

from ustack.tcp import seq as sq
from ustack.tcp import syncookies as sc
from ustack.tcp.config import TcpConfig, apply_options
from ustack.tcp.connection import TcpConnection
from ustack.tcp.segment import OutSegment, Segment
from ustack.tcp.socket import TcpListener
from ustack.wire import tcp as wtcp
from ustack.wire.tcp import ACK, SYN

OFF: Final = 0
ON: Final = 1
ALWAYS: Final = 2
MODE_NAMES: Final = ("off", "on", "always")  # by value: Linux's tcp_syncookies 0, 1, 2

# RFC 9293 3.7.1: a SYN without the MSS option means 536.
_DEFAULT_MSS: Final = 536
_MSS_KIND: Final = bytes((wtcp.OPT_MSS, 4))
_SACK_TS: Final = bytes((wtcp.OPT_SACK_PERMITTED, 2, wtcp.OPT_TIMESTAMPS, 10))
_WS_HEAD: Final = bytes((wtcp.OPT_NOP, wtcp.OPT_WSCALE, 3))


def parse_mode(value: object) -> int:
    """A mode from its name (``off``, ``on``, ``always``) or Linux's number
    (0, 1, 2); ValueError for anything else."""
    if isinstance(value, str):
        if value in MODE_NAMES:
            return MODE_NAMES.index(value)
    elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 2:
        return value
    raise ValueError(f"syncookies must be one of {', '.join(MODE_NAMES)} (or 0, 1, 2), "
                     f"not {value!r}")


def mode_of(listener: TcpListener, default: int) -> int:
    """The listener's mode: its own, or the layer's ``default``."""
    return listener.syncookies if listener.syncookies >= 0 else default


def cookie_now(listener: TcpListener, default: int) -> bool:
    """Does ``listener`` answer the next SYN with a cookie: mode always, or
    mode on with its SYN queue full (half-open and queued connections at
    the backlog)?  (Whether the accept queue has room is the caller's
    first test: with it full the SYN is dropped in every mode.)"""
    mode = mode_of(listener, default)
    return mode == ALWAYS or (mode == ON and len(listener.accept_queue)
                              + listener.syn_received >= listener.backlog)


def listener_settings(defaults: TcpConfig, listener: TcpListener) -> TcpConfig:
    """The settings ``listener``'s cookie SYN-ACKs are made with, only
    read: the layer's ``defaults``, or with the listener's options over
    them, copied once and again only when either changes (the fields a
    SYN-ACK reads are compared per SYN with those the copy was made from:
    a flood makes no copies)."""
    options = listener.options
    if not options:
        return defaults
    cfg = listener.cookie_cfg
    base = listener.cookie_base
    if cfg is None or base is None or not _same_synack_fields(base, defaults):
        cfg = defaults.copy()
        apply_options(cfg, options)
        listener.cookie_cfg = cfg
        listener.cookie_base = defaults.copy()
    return cfg


def _same_synack_fields(a: TcpConfig, b: TcpConfig) -> bool:
    return (a.mss == b.mss and a.rcvbuf == b.rcvbuf and a.rcvbuf_max == b.rcvbuf_max
            and a.timestamps == b.timestamps and a.sack == b.sack
            and a.window_scaling == b.window_scaling and a.ttl == b.ttl and a.tos == b.tos)


def wscale_for(cfg: TcpConfig) -> int:
    """Our window scale for a buffer of ``cfg`` (as ``Tcb.choose_wscale``:
    the smallest shift that offers the whole buffer, RFC 7323 2.3), which
    the cookie connection recomputes the same."""
    need = -(-max(cfg.rcvbuf, cfg.rcvbuf_max) // 65535)
    return min((need - 1).bit_length() if need > 1 else 0, 14)


def synack(secret: sc.SynCookieSecret, lip: bytes, lport: int, rip: bytes, rport: int,
           syn: Segment, cfg: TcpConfig, mss: int, now: float) -> OutSegment:
    """The SYN-ACK answering ``syn`` whose ISS is a cookie (Linux's
    ``cookie_v4_init_sequence``, ``cookie_init_timestamp``), offering
    ``mss``; ``cfg`` (the listener's settings) is only read."""
    o = syn.opts
    iss, window, options = synack_fields(
        secret, lip, lport, rip, rport, syn.seq, o.mss or 0,
        -1 if o.wscale is None else o.wscale, o.sack_permitted,
        -1 if o.ts_val is None else o.ts_val, cfg, mss, now)
    return OutSegment(iss, sq.add(syn.seq, 1), SYN | ACK, window, options, b"")


def ts_clock(secret: sc.SynCookieSecret, w: tuple[int, int, int], now: float) -> int:
    """Our TSval at ``now`` on the cookie connection of the 4-tuple ``w``
    (``sc.words``): the millisecond clock plus its keyed offset, so that the
    SYN-ACK's TSval and every later one are one clock."""
    return (int(now * 1000) + sc.ts_offset_w(secret, w)) & sq.MASK


def window_field(cfg: TcpConfig, shift: int) -> int:
    """The window field we send with scale ``shift`` for ``cfg``'s buffer."""
    return min(cfg.rcvbuf, 0xFFFF << shift) >> shift


def synack_fields(secret: sc.SynCookieSecret, lip: bytes, lport: int, rip: bytes, rport: int,
                  sseq: int, peer_mss: int, peer_ws: int, peer_sack: bool, peer_tsval: int,
                  cfg: TcpConfig, mss: int, now: float) -> tuple[int, int, bytes]:
    """``synack``'s (ISS, window, option bytes) from the SYN's fields (0: no
    MSS option; -1: no window scale, no timestamps), for a caller that
    read them without a ``Segment`` (apps/cookie_tap.py)."""
    w = sc.words(rip, lip, rport, lport)
    iss = sc.make_cookie_w(secret, w, sseq, sc.mss_index(peer_mss or _DEFAULT_MSS),
                           sc.counter(now))
    window = window_field(cfg, 0)  # a SYN's is never scaled
    # Option bytes in Linux's SYN-ACK layout (wire.tcp.build_options), made
    # here directly: this runs for every SYN of a flood.
    head = _MSS_KIND + mss.to_bytes(2, "big")
    if cfg.timestamps and peer_tsval >= 0:
        ws = peer_ws if peer_ws >= 0 and cfg.window_scaling else -1
        sack = cfg.sack and peer_sack
        tsval = sc.ts_encode(ts_clock(secret, w, now), None if ws < 0 else min(ws, 14), sack, False)
        options = (head + (_SACK_TS if sack else wtcp.TS_ALIGNED) + tsval.to_bytes(4, "big")
                   + peer_tsval.to_bytes(4, "big"))
        if ws >= 0:
            options += _WS_HEAD + bytes((wscale_for(cfg),))
    else:
        # Nothing would bring window scale or SACK back: offer neither.
        options = head
    return iss, window, options


def syn_for_ack(secret: sc.SynCookieSecret, lip: bytes, lport: int, rip: bytes, rport: int,
                seg: Segment, cfg: TcpConfig, now: float) -> Segment | None:
    """The SYN a cookie SYN-ACK answered, rebuilt from the ACK ``seg`` that
    returns the cookie; None when the cookie is not ours, too old, or the
    options it carries are ones ``cfg`` does not allow."""
    irs = sq.add(seg.seq, -1)
    mssind = sc.check_cookie(secret, sq.add(seg.ack, -1), rip, lip, rport, lport, irs,
                             sc.counter(now))
    if mssind < 0:
        return None
    o = seg.opts
    wscale: int | None = None
    sack = False
    ts_val: int | None = None
    if o.ts_val is not None and o.ts_ecr:
        # Our TSval, echoed: the options the SYN offered (Linux's
        # cookie_timestamp_decode, which refuses what is off here too).
        if not cfg.timestamps:
            return None
        wscale, sack, _ecn = sc.ts_decode(o.ts_ecr)
        if (sack and not cfg.sack) or (wscale is not None and not cfg.window_scaling):
            return None
        ts_val = o.ts_val
    return Segment(irs, 0, SYN, seg.window, b"", wtcp.TcpOptions(
        mss=sc.MSS_TABLE[mssind], wscale=wscale, sack_permitted=sack, ts_val=ts_val))


def open_from_cookie(conn: TcpConnection, syn: Segment, now: float) -> None:
    """Put ``conn`` (made with the cookie as its ISS and the cookie's
    timestamp offset) where answering ``syn`` would have: SYN-RECEIVED, our
    SYN sent, the window it offered advertised; the ACK is then received
    as usual."""
    conn.accept_syn(syn, now)
    conn.send_syn = False  # the cookie SYN-ACK was that
    conn.timers.rtx = None
    cfg = conn.cfg
    conn.rcv_adv = sq.add(conn.rcv_nxt, cfg.rcvbuf if cfg.rcvbuf < 0xFFFF else 0xFFFF)
