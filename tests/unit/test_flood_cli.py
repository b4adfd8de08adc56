"""``ustack flood``'s mistakes: one line on stderr, exit 2, before any link is opened."""

from __future__ import annotations

import pytest

from ustack.cli import main

BASE = ["flood", "--link", "packet:nonexistent0", "--ip", "198.18.1.10/24"]


@pytest.mark.parametrize(("args", "says"), [
    (["--to", "198.18.1.1"], "--to 198.18.1.1: expected IP:PORT"),
    (["--to", "host:80"], "'host' is not an IPv4 address"),
    (["--to", "198.18.1.1:0"], "port 0 is not 1..65535"),
    (["--to", "198.18.1.1:80", "--to", "198.18.1.1:80"], "the same target twice"),
    (["--to", "198.18.1.1:80", "--count", "0"], "--count 0: between 1 and"),
    (["--to", "198.18.1.1:80", "--duration", "inf"], "--duration inf: a finite number"),
    (["--to", "198.18.1.1:80", "--duration", "0"], "a flood is bounded"),
    (["--to", "198.18.1.1:80", "--rate", "0"], "--rate 0.0: a positive number"),
    (["--to", "198.18.1.12:80", "--sources", "5"], "--to 198.18.1.12: one of our own"),
    (["--to", "198.18.9.1:80"], "not on --ip 198.18.1.10/24's subnet and no --gw"),
    (["--to", "198.18.1.1:80", "--syn-options", "bsd"], "invalid choice: 'bsd'"),
    (["--to", "198.18.1.1:80", "--mix-load", "http://nope/"], "--mix-load http://nope/:"),
    (["--to", "198.18.1.1:80", "--mix-load", "http://198.18.1.1/", "--mix-sources", "0"],
     "--mix-sources must be 1..4096"),
    (["--to", "198.18.1.1:80", "--sources", "200", "--mix-load", "http://198.18.1.1/",
      "--mix-sources", "100"], "do not fit --ip 198.18.1.10/24's subnet"),
    (["--to", "198.18.1.1:80", "--mix-load", "http://198.18.1.12/", "--mix-sources", "5"],
     "one of our own addresses"),
])
def test_a_mistake_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str],
                                          args: list[str], says: str) -> None:
    assert main([*BASE, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ustack flood: ") and says in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(("ip", "says"), [
    ("198.18.1.10-198.18.1.20", "a range needs the prefix length"),
    ("198.18.1.20-198.18.1.10/24", "the range ends before it starts"),
    ("198.18.1.10-198.18.1.x/24", "not an IPv4 address"),
    ("198.18.1.10-198.18.2.20/24", "--sources 267"),  # past the /24: LinkOptions says so
    ("198.18.1.1-198.18.1.9/24", "--to 198.18.1.1: one of our own"),
])
def test_a_bad_range_is_one_line(capsys: pytest.CaptureFixture[str], ip: str, says: str) -> None:
    args = ["flood", "--to", "198.18.1.1:80", "--link", "packet:nonexistent0", "--ip", ip]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("ustack flood: ") and says in err, err


def test_a_range_and_sources_together_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["flood", "--to", "198.18.1.1:80", "--link", "packet:nonexistent0",
            "--ip", "198.18.1.10-198.18.1.20/24", "--sources", "3"]
    assert main(args) == 2
    assert "a range or --sources, not both" in capsys.readouterr().err
