"""The timers of one connection, as deadlines (absolute times, None: stopped).

- ``rtx``: retransmission (RFC 6298), also for SYN and FIN;
- ``probe``: RACK-TLP's tail loss probe (PTO) or reordering timer (RFC
  8985 6.3, 7.2), which of them ``probe_reo`` says; like Linux's, the two
  never run at once (a reordering timer means SACKed data: no TLP then);
- ``delack``: the delayed ACK (RFC 1122 4.2.3.2, < 0.5 s);
- ``persist``: zero-window probing and the sender-SWS override (RFC 9293
  3.8.6.1), backed off like the RTO (``persist_backoff``);
- ``keepalive``: RFC 1122 4.2.3.6, with the unanswered probes counted;
- ``timewait``: 2*MSL in TIME-WAIT (RFC 9293 3.6);
- ``finwait2``: an orphan in FIN-WAIT-2 is reaped after ``fin_timeout``.

The connection arms them and, when ``next()`` has passed, handles the ones
due (``TcpConnection.handle_timer``); the layer keeps one Stack timer per
connection at ``next()``.
"""

from __future__ import annotations


class ConnectionTimers:
    __slots__ = ("delack", "finwait2", "keepalive", "persist", "persist_backoff", "probe",
                 "probe_reo", "probes", "rtx", "timewait")

    def __init__(self) -> None:
        self.rtx: float | None = None
        self.probe: float | None = None
        self.probe_reo = False  # probe is the reordering timer, not the PTO
        self.delack: float | None = None
        self.persist: float | None = None
        self.keepalive: float | None = None
        self.timewait: float | None = None
        self.finwait2: float | None = None
        self.persist_backoff = 0
        self.probes = 0  # keepalive probes sent and not answered

    def next(self) -> float | None:
        """The earliest deadline, or None when every timer is stopped."""
        best = self.rtx
        t = self.probe
        if t is not None and (best is None or t < best):
            best = t
        t = self.delack
        if t is not None and (best is None or t < best):
            best = t
        t = self.persist
        if t is not None and (best is None or t < best):
            best = t
        t = self.keepalive
        if t is not None and (best is None or t < best):
            best = t
        t = self.timewait
        if t is not None and (best is None or t < best):
            best = t
        t = self.finwait2
        if t is not None and (best is None or t < best):
            best = t
        return best

    def stop_all(self) -> None:
        self.rtx = self.delack = self.persist = self.probe = None
        self.keepalive = self.timewait = self.finwait2 = None

    def arm_rtx(self, now: float, rto: float) -> None:
        """Start the retransmission timer unless it runs (RFC 6298 5.1)."""
        if self.rtx is None:
            self.rtx = now + rto

    def arm_persist(self, now: float, rto: float, max_rto: float) -> None:
        """RFC 9293 3.8.6.1: probe a zero window, backing off like the RTO."""
        t = max(rto, 0.2) * (1 << self.persist_backoff)
        self.persist = now + (t if t < max_rto else max_rto)

    def keepalive_activity(self, now: float, idle: float) -> None:
        """A segment arrived: the idle time starts again, unanswered probes are
        forgotten (RFC 1122 4.2.3.6).  Only a running keepalive timer moves."""
        if self.keepalive is not None:
            self.probes = 0
            self.keepalive = now + idle
