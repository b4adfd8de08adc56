"""``RunProgress``: how far ``ustack load``'s run has got, a rich bar on a
terminal (gone when the run ends, so the summary stands alone) and a plain
line every ``PLAIN_EVERY`` seconds otherwise."""

from __future__ import annotations

import io

from ustack.cli.progress import PLAIN_EVERY, RunProgress


def test_plain_lines_come_only_every_interval() -> None:
    out = io.StringIO()
    run = RunProgress("ustack load", 30.0, out=out, fancy=False)
    run.update(1.0, "10 completed", 100.0)
    run.update(5.0, "50 completed", 104.0)
    assert out.getvalue() == ""  # a short run adds no line
    run.update(11.0, "110 completed", 100.0 + PLAIN_EVERY)
    assert out.getvalue() == "ustack load: 110 completed\n"
    run.update(12.0, "120 completed", 101.0 + PLAIN_EVERY)
    assert out.getvalue().count("\n") == 1
    run.close()


def test_the_bar_shows_the_fraction_and_the_status_then_goes() -> None:
    out = io.StringIO()
    run = RunProgress("ustack load", 10.0, out=out, fancy=True)
    run.update(5.0, "4321 completed  864 req/s", 1.0)
    drawn = out.getvalue()
    assert "50%" in drawn and "4321 completed" in drawn, drawn
    run.close()
    run.close()  # twice is harmless (a finally after an early close)
