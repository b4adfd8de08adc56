"""Conformance testing: packetdrill scripts run against ustack (issue 4).

``script`` holds the data model and ``parser`` turns script text into it;
``execution`` plays one script's remote peer against a fresh Stack over the
in-memory link with a controlled clock (``syscalls`` maps the system calls
onto the native API, ``packets`` builds and reads the frames), and
``runner`` runs many scripts against the expected-failure lists
(``xfail.txt`` next to the scripts): the ``ustack conform`` command.
"""

from ustack_conform.parser import iter_scripts, parse_all, parse_path, parse_text
from ustack_conform.script import (
    WILDCARD,
    CodeEvent,
    Event,
    IcmpEvent,
    PacketEvent,
    Script,
    ScriptError,
    ShellEvent,
    SyscallEvent,
    TcpOptionSpec,
    Time,
)

__all__ = [
    "WILDCARD",
    "CodeEvent",
    "Event",
    "IcmpEvent",
    "PacketEvent",
    "Script",
    "ScriptError",
    "ShellEvent",
    "SyscallEvent",
    "TcpOptionSpec",
    "Time",
    "iter_scripts",
    "parse_all",
    "parse_path",
    "parse_text",
]
