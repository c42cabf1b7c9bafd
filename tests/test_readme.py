"""The README's Python examples run, so the front page cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_python_examples() -> None:
    assert BLOCKS, "the README should show the Python API"


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})


def test_readme_documents_every_cli_noun() -> None:
    from lockgate.cli import app

    text = README.read_text()
    nouns = {group.name for group in app.registered_groups} | {c.name for c in app.registered_commands}
    missing = sorted(n for n in nouns if n and f"lockgate {n}" not in text)
    assert not missing, f"README's CLI reference misses: {missing}"
