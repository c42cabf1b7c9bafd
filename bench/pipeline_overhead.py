"""Pipeline runner overhead: a chain of no-op steps, cache miss and cache hit, per executor.

The issue's target: a 20-step pipeline of no-op steps finishes in under 2 s locally. ZenML
and Metaflow are not installed in this environment, so lockgate is reported alone; the
figure that matters is the runner's own cost per step (recording a child run, its output
artifact, lineage and the cache entry), which this measures.

    .venv/bin/python bench/pipeline_overhead.py [--steps 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
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
    goal = max(statistics.median(t["miss"]) for t in results.values())
    print(f"goal: {args.steps} steps under 2 s on every executor: {'PASS' if goal < 2 else 'FAIL'} ({goal:.2f} s)")
    print(json.dumps(summary))
    return 0 if goal < 2 else 1


if __name__ == "__main__":
    sys.exit(main())
