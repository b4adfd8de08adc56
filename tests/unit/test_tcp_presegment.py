"""Pre-segmented, pre-summed responses (tcp/presegment.py) through the send
queue and the output: the stored sums are the bytes' sums, a segment cut on
the stored boundaries leaves with the stored bytes and sum, anything else
falls back to summing, and the stream is exact end to end, every frame's
checksum verified by scapy (an independent one's-complement sum), with loss
and on a link that cuts super-frames (TSO)."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import checksum as scapy_checksum

from ustack.link.base import Capabilities, Device, Frame
from ustack.link.fault import FaultInjector, FaultSpec
from ustack.link.pipe import pipe_pair
from ustack.link.vnet import GSO_TCPV4, HDR_MRG, HDR_MRG_LEN
from ustack.link.wrapper import DeviceWrapper
from ustack.stack import Stack
from ustack.tcp.presegment import Presegmented, presegment, run_sum, with_head
from ustack.tcp.sendq import SendQueue
from ustack.tcp.socket import TcpSocket
from ustack.tcp.states import State

A_IP, B_IP = "198.18.0.1", "198.18.0.2"
MASK = 0xFFFFFFFF


def ref_sum(data: bytes) -> int:
    """The one's-complement sum of ``data`` by scapy (odd length padded),
    reduced mod 0xFFFF as ``checksum.sum_mod`` reports it."""
    return ((~scapy_checksum(data)) & 0xFFFF) % 0xFFFF


def segments(p: Presegmented) -> list[bytes]:
    body = bytes(p.body)
    return [p.head] + [body[i:i + p.mss] for i in range(0, len(body), p.mss)]


# -- the stored sums ----------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(head=st.binary(min_size=1, max_size=64), body=st.binary(max_size=3000),
       mss=st.integers(min_value=64, max_value=1500), kind=st.sampled_from(["bytes", "view"]))
def test_stored_sums_are_the_sums_of_the_segments(head: bytes, body: bytes, mss: int,
                                                  kind: str) -> None:
    p = presegment(head, body if kind == "bytes" else memoryview(bytearray(body)), mss)
    segs = segments(p)
    assert len(p.sums) == len(segs) == 1 + -(-len(body) // mss)
    assert p.nbytes == len(head) + len(body) and b"".join(segs) == head + body
    for i, seg in enumerate(segs):
        assert p.sums[i] % 0xFFFF == ref_sum(seg), i
        assert p.offset(i) == sum(map(len, segs[:i]))
    # A run of consecutive segments as one payload (odd head or odd MSS:
    # the later segments start at odd offsets).
    for first in range(len(segs)):
        for last in range(first + 1, min(len(segs), first + 4) + 1):
            assert run_sum(p, first, last) % 0xFFFF == ref_sum(b"".join(segs[first:last]))


@settings(max_examples=50, deadline=None)
@given(head=st.binary(min_size=1, max_size=40), new=st.binary(min_size=40, max_size=40),
       body=st.binary(max_size=2000))
def test_with_head_shares_the_body_and_sums_only_the_new_head(head: bytes, new: bytes,
                                                              body: bytes) -> None:
    p = presegment(head, body, 536)
    q = with_head(p, new[:len(head)])
    assert q.body is p.body and q.sums[1:] == p.sums[1:] and q.nbytes == p.nbytes
    assert q.sums[0] % 0xFFFF == ref_sum(new[:len(head)])
    with pytest.raises(ValueError):
        with_head(p, head + b"x")


def test_a_head_must_fit_one_segment() -> None:
    with pytest.raises(ValueError):
        presegment(b"x" * 101, b"", 100)
    with pytest.raises(ValueError):
        presegment(b"", b"body", 100)


# -- the send queue -----------------------------------------------------------


def static_queue(p: Presegmented, before: bytes = b"", after: bytes = b"") -> SendQueue:
    q = SendQueue(1000)
    q.append(before)
    assert q.append_static(p, 0, 1 << 30) == len(p.sums)
    q.append(after)
    return q


def test_peek_gives_stored_segments_on_their_boundaries() -> None:
    body = bytes(range(256)) * 40  # 10240 bytes
    p = presegment(b"HTTP/1.1 200 OK\r\n\r\n", body, 1000)
    q = static_queue(p, b"x" * 10, b"tail")
    assert q.nbytes() == 10 + p.nbytes + 4 and q.end == 1000 + q.nbytes()
    # Ordinary bytes stop at the piece boundary.
    assert q.peek(1000, 1448) == b"x" * 10 and q.peek_sum == -1
    # Segment 0 is the head object itself.
    assert q.peek(1010, 1448) is p.head and q.peek_sum == p.sums[0]
    # A body segment: a view of the stored body, its stored sum.
    s1 = 1010 + len(p.head)
    seg = q.peek(s1, 1448)
    assert isinstance(seg, memoryview) and seg.obj is p.body.obj
    assert bytes(seg) == body[:1000] and q.peek_sum == p.sums[1]
    # Several whole segments (a super-frame): their sums folded together.
    seg = q.peek(s1, 64000)
    assert seg is not None and bytes(seg) == body  # up to the run's end, not into "tail"
    assert q.peek_sum % 0xFFFF == ref_sum(body)
    seg = q.peek(s1, 2999)
    assert seg is not None and len(seg) == 2000 and q.peek_sum % 0xFFFF == ref_sum(body[:2000])
    # Less room than the segment (SACK blocks, a window): a copy to sum.
    seg = q.peek(s1, 600)
    assert seg == body[:600] and q.peek_sum == -1
    # From inside a segment: a copy up to the next boundary (realigned).
    seg = q.peek(s1 + 600, 1448)
    assert seg == body[600:1000] and q.peek_sum == -1
    # ... unless the room is below the stored MSS (the MSS shrank): full copies.
    seg = q.peek(s1 + 600, 900)
    assert seg == body[600:1500] and q.peek_sum == -1
    # The short last segment, and the ordinary bytes after the run.
    last = s1 + 10000
    assert q.peek(last, 1448) == body[10000:] and q.peek_sum == p.sums[-1]
    assert q.peek(last + 240, 1448) == b"tail" and q.peek_sum == -1


def test_acks_take_bytes_across_pieces() -> None:
    body = bytes(range(251)) * 20
    p = presegment(b"head!", body, 500)
    stream = b"abc" + p.head + body + b"tail"
    q = static_queue(p, b"abc", b"tail")
    seq = 1000
    for n in (1, 2, 3, 4, 500, 7, 1000, 3000, 502, 4):
        assert q.ack(seq, (seq + n) & MASK, n) == n
        seq = (seq + n) & MASK
        off = seq - 1000
        got = q.peek(seq, 500)
        assert got is not None and bytes(got) == stream[off:off + len(got)] and got
        if q.peek_sum >= 0:
            assert q.peek_sum % 0xFFFF == ref_sum(bytes(got))
        assert q.nbytes() == len(stream) - off
    rest = len(stream) - (seq - 1000)
    assert q.ack(seq, (seq + rest + 1) & MASK, rest + 1) == rest  # the rest and our FIN
    assert q.nbytes() == 0 and not q.more and not q.buf
    q.append(b"again")  # the ordinary queue once more
    assert q.peek(q.seq, 100) == b"again"


def test_append_static_queues_whole_segments_while_there_is_room() -> None:
    p = presegment(b"H" * 100, b"b" * 1050, 200)  # segments: 100, 200 x 5, 50
    q = SendQueue(1)
    assert q.append_static(p, 0, 350) == 2  # 100 + 200; 250 more would not fit
    assert q.nbytes() == 300
    assert q.append_static(p, 2, 350) == 3  # room 50: one segment all the same
    assert q.nbytes() == 500 and q.free(350) == 0
    assert q.append_static(p, 3, 350) == 3  # no room: nothing
    q.ack(1, 401, 400)
    assert q.append_static(p, 3, 2000) == 7  # the rest, with the short last one
    assert len(q.more) == 1  # one run: the calls continued it
    # The ACK ended inside segment 2: a copy of its rest, then whole ones.
    assert q.peek(401, 5000) == b"b" * 100 and q.peek_sum == -1
    run = q.peek(501, 5000)
    assert run is not None and bytes(run) == b"b" * 650 and q.peek_sum >= 0
    q2 = SendQueue(1)
    assert q2.append_static(p, 5, 250) == 7  # 200 + the 50 of the last
    assert q2.append_static(p, 7, 250) == 7  # nothing left to queue


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(st.one_of(
    st.tuples(st.just("bytes"), st.integers(0, 3000)),
    st.tuples(st.just("static"), st.integers(1, 4)),
    st.tuples(st.just("ack"), st.integers(0, 4000)),
    st.tuples(st.just("peek"), st.integers(0, 8000), st.integers(1, 5000)),
), max_size=40))
def test_the_queue_is_the_stream_whatever_the_pieces(ops: list[tuple[int | str, ...]]) -> None:
    """Against a plain bytearray model: every peek is the stream's bytes
    from its offset, within the room, and a stored sum is the bytes' sum."""
    ps = [presegment(b"H" * 7, bytes(range(256)) * 9, 536),
          presegment(b"head", b"z" * 100, 1000),
          presegment(b"x" * 300, bytes(range(200)) * 30, 300),
          presegment(b"odd", bytes(range(1, 256)) * 7, 333)]  # odd MSS: sums swap
    q = SendQueue(MASK - 3000)  # crosses the wrap
    model = bytearray()
    for op in ops:
        kind = op[0]
        if kind == "bytes":
            data = bytes([len(model) & 0xFF]) * int(op[1])
            q.append(data)
            model += data
        elif kind == "static":
            p = ps[int(op[1]) - 1]
            i = 0
            while i < len(p.sums):
                j = q.append_static(p, i, len(model) + 5000)
                assert j > i
                model += p.head if i == 0 else b""
                model += bytes(p.body[p.offset(max(i, 1)) - len(p.head):p.offset(j) - len(p.head)])
                i = j
        elif kind == "ack":
            n = min(int(op[1]), len(model))
            assert q.ack(q.seq, (q.seq + n) & MASK, n) == n
            del model[:n]
        else:
            off, room = int(op[1]), int(op[2])
            got = q.peek((q.seq + off) & MASK, room)
            assert got is not None
            got = bytes(got)
            assert got == bytes(model[off:off + len(got)]) and len(got) <= room
            assert got or off >= len(model)
            if q.peek_sum >= 0:
                assert q.peek_sum % 0xFFFF == ref_sum(got)
        assert q.nbytes() == len(model) == (q.end - q.seq) & MASK


