"""Stack counters, named as users know them from ``netstat -s`` / ``nstat``.

The MIB counters (RFC 4293 IP-MIB, RFC 4113 UDP-MIB, Linux's Tcp/TcpExt
names) are plain attributes so the hot path pays one attribute increment.
Every drop additionally has its own named reason (``drop()``), so an operator
can tell *why* IpInHdrErrors moved: a bad checksum, a short header, ...
Reasons are the ``ParseError.reason`` strings of ``ustack.wire`` or names the
layers choose (``eth_not_for_us``, ``arp_queue_full``...).
"""

from __future__ import annotations


def _camel(reason: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in reason.split("_"))


class Counters:
    """All counters of one Stack.  Attribute names are the netstat names."""

    # Link / Ethernet (no netstat equivalent; named like the rest).
    EthInFrames: int
    EthOutFrames: int
    # IP-MIB (RFC 4293 names as Linux shows them in /proc/net/snmp).
    IpInReceives: int
    IpInHdrErrors: int
    IpInAddrErrors: int
    IpInUnknownProtos: int
    IpInDiscards: int
    IpInDelivers: int
    IpOutRequests: int
    IpOutDiscards: int
    IpOutNoRoutes: int
    IpReasmTimeout: int
    IpReasmReqds: int
    IpReasmOKs: int
    IpReasmFails: int
    IpFragOKs: int
    IpFragFails: int
    IpFragCreates: int
    # ICMP
    IcmpInMsgs: int
    IcmpInErrors: int
    IcmpInCsumErrors: int
    IcmpInDestUnreachs: int
    IcmpInTimeExcds: int
    IcmpInEchos: int
    IcmpInEchoReps: int
    IcmpOutMsgs: int
    IcmpOutErrors: int
    IcmpOutRateLimitGlobal: int
    IcmpOutDestUnreachs: int
    IcmpOutTimeExcds: int
    IcmpOutEchos: int
    IcmpOutEchoReps: int
    # UDP-MIB plus Linux's extensions.
    UdpInDatagrams: int
    UdpNoPorts: int
    UdpInErrors: int
    UdpOutDatagrams: int
    UdpRcvbufErrors: int
    UdpSndbufErrors: int
    UdpInCsumErrors: int
    # TCP-MIB (RFC 4022) and Linux TcpExt names.
    TcpActiveOpens: int
    TcpPassiveOpens: int
    TcpAttemptFails: int
    TcpEstabResets: int
    TcpCurrEstab: int
    TcpInSegs: int
    TcpOutSegs: int
    TcpRetransSegs: int
    TcpInErrs: int
    TcpOutRsts: int
    TcpInCsumErrors: int
    TcpExtListenOverflows: int
    TcpExtListenDrops: int
    TcpExtTCPChallengeACK: int
    TcpExtTCPChallengeACKLimited: int
    TcpExtTCPHPHits: int  # header prediction took a segment with data
    TcpExtTCPHPAcks: int  # ... a pure ACK
    # Segments (or their text) the connection dropped, where Linux has a
    # counter of its own; other drops are Drop<Reason>.
    TcpExtPAWSEstab: int
    TcpExtTCPAbortOnData: int
    TcpExtTCPZeroWindowDrop: int
    TcpExtTCPOFODrop: int
    # ARP (Linux keeps these per neighbour table; flat here).
    ArpInRequests: int
    ArpInReplies: int
    ArpOutRequests: int
    ArpOutReplies: int
    ArpResolveFailed: int

    def __init__(self) -> None:
        for name in NAMES:
            setattr(self, name, 0)
        self.drops: dict[str, int] = {}

    def drop(self, reason: str) -> None:
        """Count one dropped frame/packet under its reason."""
        d = self.drops
        d[reason] = d.get(reason, 0) + 1

    def snapshot(self, *, nonzero: bool = False) -> dict[str, int]:
        """Every counter by name; drop reasons appear as ``Drop<Reason>``."""
        out = {name: getattr(self, name) for name in NAMES}
        for reason, n in sorted(self.drops.items()):
            out["Drop" + _camel(reason)] = n
        if nonzero:
            out = {k: v for k, v in out.items() if v}
        return out


# Every counter's name, in the order declared: the annotations of Counters
# are the one list (a name known only at run time is tested against this).
NAMES: tuple[str, ...] = tuple(Counters.__annotations__)
