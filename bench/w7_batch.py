"""W7 batch scoring: ``lockgate batch-predict`` against the plain chunked ``predict_proba`` loop,
side by side in one session.

The workload is the anchor's (``shared/bench/anchors/w7_batch.py`` and the W7 rows of its
README), from the anchor's own code, imported from its files (never copied): the W6 model
(``w6_common.load_or_train``: GradientBoostingClassifier, 100 trees of depth 3, fitted on
20,000 x 20 rows) and ``w7_batch.write_parquet``: ``--rows`` (10,000,000) x 20 float64 rows,
``default_rng(0)``, snappy, row groups of ``--chunk`` (1,000,000) rows, written untimed.

Configurations, each timed in a fresh process (so each has its own peak RSS), alternating:

  plain             the anchor's ``sklearn_numpy`` loop, as it is: ``ParquetFile.iter_batches(--chunk)``,
                    ``np.column_stack`` of the Arrow columns, ``model.predict_proba``; writes nothing
  lockgate-sklearn  ``batch_predict(ws, "models:/w7@champion", file, out, prefer_onnx=False)``: the
                    registered model (the anchor's pickle, hash-checked on load), labels and
                    probabilities, an output Parquet file with file/row ids, model and version,
                    the input hashed, a tracked run with lineage and an audit event
  lockgate-onnx     the same with the ONNX runtime (converted once, untimed, when registering)

Timed: the plain loop from opening the file to the last chunk's probabilities (the anchor's
"total"); lockgate's whole ``batch_predict`` call, which loads the model from the registry.
scikit-learn is imported before timing in both (the plain loop unpickles its model first).
Peak RSS is each process's own ``ru_maxrss``; CPU time (user + system, every thread) is
measured over the timed part too, since on a shared box the wall time depends on what else runs. Each round runs every configuration once; the
order rotates every round and reverses on even rounds, as the anchors do. Figures are medians
(min-max, n rounds); ratio = lockgate time / plain time (below 1 means lockgate is faster).

Correctness: every configuration's sum of positive-class probabilities is printed; lockgate's
output is compared with ``predict_proba`` on the first 200,000 rows (scikit-learn runtime:
identical; ONNX: within 1e-5) and its ``row`` ids checked. A mismatch fails the run.

Goals (PASS/FAIL): lockgate-sklearn within 1.25x of plain; lockgate-onnx faster than plain;
lockgate's peak RSS under 2 GB. Exit status 0 only if all pass. The last line of stdout is one
JSON object with everything. Run from the repo root:

    .venv/bin/python bench/w7_batch.py                # 10M rows, 3 rounds (5-8 minutes on the 2-core box)
    .venv/bin/python bench/w7_batch.py --quick        # 2M rows, 1 round, for development
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pickle
import resource
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import anchor_dir, git_state, machine_info, render_table, run_json_process, summ

KINDS = ("plain", "lockgate-sklearn", "lockgate-onnx")
MODEL = "models:/w7@champion"
CHECK_ROWS = 200_000
ANCHOR_PLAIN_S = 18.82  # the anchors' README, W7 sklearn_numpy at 10M rows (another day, for reference)


def load_anchor(name: str) -> Any:
    """An anchor module from its file (the anchors folder goes on sys.path: they import each other)."""
    folder = anchor_dir()
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {folder / name}.py; set LOCKGATE_ANCHORS to the anchors folder")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- one configuration, in its own process ---------------------------------------------------


def child(kind: str, workdir: Path, data: Path, chunk: int) -> dict[str, Any]:
    import pyarrow.parquet as pq

    if kind == "plain":
        # The fitted model has feature names; the anchor's numpy loop warns per chunk and ignores it.
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        with open(workdir / "model.pkl", "rb") as fh:
            model = pickle.load(fh)
        rows, sum_p1 = 0, 0.0
        cpu = time.process_time()
        started = time.perf_counter()
        for batch in pq.ParquetFile(data).iter_batches(batch_size=chunk):
            x = np.column_stack([batch.column(i).to_numpy() for i in range(batch.num_columns)])
            p = np.asarray(model.predict_proba(x))
            rows += len(p)
            sum_p1 += float(p[:, 1].sum())
        seconds = time.perf_counter() - started
        cpu_s = time.process_time() - cpu
        extra: dict[str, Any] = {}
    else:
        import sklearn.ensemble  # noqa: F401 - imported before timing, as the plain loop's unpickling does

        import lockgate as lg
        from lockgate.serving import batch_predict

        ws = lg.Workspace.open(workdir / "ws")
        out = workdir / f"out-{kind}.parquet"
        cpu = time.process_time()
        started = time.perf_counter()
        result = batch_predict(ws, MODEL, data, out, prefer_onnx=kind == "lockgate-onnx")
        seconds = time.perf_counter() - started
        cpu_s = time.process_time() - cpu
        rows = result.rows
        sum_p1 = float(np.sum(pq.read_table(out, columns=["score"]).column("score").to_numpy()))
        extra = {"scoring_s": result.seconds, "runtime": result.runtime, "run_id": result.run_id}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "kind": kind,
        "seconds": seconds,
        "cpu_s": cpu_s,
        "rows": rows,
        "sum_p1": round(sum_p1, 3),
        "maxrss_mb": usage.ru_maxrss / 1024,
        **extra,
    }


# -- the session -----------------------------------------------------------------------------


def prepare(workdir: Path, rows: int, chunk: int) -> tuple[Path, dict[str, Any]]:
    """The anchor's model and Parquet file (untimed), and a workspace with the model registered
    as models:/w7@champion, its ONNX conversion done."""
    import pandas as pd

    import lockgate as lg
    from lockgate.serving import load_runtime

    c = load_anchor("w6_common")
    w7 = load_anchor("w7_batch")
    started = time.perf_counter()
    model = c.load_or_train(str(workdir / "model.pkl"))
    info: dict[str, Any] = {"model_s": round(time.perf_counter() - started, 1)}
    data = workdir / f"w7-{rows}.parquet"
    if not data.exists():
        started = time.perf_counter()
        w7.write_parquet(str(data), rows, chunk)
        info["parquet_write_s"] = round(time.perf_counter() - started, 1)
    info["parquet_mb"] = round(data.stat().st_size / 2**20, 1)
    if not (workdir / "ws").exists():
        ws = lg.Workspace.open(workdir / "ws")
        x, _ = c.make_data(200)
        with ws.start_run("w7-model", experiment="w7") as run:
            mv = run.log_model(model, name="w7", input_example=pd.DataFrame(x, columns=c.COLUMNS))
        ws.models.set_alias("w7", "champion", mv.version)
        runtime = load_runtime(ws, MODEL, prefer_onnx=True)  # the conversion, once, untimed
        if runtime.kind != "onnx":
            raise SystemExit("the W7 model did not convert to ONNX; see lockgate models show w7")
        ws.close()
    return data, info


def check_outputs(workdir: Path, data: Path, rows: int) -> dict[str, Any]:
    """lockgate's scores against predict_proba on the first rows; ids in order."""
    import pyarrow.parquet as pq

    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    with open(workdir / "model.pkl", "rb") as fh:
        model = pickle.load(fh)
    head = next(pq.ParquetFile(data).iter_batches(batch_size=CHECK_ROWS))
    expected = model.predict_proba(np.column_stack([head.column(i).to_numpy() for i in range(head.num_columns)]))
    found: dict[str, Any] = {}
    for kind in KINDS[1:]:
        out = workdir / f"out-{kind}.parquet"
        if not out.exists():
            continue
        meta = pq.read_metadata(out)
        scores = next(pq.ParquetFile(out).iter_batches(batch_size=CHECK_ROWS, columns=["row", "score"]))
        diff = float(np.abs(scores.column("score").to_numpy() - expected[:, 1]).max())
        ids_ok = bool(np.array_equal(scores.column("row").to_numpy(), np.arange(len(scores))))
        found[kind] = {"rows": meta.num_rows, "max_abs_diff": diff, "ids_in_order": ids_ok}
        limit = 0.0 if kind == "lockgate-sklearn" else 1e-5
        if diff > limit or not ids_ok or meta.num_rows != rows:
            found[kind]["mismatch"] = True
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--chunk", type=int, default=1_000_000, help="row groups and the plain loop's batch (the anchor's)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="2M rows, 1 round")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the model, data and workspace here (reused)")
    ap.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a.workdir, a.data, a.chunk)))
        return 0
    if a.quick:
        a.rows, a.rounds = 2_000_000, 1
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="lockgate-w7-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        return session(a, workdir)
    finally:
        if a.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def session(a: argparse.Namespace, workdir: Path) -> int:
    data, info = prepare(workdir, a.rows, a.chunk)
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    env = {**os.environ, "LOCKGATE_CAPTURE_CODE": "false"}
    for i in range(a.rounds):
        order = list(KINDS[i % len(KINDS) :] + KINDS[: i % len(KINDS)])
        if i % 2 == 1:
            order.reverse()
        for kind in order:
            cmd = [sys.executable, __file__, "--child", kind, "--workdir", str(workdir), "--data", str(data)]
            got = run_json_process([*cmd, "--chunk", str(a.chunk)], env=env, label=kind)
            results[kind].append(got)
            print(f"round {i + 1} {kind}: {got['seconds']:.2f} s, peak RSS {got['maxrss_mb']:.0f} MB", file=sys.stderr)
    checks = check_outputs(workdir, data, a.rows)
    plain = statistics.median(r["seconds"] for r in results["plain"])
    report: dict[str, Any] = {"workload": "W7", "rows": a.rows, "chunk": a.chunk, "rounds": a.rounds, **info}
    table_rows = []
    for kind in KINDS:
        runs = results[kind]
        times = [r["seconds"] for r in runs]
        median = statistics.median(times)
        rss = max(r["maxrss_mb"] for r in runs)
        entry = {
            "total_s": summ(times),
            "cpu_s": summ([r["cpu_s"] for r in runs]),
            "rows_per_s_median": round(a.rows / median),
            "ratio_vs_plain": round(median / plain, 3),
            "maxrss_mb": round(rss),
            "sum_p1": sorted({r["sum_p1"] for r in runs}),
        }
        if "scoring_s" in runs[0]:
            entry["scoring_s"] = summ([r["scoring_s"] for r in runs])
            entry["runtime"] = runs[0]["runtime"]
        report[kind] = entry
        table_rows.append(
            [
                kind,
                f"{median:.2f} s ({min(times):.2f}-{max(times):.2f}, n={len(times)})",
                f"{a.rows / median / 1000:,.0f}k",
                f"{median / plain:.2f}x",
                f"{statistics.median(r['cpu_s'] for r in runs):.1f} s",
                f"{rss:,.0f} MB",
            ]
        )
    goals = {
        "lockgate-sklearn within 1.25x of plain": report["lockgate-sklearn"]["ratio_vs_plain"] <= 1.25,
        "lockgate-onnx faster than plain": report["lockgate-onnx"]["ratio_vs_plain"] < 1.0,
        "lockgate peak RSS under 2 GB": max(report[k]["maxrss_mb"] for k in KINDS[1:]) < 2048,
    }
    consistent = not any(c.get("mismatch") for c in checks.values())
    report.update(
        checks=checks,
        goals=goals,
        consistent=consistent,
        machine=machine_info(),
        git=git_state(),
        anchor_plain_s=ANCHOR_PLAIN_S,
    )
    print(render_table(["configuration", "total", "rows/s", "vs plain", "CPU time", "peak RSS"], table_rows))
    print(f"\nplain loop in the anchors' README (another day): {ANCHOR_PLAIN_S} s at 10M rows")
    for kind, check in checks.items():
        verdict = "MISMATCH" if check.get("mismatch") else "ok"
        print(
            f"check {kind}: max |score - predict_proba| {check['max_abs_diff']:.2g} on {CHECK_ROWS:,} rows, ids in order: {check['ids_in_order']} ({verdict})"
        )
    for goal, passed in goals.items():
        print(f"{'PASS' if passed else 'FAIL'} {goal}")
    print(json.dumps(report))
    return 0 if consistent and all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
