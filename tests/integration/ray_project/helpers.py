"""A project module the steps import: Ray workers find it only in the shipped project folder."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def squares(n: int) -> list[int]:
    return [i * i for i in range(n)]


def where(module_file: str) -> None:
    """Print (into the step's kept stdout) where the step ran from, what was shipped there and
    whose S3 credentials the process has (the test's are fake)."""
    here = Path(module_file).resolve().parent
    seen = {
        "file": str(Path(module_file).resolve()),
        "pid": os.getpid(),
        "files": sorted(os.listdir(here)),
        "aws_key": os.environ.get("AWS_ACCESS_KEY_ID"),
    }
    print(json.dumps(seen))
    sys.stdout.flush()


def meet_up(folder: str, me: str, other: str, *, patience: float = 20.0) -> None:
    """Say I am here, and wait until ``other`` is too (or ``patience`` runs out)."""
    if not folder:
        return
    Path(folder, me).touch()
    deadline = time.monotonic() + patience
    while not Path(folder, other).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # both are now inside their step at the same time
