"""Where the FreeBSD tcp-testsuite is, for the conformance tests.

The suite is vendored in tests/conformance/tcp-testsuite, so it is part of
every checkout: without it the checkout is broken, and the tests that play
or parse the suite fail instead of skipping.  ``USTACK_TCP_TESTSUITE``
names another copy (e.g. a newer one); only such an override that names no
folder makes them skip (and fail under CI, ``CI=true``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

OURS = Path(__file__).resolve().parents[1] / "conformance"
VENDORED = OURS / "tcp-testsuite"
OVERRIDE = os.environ.get("USTACK_TCP_TESTSUITE", "")
SUITE = Path(OVERRIDE) if OVERRIDE else VENDORED
IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require_suite() -> Path:
    """``SUITE``, or fail (the vendored copy is missing) or skip (the override is)."""
    if SUITE.is_dir():
        return SUITE
    if not OVERRIDE:
        pytest.fail(f"{VENDORED} is missing: the FreeBSD suite is vendored there, "
                    "so the checkout is incomplete")
    if IN_CI:
        pytest.fail(f"USTACK_TCP_TESTSUITE={OVERRIDE}: no such folder")
    pytest.skip(f"USTACK_TCP_TESTSUITE={OVERRIDE}: no such folder")
