"""W6 online serving: lockgate's inference server against the anchors, side by side in one session.

The workload is the anchor's (``shared/bench/anchors/w6_online.py`` and the W6 rows of its README):
the anchor's model (``w6_prepare.py``: GradientBoostingClassifier, 100 trees of depth 3, fitted on
20,000 x 20 rows from ``w6_common.make_data``), pickled by the anchor and registered unchanged in a
lockgate workspace; one record per JSON request (``w6_common.request_row``); per configuration a
5 s warm-up at 32 connections (discarded), ``wrk -t2 -c32 -d20s --latency``, then
``wrk -t1 -c1 -d10s --latency``, with the anchor's ``w6_post.lua``. The first answer of every
server is checked against in-process ``predict_proba`` (lockgate: within 1e-5, ONNX's tolerance).

The anchors run through the anchor driver itself, imported from its file: its ``configs()`` and
its ``measure()`` (start, answer check, warm-up, both wrk runs, stop). lockgate's servers use the
same driver's ``free_port``, ``run_wrk``, ``stop`` and ``tree_rss_mb``, plus what only lockgate
has: the batch-size histogram from ``/metrics`` around the 32-connection run, the runtime the
server chose, and the prediction log's row count.

lockgate configurations (``lockgate serve`` on 127.0.0.1, deployment ``w6``; metrics always on;
"contract" is a registered 20-column request contract checked on every request, on top of the
signature validation every request gets):

  lockgate-sklearn   (a) 1 worker, scikit-learn runtime (--no-onnx), POST /v1/endpoints/w6/predict,
                         prediction log and contract on, max_batch_size 32, max_wait_ms 0
  lockgate-onnx      (b) as (a) with the ONNX runtime
  lockgate-onnx-v2   (c) as (b), POST /v2/models/w6/infer (Open Inference Protocol, FP64 tensor)
  lockgate-onnx-w2   (d) as (b) with 2 workers
  lockgate-onnx-sig  (b) with signature validation only (no contract); prediction log on
  lockgate-onnx-sig-bN-wM  the batching curve: lockgate-onnx-sig with max_batch_size N, max_wait_ms M
  lockgate-onnx-plain  (b) without the contract and without the prediction log (what they cost)
  (opt-in with --only: lockgate-onnx-nolog, lockgate-sklearn-sig, lockgate-sklearn-w2)

Every configuration (anchors, lockgate, and one in-process timing process running
``w6_inprocess_runtimes.py``) runs once per round; the order rotates every round and reverses on
even rounds, as in the anchor driver, so load from other jobs hits every tool. Figures are medians
(min-max, n rounds). Ratios: lockgate req/s / anchor req/s, and anchor latency / lockgate latency
(above 1 means lockgate is better).

    .venv/bin/python bench/w6_online.py                  # 3 rounds (~33 min on 2 cores)
    .venv/bin/python bench/w6_online.py --quick          # 1 round, short runs (~6 min), for development
    .venv/bin/python bench/w6_online.py --lockgate-only  # no anchor venvs: against the published figures
"""

from __future__ import annotations

import argparse
import contextlib
import html
import http.client
import importlib.util
import io
import json
import math
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO_ROOT, anchor_dir, anchor_python, git_state, machine_info, render_table, run_json_process

ANCHORS = ("fastapi-w1", "fastapi-w2-nodelay", "mlflow-default", "bento-batch")
# The anchors' published figures (shared/bench/anchors/README.md, 2026-11-29, medians of 3 rounds):
# (req/s, p50 ms, p99 ms) at 32 and at 1 connection. Used for an anchor whose venv is missing.
PUBLISHED: dict[str, dict[int, tuple[float, float, float]]] = {
    "fastapi-w1": {32: (1092.7, 28.2, 46.4), 1: (970.2, 0.92, 2.10)},
    "fastapi-w2-nodelay": {32: (1492.7, 22.5, 33.7), 1: (942.0, 0.94, 3.04)},
    "mlflow-default": {32: (57.9, 540.0, 912.0), 1: (65.8, 14.9, 219.0)},
    "bento-batch": {32: (418.4, 67.5, 309.0), 1: (37.7, 27.0, 47.4)},
}
PUBLISHED_INPROCESS_US = {"sklearn_numpy": 444.0, "sklearn_pandas": 1364.0, "onnx_bare": 9.9}
ANCHOR_LABEL = {
    "fastapi-w1": "thin FastAPI+uvicorn, 1 worker",
    "fastapi-w2-nodelay": "thin FastAPI+uvicorn, 2 workers, TCP_NODELAY",
    "mlflow-default": "mlflow models serve (1 worker)",
    "bento-batch": "BentoML, adaptive batching",
}
TOLERANCE = 1e-5
GOAL_P99_MS = 50.0
GOAL_C1_P50_MS = 2.0
GOAL_ONNX_RPS = 2200.0
DEPLOYMENT = "w6"
CONTRACT = "w6-request"


@dataclass(frozen=True)
class LockgateConfig:
    name: str
    label: str
    workers: int = 1
    onnx: bool = True
    endpoint: str = "v1"  # v1: POST /v1/endpoints/w6/predict, v2: POST /v2/models/w6/infer
    max_batch_size: int = 32
    max_wait_ms: int = 0
    prediction_log: bool = True
    contract: bool = True

    @property
    def path(self) -> str:
        return f"/v1/endpoints/{DEPLOYMENT}/predict" if self.endpoint == "v1" else f"/v2/models/{DEPLOYMENT}/infer"

    @property
    def settings(self) -> str:
        runtime = "ONNX" if self.onnx else "scikit-learn (--no-onnx)"
        on = ["metrics", *(["prediction log"] if self.prediction_log else []), *(["contract"] if self.contract else [])]
        off = [x for x, flag in (("prediction log", self.prediction_log), ("contract", self.contract)) if not flag]
        return (
            f"lockgate serve --workers {self.workers}, {runtime}, max_batch_size={self.max_batch_size}, "
            f"max_wait_ms={self.max_wait_ms}, POST {self.path}; on: {', '.join(on)}"
            + (f"; OFF: {', '.join(off)}" if off else "")
        )


