"""Conformance testing: packetdrill scripts run against ustack (issue 4).

``script`` holds the data model, ``parser`` turns script text into it.  The
runner that plays the remote peer against a Stack comes later and consumes
``Script`` objects; choose the ``#ifdef`` branch with ``Script.select``.
"""

from ustack.conformance.parser import iter_scripts, parse_all, parse_path, parse_text
from ustack.conformance.script import (
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
