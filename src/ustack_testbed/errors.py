"""What the test bed raises and warns with."""

from __future__ import annotations

import warnings


class TestbedError(RuntimeError):
    """A testbed command failed, or a stack did not start or stop cleanly."""

    __test__ = False  # not a pytest test class despite the name


class TestbedWarning(UserWarning):
    """Something was tolerated (a missing tool, a failed cleanup step)."""

    __test__ = False


def warn(message: str) -> None:
    """Warn with a :class:`TestbedWarning`, reported at the caller's caller."""
    warnings.warn(message, TestbedWarning, stacklevel=3)
