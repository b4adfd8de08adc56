"""The fenced code blocks of README.md, and which of them are tests.

README.md's snippets are run by tests/interop/test_readme.py so that they
cannot go stale; this module finds them and reads their marks (pure: no
root, no network; tests/unit/test_readme_extract.py tests it).

How a block is marked: by the words after the language on its opening
fence (GitHub shows only the language and ignores the rest).

- ```` ```sh test ````: a shell snippet the test runs, whole, with
  ``bash -e -u -o pipefail`` (a failing command fails the snippet).  It
  creates and deletes what it needs itself (``ip netns add ...`` /
  ``ip netns del ...``); what the harness provides is listed in
  tests/interop/test_readme.py.
- ```` ```sh notest: REASON ````: a command not run by the test, with the
  reason (it installs system packages, needs a real NIC, runs for minutes).
- ```` ```python file=NAME.py ````: a program the README asks the reader to
  save as NAME.py; the test writes it into the snippets' working folder,
  and a ``sh test`` block that names NAME.py runs it.
- ```` ```python notest: REASON ````: a fragment that is not a program.
- ```` ```text ````: output, diagrams: never run.

Every ``sh`` and ``python`` block must carry one of these marks
(``policy_problems`` lists those that do not), so a new command in the
README is either tested or says why not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

README: Path = Path(__file__).resolve().parents[1] / "README.md"

#: Languages whose blocks are commands or programs a reader would run.
RUNNABLE_LANGS = ("sh", "python")
#: Languages whose blocks are never run (output, diagrams).
INERT_LANGS = ("text",)

_FENCE = re.compile(r"^(`{3,}|~{3,})(.*)$")
_NETNS_ADD = re.compile(r"\bip\s+netns\s+add\s+([A-Za-z0-9_.-]+)")
_FILE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class SnippetError(ValueError):
    """The README's fences cannot be read (an unclosed block, a bad mark)."""


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README."""

    line: int  # 1-based line of the opening fence
    lang: str  # first word of the info string ("" when none)
    marks: tuple[str, ...]  # the words after the language
    body: str  # the text between the fences
    heading: str = ""  # the nearest heading above it
    attrs: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def is_test(self) -> bool:
        """A ``sh test`` block: run by the harness."""
        return self.lang == "sh" and self.marks[:1] == ("test",)

    @property
    def notest_reason(self) -> str | None:
        """The reason of a ``notest: REASON`` mark (None when not so marked)."""
        info = " ".join(self.marks)
        m = re.match(r"notest:\s*(.*)$", info)
        return None if m is None else m.group(1).strip()

    @property
    def file_name(self) -> str | None:
        """The NAME of a ``file=NAME`` mark."""
        return self.attrs.get("file")

    @property
    def namespaces(self) -> list[str]:
        """The names this snippet gives to ``ip netns add``, in order."""
        return _NETNS_ADD.findall(self.body)

    @property
    def ident(self) -> str:
        """A short, stable name for a test id: line and heading."""
        words = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")
        return f"L{self.line}-{words[:40]}" if words else f"L{self.line}"


def parse(text: str) -> list[Block]:
    """Every fenced block of ``text`` (Markdown), in order.

    A fence is three or more backticks (or tildes) at the start of a line;
    the block ends at a line of at least as many of the same character and
    nothing else.  Raises SnippetError for a block never closed.
    """
    blocks: list[Block] = []
    heading = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        m = _FENCE.match(line)
        if m is None:
            i += 1
            continue
        fence, info = m.group(1), m.group(2).strip()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines):
            close = lines[i].rstrip()
            if close.startswith(fence[0] * len(fence)) and not close.strip(fence[0]):
                break
            body.append(lines[i])
            i += 1
        else:
            raise SnippetError(f"line {start + 1}: code block never closed")
        i += 1
        words = info.split()
        lang = words[0] if words else ""
        marks = tuple(words[1:])
        attrs = dict(w.split("=", 1) for w in marks if "=" in w and not w.startswith("notest"))
        blocks.append(Block(start + 1, lang, marks, "\n".join(body) + "\n", heading, attrs))
    return blocks


def load(path: Path = README) -> list[Block]:
    return parse(path.read_text(encoding="utf-8"))


def tests(blocks: list[Block]) -> list[Block]:
    """The ``sh test`` blocks, the ones the harness runs."""
    return [b for b in blocks if b.is_test]


def files(blocks: list[Block]) -> dict[str, str]:
    """``{NAME: program}`` of the ``file=NAME`` blocks."""
    out: dict[str, str] = {}
    for b in blocks:
        name = b.file_name
        if name is not None:
            if name in out:
                raise SnippetError(f"line {b.line}: file={name} given twice")
            out[name] = b.body
    return out


def policy_problems(blocks: list[Block]) -> list[str]:
    """Why the README's blocks break the marking rules (empty: they keep them).

    Every block has a language; ``sh`` blocks are ``test`` or ``notest:
    REASON``; ``python`` blocks are ``file=NAME`` (run by a ``sh test``
    block naming NAME) or ``notest: REASON``; marks are known ones.
    """
    problems: list[str] = []
    run_text = "\n".join(b.body for b in tests(blocks))
    for b in blocks:
        where = f"README.md:{b.line} ({b.heading or 'top'})"
        if b.lang not in RUNNABLE_LANGS + INERT_LANGS:
            problems.append(f"{where}: language {b.lang!r}; use one of "
                            f"{', '.join(RUNNABLE_LANGS + INERT_LANGS)}")
            continue
        if b.lang in INERT_LANGS:
            if b.marks:
                problems.append(f"{where}: a {b.lang} block is never run; "
                                f"marks {' '.join(b.marks)!r} mean nothing there")
            continue
        reason = b.notest_reason
        if reason is not None:
            if not reason:
                problems.append(f"{where}: 'notest:' needs a reason")
            continue
        if b.lang == "sh":
            if b.marks != ("test",):
                problems.append(f"{where}: mark a sh block 'test' or 'notest: REASON', "
                                f"not {' '.join(b.marks)!r}")
            continue
        name = b.file_name
        if name is None or len(b.marks) != 1:
            problems.append(f"{where}: mark a python block 'file=NAME.py' (run by a "
                            f"sh test block) or 'notest: REASON'")
        elif not _FILE_NAME.match(name):
            problems.append(f"{where}: file={name}: a plain file name, no folders")
        elif not re.search(rf"(?<![\w./-]){re.escape(name)}(?![\w.-])", run_text):
            problems.append(f"{where}: file={name} is run by no sh test block")
    try:
        files(blocks)
    except SnippetError as e:
        problems.append(f"README.md:{e}")
    return problems
