"""Congestion control: NewReno and CUBIC windows, in bytes.

This module owns cwnd and ssthresh and nothing else, like Linux's
tcp_congestion_ops.  The connection owns loss detection and recovery (fast
retransmit, NewReno partial ACKs, RFC 6675 SACK recovery, limited transmit)
and tells the controller what happened:

* :meth:`on_ack` - new data cumulatively acknowledged outside loss recovery;
* :meth:`on_congestion` - entering fast recovery (three duplicate ACKs or a
  SACK-detected loss);
* :meth:`on_recovery_end` - the recovery point was acknowledged;
* :meth:`on_rto` - the retransmission timer expired;
* :meth:`on_idle` - the sender starts sending again after an idle period;
* :meth:`hystart_ack` - an ACK of new data in the initial slow start, with
  its RTT sample: HyStart++ (RFC 9406) counts rounds and may leave slow
  start for Conservative Slow Start, then congestion avoidance, before a
  loss.

During recovery the connection may use or adjust cwnd as its recovery
algorithm says (RFC 6675 compares pipe against it); on_recovery_end puts it
back to ssthresh.  A controller notices when the connection wrote cwnd and
continues from the written value.

Sans-I/O: ``now`` (float seconds) is passed in, nothing reads a clock.
"""

from __future__ import annotations

import math
from typing import Final

from ustack.counters import Counters
from ustack.tcp.seq import ge

#: ssthresh before the first loss: "arbitrarily high" (RFC 5681 3.1).
INFINITE_SSTHRESH: Final = 1 << 30

#: RFC 3465 2.3: L, the limit on slow-start growth per ACK, in SMSS.
ABC_LIMIT: Final = 2

#: RFC 9438 4.1 constants.
CUBIC_C: Final = 0.4
CUBIC_BETA: Final = 0.7
#: RFC 9438 eq. (3): alpha_cubic = 3 * (1 - beta) / (1 + beta), about 0.53.
CUBIC_ALPHA: Final = 3.0 * (1.0 - CUBIC_BETA) / (1.0 + CUBIC_BETA)

KNOWN: Final = ("cubic", "newreno")

#: RFC 9406 4.3 constants (seconds where a time).
HS_MIN_RTT_THRESH: Final = 0.004
HS_MAX_RTT_THRESH: Final = 0.016
HS_MIN_RTT_DIVISOR: Final = 8
HS_N_RTT_SAMPLE: Final = 8
HS_CSS_GROWTH_DIVISOR: Final = 4
HS_CSS_ROUNDS: Final = 5
_INF: Final = math.inf


def initial_window(mss: int) -> int:
    """RFC 6928 IW = min(10*SMSS, max(2*SMSS, 14600)) bytes."""
    return min(10 * mss, max(2 * mss, 14600))


def _check_mss(mss: int) -> int:
    # As the stdlib does: a wrong type is a TypeError (the compiled build
    # raises it at the call already), a wrong value a ValueError.
    if not isinstance(mss, int):
        raise TypeError(f"mss must be an int, got {mss!r}")
    if mss <= 0:
        raise ValueError(f"mss must be a positive int, got {mss!r}")
    return mss


