"""A scripted TCP peer for the per-RFC-situation tests (collected, holds no tests).

One ustack ``Stack`` (198.18.0.1/24) sits on one end of an in-memory pipe;
the test is the other end.  It crafts every segment with scapy (an
independent oracle: scapy computes the checksums), reads every frame the
stack sends back, parses it with scapy and verifies the IPv4 and TCP
checksums with scapy's own one's-complement sum.  Time is a fake clock the
test moves explicitly: ``run_to`` jumps from one stack timer deadline to the
next, so each outgoing frame is stamped with the exact time the stack sent
it and timing rules (RTO, backoff, delayed ACK, TIME-WAIT) can be checked to
the microsecond.

``Flow`` keeps the peer's side of one connection (its sequence numbers,
timestamps and window scale) so a test writes ``flow.send("A", b"data")``
instead of spelling out every header field, and can still override any
field to play an attacker, a duplicate or a broken peer.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType

from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import checksum

from ustack.link.pipe import PipeDevice, pipe_pair
from ustack.stack import Stack
from ustack.tcp.connection import Event, TcpConfig
from ustack.tcp.socket import TcpListener, TcpSocket
from ustack.tcp.states import State

OUR_IP = "198.18.0.1"
OUR_MAC = "02:00:00:00:01:01"
PEER_IP = "198.18.0.2"
PEER_MAC = "02:00:00:00:01:02"
MASK = 0xFFFFFFFF
# The peer's initial sequence number sits just below the wrap, so the
# first few hundred bytes of every test stream cross 2**32 -> 0 and any
# comparison that is not modular shows up.
PEER_ISN = 0xFFFFFF00
PEER_TS_BASE = 3_000_000

_FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40,
              "C": 0x80}


def flag_bits(flags: str | int) -> int:
    if isinstance(flags, int):
        return flags
    bits = 0
    for ch in flags:
        bits |= _FLAG_BITS[ch]
    return bits


def flag_str(bits: int) -> str:
    """Flags in a fixed order, e.g. "SA", "FA", "R", "PA"."""
    return "".join(ch for ch, b in (("S", 0x02), ("F", 0x01), ("R", 0x04), ("P", 0x08),
                                    ("A", 0x10), ("U", 0x20), ("E", 0x40), ("C", 0x80))
                   if bits & b)


def state(sock: TcpSocket) -> State:
    """The socket's state, read through a call so a type checker does not
    narrow it across the stack calls that change it."""
    return sock.state


def seq_add(a: int, n: int) -> int:
    return (a + n) & MASK


def seq_diff(a: int, b: int) -> int:
    """a - b in sequence space, signed (the test's own, independent of ustack)."""
    d = (a - b) & MASK
    return d - (1 << 32) if d >= 1 << 31 else d


@dataclass
class Seg:
    """One TCP segment the stack sent, with the time it left the stack."""

    t: float
    pkt: Packet

    @property
    def tcp(self) -> TCP:
        layer: TCP = self.pkt[TCP]
        return layer

    @property
    def seq(self) -> int:
        return int(self.tcp.seq)

    @property
    def ack(self) -> int:
        return int(self.tcp.ack)

    @property
    def flags(self) -> str:
        return flag_str(int(self.tcp.flags))

    @property
    def win(self) -> int:
        return int(self.tcp.window)

    @property
    def payload(self) -> bytes:
        return bytes(self.tcp.payload)

    @property
    def seg_len(self) -> int:
        f = int(self.tcp.flags)
        return len(self.payload) + (1 if f & 0x02 else 0) + (1 if f & 0x01 else 0)

    @property
    def end(self) -> int:
        return seq_add(self.seq, self.seg_len)

    @property
    def raw_options(self) -> bytes:
        raw = bytes(self.tcp)
        return raw[20:(raw[12] >> 4) * 4]

    def option(self, name: str) -> object:
        for k, v in self.tcp.options:
            if k == name:
                return v
        return None

    @property
    def tsval(self) -> int | None:
        ts = self.option("Timestamp")
        return int(ts[0]) if isinstance(ts, tuple) else None

    @property
    def tsecr(self) -> int | None:
        ts = self.option("Timestamp")
        return int(ts[1]) if isinstance(ts, tuple) else None

    @property
    def sack(self) -> list[tuple[int, int]]:
        blocks = self.option("SAck")
        if not isinstance(blocks, tuple):
            return []
        return [(int(blocks[i]), int(blocks[i + 1])) for i in range(0, len(blocks), 2)]

    def __repr__(self) -> str:
        return (f"<t={self.t:.6f} {self.flags} seq={self.seq} ack={self.ack} win={self.win} "
                f"len={len(self.payload)} opts={self.tcp.options}>")


def verify_checksums(pkt: Packet) -> None:
    """Assert that the IPv4 header and TCP checksums of a received frame are right.

    The oracle is scapy's one's-complement sum over the bytes as they came
    off the wire (RFC 1071: a correct datagram sums to 0xFFFF, i.e. its
    complement is 0).
    """
    ip = pkt[IP]
    raw_ip = bytes(ip)
    ihl = (raw_ip[0] & 15) * 4
    assert checksum(raw_ip[:ihl]) == 0, f"bad IPv4 header checksum: {pkt!r}"
    total = struct.unpack_from("!H", raw_ip, 2)[0]
    seg = raw_ip[ihl:total]
    if ip.proto == 6:
        pseudo = raw_ip[12:20] + struct.pack("!BBH", 0, 6, len(seg))
        assert checksum(pseudo + seg) == 0, f"bad TCP checksum: {pkt!r}"
    elif ip.proto == 1:
        assert checksum(seg) == 0, f"bad ICMP checksum: {pkt!r}"


class Peer:
    """The test's end of the wire, with a fake clock.

    ``cfg`` is the layer's default ``TcpConfig``: change it before a
    connection is opened to give that connection other settings.
    """

    def __init__(self, *, mtu: int = 1500) -> None:
        self.now = 0.0
        self.dev: PipeDevice
        self.wire: PipeDevice
        # In-memory: no kernel interface, nothing to clean up but the eventfds.
        self.dev, self.wire = pipe_pair(mtu, queue_len=65536, names=("ustack", "peer"))
        self.stack = Stack()
        self.iface = self.stack.add_interface(self.dev, f"{OUR_IP}/24",
                                              mac=bytes.fromhex(OUR_MAC.replace(":", "")))
        self.iface.arp.add_static(socket.inet_aton(PEER_IP),
                                  bytes.fromhex(PEER_MAC.replace(":", "")))
        self.out: list[Seg] = []  # TCP segments the stack sent, not yet taken
        self.icmp_out: list[Seg] = []
        self._next_port = 40000
        self.poll()
        self.out.clear()  # the gratuitous ARP is not TCP anyway

    @property
    def cfg(self) -> TcpConfig:
        return self.stack.tcp.config

    # -- the clock ------------------------------------------------------------

    def poll(self) -> None:
        """Poll the stack at ``now`` until it took every frame, then read its output."""
        st = self.stack
        st.poll(self.now)
        while self.dev.queued():
            st.poll(self.now)
        self._drain()

    def run_to(self, t: float) -> None:
        """Move the clock to ``t``, stopping at every timer deadline on the way."""
        st = self.stack
        for _ in range(1_000_000):
            d = st.next_deadline()
            if d is None or d > t:
                break
            if d > self.now:
                self.now = d
            self.poll()
        else:  # pragma: no cover - a timer that re-arms itself in the past
            raise AssertionError("the stack's timers never settle")
        if t > self.now:
            self.now = t
        self.poll()

    def advance(self, dt: float) -> None:
        self.run_to(self.now + dt)

    def flush(self) -> None:
        """Run the stack's flush so application calls (send, close) reach the wire."""
        self.stack.flush()
        self._drain()

    def _drain(self) -> None:
        while True:
            frames = self.wire.recv_batch(4096, self.now)
            if not frames:
                return
            for f in frames:
                if f[12:14] != b"\x08\x00":
                    continue  # ARP: the static entry makes it irrelevant here
                pkt = Ether(f)
                verify_checksums(pkt)
                if pkt.haslayer(TCP):
                    self.out.append(Seg(self.now, pkt))
                elif pkt.haslayer(ICMP):
                    self.icmp_out.append(Seg(self.now, pkt))

    # -- frames to the stack ----------------------------------------------------

    def inject(self, *frames: Packet | bytes) -> None:
        raw = [f if isinstance(f, bytes) else bytes(f) for f in frames]
        taken = self.wire.send_batch(raw, self.now)
        assert taken == len(raw), "the pipe refused frames"
        self.poll()

    def ip(self) -> Packet:
        pkt: Packet = Ether(src=PEER_MAC, dst=OUR_MAC) / IP(src=PEER_IP, dst=OUR_IP)
        return pkt

    def take(self) -> list[Seg]:
        """Every TCP segment the stack sent since the last call."""
        out, self.out = self.out, []
        return out

    def new_port(self) -> int:
        self._next_port += 1
        return self._next_port

    # -- opening connections ----------------------------------------------------

    def listen(self, port: int = 80, backlog: int = 16) -> TcpListener:
        return self.stack.tcp_listen(("0.0.0.0", port), backlog)

    def accept(self, port: int = 80, *, mss: int | None = 1460, sack: bool = True,
               ts: bool = True, wscale: int | None = 7, win: int = 65535,
               isn: int = PEER_ISN, listener: TcpListener | None = None) -> Flow:
        """Passive open at the stack: SYN from the peer, SYN-ACK, ACK; accepted.

        The peer offers exactly the options named; the flow adopts what the
        SYN-ACK answers.  The handshake takes no time (RTT sample 0, so the
        stack's RTO is the 200 ms minimum).
        """
        lst = listener if listener is not None else self.listen(port)
        flow = Flow(self, self.new_port(), port, isn)
        flow.win = win
        flow.send_syn(mss=mss, sack=sack, ts=ts, wscale=wscale, win=win)
        synack = flow.expect1("SA")
        flow.adopt_syn(synack, offered_ts=ts, offered_ws=wscale)
        flow.send("A")
        assert not flow.take(), "the stack answered the handshake's ACK"
        flow.sock = lst.accept()
        flow.synack = synack
        return flow

    def connect(self, port: int = 80, *, mss: int | None = 1460, sack: bool = True,
                ts: bool = True, wscale: int | None = 7, win: int = 65535,
                isn: int = PEER_ISN, delay: float = 0.0, **options: object) -> Flow:
        """Active open by the stack: its SYN, our SYN-ACK (after ``delay``), its
        ACK; ``options``: TcpConfig fields for the connection."""
        sock = self.stack.tcp_connect((PEER_IP, port), **options)
        self.flush()
        syn = self._expect_syn(sock)
        flow = Flow(self, port, sock.conn.local[1], isn)
        flow.sock = sock
        flow.syn = syn
        flow.irs = syn.seq
        flow.rcv_nxt = seq_add(syn.seq, 1)
        flow.ts_recent = syn.tsval or 0
        if delay:
            self.advance(delay)
            flow.take()  # SYN retransmissions meanwhile: the SYN-ACK answers them all
        flow.win = win
        flow.send_syn(mss=mss, sack=sack, ts=ts and syn.tsval is not None, wscale=wscale,
                      win=win, ack=True)
        flow.ts_ok = ts and syn.tsval is not None
        syn_ws = syn.option("WScale")
        both = wscale is not None and isinstance(syn_ws, int)
        flow.ws_in = int(syn_ws) if both and isinstance(syn_ws, int) else 0
        flow.ws_out = wscale if both and wscale is not None else 0
        flow.sack_ok = sack and syn.option("SAckOK") is not None
        ack = flow.expect1("A")
        assert ack.ack == flow.snd_nxt and ack.seq == flow.rcv_nxt
        return flow

    def _expect_syn(self, sock: TcpSocket) -> Seg:
        segs = [s for s in self.take() if s.tcp.sport == sock.conn.local[1]]
        assert len(segs) == 1 and segs[0].flags == "S", segs
        return segs[0]

    def events(self, sock: TcpSocket) -> list[Event]:
        """Start recording ``sock``'s events; the returned list fills up."""
        got: list[Event] = []
        sock.on_event = lambda _s, ev: got.append(ev)
        return got

    # -- lifetime -----------------------------------------------------------------

    def close(self) -> None:
        self.stack.close()
        self.wire.close()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Flow:
    """The peer's half of one connection.

    ``snd_nxt`` is the peer's next sequence number; ``rcv_nxt`` the next
    sequence number it expects from the stack (moved forward by ``take`` for
    in-order segments, as a receiver without losses would).  ``ws_out`` is
    the shift the stack applies to the windows we send, ``ws_in`` the shift
    of the stack's window field.
    """

    def __init__(self, peer: Peer, sport: int, dport: int, isn: int) -> None:
        self.peer = peer
        # Ports as the peer sees them: ``sport`` is the peer's, ``dport`` the stack's.
        self.sport, self.dport = sport, dport
        self.iss = isn
        self.snd_nxt = isn
        self.irs = 0
        self.rcv_nxt = 0
        self.ts_ok = False
        self.ts_recent = 0
        self.ws_in = 0
        self.ws_out = 0
        self.win = 65535
        self.sack_ok = False
        self.sock: TcpSocket | None = None
        self.syn: Seg | None = None
        self.synack: Seg | None = None

    @property
    def s(self) -> TcpSocket:
        assert self.sock is not None
        return self.sock

    def tsval(self) -> int:
        return (PEER_TS_BASE + round(self.peer.now * 1000)) & MASK

    # -- building and sending -------------------------------------------------------

    def build(self, flags: str | int = "A", payload: bytes = b"", *, seq: int | None = None,
              ack: int | None = None, win: int | None = None,
              options: list[tuple[str, object]] | None = None,
              tsval: int | None = None, tsecr: int | None = None,
              sack: list[tuple[int, int]] | None = None) -> Packet:
        """A segment of this flow; defaults: in order, ACKing ``rcv_nxt``, with TS."""
        bits = flag_bits(flags)
        if options is None:
            options = []
            if self.ts_ok:
                options += [("NOP", None), ("NOP", None),
                            ("Timestamp", (self.tsval() if tsval is None else tsval,
                                           self.ts_recent if tsecr is None else tsecr))]
            if sack:
                flat: list[int] = []
                for left, right in sack:
                    flat += [left, right]
                options += [("NOP", None), ("NOP", None), ("SAck", tuple(flat))]
        tcp = TCP(sport=self.sport, dport=self.dport,
                  seq=self.snd_nxt if seq is None else seq & MASK,
                  ack=(self.rcv_nxt if ack is None else ack & MASK) if bits & 0x10 else 0,
                  flags=bits, window=self.win if win is None else win, options=options)
        pkt: Packet = self.peer.ip() / tcp
        if payload:
            pkt = pkt / Raw(payload)
        return pkt

    def send(self, flags: str | int = "A", payload: bytes = b"", *, seq: int | None = None,
             **kw: object) -> None:
        """Build and inject; an in-order segment (no ``seq``) advances ``snd_nxt``."""
        pkt = self.build(flags, payload, seq=seq, **kw)  # type: ignore[arg-type]
        if seq is None:
            bits = flag_bits(flags)
            self.snd_nxt = seq_add(self.snd_nxt, len(payload) + (1 if bits & 0x02 else 0)
                                   + (1 if bits & 0x01 else 0))
        self.peer.inject(pkt)

    def send_syn(self, *, mss: int | None, sack: bool, ts: bool, wscale: int | None,
                 win: int, ack: bool = False) -> None:
        opts: list[tuple[str, object]] = []
        if mss is not None:
            opts.append(("MSS", mss))
        if sack:
            opts.append(("SAckOK", b""))
        if ts:
            opts.append(("Timestamp", (self.tsval(), self.ts_recent if ack else 0)))
        if wscale is not None:
            opts += [("NOP", None), ("WScale", wscale)]
        self.send("SA" if ack else "S", options=opts, win=win)

    def adopt_syn(self, synack: Seg, *, offered_ts: bool, offered_ws: int | None) -> None:
        """Take the stack's sequence number and options from its SYN-ACK."""
        assert synack.ack == self.snd_nxt, synack
        self.irs = synack.seq
        self.rcv_nxt = seq_add(synack.seq, 1)
        self.ts_ok = offered_ts and synack.tsval is not None
        if self.ts_ok:
            self.ts_recent = synack.tsval or 0
        ws = synack.option("WScale")
        self.ws_in = int(ws) if offered_ws is not None and isinstance(ws, int) else 0
        self.ws_out = offered_ws if offered_ws is not None and ws is not None else 0
        self.sack_ok = synack.option("SAckOK") is not None

    # -- reading ---------------------------------------------------------------------

    def take(self) -> list[Seg]:
        """This flow's segments the stack sent since the last call (others stay queued)."""
        mine: list[Seg] = []
        rest: list[Seg] = []
        for s in self.peer.out:
            if s.tcp.sport == self.dport and s.tcp.dport == self.sport:
                mine.append(s)
            else:
                rest.append(s)
        self.peer.out = rest
        for s in mine:
            if s.tsval is not None:
                self.ts_recent = s.tsval
            if s.seq == self.rcv_nxt and s.seg_len and not s.tcp.flags & 0x04:
                self.rcv_nxt = s.end
        return mine

    def expect1(self, flags: str) -> Seg:
        """Exactly one segment, with exactly these flags."""
        segs = self.take()
        assert len(segs) == 1, f"expected one {flags} segment, got {segs}"
        assert segs[0].flags == flags, segs[0]
        return segs[0]

    def window(self, seg: Seg) -> int:
        """The stack's window in bytes (scaled unless it is a SYN, RFC 7323 2.2)."""
        return seg.win if seg.tcp.flags & 0x02 else seg.win << self.ws_in

    # -- the application at the stack --------------------------------------------------

    def app_send(self, data: bytes) -> None:
        n = self.s.send(data)
        assert n == len(data)
        self.peer.flush()

    def app_recv(self, n: int = 1 << 20) -> bytes:
        data = self.s.recv(n)
        self.peer.flush()
        return data


@contextmanager
def peer(**kw: object) -> Iterator[Peer]:
    p = Peer(**kw)  # type: ignore[arg-type]
    try:
        yield p
    finally:
        p.close()


def sending_flow(p: Peer, nsegs: int, mss: int = 1448) -> tuple[Flow, list[Seg]]:
    """A connection the stack opened (SYN-ACK after 0.1 s, so RTT 0.1 s)
    with ``nsegs`` full segments of its data in flight, the peer's
    ``rcv_nxt`` left at the first of them (nothing of them received yet)."""
    f = p.connect(80, delay=0.1)
    f.app_send(bytes(nsegs * mss))
    flight = f.take()
    assert len(flight) == nsegs
    f.rcv_nxt = flight[0].seq
    return f, flight
