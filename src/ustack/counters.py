"""Stack counters, named as users know them from ``netstat -s`` / ``nstat``.

The MIB counters (RFC 4293 IP-MIB, RFC 4113 UDP-MIB, Linux's Tcp/TcpExt
names) are plain attributes so the hot path pays one attribute increment.
Every drop additionally has its own named reason (``drop()``), so an operator
can tell *why* IpInHdrErrors moved: a bad checksum, a short header, ...
Reasons are the ``ParseError.reason`` strings of ``ustack.wire`` or names the
layers choose (``eth_not_for_us``, ``arp_queue_full``...).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields


def _camel(reason: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in reason.split("_"))


@dataclass(eq=False)
class Counters:
    """All counters of one Stack.  Attribute names are the netstat names.

    A dataclass so that its fields are the one list of names (``NAMES``),
    readable from the compiled class as from the pure one."""

    # Link / Ethernet (no netstat equivalent; named like the rest).
    EthInFrames: int = 0
    EthOutFrames: int = 0
    # IP-MIB (RFC 4293 names as Linux shows them in /proc/net/snmp).
    IpInReceives: int = 0
    IpInHdrErrors: int = 0
    IpInAddrErrors: int = 0
    IpInUnknownProtos: int = 0
    IpInDiscards: int = 0
    IpInDelivers: int = 0
    IpOutRequests: int = 0
    IpOutDiscards: int = 0
    IpOutNoRoutes: int = 0
    IpReasmTimeout: int = 0
    IpReasmReqds: int = 0
    IpReasmOKs: int = 0
    IpReasmFails: int = 0
    IpExtReasmOverlaps: int = 0  # Linux's IpExt: a fragment overlapped another
    IpFragOKs: int = 0
    IpFragFails: int = 0
    IpFragCreates: int = 0
    # ICMP
    IcmpInMsgs: int = 0
    IcmpInErrors: int = 0
    IcmpInCsumErrors: int = 0
    IcmpInDestUnreachs: int = 0
    IcmpInTimeExcds: int = 0
    IcmpInEchos: int = 0
    IcmpInEchoReps: int = 0
    IcmpOutMsgs: int = 0
    IcmpOutErrors: int = 0
    IcmpOutRateLimitGlobal: int = 0
    IcmpOutDestUnreachs: int = 0
    IcmpOutTimeExcds: int = 0
    IcmpOutEchos: int = 0
    IcmpOutEchoReps: int = 0
    # UDP-MIB plus Linux's extensions.
    UdpInDatagrams: int = 0
    UdpNoPorts: int = 0
    UdpInErrors: int = 0
    UdpOutDatagrams: int = 0
    UdpRcvbufErrors: int = 0
    UdpSndbufErrors: int = 0
    UdpInCsumErrors: int = 0
    # TCP-MIB (RFC 4022) and Linux TcpExt names.
    TcpActiveOpens: int = 0
    TcpPassiveOpens: int = 0
    TcpAttemptFails: int = 0
    TcpEstabResets: int = 0
    TcpCurrEstab: int = 0
    TcpInSegs: int = 0
    TcpOutSegs: int = 0
    TcpRetransSegs: int = 0
    TcpInErrs: int = 0
    TcpOutRsts: int = 0
    TcpInCsumErrors: int = 0
    TcpExtListenOverflows: int = 0
    TcpExtListenDrops: int = 0
    # SYN cookies (tcp/cookies.py), with Linux's names: answered with a
    # cookie, a cookie ACK accepted, one refused (not ours, too old); SYN
    # queue full and a cookie sent instead, or the SYN dropped.
    TcpExtSyncookiesSent: int = 0
    TcpExtSyncookiesRecv: int = 0
    TcpExtSyncookiesFailed: int = 0
    TcpExtTCPReqQFullDoCookies: int = 0
    TcpExtTCPReqQFullDrop: int = 0
    TcpExtTCPChallengeACK: int = 0
    TcpExtTCPChallengeACKLimited: int = 0
    TcpExtTCPHPHits: int = 0  # header prediction took a segment with data
    TcpExtTCPHPAcks: int = 0  # ... a pure ACK
    # Loss recovery of the sender (Linux's names and meanings).
    TcpExtTCPTimeouts: int = 0  # retransmission timeouts with data outstanding
    TcpExtTCPLossProbes: int = 0  # tail loss probes sent (RFC 8985 7)
    TcpExtTCPLossProbeRecovery: int = 0  # ... that repaired a loss
    TcpExtTCPSackRecovery: int = 0  # fast recoveries with SACK (RACK, RFC 8985)
    TcpExtTCPRenoRecovery: int = 0  # ... without SACK (NewReno, RFC 6582)
    TcpExtTCPFastRetrans: int = 0  # retransmissions in fast recovery
    TcpExtTCPSlowStartRetrans: int = 0  # retransmissions after a timeout
    TcpExtTCPLostRetransmit: int = 0  # retransmissions RACK found lost again
    TcpExtTCPDSACKRecv: int = 0  # D-SACK blocks received (RFC 2883)
    TcpExtTCPSACKReorder: int = 0  # reordering detected from SACKs
    TcpExtTCPDSACKUndo: int = 0  # reductions undone: every retransmission D-SACKed
    TcpExtTCPFullUndo: int = 0  # ... Eifel (RFC 3522), the ACK ending a fast recovery
    TcpExtTCPPartialUndo: int = 0  # ... Eifel, an ACK inside a fast recovery
    TcpExtTCPLossUndo: int = 0  # ... Eifel, after a retransmission timeout
    TcpExtTCPHystartDelayDetect: int = 0  # HyStart++ left slow start on an RTT rise
    TcpExtTCPHystartDelayCwnd: int = 0  # ... the sum of cwnd (segments) when it did
    # Segments sent from a Presegmented's stored segments, their payload sum
    # folded in rather than computed (ustack's own: tcp/presegment.py); a
    # TSO super-frame counts once, as in TcpOutSegs.
    TcpPresegmentedOut: int = 0
    # Segments (or their text) the connection dropped, where Linux has a
    # counter of its own; other drops are Drop<Reason>.
    TcpExtPAWSEstab: int = 0
    TcpExtTCPAbortOnData: int = 0
    TcpExtTCPTimeWaitOverflow: int = 0  # TIME-WAIT table full (TcpLayer.MAX_TIME_WAIT)
    TcpExtTCPZeroWindowDrop: int = 0
    TcpExtTCPOFODrop: int = 0
    # ICMP errors about a connection that quote no sequence number in flight
    # (RFC 5927 4.1), ignored.
    TcpExtOutOfWindowIcmps: int = 0
    # ARP (Linux keeps these per neighbour table; flat here).
    ArpInRequests: int = 0
    ArpInReplies: int = 0
    ArpOutRequests: int = 0
    ArpOutReplies: int = 0
    ArpResolveFailed: int = 0

    drops: dict[str, int] = field(default_factory=dict)  # by reason

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


# Every counter's name, in the order declared: the fields of Counters (all but
# ``drops``) are the one list (a name known only at run time is tested against this).
NAMES: tuple[str, ...] = tuple(f.name for f in fields(Counters) if f.name != "drops")
