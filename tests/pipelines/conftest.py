"""Fixtures for the pipeline tests: a copy of ./project that a test may edit freely.

pytest must not collect ./project itself: its modules are the user's pipeline code.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

collect_ignore = ["project"]

PROJECT = Path(__file__).parent / "project"


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A copy of the test project with a small data file; its modules are forgotten after."""
    root = tmp_path / "project"
    shutil.copytree(PROJECT, root)
    rows = ["x,y"] + [f"{i / 10},{int(i > 20)}" for i in range(40)]
    (root / "data.csv").write_text("\n".join(rows) + "\n")
    sys.modules.pop("helpers", None)
    yield root
    sys.modules.pop("helpers", None)
    sys.path[:] = [p for p in sys.path if p != str(root)]
