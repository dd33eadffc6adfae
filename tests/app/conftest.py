"""Fixtures of the application-layer tests."""
from __future__ import annotations

import pytest

from studio.app import Studio


@pytest.fixture
def studio(tmp_path):
    """A ``Studio`` facade on a fresh workspace."""
    return Studio(tmp_path / "workspace")
