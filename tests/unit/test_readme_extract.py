"""The README's code blocks are found and their marks read right
(tests/readme_snippets.py; tests/interop/test_readme.py runs them).

The marking rules hold for README.md itself: every ``sh`` and ``python``
block is a test, a program a test runs, or says why it is not run.
"""

from __future__ import annotations

import textwrap

import pytest
import readme_snippets
from readme_snippets import SnippetError, parse, policy_problems


def md(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


SAMPLE = md("""
    # Title

    ## Section one

    ```sh test
    ip netns add ns-one
    ustack up --link tap:u0 --ip 198.18.0.2/24 &
    ip netns del ns-one
    ```

    ```text
    ready: ...
    ```

    ### Sub

    ````sh notest: needs a real NIC
    ustack up --link packet:eth1 --ip 198.18.20.2/24
    ```
    not the end: a shorter fence inside a longer one
    ````

    ```python file=prog.py
    print("hi")
    ```

    ```sh test
    python3 prog.py
    ```
""")


def test_blocks_are_found_with_language_marks_lines_and_headings() -> None:
    blocks = parse(SAMPLE)
    assert [(b.line, b.lang, b.marks) for b in blocks] == [
        (5, "sh", ("test",)),
        (11, "text", ()),
        (17, "sh", ("notest:", "needs", "a", "real", "NIC")),
        (23, "python", ("file=prog.py",)),
        (27, "sh", ("test",)),
    ]
    assert [b.heading for b in blocks] == ["Section one", "Section one", "Sub", "Sub", "Sub"]
    assert blocks[0].body == ("ip netns add ns-one\n"
                              "ustack up --link tap:u0 --ip 198.18.0.2/24 &\n"
                              "ip netns del ns-one\n")
    # A fence of four backticks ends only at four: the three inside are text.
    assert "not the end" in blocks[2].body


def test_marks_mean_what_the_module_says() -> None:
    one, text, notest, prog, runs = parse(SAMPLE)
    assert one.is_test and runs.is_test
    assert not notest.is_test and not text.is_test and not prog.is_test
    assert notest.notest_reason == "needs a real NIC"
    assert one.notest_reason is None
    assert prog.file_name == "prog.py"
    assert one.namespaces == ["ns-one"]
    assert readme_snippets.tests(parse(SAMPLE)) == [one, runs]
    assert readme_snippets.files(parse(SAMPLE)) == {"prog.py": 'print("hi")\n'}
    assert one.ident == "L5-section-one"


def test_a_notest_reason_that_says_test_is_not_a_test() -> None:
    (block,) = parse("```sh notest: make test runs it\nmake test\n```\n")
    assert not block.is_test
    assert block.notest_reason == "make test runs it"


def test_an_unclosed_block_is_an_error_naming_its_line() -> None:
    with pytest.raises(SnippetError, match="line 3: code block never closed"):
        parse("text\n\n```sh test\nls\n")


def test_the_sample_keeps_the_rules() -> None:
    assert policy_problems(parse(SAMPLE)) == []


@pytest.mark.parametrize(("text", "problem"), [
    ("```\nls\n```\n", "language ''"),
    ("```bash test\nls\n```\n", "language 'bash'"),
    ("```sh\nls\n```\n", "mark a sh block 'test' or 'notest: REASON'"),
    ("```sh tset\nls\n```\n", "not 'tset'"),
    ("```sh notest:\nls\n```\n", "'notest:' needs a reason"),
    ("```python\nprint()\n```\n", "mark a python block 'file=NAME.py'"),
    ("```python file=a.py\nprint()\n```\n", "file=a.py is run by no sh test block"),
    # Named only by a block that is not run: still not run.
    ("```python file=a.py\nprint()\n```\n```sh notest: x\npython3 a.py\n```\n",
     "file=a.py is run by no sh test block"),
    # Named only as part of another name.
    ("```python file=a.py\nprint()\n```\n```sh test\npython3 data.py\n```\n",
     "file=a.py is run by no sh test block"),
    ("```python file=../a.py\nprint()\n```\n```sh test\npython3 ../a.py\n```\n",
     "a plain file name"),
    ("```python file=a.py\n1\n```\n```python file=a.py\n2\n```\n```sh test\npython3 a.py\n```\n",
     "file=a.py given twice"),
    ("```text test\nout\n```\n", "marks 'test' mean nothing there"),
])
def test_each_broken_rule_is_reported(text: str, problem: str) -> None:
    problems = policy_problems(parse(text))
    assert len(problems) == 1, problems
    assert problem in problems[0]


def test_the_readme_keeps_the_rules() -> None:
    blocks = readme_snippets.load()
    assert len(readme_snippets.tests(blocks)) >= 10, "README.md lost its tested examples?"
    assert policy_problems(blocks) == []


def test_the_readme_shows_what_a_newcomer_needs() -> None:
    """The pieces item 7 of issue 15 asks for are in tested blocks."""
    blocks = readme_snippets.load()
    run = "\n".join(b.body for b in readme_snippets.tests(blocks))
    programs = readme_snippets.files(blocks)
    assert ". .venv/bin/activate" in run and ".venv/bin/ustack" in run
    assert "ip netns add" in run and "ip netns del" in run
    assert "type veth peer name" in run and "--link packet:" in run
    assert "aio.running(" in programs["aio_echo.py"]
    assert "stack=" in programs["aio_echo.py"]
    assert "usocket.attach(stack)" in programs["socket_client.py"]
    assert "--fault" in run and "ustack stats" in run


def _options(command: str) -> list[str]:
    """The long options of ``ustack COMMAND``, read from its parser."""
    import argparse

    from ustack.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = sub.choices[command]
    return [o for a in parser._actions for o in a.option_strings
            if o.startswith("--") and o != "--help"]


@pytest.mark.parametrize("command", ["up", "stats"])
def test_every_option_of_the_command_is_in_the_readme(command: str) -> None:
    """A new option of ``ustack up`` or ``ustack stats`` fails this test
    until README.md documents it."""
    text = readme_snippets.README.read_text(encoding="utf-8")
    options = _options(command)
    assert "--name" in options
    missing = [o for o in options if f"`{o}" not in text]
    assert not missing, f"ustack {command}: README.md does not document {missing}"


def test_every_fault_key_is_in_the_readme() -> None:
    """Each key ``--fault`` accepts has its row in README.md's table."""
    from ustack.link.fault import _KEYS

    text = readme_snippets.README.read_text(encoding="utf-8")
    assert {"loss", "dup", "limit", "dir"} <= set(_KEYS)
    missing = [k for k in _KEYS if f"| `{k}` |" not in text and f"`{k}=`" not in text]
    assert not missing, f"--fault keys missing from README.md's table: {missing}"
