"""Helpers shared by the lockgate benchmarks: statistics in the anchors' format, the anchor
venvs, machine facts and a plain-text table.

The anchor scripts (``shared/bench/anchors``) report totals as ``{"median", "min", "max", "n"}``
and per-call latencies as ``{"p50_us", "p99_us", "mean_us", "calls"}``; the functions here
produce the same shapes so lockgate's figures and the anchors' can be compared key by key.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "REPO_ROOT",
    "anchor_dir",
    "anchor_python",
    "fmt_ms",
    "fmt_ratio",
    "git_state",
    "machine_info",
    "pct_us",
    "render_table",
    "run_json_process",
    "summ",
]

REPO_ROOT = Path(__file__).resolve().parent.parent


def summ(xs: Sequence[float]) -> dict[str, float | int]:
    """Median, min, max and count, as the anchors report totals."""
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def pct_us(xs: Sequence[float]) -> dict[str, float | int]:
    """Per-call latency percentiles in microseconds from durations in seconds (the anchors' ``pct_us``)."""
    a = np.asarray(xs, dtype=float) * 1e6
    return {
        "p50_us": float(np.percentile(a, 50)),
        "p99_us": float(np.percentile(a, 99)),
        "mean_us": float(a.mean()),
        "calls": len(a),
    }


def anchor_dir() -> Path:
    """Where the anchor scripts live: ``$LOCKGATE_ANCHORS``, else ``shared/bench/anchors`` beside the repo."""
    env = os.environ.get("LOCKGATE_ANCHORS")
    if env:
        return Path(env)
    for candidate in (REPO_ROOT.parent / "shared" / "bench" / "anchors", Path("/work/shared/bench/anchors")):
        if candidate.is_dir():
            return candidate
    return REPO_ROOT.parent / "shared" / "bench" / "anchors"


def anchor_python(tool: str) -> Path:
    """The interpreter of an anchor tool's venv (created by ``anchors/setup.sh TOOL``)."""
    root = Path(os.environ.get("ANCHOR_VENVS") or Path.home() / ".cache" / "lockgate-anchors")
    return root / f"venv-{tool}" / "bin" / "python"


def machine_info() -> dict[str, Any]:
    """The facts a reader needs to judge a figure: cores, CPU, Python, load at the time."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu or platform.processor(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def git_state(paths: Sequence[str] = ("src",)) -> dict[str, Any]:
    """The commit the measured code came from, and whether ``paths`` had uncommitted changes."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=20, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "--short=12", "HEAD")
    status = git("status", "--porcelain", "--", *paths)
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def run_json_process(
    cmd: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None, label: str
) -> dict[str, Any]:
    """Run a benchmark process that prints one JSON line last; return that line, parsed.

    Stderr is kept and shown only when the process fails, so warnings do not bury the table.
    """
    import json

    proc = subprocess.run(
        list(cmd),
        env=dict(env) if env is not None else None,
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("{")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stderr[-4000:])
        raise RuntimeError(f"{label} failed (exit {proc.returncode}): {' '.join(cmd)}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def fmt_ms(us: float | None) -> str:
    """Microseconds as a short millisecond figure."""
    if us is None:
        return "-"
    ms = us / 1000
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}x"


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table with padded columns (readable in a terminal, pasteable in a README)."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(r) for r in rows)
    return "\n".join(out)
