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
(``ustack.cli.workers``) and does not count it: the worker the link
handed the reply to counts it (``ArpInReplies``), once; if that is the
one that asked, the second copy only refreshes the entry it just made.
"""

from __future__ import annotations

import socket
from typing import Final

from ustack.link import bpf
from ustack.link.errors import LinkError, from_os_error
from ustack.link.packet import ETH_P_ALL

_MAX_BATCH: Final = 64


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
            bpf.attach(sock, bpf.arp_replies(outgoing))
            sock.bind((ifname, ETH_P_ALL if outgoing else bpf.ETH_P_ARP))
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
