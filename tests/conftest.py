"""Session-wide test setup: an isolated, private state directory for every test run.

It must never point tests at the developer's real state directory.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_STATE_ROOT = Path(tempfile.mkdtemp(prefix="openshell-test-state-"))
os.chmod(_STATE_ROOT, 0o700)
os.environ["OPENSHELL_STATE_DIR"] = str(_STATE_ROOT)


@pytest.fixture(scope="session")
def state_dir() -> Path:
    """The state directory shared by the whole test session."""
    return _STATE_ROOT
