"""The ``ss`` filter takes whatever a person (or a client of the control
socket) sends it: it answers a FilterError, one line, or a filter, never
another exception, however odd the words."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ustack import cli
from ustack.cli import reports, ssfilter

WORDS = ["state", "exclude", "sport", "dport", "src", "dst", "=", "!=", "<", ">=", "and",
         "or", "not", "!", "(", ")", "&&", "||", ":80", ":*", "*", "established", "all",
         "198.18.0.1", "198.18.0.0/15:80", ":²", "²", "1.2.3.4:²", "٣", ":99999",
         "9" * 5000, ":" + "9" * 5000, "!(", "(!", ""]


@given(st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=12)), max_size=40))
@settings(max_examples=400, deadline=None)
def test_any_words_are_a_filter_or_a_filter_error(words: list[str]) -> None:
    try:
        f = ssfilter.parse(words)
    except ssfilter.FilterError as e:
        assert "\n" not in str(e)
        return
    # A filter that parses matches rows without failing either.
    f.match("ESTAB", "198.18.0.1:40000", "198.18.0.2:80")
    f.match("LISTEN", "0.0.0.0:80", "0.0.0.0:*")


@pytest.mark.parametrize(("words", "says"), [
    (["sport", ":²"], "bad port ':²'"),
    (["src", "1.2.3.4:²"], "bad port ':²'"),
    (["dport", "=", "²"], "bad port '²'"),
    (["sport", "9" * 5000], "bad port"),
    (["dst", "1.2.3.4:" + "9" * 5000], "bad port"),
    (("( " * 400).split(), "more than 256 words"),
    (("not " * 1000).split(), "more than 256 words"),
    (("( " * 100).split(), "nested deeper than 32"),
    (("not " * 200 + "sport = :1").split(), "nested deeper than 32"),
    (["!" * 300 + "sport", ":1"], "more than 256 words"),
])
def test_odd_filters_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str],
                                             words: list[str], says: str) -> None:
    status = cli.main(["ss", *words])
    out, err = capsys.readouterr()
    assert status == cli.EXIT_USAGE
    assert err.startswith("ustack ss: filter") and err.count("\n") == 1, err[:300]
    assert says in err
    assert out == ""


def test_nesting_within_the_bound_still_works() -> None:
    f = ssfilter.parse(("( " * 10 + "sport = :80" + " )" * 10).split())
    assert f.match("ESTAB", "1.1.1.1:80", "2.2.2.2:9")
    assert not f.match("ESTAB", "1.1.1.1:81", "2.2.2.2:9")
    f = ssfilter.parse(("not " * 31 + "sport = :80").split())  # odd: negated
    assert not f.match("ESTAB", "1.1.1.1:80", "2.2.2.2:9")
    assert f.match("ESTAB", "1.1.1.1:81", "2.2.2.2:9")


def test_a_deep_filter_sent_to_the_control_socket_is_an_error_answer() -> None:
    line = ("ss " + "( " * 400).encode()
    assert reports.parse_request(line)["filter"]
    assert "more than 256 words" in reports.answer(None, line, None)["error"]  # type: ignore[arg-type]
