"""The retransmission timeout estimator of RFC 6298.

Sans-I/O: the connection measures round-trip times (applying Karn's rule,
RFC 6298 section 3, or RFC 7323 timestamps that disambiguate retransmissions)
and feeds them to :meth:`RttEstimator.sample`; it asks :attr:`RttEstimator.rto`
when it arms the retransmission timer and calls :meth:`RttEstimator.backoff`
when that timer fires.

Departures from the letter of RFC 6298, each allowed by it or by practice:

* the minimum RTO is 200 ms like Linux, not the 1 s of 2.4 (which is a
  SHOULD; the issue asks for Linux's figure);
* the maximum is 120 s (2.5 allows any maximum of at least 60 s);
* 2.4's rounding up to the minimum is applied to the base RTO before the
  backoff, so a backed-off timer doubles from the clamped value.
"""

from __future__ import annotations

import math
from typing import Final

# RFC 6298 2.3: alpha = 1/8, beta = 1/4; 2.2/2.3: K = 4.
ALPHA: Final = 0.125
BETA: Final = 0.25
K: Final = 4.0
_KEEP_SRTT: Final = 1.0 - ALPHA
_KEEP_RTTVAR: Final = 1.0 - BETA
_INF: Final = math.inf


class RttEstimator:
    """SRTT, RTTVAR and the RTO with exponential backoff (RFC 6298).

    Times are float seconds.  Invalid samples (negative, NaN, infinite) are
    ignored and counted in :attr:`rejected`: they come from peers' timestamp
    echoes, which the connection should not have to police to stay alive.
    """

    __slots__ = (
        "_base",
        "backoffs",
        "granularity",
        "initial_rto",
        "max_rto",
        "min_rto",
        "min_rtt",
        "rejected",
        "rttvar",
        "samples",
        "srtt",
    )

    def __init__(
        self,
        *,
        initial_rto: float = 1.0,
        min_rto: float = 0.2,
        max_rto: float = 120.0,
        granularity: float = 0.001,
    ) -> None:
        if not (0.0 < min_rto <= max_rto) or not math.isfinite(max_rto):
            raise ValueError(f"need 0 < min_rto <= max_rto < inf, got {min_rto}, {max_rto}")
        if not (initial_rto > 0.0 and math.isfinite(initial_rto)):
            raise ValueError(f"initial_rto must be a positive finite number, got {initial_rto}")
        if not (granularity >= 0.0 and math.isfinite(granularity)):
            raise ValueError(f"granularity must be a finite number >= 0, got {granularity}")
        self.initial_rto = initial_rto
        self.min_rto = min_rto
        self.max_rto = max_rto
        self.granularity = granularity
        self.srtt: float | None = None
        self.min_rtt = _INF  # the smallest sample (RACK's min_RTT, RFC 8985 6.1)
        self.rttvar = 0.0
        self.samples = 0
        self.rejected = 0
        self.backoffs = 0
        # RFC 6298 2.1: until a first measurement, RTO = 1 s (initial_rto).
        # The initial value is clamped like any other so min/max always hold.
        self._base = self._clamp(initial_rto)

    def _clamp(self, rto: float) -> float:
        if rto < self.min_rto:
            return self.min_rto  # RFC 6298 2.4 (with Linux's 200 ms minimum)
        if rto > self.max_rto:
            return self.max_rto  # RFC 6298 2.5
        return rto

    def sample(self, rtt: float) -> None:
        """Take one RTT measurement R (seconds).

        The caller applies Karn's rule: no sample from a retransmitted segment
        unless timestamps tell which transmission the ACK answers.  A sample
        does not undo a backoff by itself; call :meth:`reset_backoff` when new
        data is acknowledged.
        """
        if not (rtt >= 0.0 and rtt != _INF):  # also rejects NaN
            self.rejected += 1
            return
        if rtt < self.min_rtt:
            self.min_rtt = rtt
        srtt = self.srtt
        if srtt is None:
            # RFC 6298 2.2: first measurement.
            self.srtt = srtt = rtt
            self.rttvar = rttvar = rtt * 0.5
        else:
            # RFC 6298 2.3: RTTVAR first, with the SRTT from before this sample.
            d = srtt - rtt
            self.rttvar = rttvar = _KEEP_RTTVAR * self.rttvar + BETA * (d if d >= 0.0 else -d)
            self.srtt = srtt = _KEEP_SRTT * srtt + ALPHA * rtt
        self.samples += 1
        var = K * rttvar
        g = self.granularity
        rto = srtt + (var if var > g else g)
        # RFC 6298 2.4 (with Linux's 200 ms minimum) and 2.5, as _clamp.
        if rto < self.min_rto:
            rto = self.min_rto
        elif rto > self.max_rto:
            rto = self.max_rto
        self._base = rto

    @property
    def base_rto(self) -> float:
        """The RTO before backoff: SRTT + max(G, K*RTTVAR), clamped."""
        return self._base

    @property
    def rto(self) -> float:
        """The timeout to arm now: the base RTO times 2**backoffs, capped."""
        if self.backoffs == 0:
            return self._base
        rto = self._base * (1 << self.backoffs)
        return rto if rto < self.max_rto else self.max_rto

    def backoff(self) -> None:
        """The retransmission timer expired: double the RTO (RFC 6298 5.5).

        The exponent stops growing once the RTO has reached max_rto, so it
        stays small however many times the timer fires (the connection counts
        retransmissions for its R1/R2 limits itself).
        """
        if self._base * (1 << self.backoffs) < self.max_rto:
            self.backoffs += 1

    def reset_backoff(self) -> None:
        """New data was acknowledged: go back to the computed RTO.

        RFC 6298 5.7 note: after backing off, the RTO returns to
        SRTT + max(G, K*RTTVAR) once an acknowledgment for new data arrives
        (Linux does the same in tcp_ack); keeping the doubled value would
        make every later loss wait far too long.
        """
        self.backoffs = 0

    def fallback(self, rto: float = 3.0) -> None:
        """Use ``rto`` while no RTT has been measured (RFC 6298 5.7).

        If the SYN or SYN-ACK timed out and no sample was taken, the RTO MUST
        be re-initialised to 3 s when data transmission begins.  A no-op
        once a sample exists.
        """
        if self.srtt is None and rto > 0.0 and math.isfinite(rto):
            self._base = self._clamp(rto)
