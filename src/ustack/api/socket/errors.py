"""Errors of the stdlib-compatible layer that the kernel would not raise."""

from __future__ import annotations

import errno
import os

README_HINT = "see 'ustack.socket' in README.md for what is covered"


class NotCoveredError(OSError):
    """A call of the ``socket`` API that ustack does not provide for AF_INET.

    Raised instead of ever handing the call to the kernel's stack (which
    would put the program's traffic on the host's network).  An OSError
    (EOPNOTSUPP), so code that already copes with a failing socket call keeps
    coping; the message names the call.
    """

    def __init__(self, call: str, why: str = "") -> None:
        detail = f" ({why})" if why else ""
        super().__init__(errno.EOPNOTSUPP,
                         f"ustack.socket: {call} is not covered for AF_INET{detail}; "
                         f"{README_HINT}")
        self.call = call


def err(code: int) -> OSError:
    """OSError for ``code`` as the socket module raises it (its subclass by errno)."""
    return OSError(code, os.strerror(code))  # OSError() picks the subclass by errno


def timeout_error() -> TimeoutError:
    """What a socket timeout raises: ``socket.timeout`` is TimeoutError('timed out')."""
    return TimeoutError("timed out")
