"""Pipeline runner overhead: a chain of no-op steps, cache miss and cache hit, per executor.

The issue's target: a 20-step pipeline of no-op steps finishes in under 2 s locally, with
the runner's overhead compared against Metaflow's on the same machine in the same run.
Metaflow lives in its own environment (it is not a lockgate dependency); create it once with

    python3 -m venv ~/.cache/lockgate-anchors/venv-metaflow
    ~/.cache/lockgate-anchors/venv-metaflow/bin/pip install metaflow

then run

    .venv/bin/python bench/pipeline_overhead.py [--steps 20] [--repeats 3] [--metaflow PYTHON]

Metaflow has no content-addressed cache; its nearest equivalent of a cache hit is
``resume``, which clones every finished step of an earlier run, so that is what the "hit"
column measures for it. A Metaflow step always runs in a fresh subprocess (its local
runtime), like lockgate's ``local`` executor runs steps in pool workers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_PIPELINE = """
from lockgate.pipelines import pipeline, step


@step
def noop(x: int) -> int:
    return x + 1


@pipeline
def chain(n: int = 20, salt: int = 0):
    value = salt
    for _ in range(n):
        value = noop(value)
    return value
"""


_METAFLOW_ENV = Path.home() / ".cache" / "lockgate-anchors" / "venv-metaflow" / "bin" / "python"


def _metaflow_flow(steps: int) -> str:
    """A linear Metaflow flow of ``steps`` no-op steps between start and end."""
    names = [f"s{i}" for i in range(steps)]
    lines = ["from metaflow import FlowSpec, step", "", "class Chain(FlowSpec):"]
    chain = ["start", *names, "end"]
    for here, after in zip(chain, [*chain[1:], None], strict=True):
        lines += ["    @step", f"    def {here}(self):"]
        if here == "start":
            lines.append("        self.x = 0")
        elif here != "end":
            lines.append("        self.x += 1")
        lines.append(f"        self.next(self.{after})" if after else "        pass")
    lines += ["", "if __name__ == '__main__':", "    Chain()"]
    return "\n".join(lines) + "\n"


def _metaflow(python: Path, steps: int, repeats: int) -> dict[str, list[float]]:
    """Wall time of ``run`` (every step executes) and ``resume end`` (every step cloned)."""
    timings: dict[str, list[float]] = {"miss": [], "hit": []}
    with tempfile.TemporaryDirectory() as tmp:
        flow = Path(tmp) / "chain_flow.py"
        flow.write_text(_metaflow_flow(steps))
        env = {**os.environ, "USERNAME": "bench", "METAFLOW_DEFAULT_DATASTORE": "local", "METAFLOW_HOME": tmp}
        for _ in range(repeats):
            for phase, command in (("miss", ["run"]), ("hit", ["resume", "end"])):
                started = time.perf_counter()
                done = subprocess.run(
                    [str(python), str(flow), "--quiet", "--no-pylint", *command],
                    cwd=tmp,
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                timings[phase].append(time.perf_counter() - started)
                if done.returncode != 0:
                    raise SystemExit(f"metaflow {' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--metaflow", type=Path, default=_METAFLOW_ENV, help="python of Metaflow's environment")
    args = parser.parse_args()
    os.environ.setdefault("LOCKGATE_CAPTURE_CODE", "false")

    import lockgate as lg
    from lockgate.pipelines import load_pipeline, run_pipeline

    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "chain.py"
        file.write_text(_PIPELINE)
        ws = lg.Workspace.open(Path(tmp) / "ws")
        flow = load_pipeline(str(file))
        salt = 0
        for executor in ("inline", "local"):
            timings: dict[str, list[float]] = {"miss": [], "hit": []}
            for _ in range(args.repeats):
                salt += 10_000  # inputs no earlier run has seen: every step misses
                params = {"n": args.steps, "salt": salt}
                for phase in ("miss", "hit"):
                    started = time.perf_counter()
                    result = run_pipeline(ws, flow, params=params, executor=executor)
                    timings[phase].append(time.perf_counter() - started)
                    expected = args.steps if phase == "hit" else 0
                    if result.cache_hits != expected:
                        print(f"unexpected cache hits: {result.cache_hits} != {expected}", file=sys.stderr)
                        return 1
            results[executor] = timings
        ws.close()
    if args.metaflow.exists():
        results["metaflow (local runtime)"] = _metaflow(args.metaflow, args.steps, args.repeats)
    else:
        print(f"Metaflow not found at {args.metaflow}: lockgate reported alone (see the module docs)")

    print(f"{args.steps}-step pipeline of no-op steps, median of {args.repeats} (min-max); local = process pool")
    print("| executor | cache miss (whole run) | per step | cache hit (whole run) | per step |")
    print("|---|---|---|---|---|")
    summary: dict[str, object] = {"steps": args.steps, "repeats": args.repeats}
    for executor, timings in results.items():
        miss, hit = statistics.median(timings["miss"]), statistics.median(timings["hit"])
        print(
            f"| {executor} | {miss:.2f} s ({min(timings['miss']):.2f}-{max(timings['miss']):.2f}) | "
            f"{miss / args.steps * 1000:.1f} ms | {hit:.2f} s ({min(timings['hit']):.2f}-{max(timings['hit']):.2f}) | "
            f"{hit / args.steps * 1000:.1f} ms |"
        )
        summary[executor] = {"miss_s": miss, "hit_s": hit}
    ours = {k: v for k, v in results.items() if not k.startswith("metaflow")}
    goal = max(statistics.median(t["miss"]) for t in ours.values())
    print(f"goal: {args.steps} steps under 2 s on every executor: {'PASS' if goal < 2 else 'FAIL'} ({goal:.2f} s)")
    if "metaflow (local runtime)" in results:
        theirs = results["metaflow (local runtime)"]
        local = results["local"]
        for phase in ("miss", "hit"):
            ratio = statistics.median(theirs[phase]) / statistics.median(local[phase])
            print(f"{phase}: lockgate local is {ratio:.0f}x faster than Metaflow's local runtime")
            summary[f"metaflow_ratio_{phase}"] = ratio
    print(json.dumps(summary))
    return 0 if goal < 2 else 1


if __name__ == "__main__":
    sys.exit(main())