def _curve_name(size: int, wait: int) -> str:
    return "lockgate-onnx-sig" if (size, wait) == (32, 0) else f"lockgate-onnx-sig-b{size}-w{wait}"


# The batching curve runs with signature validation only (no request contract): with the
# contract on, its per-request cost (not batched) hides what batching does.
CURVE = ((1, 0), (8, 0), (32, 0), (32, 2), (64, 5))
LOCKGATE: dict[str, LockgateConfig] = {
    c.name: c
    for c in (
        LockgateConfig("lockgate-sklearn", "(a) sklearn runtime, 1 worker, /predict", onnx=False),
        LockgateConfig("lockgate-onnx", "(b) ONNX + batching, 1 worker, /predict"),
        LockgateConfig("lockgate-onnx-v2", "(c) ONNX + batching, 1 worker, V2 infer", endpoint="v2"),
        LockgateConfig("lockgate-onnx-w2", "(d) ONNX + batching, 2 workers, /predict", workers=2),
        *(
            LockgateConfig(
                _curve_name(s, w),
                "(b) signature validation only, no contract"
                if (s, w) == (32, 0)
                else f"ONNX, 1 worker, /predict, no contract, batch {s}, wait {w} ms",
                max_batch_size=s,
                max_wait_ms=w,
                contract=False,
            )
            for s, w in CURVE
        ),
        # diagnostics: what the prediction log and the request contract cost
        LockgateConfig(
            "lockgate-onnx-plain", "(b) without prediction log and contract", prediction_log=False, contract=False
        ),
        LockgateConfig("lockgate-onnx-nolog", "(b) without the prediction log", prediction_log=False),
        LockgateConfig(
            "lockgate-sklearn-sig", "(a) signature validation only, no contract", onnx=False, contract=False
        ),
        LockgateConfig("lockgate-sklearn-w2", "sklearn runtime, 2 workers, /predict", onnx=False, workers=2),
    )
}
DEFAULT_ONLY = ",".join(
    [*ANCHORS, "lockgate-sklearn", "lockgate-onnx", "lockgate-onnx-v2", "lockgate-onnx-w2"]
    + [_curve_name(s, w) for s, w in CURVE]
    + ["lockgate-onnx-plain", "inprocess"]
)


def load_module(filename: str, name: str) -> ModuleType:
    """An anchor script as a module, loaded from its file (never copied)."""
    path = anchor_dir() / filename
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load the anchor script {path}; set $LOCKGATE_ANCHORS to the anchors folder")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- preparation ------------------------------------------------------------------------------------


def prepare(wd: Path, common: ModuleType, log: Callable[[str], None]) -> dict[str, Any]:
    """The anchor's files (model.pkl, bodies, expected.json), lockgate's bodies and workspace."""
    expected = prepare_files(wd, common, log)
    home = wd / "lockgate-ws"
    if not home.exists():
        _make_workspace(home, wd / "model.pkl", common)
    return {"expected": expected, "home": home}