# -- end to end ---------------------------------------------------------------


def verify_frames(frames: list[bytes]) -> int:
    """Every TCP frame's IPv4 and TCP checksums, by scapy's sum (tcp_peer's
    oracle); returns how many there were."""
    n = 0
    for raw in frames:
        if Ether(raw).haslayer(TCP):
            verify_frame(raw)
            n += 1
    return n


def verify_frame(raw: bytes) -> Ether:
    pkt = Ether(raw)
    raw_ip = bytes(pkt[IP])
    ihl = (raw_ip[0] & 15) * 4
    assert scapy_checksum(raw_ip[:ihl]) == 0, "bad IPv4 header checksum"
    total = struct.unpack_from("!H", raw_ip, 2)[0]
    seg = raw_ip[ihl:total]
    pseudo = raw_ip[12:20] + struct.pack("!BBH", 0, 6, len(seg))
    assert scapy_checksum(pseudo + seg) == 0, f"bad TCP checksum: {pkt!r}"
    return pkt


class Recorder(DeviceWrapper):
    """Keeps every frame the stack sends.  With ``tso``, it claims checksum
    and segmentation offload and does what the device would: it finishes a
    partial checksum, and cuts a super-frame into ``gso_size`` segments
    (fixing lengths, IP IDs, sequence numbers, flags and both checksums
    with scapy), keeping the super-frame it was handed as well."""

    kind = "recorder"

    def __init__(self, inner: Device, tso: bool = False) -> None:
        caps = Capabilities(mtu=1500, max_frame=65535 + 14, vnet_hdr=True,
                            vnet_hdr_len=HDR_MRG_LEN, csum_tx=True, tso=True) if tso else None
        super().__init__(inner, caps)
        self.frames: list[bytes] = []  # what went on the wire
        self.super_frames: list[tuple[int, bytes]] = []  # (gso_size, frame) handed down

    def send_batch(self, frames: Sequence[Frame], now: float) -> int:
        self.frames += [bytes(f) for f in frames]
        return self.inner.send_batch(frames, now)

    def send_gso(self, items: Sequence[tuple[bytes, Frame]], now: float) -> int:
        out: list[bytes] = []
        for hdr, frame in items:
            flags, gso_type, _hdr_len, gso_size, _start, _off, _ = HDR_MRG.unpack(hdr)
            if not flags:
                out.append(bytes(frame))
                continue
            pkt = Ether(bytes(frame))
            payload = bytes(pkt[TCP].payload)
            if gso_type == GSO_TCPV4:
                self.super_frames.append((gso_size, bytes(frame)))
                pieces = [payload[i:i + gso_size] for i in range(0, len(payload), gso_size)]
            else:
                pieces = [payload]
            ip_id = pkt[IP].id
            for k, piece in enumerate(pieces):
                seg = pkt.copy()
                tcp = seg[TCP]
                tcp.seq = (pkt[TCP].seq + k * gso_size) & MASK
                if k < len(pieces) - 1:
                    tcp.flags = int(tcp.flags) & ~0x09  # FIN and PSH on the last only
                tcp.remove_payload()
                tcp.add_payload(piece)
                seg[IP].id = (ip_id + k) & 0xFFFF
                del seg[IP].len, seg[IP].chksum, tcp.chksum
                out.append(bytes(seg))
        self.frames += out
        return self.inner.send_batch(out, now)


