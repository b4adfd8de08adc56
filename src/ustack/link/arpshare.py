"""Every worker hears every ARP reply: a side socket for stacks that share a link.

With ``--workers N`` the kernel hands each frame to ONE worker: by flow hash
on AF_PACKET (PACKET_FANOUT_HASH), by flow hash or by the queue that last
wrote the flow on a multi-queue TAP.  An ARP reply is no flow of its own:
the kernel may hand the reply to a worker other than the one that asked,
and the asker would retry and give up (``ArpResolveFailed``).

``ArpReplyListener`` is an extra AF_PACKET socket per worker that sees a
copy of every ARP reply on the link, whichever worker the link handed it
to, with a classic BPF filter so that the kernel passes nothing else:

``packet``  the replies that arrive on the interface (bound to ETH_P_ARP,
            not PACKET_OUTGOING), as the fanout group sees them;
``tap``     the replies the kernel *transmits* into the TAP (bound to
            ETH_P_ALL, PACKET_OUTGOING only), i.e. the frames it writes to
            whichever queue.

Only replies: a request (and the reply it wants) stays with the one worker
the kernel handed it to, so it is answered once; every worker has the same
MAC and addresses, so whichever answers, the answer is the same.  A worker
takes a copied reply only for a neighbour it is resolving or has cached
(``ustack.cli.workers``); the worker the link also handed the reply to
takes it twice, which only refreshes the entry it just made (its
``ArpInReplies`` counts both).
"""

from __future__ import annotations

import ctypes
import socket
import struct
from typing import Final

from ustack.link.errors import LinkError, from_os_error

ETH_P_ALL: Final = 0x0003
ETH_P_ARP: Final = 0x0806
SO_ATTACH_FILTER: Final = 26
PACKET_OUTGOING: Final = 4  # linux/if_packet.h, sockaddr_ll.sll_pkttype

# Classic BPF (linux/filter.h, linux/bpf_common.h).
_LD_W_ABS: Final = 0x20
_LD_H_ABS: Final = 0x28
_JEQ_K: Final = 0x15
_RET_K: Final = 0x06
_SKF_AD_PKTTYPE: Final = -0x1000 + 4  # SKF_AD_OFF + SKF_AD_PKTTYPE
_INSN = struct.Struct("=HBBI")  # struct sock_filter
_FPROG = struct.Struct("HL")  # struct sock_fprog, native alignment: len, pointer

_ARP_OP_REPLY: Final = 2
_MAX_BATCH: Final = 64


def reply_filter(outgoing: bool) -> list[tuple[int, int, int, int]]:
    """The program: accept an ARP reply whose direction is ``outgoing``
    (PACKET_OUTGOING or not), drop everything else.  Offsets count from the
    Ethernet header (SOCK_RAW): EtherType at 12, ARP operation at 20."""
    drop = 7  # the index of the last instruction; a jump counts from the next one
    # "pkttype == OUTGOING": on to 2 in the wanted direction, else to drop.
    jt, jf = (0, drop - 2) if outgoing else (drop - 2, 0)
    prog = [
        (_LD_W_ABS, 0, 0, _SKF_AD_PKTTYPE & 0xFFFFFFFF),
        (_JEQ_K, jt, jf, PACKET_OUTGOING),
        (_LD_H_ABS, 0, 0, 12),
        (_JEQ_K, 0, drop - 4, ETH_P_ARP),
        (_LD_H_ABS, 0, 0, 20),
        (_JEQ_K, 0, drop - 6, _ARP_OP_REPLY),
        (_RET_K, 0, 0, 0x40000),
        (_RET_K, 0, 0, 0),
    ]
    return prog


class ArpReplyListener:
    """The side socket on ``ifname`` for a link of ``kind`` (``"packet"`` or
    ``"tap"``); ``recv()`` returns the frames waiting (non-blocking)."""

    def __init__(self, kind: str, ifname: str) -> None:
        if kind not in ("packet", "tap"):
            raise LinkError(f"arp listener: unknown link kind {kind!r}")
        what = f"{kind} {ifname}: ARP reply listener"
        outgoing = kind == "tap"
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except OSError as exc:
            raise from_os_error(what, exc) from exc
        self._sock = sock
        try:
            # The filter goes on before the bind: a socket bound with its
            # protocol would queue unfiltered frames in between.
            prog = reply_filter(outgoing)
            insns = b"".join(_INSN.pack(*i) for i in prog)
            buf = ctypes.create_string_buffer(insns, len(insns))
            fprog = _FPROG.pack(len(prog), ctypes.addressof(buf))
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
            sock.bind((ifname, ETH_P_ALL if outgoing else ETH_P_ARP))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise from_os_error(what, exc) from exc
        self.frames = 0  # replies received

    def fileno(self) -> int:
        return self._sock.fileno()

    def recv(self) -> list[bytes]:
        out: list[bytes] = []
        try:
            for _ in range(_MAX_BATCH):
                out.append(self._sock.recv(2048))
        except (BlockingIOError, InterruptedError):
            pass
        self.frames += len(out)
        return out

    def close(self) -> None:
        self._sock.close()
