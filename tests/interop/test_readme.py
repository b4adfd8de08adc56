"""README.md's commands and programs, run as a reader would run them.

Each block README.md marks ```` ```sh test ```` (tests/readme_snippets.py
says how blocks are marked) is one test: the snippet runs whole, and the
test fails when it fails.  What the harness gives a snippet, and nothing
else (no text of it is replaced):

- ``bash -e -u -o pipefail``: the first command that fails stops the snippet
  and fails the test; the log shows every command traced with its README
  line (``+ README.md:72: ...``).
- A fresh network namespace of a ``Testbed`` to run in, so that what a
  snippet makes in "the current namespace" (the veth pair of the AF_PACKET
  examples, ustack's end of it) goes when the test ends.  The namespaces the
  snippet makes itself (``ip netns add NAME``) are global, as for a reader:
  one left behind fails the test (and is deleted), and one that exists
  before the snippet runs fails it too rather than being taken over.
- A fresh working folder holding the programs the README asks to save
  (```` ```python file=NAME ````) and a ``.venv/bin`` with ``ustack``,
  ``python``, ``python3`` and ``activate``: what ``make install`` leaves,
  except that these run the Python running this test, hence the sources and
  the build under test (``USTACK_PURE=1`` passes through).  PATH starts
  with that folder, as after ``. .venv/bin/activate``.
- ``USTACK_RUN_DIR`` set to a folder of its own (control sockets), so that
  the README's stack names (``u0``, ``veth1``) meet no other stack running
  on the machine.
- A bound: ``SNIPPET_TIMEOUT`` seconds, after which its process group is
  stopped (SIGTERM, then SIGKILL); a process the snippet leaves running
  (a background job never stopped) fails the test and is stopped the same
  way.  Stopping is by the process group of the snippet's shell, which the
  harness started in a session of its own.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import readme_snippets
from readme_snippets import Block

import ustack
from ustack_testbed import Testbed

pytestmark = pytest.mark.root

SNIPPET_TIMEOUT = 120.0
# A background job stopped with `kill` (and not waited for) may take this
# long to exit once the snippet's shell has.
EXIT_GRACE = 3.0
# Programs the snippets call that a fresh machine may lack.
TOOLS = ("ip", "ping", "nc", "curl", "timeout", "cmp")

BLOCKS = readme_snippets.load()
FILES = readme_snippets.files(BLOCKS)


def make_workdir(root: Path) -> tuple[Path, dict[str, str]]:
    """The snippets' working folder and environment (module docstring)."""
    work = root / "work"
    venv = work / ".venv"
    bin_dir = venv / "bin"
    bin_dir.mkdir(parents=True)
    (root / "run").mkdir()
    py = shlex.quote(sys.executable)
    shims = {
        "ustack": f'#!/bin/sh\nexec {py} -m ustack.cli "$@"\n',
        "python": f'#!/bin/sh\nexec {py} "$@"\n',
        "python3": f'#!/bin/sh\nexec {py} "$@"\n',
    }
    for name, text in shims.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
    (bin_dir / "activate").write_text(
        f"VIRTUAL_ENV={shlex.quote(str(venv))}\nexport VIRTUAL_ENV\n"
        'PATH="$VIRTUAL_ENV/bin:$PATH"\nexport PATH\n')
    for name, program in FILES.items():
        (work / name).write_text(program)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    env["USTACK_RUN_DIR"] = str(root / "run")
    env["PYTHONUNBUFFERED"] = "1"  # the log keeps the order things happened in
    env.pop("VIRTUAL_ENV", None)
    return work, env


def script_of(block: Block) -> str:
    """The snippet as a bash script whose trace names README lines."""
    # The body's first line is README line block.line + 1, and script line 3.
    offset = block.line - 2
    return f"PS4='+ README.md:$((LINENO + {offset})): '\nset -x\n" + block.body


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(pgid: int) -> None:
    """SIGTERM the snippet's process group, SIGKILL what is left after 3 s."""
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        end = time.monotonic() + wait
        while time.monotonic() < end and group_alive(pgid):
            time.sleep(0.05)
        if not group_alive(pgid):
            return


def wait_until(cond: Callable[[], bool], limit: float) -> bool:
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def netns_exists(name: str) -> bool:
    return os.path.exists(f"/run/netns/{name}")