class Net:
    def __init__(self, *, fault: str | None = None, tso: bool = False) -> None:
        a_dev, b_dev = pipe_pair(1500, queue_len=100_000)
        inner: Device = FaultInjector(a_dev, FaultSpec.parse(fault)) if fault else a_dev
        self.rec = Recorder(inner, tso)
        self.a, self.b = Stack(), Stack()
        self.a.add_interface(self.rec, f"{A_IP}/24")
        self.b.add_interface(b_dev, f"{B_IP}/24")
        self.now = 0.0

    def step(self) -> None:
        self.now += 0.001
        self.a.poll(self.now)
        self.b.poll(self.now)

    def pair(self) -> tuple[TcpSocket, TcpSocket]:
        listener = self.b.tcp_listen(("0.0.0.0", 80))
        client = self.a.tcp_connect((B_IP, 80))
        for _ in range(5000):
            if listener.accept_queue and client.state is State.ESTABLISHED:
                break
            self.step()
        return client, listener.accept()


Item = Presegmented | bytes


def serve(net: Net, src: TcpSocket, dst: TcpSocket, items: list[Item],
          limit: float = 300.0) -> bytes:
    """Send each item (send_presegmented or send), close, read to EOF."""
    got = bytearray()
    k = 0
    i = 0
    shut = False
    end = net.now + limit
    while net.now < end:
        while k < len(items):
            item = items[k]
            try:
                if isinstance(item, Presegmented):
                    i = src.send_presegmented(item, i)
                    if i < len(item.sums):
                        break
                else:
                    i += src.send(item[i:])
                    if i < len(item):
                        break
            except BlockingIOError:
                break
            k += 1
            i = 0
        if k == len(items) and not shut:
            src.shutdown_write()
            shut = True
        with contextlib.suppress(BlockingIOError):
            chunk = dst.recv(1 << 20)
            if chunk == b"":
                return bytes(got)
            got += chunk
        net.step()
    raise AssertionError(f"stalled at {len(got)} bytes")


