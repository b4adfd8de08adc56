"""Classic BPF socket filters for AF_PACKET sockets (linux/filter.h).

A filter runs in the kernel on every frame the socket would receive and
returns how many bytes to keep (0: drop it), so the frames a process does
not want are never copied to it.  Offsets count from the Ethernet header
(SOCK_RAW).  Two programs, both for ``--workers``:

``arp_replies``        only ARP replies, of one direction (link/arpshare.py);
``address_partition``  worker K of N takes the IPv4 frames to the addresses
                       ``a`` with ``a % N == K`` (the IPv4 address as a
                       32-bit number), ARP replies (each worker resolves its
                       own neighbours) and, worker 0 only, ARP requests
                       (one worker answers them, for every address: all
                       have the same MAC).  For ``ustack load --workers``:
                       each worker opens connections from its own
                       addresses, so every segment of a connection reaches
                       the worker that opened it.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from typing import Final

from ustack.wire import arp as warp
from ustack.wire import ethernet

SO_ATTACH_FILTER: Final = 26
ETH_P_ARP: Final = ethernet.ETHERTYPE_ARP
ETH_P_IP: Final = ethernet.ETHERTYPE_IPV4
PACKET_OUTGOING: Final = 4  # linux/if_packet.h, sockaddr_ll.sll_pkttype

# Opcodes (linux/bpf_common.h).
LD_W_ABS: Final = 0x20
LD_H_ABS: Final = 0x28
JEQ_K: Final = 0x15
ALU_MOD_K: Final = 0x94
RET_K: Final = 0x06
SKF_AD_PKTTYPE: Final = (-0x1000 + 4) & 0xFFFFFFFF  # SKF_AD_OFF + SKF_AD_PKTTYPE

ACCEPT: Final = 0x40000  # bytes to keep: the whole frame
ARP_OP_REPLY: Final = warp.OP_REPLY

Insn = tuple[int, int, int, int]  # code, jump if true, jump if false, k

_INSN = struct.Struct("=HBBI")  # struct sock_filter
_FPROG = struct.Struct("HL")  # struct sock_fprog, native alignment: length, pointer


def attach(sock: socket.socket, prog: list[Insn]) -> None:
    """Set ``prog`` as ``sock``'s filter (OSError if the kernel refuses it).
    Do it before ``bind``: a bound socket queues frames unfiltered until then."""
    insns = b"".join(_INSN.pack(*i) for i in prog)
    buf = ctypes.create_string_buffer(insns, len(insns))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                    _FPROG.pack(len(prog), ctypes.addressof(buf)))


def arp_replies(outgoing: bool) -> list[Insn]:
    """ARP replies whose direction is ``outgoing`` (PACKET_OUTGOING or not)."""
    drop = 7  # the index of the last instruction; a jump counts from the next one
    # "pkttype == OUTGOING": on to 2 in the wanted direction, else to drop.
    jt, jf = (0, drop - 2) if outgoing else (drop - 2, 0)
    return [
        (LD_W_ABS, 0, 0, SKF_AD_PKTTYPE),
        (JEQ_K, jt, jf, PACKET_OUTGOING),
        (LD_H_ABS, 0, 0, 12),
        (JEQ_K, 0, drop - 4, ETH_P_ARP),
        (LD_H_ABS, 0, 0, 20),
        (JEQ_K, 0, drop - 6, ARP_OP_REPLY),
        (RET_K, 0, 0, ACCEPT),
        (RET_K, 0, 0, 0),
    ]


def address_partition(count: int, index: int) -> list[Insn]:
    """Worker ``index`` of ``count``'s share of the frames (module doc)."""
    if not 0 <= index < count:
        raise ValueError(f"worker {index} of {count}")
    accept, drop = 9, 10
    # 4: an ARP request goes to worker 0 only.
    request = (RET_K, 0, 0, ACCEPT if index == 0 else 0)
    return [
        (LD_H_ABS, 0, 0, 12),                        # 0: EtherType
        (JEQ_K, 0, 3, ETH_P_ARP),                    # 1: ARP, else to 5
        (LD_H_ABS, 0, 0, 20),                        # 2: ARP operation
        (JEQ_K, accept - 4, 0, ARP_OP_REPLY),        # 3: a reply: every worker
        request,                                     # 4
        (JEQ_K, 0, drop - 6, ETH_P_IP),              # 5: IPv4, else drop
        (LD_W_ABS, 0, 0, 30),                        # 6: destination address
        (ALU_MOD_K, 0, 0, count),                    # 7
        (JEQ_K, 0, drop - 9, index),                 # 8: ours, else drop
        (RET_K, 0, 0, ACCEPT),                       # 9
        (RET_K, 0, 0, 0),                            # 10
    ]