def prepare_files(wd: Path, common: ModuleType, log: Callable[[str], None]) -> list[float]:
    """The anchor's files (model.pkl, bodies, expected.json) and lockgate's request bodies
    (``body_lockgate_v1.json``, ``body_lockgate_v2.json``) in ``wd``; returns the expected
    ``predict_proba`` of the request row. Other benchmarks build their workspaces on these."""
    mlflow_py = anchor_python("mlflow")
    if not (wd / "expected.json").exists():
        if mlflow_py.exists():
            log("preparing the model with the anchor's w6_prepare.py (fits the model, ~15-60 s) ...")
            subprocess.run(
                [str(mlflow_py), str(anchor_dir() / "w6_prepare.py"), "--workdir", str(wd)],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        else:  # no MLflow venv: the anchor's own generator, in this venv (no mlflow_model/ for MLflow)
            import pandas as pd

            log("no MLflow venv: fitting the anchor's model here with w6_common.load_or_train ...")
            model = common.load_or_train(str(wd / "model.pkl"))
            for kind, body in common.bodies().items():
                (wd / f"body_{kind}.json").write_text(body)
            row = pd.DataFrame([common.request_row()], columns=common.COLUMNS)
            info = {"expected_proba": model.predict_proba(row)[0].tolist()}
            (wd / "expected.json").write_text(json.dumps(info))
    expected = json.loads((wd / "expected.json").read_text())["expected_proba"]
    row = common.request_row()
    (wd / "body_lockgate_v1.json").write_text(json.dumps({"records": [dict(zip(common.COLUMNS, row, strict=True))]}))
    v2 = {"inputs": [{"name": "input", "shape": [1, common.N_FEATURES], "datatype": "FP64", "data": row}]}
    (wd / "body_lockgate_v2.json").write_text(json.dumps(v2))
    return list(expected)


def _make_workspace(home: Path, model_pkl: Path, common: ModuleType) -> None:
    """Register the anchor's pickled model, a request contract and the deployment ``w6``."""
    import pandas as pd

    import lockgate as lg
    from lockgate.data import Contract

    with model_pkl.open("rb") as f:
        model = pickle.load(f)  # the anchor's own pickle, as its servers load it
    x, _ = common.make_data(200)
    ws = lg.Workspace.open(home)
    try:
        mv = ws.models.register(model, name=DEPLOYMENT, input_example=pd.DataFrame(x, columns=common.COLUMNS))
        columns = {n: {"type": "float64", "nullable": False, "min": -100.0, "max": 100.0} for n in common.COLUMNS}
        ws.data.contracts.register(Contract.from_dict({"name": CONTRACT, "columns": columns, "extra_columns": "error"}))
        ws.deployments.create(DEPLOYMENT, mv.uri, settings=_settings(32, 0))
    finally:
        ws.close()


def _settings(size: int, wait: int, contract: bool = True) -> dict[str, Any]:
    return {"max_batch_size": size, "max_wait_ms": wait, "max_queue": 1024, "contract": CONTRACT if contract else None}


def set_settings(home: Path, cfg: LockgateConfig) -> None:
    """Point the deployment at this run's settings (no server is running meanwhile)."""
    import lockgate as lg

    ws = lg.Workspace.open(home)
    try:
        current = ws.deployments.get(DEPLOYMENT).settings.to_dict()
        want = _settings(cfg.max_batch_size, cfg.max_wait_ms, cfg.contract)
        if any(current.get(k) != v for k, v in want.items()):
            ws.deployments.update(DEPLOYMENT, settings=want)
    finally:
        ws.close()


# -- lockgate's side --------------------------------------------------------------------------------


def _get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def scrape(base: str) -> dict[str, Any]:
    """The batch-size histogram (summed over label sets) and the runtime each model runs on."""
    status, text = _get(base + "/metrics")
    buckets: dict[str, float] = {}
    count = total = 0.0
    runtimes: list[str] = []
    for line in text.splitlines():
        if line.startswith("lockgate_batch_size_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[le] = buckets.get(le, 0.0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith("lockgate_batch_size_count{"):
            count += float(line.rsplit(" ", 1)[1])
        elif line.startswith("lockgate_batch_size_sum{"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("lockgate_model_info{") and float(line.rsplit(" ", 1)[1]) > 0:
            runtimes.append(line.split('runtime="', 1)[1].split('"', 1)[0])
    return {"status": status, "buckets": buckets, "count": count, "sum": total, "runtimes": sorted(set(runtimes))}


def batch_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Model calls and rows per call between two scrapes."""
    calls = after["count"] - before["count"]
    rows = after["sum"] - before["sum"]
    ones = after["buckets"].get("1.0", 0.0) - before["buckets"].get("1.0", 0.0)
    hist = {le: after["buckets"][le] - before["buckets"].get(le, 0.0) for le in after["buckets"]}
    return {
        "model_calls": int(calls),
        "rows": int(rows),
        "mean_rows_per_call": rows / calls if calls else None,
        "share_of_calls_over_1_row": (calls - ones) / calls if calls else None,
        "share_of_rows_in_batches_over_1": (rows - ones) / rows if rows else None,
        "cumulative_buckets": hist,
    }


def check_answer(text: str, expected: list[float], endpoint: str) -> dict[str, Any]:
    """lockgate's first answer against in-process predict_proba."""
    try:
        answer = json.loads(text)
        if endpoint == "v1":
            proba1 = [float(answer["scores"][0])]
            ref = [expected[1]]
            label = answer["predictions"][0]
        else:
            out = {o["name"]: o for o in answer["outputs"]}
            proba1 = [float(x) for x in out["probabilities"]["data"]]
            ref = list(expected)
            label = out["label"]["data"][0]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return {"matches": False, "problem": f"unexpected answer ({exc!r})"}
    diff = max(abs(a - b) for a, b in zip(proba1, ref, strict=True))
    want = int(expected[1] > expected[0])
    return {"matches": diff <= TOLERANCE and label == want, "max_abs_diff": diff, "label": label}


def _log_files(home: Path) -> set[Path]:
    return set((home / "predictions").rglob("*.parquet"))


def _log_rows(files: set[Path]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(f).num_rows for f in files)


def measure_lockgate(
    cfg: LockgateConfig,
    drv: ModuleType,
    wd: Path,
    home: Path,
    expected: list[float],
    rnd: int,
    secs: int,
    c1_secs: int,
    warm_secs: int,
) -> list[dict[str, Any]]:
    """One lockgate server: start, check, warm up, wrk at 32 and at 1 connection, stop."""
    set_settings(home, cfg)
    exe = Path(sys.executable).with_name("lockgate")
    port = drv.free_port()
    cmd = [str(exe), "--home", str(home), "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", str(cfg.workers), *([] if cfg.onnx else ["--no-onnx"])]
    cmd += [] if cfg.prediction_log else ["--no-prediction-log"]
    base_url = f"http://127.0.0.1:{port}"
    url = base_url + cfg.path
    body_file = str(wd / f"body_lockgate_{cfg.endpoint}.json")
    body = Path(body_file).read_text()
    files_before = _log_files(home)
    base: dict[str, Any] = {
        "workload": "W6",
        "config": cfg.name,
        "tool": "lockgate",
        "settings": cfg.settings,
        "round": rnd,
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }
    records: list[dict[str, Any]] = []
    with (wd / f"server_{cfg.name}_r{rnd}.log").open("w") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=wd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            resp = None
            while time.perf_counter() - t0 < 180 and proc.poll() is None:
                try:
                    if _get(base_url + "/v2/health/ready")[0] == 200:
                        status, text = drv.post(url, body)
                        if status == 200:
                            resp = text
                            break
                except (OSError, http.client.HTTPException):  # not listening yet, or 503 while loading
                    pass
                time.sleep(0.25)
            base["startup_s"] = round(time.perf_counter() - t0, 2)
            if resp is None:
                log.flush()
                tail = Path(log.name).read_text()[-2000:]
                return [dict(base, error="server did not answer 200", log_tail=tail)]
            answered = 1 + _all_workers_ready(drv, url, body, cfg.workers)
            check = check_answer(resp, expected, cfg.endpoint)
            runtime = scrape(base_url)["runtimes"]
            warm, _ = drv.run_wrk(url, body_file, 32, 2, warm_secs)  # warm-up, discarded
            answered += warm["requests"]
            runs = [(32, 2, secs)] + ([(1, 1, c1_secs)] if c1_secs > 0 else [])
            for conns, threads, d in runs:
                before = scrape(base_url)
                res, _ = drv.run_wrk(url, body_file, conns, threads, d)
                after = scrape(base_url)
                answered += res["requests"]
                records.append(
                    dict(
                        base,
                        connections=conns,
                        threads=threads,
                        duration_req_s=d,
                        **res,
                        server_rss_mb=drv.tree_rss_mb(proc.pid),
                        runtime=runtime,
                        batches=batch_delta(before, after),
                        response=resp[:300],
                        response_matches=check["matches"],
                        check=check,
                    )
                )
        finally:
            drv.stop(proc)
    logged = _log_rows(_log_files(home) - files_before)
    for r in records:
        r["prediction_log_rows"] = logged
        r["requests_counted_by_wrk_and_checks"] = answered
    return records


def _all_workers_ready(drv: ModuleType, url: str, body: str, workers: int) -> int:
    """With several workers the first 200 came from one of them: wait until fresh connections
    (which the kernel spreads over the workers) all answer 200. Returns the requests sent."""
    if workers < 2:
        return 0
    sent = 0
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline:
        ok = 0
        for _ in range(8 * workers):
            sent += 1
            with contextlib.suppress(OSError, http.client.HTTPException):
                ok += drv.post(url, body)[0] == 200
        if ok == 8 * workers:
            break
        time.sleep(0.5)
    return sent


# -- the anchors' side: their own driver --------------------------------------------------------------


def measure_anchor(
    name: str,
    drv: ModuleType,
    wd: Path,
    expected: list[float],
    rnd: int,
    versions: dict[str, Any],
    a: argparse.Namespace,
) -> list[dict[str, Any]]:
    """The anchor driver's own ``measure()``, unchanged; its JSON lines are collected."""
    out = io.StringIO()
    load = round(os.getloadavg()[0], 2)
    with contextlib.redirect_stdout(io.StringIO()):
        drv.measure(
            name, drv.configs(str(wd))[name], str(wd), expected, rnd, out, versions, a.secs, a.c1_secs, a.warm_secs
        )
    records = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    for r in records:
        r["loadavg_1m_at_start"] = load
    return records


def measure_inprocess(wd: Path, calls: int) -> dict[str, Any]:
    """bench/w6_inprocess_runtimes.py on the anchor's pickle: bare and lockgate runtime calls."""
    script = Path(__file__).resolve().with_name("w6_inprocess_runtimes.py")
    cmd = [sys.executable, str(script), "--calls", str(calls), "--repeats", "1", "--model", str(wd / "model.pkl")]
    out = run_json_process(cmd, label="in-process timings")
    return {
        "p50_us": {k: v["1"][0] for k, v in out["p50_us"].items()},
        "p99_us": {k: v["1"][0] for k, v in out["p99_us"].items()},
        "loadavg_1m_at_start": out.get("machine", {}).get("loadavg", [None])[0],
    }


# -- aggregation and report ---------------------------------------------------------------------------


def med(xs: list[float]) -> dict[str, Any] | None:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)} if xs else None


def aggregate(records: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    """Per config and connection count: req/s, p50, p99 as median (min-max, n), errors summed."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in records:
        if "connections" in r:
            groups.setdefault((r["config"], r["connections"]), []).append(r)
    for (name, conns), rs in groups.items():
        errors = sum(int(r[k]) for r in rs for k in ("non2xx", "connect_err", "read_err", "write_err", "timeout_err"))
        agg: dict[str, Any] = {
            "rps": med([r["rps"] for r in rs]),
            "p50_ms": med([r["p50_ms"] for r in rs]),
            "p99_ms": med([r["p99_ms"] for r in rs]),
            "errors": errors,
            "rss_mb": med([r["server_rss_mb"] for r in rs]),
            "matches": all(r.get("response_matches") for r in rs),
            "source": "same session",
        }
        batches = [r["batches"] for r in rs if r.get("batches", {}).get("mean_rows_per_call") is not None]
        if batches:
            agg["mean_rows_per_call"] = med([b["mean_rows_per_call"] for b in batches])
            agg["share_of_calls_over_1_row"] = med([b["share_of_calls_over_1_row"] for b in batches])
            agg["largest_bucket"] = max(_largest(b["cumulative_buckets"]) for b in batches)
        out.setdefault(name, {})[conns] = agg
    return out


def _largest(cumulative: dict[str, float]) -> str:
    """The upper bound of the largest non-empty batch-size bucket ("<= 16")."""
    bounds = sorted(((float(k), v) for k, v in cumulative.items() if k != "+Inf"), key=lambda kv: kv[0])
    top = max((v for _, v in bounds), default=0.0)
    for le, v in bounds:
        if v >= top:
            return f"<= {le:g}"
    return "-"


def published(name: str) -> dict[int, dict[str, Any]]:
    return {
        conns: {
            "rps": {"median": rps, "n": 3},
            "p50_ms": {"median": p50, "n": 3},
            "p99_ms": {"median": p99, "n": 3},
            "errors": 0,
            "matches": True,
            "source": "published 2026-11-29",
        }
        for conns, (rps, p50, p99) in PUBLISHED[name].items()
    }


def fig(x: float | None, digits: int | None = None) -> str:
    if x is None:
        return "-"
    if digits is None:
        digits = 0 if abs(x) >= 100 else 1 if abs(x) >= 10 else 2
    return f"{x:,.{digits}f}"


def cell(stat: dict[str, Any] | None, digits: int | None = None) -> str:
    if not stat:
        return "-"
    s = fig(stat["median"], digits)
    if stat.get("n", 1) > 1 and "min" in stat:
        s += f" ({fig(stat['min'], digits)}-{fig(stat['max'], digits)})"
    return s


def value(agg: dict[str, dict[int, dict[str, Any]]], name: str, conns: int, key: str) -> float | None:
    stat = agg.get(name, {}).get(conns, {}).get(key)
    return None if not stat else float(stat["median"])


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def fx(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x" if x < 10 else f"{x:.1f}x"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=3, help="rounds; each runs every configuration once (default 3)")
    ap.add_argument("--secs", type=int, default=20, help="wrk seconds at 32 connections (default 20)")
    ap.add_argument("--c1-secs", type=int, default=10, help="wrk seconds at 1 connection (default 10)")
    ap.add_argument("--warm-secs", type=int, default=5, help="warm-up seconds at 32 connections (default 5)")
    ap.add_argument("--inprocess-calls", type=int, default=2000, help="timed calls per in-process method")
    ap.add_argument("--quick", action="store_true", help="development: 1 round, 5 s / 3 s / 2 s wrk runs")
    ap.add_argument("--only", default=DEFAULT_ONLY, help=f"configurations, comma-separated (default {DEFAULT_ONLY})")
    ap.add_argument(
        "--lockgate-only", action="store_true", help="skip the anchors; compare with their published figures"
    )
    ap.add_argument("--workdir", type=Path, default=None, help="reuse a prepared folder (kept); default: a temp dir")
    ap.add_argument("--out-dir", type=Path, default=REPO_ROOT / "bench" / "results", help="where JSON and HTML go")
    a = ap.parse_args(argv)
    if a.quick:
        a.rounds, a.secs, a.c1_secs, a.warm_secs, a.inprocess_calls = 1, 5, 3, 2, 300

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    if shutil.which("wrk") is None:
        print("wrk is not on PATH (apt-get install -y wrk)", file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    machine = machine_info()
    source = git_state()
    drv = load_module("w6_online.py", "w6_online_anchor")
    common = load_module("w6_common.py", "w6_common")
    names = [n for n in a.only.split(",") if n]
    unknown = [n for n in names if n not in LOCKGATE and n not in PUBLISHED and n != "inprocess"]
    if unknown:
        print(f"unknown configuration(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    anchor_cfgs = drv.configs("")
    missing = {}
    for n in [n for n in names if n in PUBLISHED]:
        venv_python = Path(drv.vbin(anchor_cfgs[n]["venv"], "python"))
        if a.lockgate_only:
            missing[n] = "--lockgate-only"
        elif not venv_python.exists():
            missing[n] = f"venv missing ({venv_python}; {anchor_dir() / 'setup.sh'} {anchor_cfgs[n]['venv'][5:]})"
    if missing:
        for n, why in missing.items():
            log(f"{n}: {why}: using its published figures")
    run_names = [n for n in names if n not in missing]
    if not any(n in LOCKGATE for n in run_names):
        print("no lockgate configuration selected", file=sys.stderr)
        return 2

    keep = a.workdir is not None
    wd = a.workdir or Path(tempfile.mkdtemp(prefix="lockgate-w6-"))
    wd.mkdir(parents=True, exist_ok=True)
    wd = wd.resolve()
    try:
        prep = prepare(wd, common, log)
        versions: dict[str, Any] = {}
        for n in run_names:
            if n in PUBLISHED:
                venv = anchor_cfgs[n]["venv"]
                versions.setdefault(venv, drv.version(venv))
        records: list[dict[str, Any]] = []
        inproc: list[dict[str, Any]] = []
        for rnd in range(1, a.rounds + 1):
            k = (rnd - 1) % len(run_names)
            order = run_names[k:] + run_names[:k]
            if rnd % 2 == 0:
                order = order[::-1]
            for n in order:
                log(f"round {rnd}/{a.rounds}: {n} (load {os.getloadavg()[0]:.2f})")
                if n == "inprocess":
                    inproc.append(measure_inprocess(wd, a.inprocess_calls))
                    continue
                if n in LOCKGATE:
                    rs = measure_lockgate(
                        LOCKGATE[n], drv, wd, prep["home"], prep["expected"], rnd, a.secs, a.c1_secs, a.warm_secs
                    )
                else:
                    rs = measure_anchor(n, drv, wd, prep["expected"], rnd, versions, a)
                records.extend(rs)
                for r in rs:
                    if "error" in r:
                        log(f"  {n}: ERROR {r['error']}\n{r.get('log_tail', '')}")
                    else:
                        extra = ""
                        if r.get("batches"):
                            extra = f", {r['batches']['mean_rows_per_call'] or 0:.1f} rows/call"
                        log(
                            f"  c={r['connections']}: {r['rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms, "
                            f"p99 {r['p99_ms']:.2f} ms, errors {r['non2xx']}{extra}"
                        )
        return report(a, records, inproc, missing, names, started, machine, source, versions, wd, prep)
    finally:
        if not keep:
            shutil.rmtree(wd, ignore_errors=True)


def report(
    a: argparse.Namespace,
    records: list[dict[str, Any]],
    inproc: list[dict[str, Any]],
    missing: dict[str, str],
    names: list[str],
    started: datetime,
    machine: dict[str, Any],
    source: dict[str, Any],
    versions: dict[str, Any],
    wd: Path,
    prep: dict[str, Any],
) -> int:
    import lockgate

    agg = aggregate(records)
    for n in missing:
        agg[n] = published(n)
    errors = [r for r in records if "error" in r]
    lg_names = [n for n in names if n in LOCKGATE]
    anchors = [n for n in names if n in PUBLISHED]
    lg_v = lockgate.__version__
    if source["commit"]:
        lg_v += f" @ {source['commit']}{' + uncommitted src changes' if source['dirty'] else ''}"
    loads = [r["loadavg_1m_at_start"] for r in records if r.get("loadavg_1m_at_start") is not None]
    ended = datetime.now(UTC)
    lines: list[str] = []

    def say(text: str = "") -> None:
        lines.append(text)
        print(text)

    say(
        f"W6 online serving, {a.rounds} round(s), wrk {a.secs} s at 32 connections (-t2) after {a.warm_secs} s warm-up, "
        f"{a.c1_secs} s at 1 connection; {started:%Y-%m-%d %H:%M}-{ended:%H:%M} UTC"
    )
    say(
        f"lockgate {lg_v}; {machine['cores']} cores, {machine['cpu']}, Python {machine['python']}; "
        f"1-minute load {min(loads, default=0):.1f}-{max(loads, default=0):.1f} at the starts of the runs"
    )
    say(
        "The machine is shared (other helpers run test suites on it) and wrk runs on the same cores as the "
        "servers: read the same-session ratios, not the absolute figures."
    )
    for venv, (v, sk) in versions.items():
        say(f"anchor {venv}: {v}, scikit-learn {sk}")
    for n, why in missing.items():
        say(f"{n}: NOT run in this session ({why}); its row shows the anchors' published figures.")
    say()

    # main table
    rows = []
    for n in [*lg_names, *anchors]:
        c32, c1 = agg.get(n, {}).get(32, {}), agg.get(n, {}).get(1, {})
        label = LOCKGATE[n].label if n in LOCKGATE else ANCHOR_LABEL[n] + (" [published]" if n in missing else "")
        rows.append(
            [
                n,
                label,
                cell(c32.get("rps")),
                cell(c32.get("p50_ms")),
                cell(c32.get("p99_ms")),
                str(c32.get("errors", "-")),
                cell(c1.get("rps")),
                cell(c1.get("p50_ms")),
                cell(c1.get("p99_ms")),
                cell(c32.get("rss_mb"), 0),
            ]
        )
    main_header = ["config", "what", "req/s c=32", "p50 ms", "p99 ms", "errors", "req/s c=1", "p50 ms c=1"]
    main_header += ["p99 ms c=1", "RSS MB"]
    main_table = render_table(main_header, rows)
    say(main_table)
    say()

    # ratios against each anchor
    goal_rows = [n for n in lg_names if not n.startswith("lockgate-onnx-sig-b")]
    judged = [n for n in goal_rows if LOCKGATE[n].prediction_log]
    ratio_rows = []
    for n in goal_rows:
        row = [n]
        for anc in anchors:
            r32 = ratio(value(agg, n, 32, "rps"), value(agg, anc, 32, "rps"))
            p99 = ratio(value(agg, anc, 32, "p99_ms"), value(agg, n, 32, "p99_ms"))
            p50c1 = ratio(value(agg, anc, 1, "p50_ms"), value(agg, n, 1, "p50_ms"))
            row.append(f"{fx(r32)} / {fx(p99)} / {fx(p50c1)}")
        ratio_rows.append(row)
    ratio_header = ["lockgate vs", *[f"{x}{' [pub]' if x in missing else ''}" for x in anchors]]
    ratio_table = render_table(ratio_header, ratio_rows) if anchors else ""
    if anchors:
        say("ratios: req/s at c=32 (lockgate/anchor) / p99 at c=32 (anchor/lockgate) / p50 at c=1 (anchor/lockgate)")
        say(ratio_table)
        say()

    # overhead against a bare in-process call
    inp_p50 = {k: statistics.median(r["p50_us"][k] for r in inproc) for k in (inproc[0]["p50_us"] if inproc else {})}
    inp_src = "same session" if inp_p50 else "published (anchor README)"
    if not inp_p50:
        inp_p50 = dict(PUBLISHED_INPROCESS_US)
    over_rows = []
    for n in [*goal_rows, *[x for x in anchors if x.startswith("fastapi")]]:
        p50c1 = value(agg, n, 1, "p50_ms")
        if n in LOCKGATE:
            rt_key = "lockgate_onnx" if LOCKGATE[n].onnx else "lockgate_sklearn"
            bare_key = "onnx_bare" if LOCKGATE[n].onnx else "sklearn_numpy"
        else:
            rt_key = bare_key = "sklearn_numpy"
        rt, bare = inp_p50.get(rt_key), inp_p50.get(bare_key)
        over_rows.append(
            [
                n,
                fig(p50c1 * 1000 if p50c1 is not None else None, 0),
                f"{bare_key} {fig(bare, 1)}",
                f"{rt_key} {fig(rt, 1)}",
                fig(p50c1 * 1000 - bare if p50c1 is not None and bare is not None else None, 0),
                fig(p50c1 * 1000 - rt if p50c1 is not None and rt is not None else None, 0),
            ]
        )
    over_header = ["config", "c=1 p50 µs", "bare call p50 µs", "runtime call p50 µs", "over bare µs", "over runtime µs"]
    over_table = render_table(over_header, over_rows)
    say(f"overhead per request at 1 connection against a bare in-process single-row call ({inp_src}):")
    say(over_table)
    if inproc:
        say(
            "in-process single row, p50 µs: "
            + ", ".join(f"{k} {fig(v, 1)}" for k, v in inp_p50.items())
            + f" (median of {len(inproc)} process(es), {a.inprocess_calls} calls each)"
        )
    say()

    # batching curve
    curve_rows = []
    curve_points = []
    for s, w in CURVE:
        n = _curve_name(s, w)
        if n not in agg:
            continue
        c32, c1 = agg[n].get(32, {}), agg[n].get(1, {})
        curve_points.append((s, w, n))
        curve_rows.append(
            [
                f"({s}, {w})",
                cell(c32.get("rps")),
                cell(c32.get("p50_ms")),
                cell(c32.get("p99_ms")),
                fig(c32.get("mean_rows_per_call", {}).get("median") if c32.get("mean_rows_per_call") else None, 1),
                c32.get("largest_bucket", "-"),
                cell(c1.get("p50_ms")),
                cell(c1.get("p99_ms")),
                str(c32.get("errors", "-")),
            ]
        )
    curve_header = ["(max_batch_size, max_wait_ms)", "req/s c=32", "p50 ms", "p99 ms", "rows/model call"]
    curve_header += ["largest batch", "p50 ms c=1", "p99 ms c=1", "errors"]
    curve_table = render_table(curve_header, curve_rows) if curve_rows else ""
    if curve_rows:
        say(
            "batching curve (ONNX, 1 worker, /predict; rows per model call from the lockgate_batch_size histogram at c=32):"
        )
        say(curve_table)
        say()

    # goals
    goals: list[dict[str, Any]] = []

    def goal(text: str, measured: str, ok: bool | None) -> None:
        goals.append({"goal": text, "measured": measured, "pass": ok})

    def at_least(n: str, anc: str, factor: float, text: str) -> None:
        if n in agg and anc in agg:
            r = ratio(value(agg, n, 32, "rps"), value(agg, anc, 32, "rps"))
            src = " (anchor published)" if anc in missing else ""
            goal(text, f"{fx(r)}{src}", r is not None and r >= factor)

    at_least("lockgate-sklearn", "fastapi-w1", 1.0, "(a) sklearn, 1 worker >= thin reference, 1 worker (req/s c=32)")
    at_least("lockgate-onnx", "fastapi-w1", 1.0, "(b) ONNX, 1 worker >= thin reference, 1 worker (req/s c=32)")
    at_least("lockgate-onnx-sig", "fastapi-w1", 1.0, "ONNX, no contract, 1 worker >= thin reference, 1 worker")
    at_least(
        "lockgate-sklearn-w2", "fastapi-w2-nodelay", 1.0, "sklearn, 2 workers >= thin reference, 2 workers + nodelay"
    )
    at_least(
        "lockgate-onnx-w2", "fastapi-w2-nodelay", 1.0, "(d) ONNX, 2 workers >= thin reference, 2 workers + nodelay"
    )
    at_least("lockgate-sklearn", "mlflow-default", 15.0, "(a) sklearn, 1 worker >= 15x MLflow")
    at_least("lockgate-sklearn", "bento-batch", 2.5, "(a) sklearn, 1 worker >= 2.5x BentoML (adaptive batching)")
    for n in judged:
        p99 = value(agg, n, 32, "p99_ms")
        goal(
            f"{n}: p99 < {GOAL_P99_MS:g} ms at 32 connections", f"{fig(p99)} ms", p99 is not None and p99 < GOAL_P99_MS
        )
    for n in judged:
        p50 = value(agg, n, 1, "p50_ms")
        goal(
            f"{n}: p50 < {GOAL_C1_P50_MS:g} ms at 1 connection",
            f"{fig(p50)} ms",
            p50 is not None and p50 < GOAL_C1_P50_MS,
        )
    for n in ("lockgate-onnx", "lockgate-onnx-v2", "lockgate-onnx-sig"):
        rps = value(agg, n, 32, "rps")
        if rps is not None:
            goal(
                f"{n}: ONNX + batching >= {GOAL_ONNX_RPS:,.0f} req/s, 1 worker",
                f"{fig(rps)} req/s",
                rps >= GOAL_ONNX_RPS,
            )
    at_least("lockgate-onnx", "fastapi-w1", 2.0, "(b) ONNX + batching >= 2x thin reference, 1 worker")
    at_least("lockgate-onnx-sig", "fastapi-w1", 2.0, "ONNX + batching, no contract >= 2x thin reference, 1 worker")
    mean_rows = agg.get("lockgate-onnx", {}).get(32, {}).get("mean_rows_per_call")
    if mean_rows:
        goal(
            "(b) real batches at 32 connections (mean rows per model call > 1)",
            f"{mean_rows['median']:.2f} rows/call",
            mean_rows["median"] > 1,
        )
    lg_records = [r for r in records if r.get("tool") == "lockgate" and "connections" in r]
    matches = all(r.get("response_matches") for r in lg_records) and not errors
    diffs = [r["check"].get("max_abs_diff", math.inf) for r in lg_records]
    goal(
        f"every lockgate first answer matches predict_proba within {TOLERANCE:g}",
        f"max |diff| {max(diffs, default=math.nan):.2g}",
        matches,
    )
    anchor_ok = all(r.get("response_matches") for r in records if r.get("tool") != "lockgate" and "connections" in r)
    short = []
    seen_runs = set()
    for r in lg_records:
        key = (r["config"], r["round"])
        if key in seen_runs:
            continue
        seen_runs.add(key)
        if LOCKGATE[r["config"]].prediction_log and r["prediction_log_rows"] < r["requests_counted_by_wrk_and_checks"]:
            short.append(f"{key[0]} r{key[1]}: {r['prediction_log_rows']} < {r['requests_counted_by_wrk_and_checks']}")
    goal(
        "prediction log holds a row for every answered request",
        "all runs" if not short else "; ".join(short),
        not short,
    )
    goal_table = render_table(
        ["goal", "measured", "result"],
        [[g["goal"], g["measured"], "PASS" if g["pass"] else "FAIL"] for g in goals],
    )
    say(goal_table)
    say()
    runtimes = sorted({(r["config"], ",".join(r.get("runtime", []))) for r in lg_records})
    say("runtime each lockgate server chose: " + "; ".join(f"{n}: {rt}" for n, rt in runtimes))
    say(f"anchors' own answer checks: {'all matched' if anchor_ok else 'MISMATCH'}")
    if errors:
        say("servers that did not answer: " + ", ".join(f"{r['config']} r{r['round']}" for r in errors))

    summary = {
        "workload": "W6_online",
        "date": started.isoformat(timespec="seconds"),
        "ended": ended.isoformat(timespec="seconds"),
        "rounds": a.rounds,
        "secs": {"c32": a.secs, "c1": a.c1_secs, "warm": a.warm_secs},
        "machine": machine,
        "versions": {"lockgate": lg_v, **{k: list(v) for k, v in versions.items()}},
        "published_anchors": missing,
        "configs": {n: LOCKGATE[n].settings for n in lg_names},
        "aggregate": {n: {str(c): v for c, v in per.items()} for n, per in agg.items()},
        "inprocess": {"source": inp_src, "p50_us": inp_p50, "processes": inproc},
        "goals": goals,
        "records": records,
    }
    a.out_dir.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    json_path = a.out_dir / f"w6_online-{stamp}.json"
    json_path.write_text(json.dumps(summary, indent=1, default=str))
    html_path = a.out_dir / f"w6_online-{stamp}.html"
    write_html(html_path, agg, curve_points, anchors, goal_rows, missing, lines)
    print(f"\nJSON: {json_path}\nHTML: {html_path}")
    print(json.dumps({k: v for k, v in summary.items() if k != "records"}, default=str))
    return 0 if all(g["pass"] for g in goals) and anchor_ok else 1


def write_html(
    path: Path,
    agg: dict[str, dict[int, dict[str, Any]]],
    curve: list[tuple[int, int, str]],
    anchors: list[str],
    lg_rows: list[str],
    missing: dict[str, str],
    lines: list[str],
) -> None:
    """A self-contained page: the batching curve and every configuration at 32 connections
    (plotly, its JavaScript bundled in the page), then the printed report."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig_ = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(
            "Batching curve: ONNX, 1 worker, 32 connections",
            "Every configuration at 32 connections (same session unless marked)",
        ),
    )
    xs = [value(agg, n, 32, "rps") for _, _, n in curve]
    labels = [f"({s}, {w})" for s, w, _ in curve]
    for key, dash in (("p50_ms", "solid"), ("p99_ms", "dot")):
        fig_.add_trace(
            go.Scatter(
                x=xs,
                y=[value(agg, n, 32, key) for _, _, n in curve],
                mode="lines+markers+text",
                text=labels,
                textposition="top center",
                name=f"lockgate {key[:3]} (max_batch_size, max_wait_ms)",
                line={"dash": dash},
            ),
            row=1,
            col=1,
        )
    for names, group in ((lg_rows, "lockgate"), (anchors, "anchors")):
        pts = [n for n in names if n in agg and 32 in agg[n]]
        fig_.add_trace(
            go.Scatter(
                x=[value(agg, n, 32, "rps") for n in pts],
                y=[value(agg, n, 32, "p99_ms") for n in pts],
                mode="markers+text",
                text=[n + (" [published]" if n in missing else "") for n in pts],
                textposition="top center",
                name=f"{group}: p99",
                marker={"size": 10, "symbol": "circle" if group == "lockgate" else "diamond"},
            ),
            row=1,
            col=2,
        )
    fig_.update_xaxes(title_text="throughput, req/s")
    fig_.update_yaxes(title_text="latency, ms (log)", type="log")
    fig_.update_layout(height=560, template="plotly_white", legend={"orientation": "h", "y": -0.2})
    plot = fig_.to_html(include_plotlyjs=True, full_html=False)
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>lockgate W6 online serving</title></head>"
        "<body style='font-family: sans-serif; margin: 2em'><h1>lockgate W6 online serving</h1>"
        f"{plot}<pre style='font-size: 12px'>{html.escape(chr(10).join(lines))}</pre></body></html>"
    )
    path.write_text(page, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