class NewReno:
    """RFC 5681 slow start and congestion avoidance with RFC 3465 byte counting.

    Also the base of :class:`Cubic`, which shares slow start, the idle
    restart and the ssthresh floor and replaces congestion avoidance and the
    multiplicative decrease.
    """

    __slots__ = ("_acked", "_hs_css_base", "_hs_css_rounds", "_hs_cur_min", "_hs_last_min",
                 "_hs_samples", "_hs_window_end", "_in_loss", "counters", "cwnd", "hystart",
                 "mss", "name", "ssthresh")

    def __init__(self, mss: int, now: float = 0.0) -> None:
        self.name = "newreno"
        self.mss = _check_mss(mss)
        self.cwnd = initial_window(mss)
        self.ssthresh = INFINITE_SSTHRESH
        # RFC 3465 2.1: bytes acknowledged in congestion avoidance, not yet
        # turned into cwnd growth.
        self._acked = 0
        # An RTO has fired and no new data has been acknowledged since: a
        # further RTO for the same loss keeps ssthresh (RFC 5681 3.1, "the
        # value of ssthresh is held constant").
        self._in_loss = False
        # HyStart++ (RFC 9406), in the initial slow start only (4.2): the
        # connection turns it on (TcpConfig.hystart) and gives the counters.
        self.hystart = False
        self.counters: Counters | None = None
        self._hs_window_end: int | None = None  # windowEnd: the round ends at its ACK
        self._hs_last_min = _INF  # lastRoundMinRTT
        self._hs_cur_min = _INF  # currentRoundMinRTT
        self._hs_samples = 0  # rttSampleCount
        self._hs_css_base = _INF  # cssBaselineMinRtt; finite: in CSS
        self._hs_css_rounds = 0

    # -- configuration -----------------------------------------------------

    def set_mss(self, mss: int) -> None:
        """The effective send MSS changed (handshake, PMTU).

        The windows keep their size in segments, as Linux counts them, so
        the sending rate in packets does not jump.  An untouched initial
        window becomes the RFC 6928 IW of the new MSS instead: the
        connection creates its controller before the handshake tells it
        the MSS, and IW is not proportional to the MSS.
        """
        old = self.mss
        new = _check_mss(mss)
        if new == old:
            return
        self.mss = new
        if self.cwnd == initial_window(old):
            self.cwnd = initial_window(new)
        else:
            self.cwnd = min(max(self.cwnd * new // old, new), INFINITE_SSTHRESH)
        if self.ssthresh < INFINITE_SSTHRESH:
            self.ssthresh = min(max(self.ssthresh * new // old, 2 * new), INFINITE_SSTHRESH)
        self._acked = 0

    # -- growth --------------------------------------------------------------

    def on_ack(self, acked: int, in_flight: int, now: float, rtt: float | None) -> None:
        """``acked`` new bytes were cumulatively acknowledged outside recovery.

        ``in_flight`` is the flight size before this ACK.  A sender that used
        less than half its window is not limited by it, and growing cwnd
        then would only license a later burst the path never carried
        (RFC 7661 1 and 4.1, Linux's tcp_is_cwnd_limited).
        """
        self._in_loss = False
        if acked <= 0 or in_flight * 2 < self.cwnd:
            return
        cwnd = self.cwnd
        ssthresh = self.ssthresh
        if cwnd < ssthresh:
            # RFC 5681 3.1 slow start, with RFC 3465 2.3 appropriate byte
            # counting: grow by the bytes acknowledged, at most L*SMSS per ACK.
            limit = ABC_LIMIT * self.mss
            inc = acked if acked < limit else limit
            if self._hs_css_base < _INF:
                inc //= HS_CSS_GROWTH_DIVISOR  # RFC 9406 4.2: CSS grows a quarter as fast
            if cwnd + inc <= ssthresh:
                self.cwnd = cwnd + inc
                return
            # Crossing ssthresh: the rest of the ACK counts toward congestion
            # avoidance (as Linux's tcp_slow_start returns it).
            self.cwnd = ssthresh
            acked -= ssthresh - cwnd
            if acked <= 0:
                return
        self._avoid(acked, now, rtt)

    def _avoid(self, acked: int, now: float, rtt: float | None) -> None:
        # RFC 5681 3.1 congestion avoidance by RFC 3465 2.1 byte counting:
        # when the bytes acked reach cwnd, subtract cwnd and add one SMSS.
        # About one SMSS per RTT, whatever the ACK pattern (delayed ACKs,
        # stretch ACKs).
        total = self._acked + acked
        cwnd = self.cwnd
        while total >= cwnd:
            total -= cwnd
            cwnd += self.mss
        self.cwnd = cwnd
        self._acked = total

    def hystart_ack(self, ack: int, nxt: int, rtt: float) -> None:
        """RFC 9406 4.2 for an ACK of new data up to ``ack`` (SND.NXT is
        ``nxt``) with RTT sample ``rtt`` (0: none): rounds end when the ACK
        passes the SND.NXT of the round's start; after N_RTT_SAMPLE samples
        of a round, a minimum RTT up by RttThresh from the last round's
        starts Conservative Slow Start (TcpExtTCPHystartDelayDetect); a
        round minimum back below the CSS baseline resumes slow start;
        CSS_ROUNDS rounds of CSS end in congestion avoidance."""
        if not self.hystart:
            return
        if self.cwnd >= self.ssthresh:
            self._hystart_end()
            return
        end = self._hs_window_end
        if end is None or ge(ack, end):
            # A new round (its start, for the first).
            if self._hs_css_base < _INF:
                self._hs_css_rounds += 1
                if self._hs_css_rounds >= HS_CSS_ROUNDS:
                    self.ssthresh = self.cwnd  # into congestion avoidance
                    self._hystart_end()
                    return
            self._hs_window_end = nxt
            self._hs_last_min = self._hs_cur_min
            self._hs_cur_min = _INF
            self._hs_samples = 0
        if rtt > 0.0:
            if rtt < self._hs_cur_min:
                self._hs_cur_min = rtt
            self._hs_samples += 1
        if self._hs_samples < HS_N_RTT_SAMPLE:
            return
        cur = self._hs_cur_min
        if self._hs_css_base < _INF:
            if cur < self._hs_css_base:
                self._hs_css_base = _INF  # a spurious exit: back to slow start
            return
        last = self._hs_last_min
        if last == _INF or cur == _INF:
            return
        thresh = last / HS_MIN_RTT_DIVISOR
        if thresh > HS_MAX_RTT_THRESH:
            thresh = HS_MAX_RTT_THRESH
        if thresh < HS_MIN_RTT_THRESH:
            thresh = HS_MIN_RTT_THRESH
        if cur >= last + thresh:
            self._hs_css_base = cur
            self._hs_css_rounds = 0
            c = self.counters
            if c is not None:
                c.TcpExtTCPHystartDelayDetect += 1
                c.TcpExtTCPHystartDelayCwnd += self.cwnd // self.mss

    def _hystart_end(self) -> None:
        self.hystart = False
        self._hs_css_base = _INF

    # -- reductions ------------------------------------------------------------

    def _loss_ssthresh(self, in_flight: int) -> int:
        # RFC 5681 eq. (4): ssthresh = max(FlightSize / 2, 2*SMSS).
        half = in_flight // 2
        floor = 2 * self.mss
        return half if half > floor else floor

    def on_congestion(self, in_flight: int, now: float) -> None:
        """Fast retransmit / entering recovery: RFC 5681 3.2 steps 2 and 3.

        cwnd = ssthresh; the connection applies any inflation or the RFC 6675
        pipe rule during recovery.
        """
        self.ssthresh = self._loss_ssthresh(in_flight)
        self.cwnd = self.ssthresh
        self._acked = 0
        self._hystart_end()  # RFC 9406 4.2: a loss ends slow start and CSS

    def on_recovery_end(self, now: float) -> None:
        """The recovery point was acknowledged: RFC 6582 3.2 step 6, option 2."""
        if self.ssthresh < INFINITE_SSTHRESH:  # else no reduction ever happened
            self.cwnd = self.ssthresh
        self._acked = 0

    def undo(self, prior_cwnd: int, prior_ssthresh: int, now: float) -> None:
        """The reduction was spurious (RFC 3522, RFC 2883 D-SACK): back to
        the windows before it (RFC 4015 3.2; Linux's tcp_undo_cwnd_reduction
        takes the larger of the current and the prior)."""
        if prior_cwnd > self.cwnd:
            self.cwnd = prior_cwnd
        if prior_ssthresh > self.ssthresh:
            self.ssthresh = prior_ssthresh
        self._in_loss = False
        self._acked = 0

    def on_rto(self, in_flight: int, now: float) -> None:
        """The retransmission timer fired: RFC 5681 3.1 eq. (4) and LW."""
        if not self._in_loss:
            self.ssthresh = self._loss_ssthresh(in_flight)
            self._in_loss = True
        self._hystart_end()  # (the slow start after a timeout is a plain one)
        # "cwnd MUST be set to no more than the loss window, LW, which equals
        # 1 full-sized segment."
        self.cwnd = self.mss
        self._acked = 0

    def on_idle(self, idle: float, rto: float, now: float) -> None:
        """The sender resumes after ``idle`` seconds with nothing in flight.

        Call it on every restart from idle; the window only shrinks when the
        pause was longer than the RTO.
        """
        if idle > rto:
            self._restart_window()

    def _restart_window(self) -> None:
        # RFC 5681 4.1: after an idle period longer than the RTO,
        # cwnd = min(cwnd, RW) with RW = IW, because the ACK clock is lost.
        # ssthresh remembers three quarters of the old window (RFC 2861 3,
        # Linux's tcp_cwnd_restart), so slow start climbs back quickly.
        cwnd = self.cwnd
        keep = cwnd - (cwnd >> 2)
        if keep > self.ssthresh:
            self.ssthresh = min(keep, INFINITE_SSTHRESH)
        restart = initial_window(self.mss)
        if restart < cwnd:
            self.cwnd = restart
        self._acked = 0

    # -- introspection -----------------------------------------------------

    def stats(self) -> dict[str, float | int]:
        return {"cwnd": self.cwnd, "ssthresh": self.ssthresh, "mss": self.mss}


class Cubic(NewReno):
    """CUBIC (RFC 9438): a cubic window growth in time since the last loss.

    The cubic state (W_max, W_est, cwnd_prior, cwnd_epoch) is kept in
    segments of the current MSS, as the RFC writes it, in floats; cwnd is
    kept in bytes as a float shadow (``_w``) so sub-byte growth per ACK is
    not lost, and the integer ``cwnd`` is what the connection reads.
    """

    __slots__ = (
        "_cwnd_epoch",
        "_cwnd_prior",
        "_epoch",
        "_fast_convergence",
        "_k",
        "_prior_w_max",
        "_reno_alpha",
        "_rtt",
        "_w",
        "_w_est",
        "_w_max",
    )

    def __init__(self, mss: int, now: float = 0.0, *, fast_convergence: bool = True) -> None:
        super().__init__(mss, now)
        self.name = "cubic"
        self._fast_convergence = fast_convergence
        self._w = float(self.cwnd)
        self._w_max = 0.0  # segments; 0 = no congestion event yet
        self._cwnd_prior = 0.0  # segments, cwnd when ssthresh was last set
        self._k = 0.0  # seconds
        self._epoch: float | None = None  # start of this congestion avoidance stage
        self._cwnd_epoch = 0.0  # segments, cwnd at _epoch
        self._w_est = 0.0  # segments, the Reno-friendly estimate
        self._reno_alpha = CUBIC_ALPHA
        self._rtt = 0.0  # last RTT the connection gave us
        self._prior_w_max = 0.0  # W_max before the last reduction (for undo)

    # -- helpers ---------------------------------------------------------------

    def _sync(self) -> float:
        """The float cwnd, re-read from ``cwnd`` if the connection wrote it."""
        w = self._w
        if int(w) != self.cwnd:
            w = self._w = float(self.cwnd)
        return w

    def w_cubic(self, t: float) -> float:
        """RFC 9438 eq. (1): W_cubic(t) = C*(t - K)**3 + W_max, in segments.

        ``t`` is seconds since the start of the current congestion avoidance
        stage.
        """
        d = t - self._k
        return CUBIC_C * d * d * d + self._w_max

    @property
    def k(self) -> float:
        """RFC 9438 eq. (2): seconds from the epoch until W_cubic = W_max."""
        return self._k

    @property
    def w_max(self) -> float:
        """W_max in segments."""
        return self._w_max

    # -- configuration -----------------------------------------------------

    def set_mss(self, mss: int) -> None:
        # The cubic state is in segments and stays valid; only the byte
        # windows are rescaled (by the base class).
        super().set_mss(mss)
        self._w = float(self.cwnd)

    # -- growth --------------------------------------------------------------

    def _avoid(self, acked: int, now: float, rtt: float | None) -> None:
        if rtt is not None and 0.0 < rtt < math.inf:
            self._rtt = rtt  # else keep the last one (the t + RTT target)
        mss = self.mss
        cw = self._sync() / mss  # cwnd in segments
        epoch = self._epoch
        if epoch is None:
            epoch = self._start_epoch(cw, now)
        t = now - epoch
        segs = acked / mss

        # RFC 9438 4.3, eq. (4): the window Reno would have, grown by
        # alpha_cubic per window of ACKed segments; alpha becomes 1 once
        # W_est reaches the window at the last reduction.
        w_est = self._w_est + self._reno_alpha * segs / cw
        self._w_est = w_est
        if self._reno_alpha != 1.0 and w_est >= self._cwnd_prior:
            self._reno_alpha = 1.0

        if self.w_cubic(t) < w_est:
            # Reno-friendly region: cwnd = W_est (never shrinking on an ACK).
            new = w_est if w_est > cw else cw
        else:
            # RFC 9438 4.4 (concave) and 4.5 (convex): aim at W_cubic one
            # RTT ahead, but no lower than cwnd and no higher than 1.5*cwnd,
            # and move a (target - cwnd)/cwnd step per ACKed segment.
            target = self.w_cubic(t + self._rtt)
            if target < cw:
                target = cw
            elif target > 1.5 * cw:
                target = 1.5 * cw
            new = cw + (target - cw) / cw * segs
        self._w = new * mss
        self.cwnd = int(self._w)

    def _start_epoch(self, cw: float, now: float) -> float:
        # RFC 9438 4.2: the epoch is the start of this congestion avoidance
        # stage; K from eq. (2) with cwnd_epoch.  With no earlier congestion
        # event, or after an RTO (4.8), or when cwnd already passed W_max,
        # K = 0 and W_max = cwnd: the curve starts convex at the current
        # window (Linux's bictcp_update does the same).
        self._epoch = now
        self._cwnd_epoch = cw
        if self._w_max <= cw:
            self._k = 0.0
            self._w_max = cw
        else:
            self._k = math.cbrt((self._w_max - cw) / CUBIC_C)
        # RFC 9438 4.3: W_est starts at cwnd_epoch (4.8 says the same after
        # an RTO).
        self._w_est = cw
        return now

    # -- reductions ------------------------------------------------------------

    def _reduce(self, in_flight: int) -> None:
        cw = self._sync() / self.mss
        self._prior_w_max = self._w_max
        # RFC 9438 4.7 fast convergence: a loss below the previous W_max
        # means another flow took bandwidth; release some by remembering a
        # lower W_max.
        if self._fast_convergence and cw < self._w_max:
            self._w_max = cw * (1.0 + CUBIC_BETA) / 2.0
        else:
            self._w_max = cw
        self._cwnd_prior = cw
        # RFC 9438 4.6: ssthresh = flight_size * beta_cubic, floored at
        # 2*SMSS.  (FlightSize, not cwnd, as the RFC writes it; the
        # cwnd-limited check in on_ack keeps the two close anyway.)
        floor = 2 * self.mss
        ssthresh = int(in_flight * CUBIC_BETA)
        self.ssthresh = ssthresh if ssthresh > floor else floor
        self._epoch = None
        self._reno_alpha = CUBIC_ALPHA
        self._acked = 0

    def on_congestion(self, in_flight: int, now: float) -> None:
        """RFC 9438 4.6: ssthresh = beta * FlightSize, cwnd = max(ssthresh, 2 SMSS)."""
        self._reduce(in_flight)
        self.cwnd = self.ssthresh
        self._w = float(self.cwnd)
        self._hystart_end()

    def on_recovery_end(self, now: float) -> None:
        super().on_recovery_end(now)
        self._w = float(self.cwnd)
        # The next congestion-avoidance ACK starts the epoch (4.2: t counts
        # from the start of congestion avoidance, not from the loss).
        self._epoch = None

    def undo(self, prior_cwnd: int, prior_ssthresh: int, now: float) -> None:
        """A spurious reduction undone: the windows back, and W_max as it
        was before the reduction lowered it (fast convergence would
        otherwise give bandwidth away for a loss that never was); the next
        congestion avoidance ACK starts a new epoch from the restored cwnd."""
        super().undo(prior_cwnd, prior_ssthresh, now)
        if self._prior_w_max > self._w_max:
            self._w_max = self._prior_w_max
        self._epoch = None
        self._reno_alpha = CUBIC_ALPHA
        self._w = float(self.cwnd)

    def on_rto(self, in_flight: int, now: float) -> None:
        """RFC 9438 4.8: Reno's cwnd = 1 SMSS, ssthresh with beta_cubic.

        W_max is forgotten so that the first congestion avoidance stage after
        the timeout uses K = 0 and W_max = cwnd at its start.
        """
        if not self._in_loss:
            self._reduce(in_flight)
            self._in_loss = True
        self._w_max = 0.0
        self._epoch = None
        self._hystart_end()
        self.cwnd = self.mss
        self._w = float(self.cwnd)
        self._acked = 0

    def on_idle(self, idle: float, rto: float, now: float) -> None:
        """Keep the cubic curve where it was before the pause.

        RFC 9438 5.8: an application-limited (here: idle) period must not
        count as time in which the window could have grown, or the first ACK
        after the pause would jump toward a far-advanced W_cubic.  As Linux
        does on CA_EVENT_TX_START, shift the epoch by the idle time.
        """
        if self._epoch is not None and idle > 0.0:
            self._epoch += idle
            if self._epoch > now:
                self._epoch = now
        if idle > rto:
            self._sync()
            self._restart_window()
            self._w = float(self.cwnd)

    # -- introspection -----------------------------------------------------

    def stats(self) -> dict[str, float | int]:
        mss = self.mss
        return {
            "cwnd": self.cwnd,
            "ssthresh": self.ssthresh,
            "mss": mss,
            "w_max": int(self._w_max * mss),
            "w_est": int(self._w_est * mss),
            "cwnd_epoch": int(self._cwnd_epoch * mss),
            "k": self._k,
            "epoch": -1.0 if self._epoch is None else self._epoch,
        }


# What the connection holds and calls (on_ack, on_congestion, on_recovery_end,
# on_rto, on_idle, set_mss; cwnd and ssthresh in bytes, times in float
# seconds): every controller derives from NewReno, so in the compiled build
# each call is a direct call of a native class (through a Protocol it would
# be a generic Python method call, per ACK).
CongestionControl = NewReno


def make_cc(name: str, mss: int, now: float) -> CongestionControl:
    """A congestion controller by name: "cubic" (the default) or "newreno"."""
    if name == "cubic":
        return Cubic(mss, now)
    if name == "newreno":
        return NewReno(mss, now)
    raise ValueError(f"unknown congestion control {name!r} (known: {', '.join(KNOWN)})")