def expected(items: list[Item]) -> bytes:
    return b"".join(item if isinstance(item, bytes) else item.head + bytes(item.body)
                    for item in items)


def responses(mss: int) -> list[Item]:
    """Small and large responses (odd and even heads), repeated, with
    ordinary bytes between them."""
    small = presegment(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"", mss)
    body = bytes(range(256)) * 1200  # 307200 bytes
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 307200\r\n\r\n"
    large = presegment(head + body[:mss - len(head)], body[mss - len(head):], mss)
    odd = presegment(b"HTTP/1.1 200 OK\r\n\r\nabc", bytes(range(97)) * 300, mss)
    newer = with_head(large, large.head.replace(b"200 OK", b"200 ok"))
    return [small, large, b"ordinary bytes in between", odd, small, b"x" * 5000, large, newer,
            small]


def count_static_segments(items: list[Item]) -> int:
    return sum(len(item.sums) for item in items if isinstance(item, Presegmented))


def test_presegmented_responses_arrive_exact_with_stored_sums() -> None:
    net = Net()
    client, server = net.pair()
    assert client.mss == 1448  # 1500 - 40 - the timestamp option
    items = responses(client.mss)
    assert serve(net, client, server, items) == expected(items)
    assert verify_frames(net.rec.frames) > 200
    c = net.a.counters
    # Almost every static segment left with its stored sum (a window that
    # cuts one short makes a copy).
    assert c.TcpPresegmentedOut >= 0.9 * count_static_segments(items), c.TcpPresegmentedOut
    assert net.b.counters.TcpInCsumErrors == 0


def test_an_ordinary_transfer_takes_no_stored_sum() -> None:
    net = Net()
    client, server = net.pair()
    data = bytes(range(256)) * 400
    assert serve(net, client, server, [data]) == data
    assert net.a.counters.TcpPresegmentedOut == 0