def tail(text: str, lines: int = 80) -> str:
    return "\n".join(text.splitlines()[-lines:])


def run_snippet(block: Block, testbed: Testbed, root: Path,
                timeout: float = SNIPPET_TIMEOUT) -> tuple[list[str], str]:
    """Run ``block`` as the module docstring says: what went wrong (empty:
    nothing) and its traced output."""
    taken = [n for n in block.namespaces if netns_exists(n)]
    if taken:
        return [f"namespace(s) {', '.join(taken)} exist already (left by a killed run? "
                "`ip netns del NAME`); not taking them over"], ""
    work, env = make_workdir(root)
    script = root / "snippet.sh"
    script.write_text(script_of(block))
    log_path = root / "snippet.log"
    ns = testbed.netns("readme")
    problems: list[str] = []
    with log_path.open("w") as log:
        proc = ns.popen(["bash", "-e", "-u", "-o", "pipefail", str(script)],
                        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
                        start_new_session=True)
        pgid = proc.pid  # its own session: the group of everything it starts
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_group(pgid)
            rc = proc.wait()
            problems.append(f"still running after {timeout:g} s; stopped")
        if not wait_until(lambda: not group_alive(pgid), EXIT_GRACE):
            stop_group(pgid)
            problems.append("left processes running after it ended (a background job "
                            "never stopped); stopped them")
    for name in block.namespaces:
        if netns_exists(name):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
            problems.append(f"left the namespace {name} behind (deleted now)")
    if rc != 0:
        problems.insert(0, f"exit status {rc}")
    return problems, log_path.read_text(errors="replace")


@pytest.mark.parametrize("block", readme_snippets.tests(BLOCKS),
                         ids=lambda b: b.ident)
def test_readme_snippet(block: Block, testbed: Testbed, tmp_path: Path,
                        need_tool: Callable[[str], str]) -> None:
    for tool in TOOLS:
        need_tool(tool)
    problems, log = run_snippet(block, testbed, tmp_path)
    if problems:
        pytest.fail(f"README.md:{block.line} ({block.heading}): " + "; ".join(problems)
                    + "\n--- its output, traced:\n" + tail(log), pytrace=False)


@pytest.mark.parametrize(("body", "expected"), [
    ("true\nfalse\necho never\n", "exit status 1"),
    ("false | cat\n", "exit status 1"),  # pipefail
    ("echo $UNSET_VARIABLE_X\n", "exit status 1"),  # -u
    ("ip netns add ustk-selftest\n", "left the namespace ustk-selftest behind"),
    ("sleep 60 &\n", "left processes running"),
    ("sleep 60\n", "still running after 2 s"),
])
def test_the_harness_fails_a_broken_snippet(body: str, expected: str, testbed: Testbed,
                                            tmp_path: Path) -> None:
    """Each way a snippet can go wrong fails it, and what it left is gone."""
    block = Block(line=10, lang="sh", marks=("test",), body=body, heading="selftest")
    problems, log = run_snippet(block, testbed, tmp_path, timeout=2.0)
    assert any(expected in p for p in problems), (problems, log)
    assert "never" not in log.splitlines()  # -e: nothing runs after a failure
    assert not netns_exists("ustk-selftest")


def test_the_harness_runs_a_snippet_as_documented(testbed: Testbed, tmp_path: Path) -> None:
    """A good snippet passes; it runs in the working folder, finds ``ustack``
    and the saved programs, and its trace names README lines."""
    body = ("ip netns add ustk-selftest\n"
            "test -x .venv/bin/ustack && . .venv/bin/activate\n"
            "ustack --version\n"
            "test -f aio_echo.py\n"
            'test -n "$USTACK_RUN_DIR"\n'
            "ip netns del ustk-selftest\n")
    block = Block(line=10, lang="sh", marks=("test",), body=body, heading="selftest")
    problems, log = run_snippet(block, testbed, tmp_path)
    assert problems == [], log
    assert "+ README.md:13: ustack --version" in log
    assert f"ustack {ustack.__version__} (" in log


def test_every_program_the_readme_saves_is_run() -> None:
    """The harness runs each ``file=NAME`` program through a ``sh test`` block
    (a program no block runs would be untested; readme_snippets.policy_problems
    says which)."""
    assert FILES, "README.md saves no program?"
    problems = readme_snippets.policy_problems(BLOCKS)
    assert not problems, "\n".join(problems)
