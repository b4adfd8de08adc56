"""The goodput table of issue 3 (item 7), kept as a snapshot.

Two ustack stacks move NBYTES through a 100 Mbit/s, 5 ms bottleneck with
seeded random loss (goodput_sim.py).  The table of goodput and
retransmissions by loss rate and buffer size is compared, as text, with
goodput_snapshot.txt: any change in how TCP behaves under loss shows as a
diff.  When a change is intended, regenerate it with

    USTACK_UPDATE_SNAPSHOT=1 python3 -m pytest tests/sim/test_goodput.py

and commit the new table with the change that explains it.  The other tests
check the physics the table must obey whatever TCP does.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from goodput_sim import (
    BUFFERS,
    DELAY,
    LOSSES,
    NBYTES,
    QUEUE,
    RATE,
    Result,
    SimNet,
    bulk,
    run_cell,
    table,
)

from ustack.link.shaper import ETHERNET_OVERHEAD
from ustack.tcp.cc import CUBIC_BETA

SNAPSHOT = Path(__file__).with_name("goodput_snapshot.txt")
UPDATE = os.environ.get("USTACK_UPDATE_SNAPSHOT", "") == "1"

# A full-sized frame: payload + timestamps option 12 + TCP 20 + IPv4 20 +
# Ethernet 14, plus the preamble/FCS/gap the shaper charges.
MSS = 1448
WIRE_FRAME = MSS + 12 + 20 + 20 + 14 + ETHERNET_OVERHEAD
CAPACITY = RATE * MSS / WIRE_FRAME  # the most payload the bottleneck can carry


@pytest.fixture(scope="module")
def results() -> dict[tuple[float, int], Result]:
    return {(loss, buf): run_cell(loss, buf) for loss in LOSSES for buf in BUFFERS}


def test_goodput_table_matches_snapshot(results: dict[tuple[float, int], Result]) -> None:
    text = table(list(results.values()))
    print("\n" + text)
    if UPDATE:
        SNAPSHOT.write_text(text)
        return
    expected = SNAPSHOT.read_text() if SNAPSHOT.exists() else ""
    if text != expected:
        diff = "".join(difflib.unified_diff(
            expected.splitlines(keepends=True), text.splitlines(keepends=True),
            "goodput_snapshot.txt", "this run"))
        pytest.fail("the goodput table changed; if that is intended, rerun with "
                    f"USTACK_UPDATE_SNAPSHOT=1 and commit it:\n{diff}", pytrace=False)


def test_simulation_is_deterministic(results: dict[tuple[float, int], Result]) -> None:
    """The same cell run again gives the same result, to the last segment."""
    for cell in ((0.05, 256 * 1024), (0.0, 1024 * 1024)):
        assert run_cell(*cell) == results[cell]


def test_goodput_obeys_the_bottleneck(results: dict[tuple[float, int], Result]) -> None:
    for (_loss, buf), r in results.items():
        assert r.nbytes == NBYTES
        # No more payload than the line carries at full-sized frames...
        assert r.goodput * 1e6 <= CAPACITY, r
        # ...and no more than one window per round trip (RTT >= 2 * DELAY).
        assert r.goodput * 1e6 <= buf / (2 * DELAY), r


def test_loss_costs_goodput_and_forces_retransmissions(
        results: dict[tuple[float, int], Result]) -> None:
    for buf in BUFFERS:
        row = [results[(loss, buf)] for loss in LOSSES]
        for r in row[1:]:
            assert r.random_lost > 0 and r.retransmits > 0, r
        goodputs = [r.goodput for r in row]
        assert goodputs == sorted(goodputs, reverse=True), (buf, goodputs)


def test_a_window_below_the_queue_never_overflows_it(
        results: dict[tuple[float, int], Result]) -> None:
    """64 KiB in flight fits the 128 KiB queue: no drop, nothing resent."""
    assert QUEUE > 64 * 1024
    r = results[(0.0, 64 * 1024)]
    assert (r.tail_drops, r.random_lost, r.retransmits) == (0, 0, 0)
    # Every data segment full-sized and sent once, plus the SYN and the ACK
    # that completes the handshake (the client sends no other pure ACK).
    assert r.segs_out == -(-NBYTES // MSS) + 2


class _NoRecovery(RuntimeError):
    """The scenario itself went wrong: there is no recovery to look at."""


@dataclass(frozen=True, slots=True)
class _Entry:
    """The sender at the first instant it is in loss recovery."""

    retransmits_before: int  # at the last instant before recovery
    retransmits: int
    snd_una: int
    recover: int  # SND.NXT when recovery began (RFC 6582 "recover")
    ssthresh: int
    mss: int
    prior_cwnd: int  # cwnd when recovery began, before the reduction


def _first_recovery() -> _Entry:
    """Slow start overfills BDP + queue a little with 256 KiB windows: the
    queue drops a few segments and the sender enters SACK recovery."""
    net = SimNet(0.0, 256 * 1024, seed=7)
    client, server = net.connect()
    conn = client.conn
    before = [0]
    entry: list[_Entry] = []

    def watch() -> None:
        if entry:
            return
        if conn.in_recovery:
            entry.append(_Entry(before[0], conn.total_retransmits, conn.snd_una, conn.recover,
                                conn.cc.ssthresh, conn.mss, conn.undo.prior_cwnd))
        else:
            before[0] = conn.total_retransmits

    bulk(net, client, server, 1_000_000, watch=watch)
    if not entry or not net.dropped()[1] or not conn.sack_ok:
        raise _NoRecovery("no tail drop / SACK recovery: the scenario needs one")
    return entry[0]


def test_sack_recovery_retransmits_the_first_hole_at_once() -> None:
    e = _first_recovery()
    # The instant the sender decides a segment is lost, it resends it.
    assert e.retransmits > e.retransmits_before


def test_sack_recovery_sets_ssthresh_from_cwnd() -> None:
    """CUBIC's reduction is beta x cwnd (RFC 9438 4.6 as Linux applies it;
    FlightSize when the loss is found undercounts: tcp/losses.py)."""
    e = _first_recovery()
    assert e.prior_cwnd > 0
    assert e.ssthresh == max(int(e.prior_cwnd * CUBIC_BETA), 2 * e.mss)