def test_presegmented_for_another_mss_is_still_exact() -> None:
    """Cut for a larger MSS than the connection's (the path MTU fell): the
    segments too long for it go as copies, summed (only those that fit
    take their stored sums); cut for a smaller one, whole segments go."""
    for mss in (2000, 1000, 999):
        net = Net()
        client, server = net.pair()
        items = responses(mss)
        assert serve(net, client, server, items) == expected(items)
        assert verify_frames(net.rec.frames)
        n = net.a.counters.TcpPresegmentedOut
        if mss > client.mss:
            fit = sum(len(seg) <= client.mss for item in items
                      if isinstance(item, Presegmented) for seg in segments(item))
            assert 0 < n <= fit < count_static_segments(items) // 10
        else:
            assert n >= 0.9 * count_static_segments(items)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_with_loss_the_stream_is_exact_and_retransmissions_use_stored_sums(seed: int) -> None:
    net = Net(fault=f"loss=0.05,seed={seed}")
    client, server = net.pair()
    items = responses(client.mss)
    assert serve(net, client, server, items) == expected(items)
    assert verify_frames(net.rec.frames)
    c = net.a.counters
    assert c.TcpRetransSegs > 0
    # Retransmissions of whole stored segments take the stored sums too.
    assert c.TcpPresegmentedOut >= count_static_segments(items) + c.TcpRetransSegs // 2
    assert net.b.counters.TcpInCsumErrors == 0


@pytest.mark.parametrize("fault", [None, "loss=0.03,seed=5"])
def test_super_frames_from_stored_segments_are_right(fault: str | None) -> None:
    """On a link that cuts super-frames (TSO), runs of stored body segments
    go as one super-frame, a view of the stored body; the device's cut
    segments verify and the stream is exact."""
    net = Net(fault=fault, tso=True)
    client, server = net.pair()
    items = responses(client.mss)
    stream = expected(items)
    assert serve(net, client, server, items) == stream
    assert verify_frames(net.rec.frames)
    syn = next(Ether(f) for f in net.rec.frames
               if Ether(f).haslayer(TCP) and Ether(f)[TCP].flags & 0x02)
    base = (syn[TCP].seq + 1) & MASK
    big = [(g, f) for g, f in net.rec.super_frames if len(Ether(f)[TCP].payload) > g]
    assert len(big) >= 3
    for _gso, frame in big:
        tcp = Ether(frame)[TCP]
        off = (tcp.seq - base) & MASK
        payload = bytes(tcp.payload)
        assert payload == stream[off:off + len(payload)]
    assert net.a.counters.TcpPresegmentedOut > 0
    assert net.b.counters.TcpInCsumErrors == 0


def data_frames(frames: list[bytes]) -> list[int]:
    """The payload lengths of the TCP frames carrying data."""
    pkts = [Ether(f) for f in frames]
    return [len(p[TCP].payload) for p in pkts if p.haslayer(TCP) and len(p[TCP].payload)]


@pytest.mark.parametrize("static", [True, False])
def test_the_last_segment_of_a_response_is_not_held_by_nagle(static: bool) -> None:
    """Two full segments and a short one, Nagle on: the short one goes with
    them when it ends a Presegmented response (nothing more will join it);
    as ordinary bytes it waits for the ACK (RFC 896)."""
    net = Net()
    client, _server = net.pair()
    assert not client.conn.cfg.nodelay
    mss = client.mss
    body = bytes(range(256)) * 12
    p = presegment(body[:mss], body[mss:2 * mss + 100], mss)
    before = len(net.rec.frames)
    if static:
        assert client.send_presegmented(p) == 3
    else:
        assert client.send(body[:2 * mss + 100]) == 2 * mss + 100
    net.a.poll(net.now)  # A alone: no ACK can arrive in between
    sent = data_frames(net.rec.frames[before:])
    assert sent == ([mss, mss, 100] if static else [mss, mss])


def test_send_presegmented_errors_as_send() -> None:
    net = Net()
    client, _server = net.pair()
    p = presegment(b"abc", b"", 100)
    client.shutdown_write()
    with pytest.raises(BrokenPipeError):
        client.send_presegmented(p)
    with pytest.raises(ValueError):
        client.send_presegmented(p, -1)
    # A full buffer: nothing queued, as send's EAGAIN.
    net2 = Net()
    c2, _s2 = net2.pair()
    c2.conn.cfg.sndbuf = 100
    assert c2.send(b"x" * 100) == 100
    with pytest.raises(BlockingIOError):
        c2.send_presegmented(p)
    assert c2.send_presegmented(p, 1) == 1  # nothing left to queue: no error
