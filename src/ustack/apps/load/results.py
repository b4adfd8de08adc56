"""What a load run counted: ``LoadStats``, filled by the generator, read by
the report (``report``: the summary and the JSON come from it alone, so
they cannot disagree).

The requests add up: ``sent = completed + failed + unfinished``, where
``failed`` is the sum of the request errors (``outcomes.REQUEST_ERRORS``)
and ``unfinished`` the requests still outstanding when the run stopped.
Connection errors (``outcomes.CONNECTION_ERRORS``) are counted apart: those
connections carried no request.  Latencies are integer microseconds in
one ``Histogram`` per phase (``PHASES``).
"""

from __future__ import annotations

from typing import Final

from ustack.apps.load.histogram import Histogram
from ustack.apps.load.outcomes import ERRORS, REQUEST_ERRORS

# The phases timed, in order:
#   syn      SYN out to SYN-ACK in, for handshakes whose SYN was not
#            retransmitted (an answer to a retransmitted SYN cannot be
#            matched to one of them: Karn's rule, as TCP's own RTT samples);
#   connect  connect() to ESTABLISHED, every handshake, retransmissions included;
#   ttfb     request to the first byte of its response;
#   ttlb     request to the last byte of its response.
# A request's time starts when it is sent (closed loop) or when it was due
# (open loop, --rate: coordinated-omission correction, ``schedule``).
PHASES: Final = ("syn", "connect", "ttfb", "ttlb")


class LoadStats:
    """The counts of one run; per-source figures indexed as the sources."""

    __slots__ = ("bytes_in", "bytes_out", "completed", "connect", "ended", "errors",
                 "established", "held_max", "late", "malformed", "never_sent", "opened",
                 "scheduled", "sent", "server_closes", "src_completed", "src_conns",
                 "src_errors", "started", "status", "syn", "syn_retransmits", "ttfb", "ttlb",
                 "unfinished")

    def __init__(self, nsources: int) -> None:
        self.started = 0.0
        self.ended = 0.0
        self.opened = 0  # connections attempted (tcp_connect called, or refused locally)
        self.established = 0
        self.held_max = 0  # the most established at once
        self.server_closes = 0  # connections the server ended after a whole response
        self.syn_retransmits = 0
        self.sent = 0
        self.completed = 0
        self.unfinished = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.status: dict[str, int] = {"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0}
        self.errors: dict[str, int] = dict.fromkeys(ERRORS, 0)
        self.malformed: dict[str, int] = {}  # reason -> responses
        # Open loop (--rate): requests due in the run, sent late, never sent.
        self.scheduled = 0
        self.late = 0
        self.never_sent = 0
        self.syn = Histogram()
        self.connect = Histogram()
        self.ttfb = Histogram()
        self.ttlb = Histogram()
        self.src_conns = [0] * nsources
        self.src_completed = [0] * nsources
        self.src_errors = [0] * nsources

    def histograms(self) -> dict[str, Histogram]:
        return {"syn": self.syn, "connect": self.connect, "ttfb": self.ttfb, "ttlb": self.ttlb}

    @property
    def failed(self) -> int:
        """Requests sent that got no whole response."""
        return sum(self.errors[k] for k in REQUEST_ERRORS)

    @property
    def succeeded(self) -> int:
        """Whole responses with a 2xx or 3xx status."""
        return self.status["2xx"] + self.status["3xx"]

    @property
    def elapsed(self) -> float:
        return max(self.ended - self.started, 0.0)

    def count_status(self, status: int) -> None:
        klass = status // 100
        if klass == 2:
            self.status["2xx"] += 1
        elif klass == 3:
            self.status["3xx"] += 1
        elif klass == 4:
            self.status["4xx"] += 1
        else:
            self.status["5xx"] += 1  # (the parser lets only 200..599 through)
