"""W4 tracking: lockgate against MLflow (the anchor), side by side in one session, as ratios.

The workload is the anchor's (``shared/bench/anchors/w4_mlflow_tracking.py``, W4 rows and note 5 of
its README): ``--rows`` runs, each with 10 params and 100 metric values (keys m0..m9 x steps
0..9, values from ``numpy.random.default_rng(0).random((rows, 10, 10))``), in three phases:

  A) one call at a time: start_run, 10 x log_param, 100 x log_metric, end_run;
  B) the same data, one log_batch per run (10 params + 100 metrics);
  C) search over phase A's 100 runs, plain and filtered + ordered, ``--search-calls`` each.

Both tools run as their own processes, alternating: by default ``--repeats`` rounds, each one
lockgate process and one MLflow process with ``--repeats 1`` (the order flips every round), so
drift on a shared machine hits both alike. ``--alternate script`` instead runs each tool once
with ``--repeats N``, the anchor's own way. MLflow runs the anchor script unmodified with the
anchor venv's python; lockgate runs this file with ``--worker``, which mirrors the script and
prints the same JSON keys. Per-call figures are the median over processes of each process's
p50 (p99); ratios are MLflow / lockgate, so 12.0x means lockgate is 12 times faster.

lockgate keeps its defaults (code capture on: ``start_run`` records the git commit and diff of
the working directory), so its ``start_run`` p50 is reported on its own line. lockgate's search
returns records; MLflow's returns pandas, so lockgate's search is timed both with and without
``.to_pandas()`` and the goals use the with-pandas figure.

    python bench/w4_tracking.py                     # 100 rows, 3 rounds (a few minutes: MLflow is slow)
    python bench/w4_tracking.py --lockgate-only     # no MLflow venv: compares with the published anchor
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    anchor_dir,
    anchor_python,
    fmt_ms,
    fmt_ratio,
    git_state,
    machine_info,
    pct_us,
    render_table,
    run_json_process,
    summ,
)

FILTER = "metrics.m0 > 0.5 and params.p0 != 'x'"
ANCHOR_SCRIPT = "w4_mlflow_tracking.py"
# The anchor's published figures (shared/bench/anchors/README.md, 2026-11-29, mlflow 3.17.2, 2 cores),
# used only by --lockgate-only, when MLflow cannot run in this session.
PUBLISHED_MLFLOW: dict[str, dict[str, float]] = {
    "A_log_metric": {"p50_us": 5970, "p99_us": 11300},
    "A_log_param": {"p50_us": 4360},
    "A_start_run": {"p50_us": 11400},
    "A_end_run": {"p50_us": 5700},
    "B_log_batch_call": {"p50_us": 28400, "p99_us": 42000},
    "C_search_runs_plain": {"p50_us": 128000, "p99_us": 346000},
    "C_search_runs_filter_order": {"p50_us": 61000, "p99_us": 277000},
}
PUBLISHED_TOTALS_S: dict[str, float] = {
    "A_single_calls_total_s": 65.7,
    "A_per_run_s": 0.66,
    "B_log_batch_total_s": 4.38,
    "B_per_run_s": 0.043,
}


# -- the lockgate side: one process, the anchor script's loop with lockgate's API ------------------


def lockgate_worker(rows: int, repeats: int, search_calls: int) -> dict[str, Any]:
    """Run the W4 workload against a fresh workspace in a temp dir; the anchor's JSON keys plus extras."""
    import importlib

    import lockgate as lg

    # MLflow imports pandas with `import mlflow`, before its timings start; lockgate imports it
    # lazily in the first to_pandas(). Import it here so neither tool's search pays the ~1 s import.
    importlib.import_module("pandas")
    vals = np.random.default_rng(0).random((rows, 10, 10))  # run x key x step
    with tempfile.TemporaryDirectory(prefix="lockgate-w4-") as home:
        t0 = time.perf_counter()
        ws = lg.Workspace.open(home)
        init_s = time.perf_counter() - t0
        try:
            out = _lockgate_phases(ws, vals, rows, repeats, search_calls)
            db_path = Path(home) / "lockgate.db"
            out["db_mb"] = db_path.stat().st_size / 2**20 if db_path.exists() else None
        finally:
            ws.close()
    out.update(
        {
            "workload": "W4_tracking",
            "tool": "lockgate",
            "version": lg.__version__,
            "python": sys.version.split()[0],
            "runs_per_phase": rows,
            "backend": "sqlite (workspace in a temp dir)",
            "db_init_migrate_s": init_s,
            "code_capture": _code_capture_cost(),
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )
    return out


def _lockgate_phases(ws: Any, vals: np.ndarray, rows: int, repeats: int, search_calls: int) -> dict[str, Any]:
    import lockgate as lg

    tot_a: list[float] = []
    tot_b: list[float] = []
    per_run_a: list[float] = []
    per_run_b: list[float] = []
    lat_metric: list[float] = []
    lat_param: list[float] = []
    lat_start: list[float] = []
    lat_end: list[float] = []
    lat_batch: list[float] = []
    plain: list[float] = []
    plain_pd: list[float] = []
    filt: list[float] = []
    filt_pd: list[float] = []
    found = found_filtered = 0
    ordered = True
    clock = time.perf_counter
    for rep in range(repeats):
        # ---- A: one call at a time
        exp_a = f"single_{rep}"
        t_phase = clock()
        for r in range(rows):
            tr = clock()
            t0 = clock()
            run = ws.start_run(f"r{r}", experiment=exp_a)
            lat_start.append(clock() - t0)
            for p in range(10):
                t0 = clock()
                run.log_param(f"p{p}", f"v{r}_{p}")
                lat_param.append(clock() - t0)
            for k in range(10):
                for s in range(10):
                    t0 = clock()
                    run.log_metric(f"m{k}", float(vals[r, k, s]), step=s)
                    lat_metric.append(clock() - t0)
            t0 = clock()
            run.end()
            lat_end.append(clock() - t0)
            per_run_a.append(clock() - tr)
        tot_a.append(clock() - t_phase)

        # ---- B: log_batch, one call per run
        exp_b = f"batch_{rep}"
        t_phase = clock()
        for r in range(rows):
            tr = clock()
            run = ws.start_run(f"r{r}", experiment=exp_b)
            ts = int(time.time() * 1000)
            params = {f"p{p}": f"v{r}_{p}" for p in range(10)}
            metrics = [
                lg.Metric(key=f"m{k}", value=float(vals[r, k, s]), step=s, timestamp=ts)
                for k in range(10)
                for s in range(10)
            ]
            t0 = clock()
            run.log_batch(params=params, metrics=metrics)
            lat_batch.append(clock() - t0)
            run.end()
            per_run_b.append(clock() - tr)
        tot_b.append(clock() - t_phase)

        # ---- C: search; each call timed to the records and again to the DataFrame
        for _ in range(search_calls):
            t0 = clock()
            recs = ws.runs.search(experiment=exp_a)
            t1 = clock()
            df = recs.to_pandas()
            t2 = clock()
            plain.append(t1 - t0)
            plain_pd.append(t2 - t0)
            found = len(df)
        for _ in range(search_calls):
            t0 = clock()
            recs = ws.runs.search(FILTER, experiment=exp_a, order_by="metrics.m1 desc")
            t1 = clock()
            df = recs.to_pandas()
            t2 = clock()
            filt.append(t1 - t0)
            filt_pd.append(t2 - t0)
            found_filtered = len(df)
            m1 = [r.metrics["m1"] for r in recs]
            ordered = ordered and m1 == sorted(m1, reverse=True)

    return {
        "A_single_calls_total_s": summ(tot_a),
        "A_per_run_s": summ(per_run_a),
        "A_log_metric": pct_us(lat_metric),
        "A_log_param": pct_us(lat_param),
        "A_start_run": pct_us(lat_start),
        "A_end_run": pct_us(lat_end),
        "B_log_batch_total_s": summ(tot_b),
        "B_per_run_s": summ(per_run_b),
        "B_log_batch_call": pct_us(lat_batch),
        "C_search_runs_plain": pct_us(plain_pd),
        "C_search_runs_filter_order": pct_us(filt_pd),
        "C_search_runs_plain_nopandas": pct_us(plain),
        "C_search_runs_filter_order_nopandas": pct_us(filt),
        "C_runs_found": found,
        "C_runs_found_filtered": found_filtered,
        "C_filtered_order_ok": ordered,
    }


def _code_capture_cost(calls: int = 5) -> dict[str, Any] | None:
    """What lockgate's default code capture (git commit + diff of the cwd) costs, to explain start_run."""
    try:
        from lockgate.tracking._environment import capture_code
    except ImportError:  # a private helper; the benchmark must not break if it moves
        return None
    times = []
    state = None
    for _ in range(calls):
        t0 = time.perf_counter()
        state = capture_code()
        times.append(time.perf_counter() - t0)
    return {
        **pct_us(times),
        "in_git_repo": bool(state and state.repo),
        "diff_bytes": len(state.diff or b"") if state else 0,
    }


# -- the driver: alternate the two tools, aggregate, compare -----------------------------------


@dataclass(frozen=True)
class Row:
    label: str
    lockgate_key: str
    mlflow_key: str


CALL_ROWS = [
    Row("log_metric", "A_log_metric", "A_log_metric"),
    Row("log_param", "A_log_param", "A_log_param"),
    Row("start_run (code capture on)", "A_start_run", "A_start_run"),
    Row("end_run", "A_end_run", "A_end_run"),
    Row("log_batch (10 params + 100 metrics)", "B_log_batch_call", "B_log_batch_call"),
    Row("search plain, to pandas", "C_search_runs_plain", "C_search_runs_plain"),
    Row("search plain, records only", "C_search_runs_plain_nopandas", "C_search_runs_plain"),
    Row("search filtered+ordered, to pandas", "C_search_runs_filter_order", "C_search_runs_filter_order"),
    Row("search filtered+ordered, records only", "C_search_runs_filter_order_nopandas", "C_search_runs_filter_order"),
]
TOTAL_ROWS = [
    Row("phase A total (s)", "A_single_calls_total_s", "A_single_calls_total_s"),
    Row("phase A per run (s)", "A_per_run_s", "A_per_run_s"),
    Row("phase B total (s)", "B_log_batch_total_s", "B_log_batch_total_s"),
    Row("phase B per run (s)", "B_per_run_s", "B_per_run_s"),
]


def agg_calls(results: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """Median over processes of each process's p50 and p99 (each process pools its own calls)."""
    items = [r[key] for r in results if key in r]
    if not items:
        return None
    p50 = [float(i["p50_us"]) for i in items]
    p99 = [float(i["p99_us"]) for i in items]
    return {
        "p50_us": float(np.median(p50)),
        "p50_min_us": min(p50),
        "p50_max_us": max(p50),
        "p99_us": float(np.median(p99)),
        "p99_max_us": max(p99),
        "calls": int(sum(int(i["calls"]) for i in items)),
        "processes": len(items),
    }


def agg_totals(results: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """One process: its own summary; several (one repeat each): median/min/max of their medians."""
    items = [r[key] for r in results if key in r]
    if not items:
        return None
    if len(items) == 1:
        return dict(items[0])
    return {**summ([float(i["median"]) for i in items]), "n": int(sum(int(i["n"]) for i in items))}


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def _get(d: dict[str, Any] | None, key: str) -> float | None:
    return None if d is None or d.get(key) is None else float(d[key])


def compare(
    lockgate: list[dict[str, Any]], mlflow: list[dict[str, Any]], *, published: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-call and total figures for both tools, and the MLflow / lockgate ratios."""
    calls: dict[str, Any] = {}
    for row in CALL_ROWS:
        lg_stats = agg_calls(lockgate, row.lockgate_key)
        ml_stats = dict(PUBLISHED_MLFLOW.get(row.mlflow_key, {})) if published else agg_calls(mlflow, row.mlflow_key)
        calls[row.label] = {
            "lockgate": lg_stats,
            "mlflow": ml_stats or None,
            "ratio_p50": ratio(_get(ml_stats, "p50_us"), _get(lg_stats, "p50_us")),
            "ratio_p99": ratio(_get(ml_stats, "p99_us"), _get(lg_stats, "p99_us")),
        }
    totals: dict[str, Any] = {}
    for row in TOTAL_ROWS:
        lg_tot = agg_totals(lockgate, row.lockgate_key)
        if published:
            value = PUBLISHED_TOTALS_S.get(row.mlflow_key)
            ml_tot = None if value is None else {"median": value}
        else:
            ml_tot = agg_totals(mlflow, row.mlflow_key)
        totals[row.label] = {
            "lockgate": lg_tot,
            "mlflow": ml_tot,
            "ratio": ratio(_get(ml_tot, "median"), _get(lg_tot, "median")),
        }
    return calls, totals


def goals(calls: dict[str, Any]) -> list[dict[str, Any]]:
    """The W4 goals, each with the figure it was judged on."""
    metric = calls["log_metric"]
    lg_metric_ms = (_get(metric["lockgate"], "p50_us") or float("inf")) / 1000

    def at_least(label: str, row: str, factor: float) -> dict[str, Any]:
        got = calls[row]["ratio_p50"]
        return {"goal": label, "value": fmt_ratio(got), "pass": got is not None and got >= factor}

    return [
        at_least("log_metric p50 >= 10x faster than MLflow", "log_metric", 10),
        {"goal": "log_metric p50 < 0.6 ms", "value": f"{lg_metric_ms:.3f} ms", "pass": lg_metric_ms < 0.6},
        at_least("log_batch p50 >= 10x faster than MLflow", "log_batch (10 params + 100 metrics)", 10),
        at_least("search plain p50 (to pandas) >= 5x", "search plain, to pandas", 5),
        at_least("search filtered+ordered p50 (to pandas) >= 5x", "search filtered+ordered, to pandas", 5),
    ]


def _range_ms(stats: dict[str, Any] | None) -> str:
    if not stats or "p50_min_us" not in stats or stats.get("processes", 1) < 2:
        return ""
    return f" ({fmt_ms(stats['p50_min_us'])}-{fmt_ms(stats['p50_max_us'])})"


def _total_cell(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "-"
    text = f"{stats['median']:.3f}"
    if "min" in stats and stats.get("n", 1) > 1:
        text += f" ({stats['min']:.3f}-{stats['max']:.3f}, n={stats['n']})"
    return text


def print_report(
    calls: dict[str, Any], totals: dict[str, Any], checks: list[dict[str, Any]], *, published: bool
) -> None:
    ml = "MLflow (published)" if published else "MLflow"
    header = [
        "per call, ms",
        "lockgate p50 (range)",
        "lockgate p99",
        f"{ml} p50 (range)",
        f"{ml} p99",
        "ratio p50",
        "ratio p99",
    ]
    rows = []
    for label, c in calls.items():
        lg_s, ml_s = c["lockgate"], c["mlflow"]
        rows.append(
            [
                label,
                fmt_ms(_get(lg_s, "p50_us")) + _range_ms(lg_s),
                fmt_ms(_get(lg_s, "p99_us")),
                fmt_ms(_get(ml_s, "p50_us")) + _range_ms(ml_s),
                fmt_ms(_get(ml_s, "p99_us")),
                fmt_ratio(c["ratio_p50"]),
                fmt_ratio(c["ratio_p99"]),
            ]
        )
    print(render_table(header, rows))
    print()
    trows = [
        [label, _total_cell(t["lockgate"]), _total_cell(t["mlflow"]), fmt_ratio(t["ratio"])]
        for label, t in totals.items()
    ]
    print(render_table(["totals, s: median (min-max, n)", "lockgate", ml, "ratio"], trows))
    print()
    print(
        render_table(
            ["goal", "measured", "result"], [[g["goal"], g["value"], "PASS" if g["pass"] else "FAIL"] for g in checks]
        )
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=100, help="runs per phase (default 100)")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the workload per tool (default 3)")
    ap.add_argument("--search-calls", type=int, default=20, help="search calls of each kind per repeat (default 20)")
    ap.add_argument(
        "--alternate",
        choices=["round", "script"],
        default="round",
        help="round: REPEATS rounds of one process per tool with --repeats 1, order flipping each round "
        "(default); script: each tool once with --repeats REPEATS",
    )
    ap.add_argument("--lockgate-only", action="store_true", help="skip MLflow; compare with the published anchor")
    ap.add_argument("--mlflow-python", type=Path, default=None, help="python of the MLflow venv (default: anchor venv)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        print(json.dumps(lockgate_worker(args.rows, args.repeats, args.search_calls)))
        return 0

    started = datetime.now(UTC)
    machine = machine_info()
    source = git_state()
    mlflow_py = args.mlflow_python or anchor_python("mlflow")
    script = anchor_dir() / ANCHOR_SCRIPT
    with_mlflow = not args.lockgate_only
    if with_mlflow and not (mlflow_py.exists() and script.exists()):
        print(
            f"MLflow anchor not available (python {mlflow_py}: {'ok' if mlflow_py.exists() else 'missing'}; "
            f"script {script}: {'ok' if script.exists() else 'missing'}).\n"
            f"Create it once with:  {anchor_dir() / 'setup.sh'} mlflow\n"
            "or run lockgate alone (compared with the published anchor figures):  "
            "python bench/w4_tracking.py --lockgate-only",
            file=sys.stderr,
        )
        return 2

    common = ["--rows", str(args.rows), "--search-calls", str(args.search_calls)]
    plan = [(i, 1) for i in range(args.repeats)] if args.alternate == "round" else [(0, args.repeats)]
    results: dict[str, list[dict[str, Any]]] = {"lockgate": [], "mlflow": []}
    cwd = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="w4-bench-") as tmp:
        for i, repeats in plan:
            order = ["lockgate", "mlflow"] if i % 2 == 0 else ["mlflow", "lockgate"]
            for tool in order:
                if tool == "mlflow" and not with_mlflow:
                    continue
                # Each process gets its own TMPDIR: the anchor script keeps its DB in $TMPDIR/mlflow-bench.
                proc_tmp = Path(tmp) / f"{tool}-{i}"
                proc_tmp.mkdir()
                env = {**os.environ, "TMPDIR": str(proc_tmp)}
                if tool == "lockgate":
                    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", *common]
                else:
                    cmd = [str(mlflow_py), str(script), *common]
                cmd += ["--repeats", str(repeats)]
                t0 = time.perf_counter()
                load = os.getloadavg()[0]
                out = run_json_process(cmd, env=env, cwd=cwd, label=tool)
                out["_wall_s"] = time.perf_counter() - t0
                out["_loadavg_1m_at_start"] = round(load, 2)
                results[tool].append(out)
                print(
                    f"[round {i + 1}/{len(plan)}] {tool}: {out['_wall_s']:.1f} s "
                    f"(log_metric p50 {fmt_ms(out['A_log_metric']['p50_us'])} ms, load {load:.2f})",
                    file=sys.stderr,
                    flush=True,
                )

    calls, totals = compare(results["lockgate"], results["mlflow"], published=not with_mlflow)
    checks = goals(calls)
    expected_filtered = int((np.random.default_rng(0).random((args.rows, 10, 10))[:, 0, 9] > 0.5).sum())
    found = {
        tool: sorted({(r["C_runs_found"], r["C_runs_found_filtered"]) for r in rs})
        for tool, rs in results.items()
        if rs
    }
    consistent = all(f == [(args.rows, expected_filtered)] for f in found.values()) and all(
        r.get("C_filtered_order_ok", True) for r in results["lockgate"]
    )

    lg_v = results["lockgate"][0]["version"]
    if source["commit"]:
        lg_v += f" @ {source['commit']}{' + uncommitted src changes' if source['dirty'] else ''}"
    ml_v = results["mlflow"][0]["version"] if results["mlflow"] else "3.17.2 (published)"
    print(
        f"W4 tracking, {args.rows} runs x (10 params + 100 metrics), {args.repeats} repeat(s), "
        f"alternate={args.alternate}; lockgate {lg_v} vs MLflow {ml_v}; {started:%Y-%m-%d %H:%M} UTC; "
        f"{machine['cores']} cores, {machine['cpu']}, Python {machine['python']}"
    )
    if not with_mlflow:
        print("MLflow did not run in this session: its figures are the anchor README's (2026-11-29), not same-session.")
    print("ratio = MLflow / lockgate (higher means lockgate is faster); p50 is the median of per-process p50s.")
    print()
    print_report(calls, totals, checks, published=not with_mlflow)
    cap = results["lockgate"][0].get("code_capture")
    if cap:
        print(
            f"\nlockgate start_run includes code capture (git commit + diff of {cwd}): "
            f"capture alone p50 {fmt_ms(cap['p50_us'])} ms, diff {cap['diff_bytes']} bytes."
        )
    print(
        f"check: runs found / filtered per tool {found} (expected ({args.rows}, {expected_filtered})): "
        f"{'consistent' if consistent else 'MISMATCH'}"
    )

    summary = {
        "workload": "W4_tracking",
        "date": started.isoformat(timespec="seconds"),
        "rows": args.rows,
        "repeats": args.repeats,
        "search_calls": args.search_calls,
        "alternate": args.alternate,
        "mlflow_source": "same session" if with_mlflow else "published anchor 2026-11-29",
        "machine": machine,
        "versions": {"lockgate": lg_v, "mlflow": ml_v},
        "per_call": calls,
        "totals": totals,
        "goals": checks,
        "consistent_results": consistent,
        "processes": results,
    }
    print(json.dumps(summary))
    return 0 if all(g["pass"] for g in checks) and consistent else 1


if __name__ == "__main__":
    sys.exit(main())
