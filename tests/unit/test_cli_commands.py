"""``ustack`` dispatch: built-in commands, commands from the ``ustack.commands``
entry points (``ustack conform``), and unknown words."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import inspect
from collections.abc import Callable
from pathlib import Path

import pytest

from ustack import aio, cli
from ustack.bringup import LinkOptions
from ustack.cli import control
from ustack.cli.common import add_link_options
from ustack.stack import Stack


def test_conform_is_an_installed_entry_point() -> None:
    (entry,) = importlib.metadata.entry_points(group="ustack.commands", name="conform")
    assert entry.value == "ustack_conform.runner:main"


def test_help_lists_conform(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    assert "conform" in capsys.readouterr().out


class _Entry:
    def __init__(self, command: Callable[[list[str]], int]) -> None:
        self.command = command

    def load(self) -> Callable[[list[str]], int]:
        return self.command


def test_an_entry_point_gets_the_remaining_words(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str, list[str]]] = []

    def fake_entry_points(*, group: str, name: str) -> list[_Entry]:
        return [_Entry(lambda argv: seen.append((group, name, argv)) or 5)]

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    assert cli.main(["hello", "a", "--b"]) == 5
    assert seen == [("ustack.commands", "hello", ["a", "--b"])]


@pytest.mark.parametrize("argv", [["stats", "--bogus"], ["up", "--bogus"], ["tcp"], ["--bogus"]])
def test_built_in_commands_do_not_read_entry_points(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    def no_scan(**_: str) -> list[_Entry]:
        raise AssertionError("entry points read for a built-in command")

    monkeypatch.setattr(importlib.metadata, "entry_points", no_scan)
    assert cli.main(argv) == cli.EXIT_USAGE
    assert capsys.readouterr().err.startswith("ustack")


def test_unknown_command_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["no-such-command", "x"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("ustack: ") and err.count("\n") == 1, err
    assert "no-such-command" in err


def test_conform_without_its_entry_point_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ustack installed without the tools: one line saying what is missing."""
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **_: [])
    assert cli.main(["conform", "tests/conformance"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("ustack conform: ") and "not installed" in err
    assert err.count("\n") == 1, err


def _entry_point(monkeypatch: pytest.MonkeyPatch, command: Callable[[list[str]], int]) -> None:
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **_: [_Entry(command)])


@pytest.mark.parametrize(("exc", "status", "line"), [
    (cli.UsageError("bad option"), cli.EXIT_USAGE, "ustack hello: bad option"),
    (cli.UsageError("ustack hello: bad option"), cli.EXIT_USAGE, "ustack hello: bad option"),
    (FileNotFoundError(2, "No such file or directory", "/nonexistent/x"), cli.EXIT_ERROR,
     "ustack hello: /nonexistent/x: No such file or directory"),
    (OSError(16, "Device or resource busy"), cli.EXIT_ERROR,
     "ustack hello: Device or resource busy"),
])
def test_entry_point_failures_are_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    exc: Exception, status: int, line: str,
) -> None:
    """Commands dispatched by their whole command line (entry points, ``run``)
    run under main's handlers too: one line naming the command, no traceback."""
    def command(argv: list[str]) -> int:
        raise exc

    _entry_point(monkeypatch, command)
    assert cli.main(["hello", "x"]) == status
    assert capsys.readouterr().err == line + "\n"


def test_entry_point_interrupted_is_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def command(argv: list[str]) -> int:
        raise KeyboardInterrupt

    _entry_point(monkeypatch, command)
    assert cli.main(["hello"]) == 130


def test_run_usage_error_is_printed_once_by_main(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--link", "tap:x", "--ip", "198.18.0.2/24"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("ustack run: give the program after --") and err.count("\n") == 1


@pytest.mark.parametrize("name", ["a/b", "", "..", "a\0b"])
def test_up_bad_name_is_one_line_before_the_link(capsys: pytest.CaptureFixture[str],
                                                 name: str) -> None:
    """--name is checked before anything is opened (the link here does not
    exist: reaching it would be another line)."""
    argv = ["up", "--link", "packet:nosuch-uxq0", "--ip", "198.18.0.2/24", "--name", name]
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err == (f"ustack up: --name {name!r}: a stack's name is a file name in "
                   f"{control.RUN_DIR} (not empty, no '/')\n")


def test_stats_bad_name_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["stats", "--name", "a/b"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.startswith("ustack stats: --name 'a/b': ")


def test_control_socket_that_cannot_be_made_names_its_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An OSError making the control socket is one ControlError naming the
    socket's path (ustack up prints it), not '[Errno 20] Not a directory'."""
    blocker = tmp_path / "run"
    blocker.write_text("a file where the run folder should be")
    monkeypatch.setattr(control, "RUN_DIR", str(blocker))
    stack = Stack()
    with pytest.raises(control.ControlError) as e:
        control.ControlServer(stack, "u0")
    assert str(e.value).startswith(f"control socket {blocker}/u0.sock: ")
    monkeypatch.setattr(control, "RUN_DIR", str(tmp_path / ("d" * 120)))  # sun_path: 108
    with pytest.raises(control.ControlError, match=f"control socket {tmp_path}/d+/u0.sock: "):
        control.ControlServer(stack, "u0")
    stack.close()


def test_link_options_are_the_fields_of_link_options() -> None:
    """One list of link options: the command's are LinkOptions' fields by
    name (link_options reads them so), and ustack.aio.running takes them."""
    p = argparse.ArgumentParser()
    add_link_options(p)
    dests = {a.dest for a in p._actions if a.dest != "help"}
    assert dests == {f.name for f in dataclasses.fields(LinkOptions)}
    assert inspect.signature(aio.running).parameters == inspect.signature(LinkOptions).parameters


def test_running_checks_its_options_as_link_options_does() -> None:
    with pytest.raises(ValueError, match=r"^--ip: "):
        aio.running("tap:u0", "198.18.0.300/24")
    with pytest.raises(TypeError, match="hostip"):
        aio.running("tap:u0", "198.18.0.2/24", hostip="198.18.0.1/24")  # type: ignore[call-arg]


@pytest.mark.parametrize(("argv", "prog"), [
    (["up", "--link", "tap:x", "--ip", "198.18.0.2/24", "-o"], "ustack up"),
    (["tcp", "recv", "--to", "198.18.0.1:9", "--link", "tap:x", "--ip", "198.18.0.2/24",
      "f", "-o"], "ustack tcp recv"),
    (["stats", "-o"], "ustack stats"),
    (["-o"], "ustack"),
])
def test_unrecognized_arguments_name_the_command(
        capsys: pytest.CaptureFixture[str], argv: list[str], prog: str) -> None:
    assert cli.main(argv) == cli.EXIT_USAGE
    assert capsys.readouterr().err == (f"{prog}: unrecognized arguments: -o "
                                       f"(see {prog} --help)\n")
