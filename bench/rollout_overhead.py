"""Rollout overhead: what a running canary analysis and a shadow cost ``lockgate serve``.

The issue's goals (serving, performance section): "shadow adds under 5% to the stable
version's p50; the canary analysis costs under 2% of throughput". Measured side by side in one
run, as ratios against the same server with no rollout.

Workload: W6's (``bench/w6_online.py``, imported from its file): the anchor's model
(GradientBoostingClassifier, 100 trees of depth 3, fitted on 20,000 x 20 rows of
``w6_common.make_data``) and its one-record JSON request, prepared by ``w6_online.prepare_files``
(the anchor's ``w6_prepare.py`` in the MLflow anchor venv when it exists, else the anchor's own
``w6_common.load_or_train`` in this venv). A workspace gets two versions of the model: v1 the
anchor's pickle, v2 an identical retrain (``w6_common.train_model()`` again; same seed, so the
same trees, checked). Deployment ``w6`` follows ``models:/w6@champion`` (v1), served as W6's
``lockgate-onnx-sig``: ONNX runtime, 1 worker, max_batch_size 32, max_wait_ms 0, signature
validation, metrics and the prediction log on, POST /v1/endpoints/w6/predict.

Configurations, each in a fresh ``lockgate serve``, the rollout started before the server starts
and rolled back after it stops:

  plain    no rollout
  canary   ws.rollouts.canary("w6", "models:/w6/2", steps=(50, 100), interval="1s") with
           min_requests 10**9, so every analysis holds and the canary stays at 50% all run: the
           server counts every request for its arm, flushes the counts every second and runs
           the analysis every interval (it holds the lease), writing an audit event each time
  shadow   ws.rollouts.shadow("w6", "models:/w6/2"): every request is scored again on v2 off the
           response path, compared with the primary's answer and logged
  split    ws.rollouts.split("w6", "models:/w6/2", percent=50): the same 50/50 routing, two
           batchers and per-arm counting and flushing as the canary, but no analysis: what the
           canary is compared with for the analysis's own cost (a canary at 50% serves two
           model versions whatever tool runs it; the goal is about what the analysis adds)
  plain2   plain again (an A/A control: the noise floor of the ratios on this machine)

Diagnostics, opt-in (``--configs plain,canary,split,canary1``), to take the canary's cost apart:

  canary1  the canary with steps=(1, 100): analysis, counting and flushing as the canary, but
           99% of requests on one batcher (batches stay whole)

Per configuration and round, as in ``w6_online.py`` (its ``measure_lockgate``, the anchor
driver's wrk helpers): a warm-up at 32 connections (discarded), ``wrk -t2 -c32``, then
``wrk -t1 -c1``. The order rotates every round and reverses on even rounds. Figures are medians
over rounds; ratios are ratios of the medians (per-round ratios shown beside them).

Checks that the rollouts did their work (a benchmark of a no-op is worthless): during canary,
analyses ran (the rollout's ``analyses`` counter and ``deployment.rollout.analysis`` audit events,
whose windows counted requests on both arms) and the canary stayed at 50%; during shadow, the
``shadow`` arm compared answers (``ws.rollouts.status``) and the prediction log holds the
shadow's rows.

    .venv/bin/python bench/rollout_overhead.py              # 3 rounds, 20 s / 10 s runs (~9 min)
    .venv/bin/python bench/rollout_overhead.py --quick      # 1 round, 5 s / 3 s runs (~2 min)
    .venv/bin/python bench/rollout_overhead.py --rounds 5 --workdir /tmp/ro   # keep and reuse the files
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pickle
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO_ROOT, anchor_python, git_state, machine_info, render_table

DEPLOYMENT = "w6"  # w6_online.DEPLOYMENT: its measure_lockgate serves this name
CANDIDATE = f"models:/{DEPLOYMENT}/2"
CONFIGS = ("plain", "canary", "split", "shadow", "plain2")
# Diagnostics (opt-in with --configs): what the canary's cost is made of.
DIAGNOSTICS = ("canary1",)
CANARY_INTERVAL = "1s"
CANARY_STEPS = (50, 100)
CANARY1_STEPS = (1, 100)
HOLD_POLICY = {"min_requests": 10**9}  # never enough traffic to judge: every analysis holds
GOAL_CANARY_RPS = 0.98  # canary req/s / plain req/s at 32 connections
GOAL_SHADOW_P50 = 1.05  # shadow p50 / plain p50
_ANALYSIS = "deployment.rollout.analysis"


def load_w6_online() -> ModuleType:
    """``bench/w6_online.py`` as a module, loaded from its file."""
    path = Path(__file__).resolve().with_name("w6_online.py")
    spec = importlib.util.spec_from_file_location("bench_w6_online", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# -- preparation ------------------------------------------------------------------------------------


def build_workspace(
    home: Path, wd: Path, w6: ModuleType, common: ModuleType, serve_cfg: Any, log: Any
) -> dict[str, Any]:
    """v1 (the anchor's pickle) and v2 (an identical retrain) of ``w6``, alias champion -> 1,
    deployment ``w6`` following the alias with ``serve_cfg``'s settings."""
    import pandas as pd

    import lockgate as lg

    with (wd / "model.pkl").open("rb") as f:
        v1 = pickle.load(f)
    log("retraining the model for v2 (w6_common.train_model, the same seed) ...")
    t0 = time.perf_counter()
    v2 = common.train_model()
    retrain_s = time.perf_counter() - t0
    x, _ = common.make_data(200)
    frame = pd.DataFrame(x, columns=common.COLUMNS)
    diff = float(np.abs(v1.predict_proba(frame) - v2.predict_proba(frame)).max())
    ws = lg.Workspace.open(home)
    try:
        for model in (v1, v2):
            ws.models.register(model, name=DEPLOYMENT, input_example=frame)
        ws.models.set_alias(DEPLOYMENT, "champion", 1)
        ws.deployments.create(DEPLOYMENT, f"models:/{DEPLOYMENT}@champion")
    finally:
        ws.close()
    w6.set_settings(home, serve_cfg)
    return {"retrain_s": round(retrain_s, 1), "v1_v2_max_abs_diff_on_200_rows": diff}


class CpuMeteredDriver:
    """The anchor driver, with ``run_wrk`` also reporting the CPU time the server used during
    the run (``server_cpu_s``, ``server_cpu_us_per_request``: every thread of the process
    serving the URL's port, from ``/proc``). On a shared machine the server's CPU per request
    is a steadier measure of what a configuration costs than its throughput, which also
    follows whatever else runs."""

    def __init__(self, drv: ModuleType) -> None:
        self._drv = drv

    def __getattr__(self, name: str) -> Any:
        return getattr(self._drv, name)

    def run_wrk(self, url: str, body_file: str, conns: int, threads: int, secs: int) -> tuple[dict[str, Any], str]:
        port = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]
        pids = _serving_pids(port)
        before = sum(_cpu_s(p) for p in pids)
        res, out = self._drv.run_wrk(url, body_file, conns, threads, secs)
        used = sum(_cpu_s(p) for p in pids) - before
        if pids:
            res = dict(res, server_cpu_s=round(used, 3))
            if res.get("requests"):
                res["server_cpu_us_per_request"] = round(used / res["requests"] * 1e6, 2)
        return res, out


def _serving_pids(port: str) -> list[int]:
    """The ``lockgate serve`` processes started with ``--port PORT`` (one with 1 worker)."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            argv = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [w.decode(errors="replace") for w in argv]
        if (
            "serve" in words
            and "--port" in words
            and words[words.index("--port") + 1 : words.index("--port") + 2] == [port]
        ):
            pids.append(int(d))
    return pids


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- rollouts ---------------------------------------------------------------------------------------


def _analysis_events(ws: Any, after_seq: int) -> list[Any]:
    events = ws.audit.events(object_kind="deployment", object_id=DEPLOYMENT, limit=100_000)
    return [e for e in events if e.seq > after_seq and e.action == _ANALYSIS]


def start_rollout(home: Path, name: str) -> dict[str, Any]:
    """Make sure nothing is left over, then start ``name``'s rollout (none for plain)."""
    import lockgate as lg

    ws = lg.Workspace.open(home)
    try:
        if ws.deployments.get(DEPLOYMENT).rollout is not None:
            ws.rollouts.rollback(DEPLOYMENT, reason="rollout_overhead: left over from an earlier run")
        last = ws.audit.events(object_kind="deployment", object_id=DEPLOYMENT, limit=1)
        state = {"audit_seq_before": last[0].seq if last else 0, "started_ms": int(time.time() * 1000)}
        if name in ("canary", "canary1"):
            steps = CANARY_STEPS if name == "canary" else CANARY1_STEPS
            ws.rollouts.canary(DEPLOYMENT, CANDIDATE, steps=steps, interval=CANARY_INTERVAL, policy=HOLD_POLICY)
        elif name == "split":
            ws.rollouts.split(DEPLOYMENT, CANDIDATE, percent=50)
        elif name == "shadow":
            ws.rollouts.shadow(DEPLOYMENT, CANDIDATE)
        return state
    finally:
        ws.close()


def end_rollout(home: Path, name: str, state: dict[str, Any], elapsed_s: float) -> dict[str, Any]:
    """What the rollout did while the server ran (read after it stopped, so every count is
    flushed), then roll it back."""
    import lockgate as lg

    ws = lg.Workspace.open(home)
    try:
        deployment = ws.deployments.get(DEPLOYMENT)
        rollout = deployment.rollout
        out: dict[str, Any] = {}
        if name in ("canary", "canary1"):
            events = _analysis_events(ws, state["audit_seq_before"])
            verdicts = [e.details.get("verdict", {}) for e in events]
            outcomes: dict[str, int] = {}
            for v in verdicts:
                outcomes[v.get("outcome", "?")] = outcomes.get(v.get("outcome", "?"), 0) + 1
            out = {
                "still_running": rollout is not None and rollout.strategy == "canary",
                "percent_at_end": None if rollout is None else round(rollout.weight * 100, 3),
                "analyses_counter": None if rollout is None else rollout.analyses,
                "analysis_events": len(events),
                "analyses_per_s": round(len(events) / elapsed_s, 2) if elapsed_s else None,
                "outcomes": outcomes,
                "windows_with_traffic_on_both_arms": sum(
                    1
                    for v in verdicts
                    if v.get("canary", {}).get("requests", 0) > 0 and v.get("stable", {}).get("requests", 0) > 0
                ),
                "max_canary_requests_in_a_window": max(
                    (v.get("canary", {}).get("requests", 0) for v in verdicts), default=0
                ),
                "max_stable_requests_in_a_window": max(
                    (v.get("stable", {}).get("requests", 0) for v in verdicts), default=0
                ),
            }
            out["did_work"] = bool(
                out["still_running"]
                and out["percent_at_end"] == (CANARY_STEPS if name == "canary" else CANARY1_STEPS)[0]
                and out["windows_with_traffic_on_both_arms"] > 0
            )
        elif name == "shadow":
            arms = {a["role"]: a for a in ws.rollouts.status(DEPLOYMENT).arms}
            primary, shadow = arms.get("primary", {}), arms.get("shadow", {})
            out = {
                "still_running": rollout is not None and rollout.strategy == "shadow",
                "primary_requests": primary.get("requests", 0),
                "shadow_requests": shadow.get("requests", 0),
                "shadow_errors": shadow.get("errors", 0),
                "shadow_compared": shadow.get("compared", 0),
                "agreement": shadow.get("agreement"),
                "score_correlation": shadow.get("score_correlation"),
                "shadow_p50_ms": shadow.get("p50_ms"),
            }
            out["did_work"] = bool(out["still_running"] and out["shadow_compared"] > 0)
        elif name == "split":
            arms = {a["role"]: a for a in ws.rollouts.status(DEPLOYMENT).arms}
            out = {
                "still_running": rollout is not None and rollout.strategy == "split",
                "primary_requests": arms.get("primary", {}).get("requests", 0),
                "challenger_requests": arms.get("challenger", {}).get("requests", 0),
                "analysis_events": len(_analysis_events(ws, state["audit_seq_before"])),
            }
            out["did_work"] = bool(out["still_running"] and out["challenger_requests"] > 0)
        else:
            out = {"did_work": rollout is None}
        if rollout is not None:
            ws.rollouts.rollback(DEPLOYMENT, reason="rollout_overhead: end of configuration")
        return out
    finally:
        ws.close()


# -- report -----------------------------------------------------------------------------------------


def _median_stat(xs: list[float]) -> dict[str, Any] | None:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)} if xs else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=3, help="rounds; each runs every configuration once (default 3)")
    ap.add_argument("--secs", type=int, default=20, help="wrk seconds at 32 connections (default 20)")
    ap.add_argument("--c1-secs", type=int, default=10, help="wrk seconds at 1 connection (default 10)")
    ap.add_argument("--warm-secs", type=int, default=5, help="warm-up seconds at 32 connections (default 5)")
    ap.add_argument("--quick", action="store_true", help="development: 1 round, 5 s / 3 s / 2 s wrk runs")
    ap.add_argument(
        "--configs", default=",".join(CONFIGS), help=f"configurations, comma-separated (default {','.join(CONFIGS)})"
    )
    ap.add_argument("--workdir", type=Path, default=None, help="reuse a prepared folder (kept); default: a temp dir")
    ap.add_argument("--out-dir", type=Path, default=REPO_ROOT / "bench" / "results", help="where the JSON goes")
    a = ap.parse_args(argv)
    if a.quick:
        a.rounds, a.secs, a.c1_secs, a.warm_secs = 1, 5, 3, 2
    names = [n for n in a.configs.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS + DIAGNOSTICS]
    if unknown or "plain" not in names:
        print(f"configurations must include plain and be among {', '.join(CONFIGS + DIAGNOSTICS)}", file=sys.stderr)
        return 2

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    if shutil.which("wrk") is None:
        print("wrk is not on PATH (apt-get install -y wrk)", file=sys.stderr)
        return 2
    w6 = load_w6_online()
    drv = CpuMeteredDriver(w6.load_module("w6_online.py", "w6_online_anchor"))
    common = w6.load_module("w6_common.py", "w6_common")
    base_cfg = w6.LOCKGATE["lockgate-onnx-sig"]
    serve = {n: replace(base_cfg, name=f"rollout-{n}", label=n) for n in names}
    started = datetime.now(UTC)
    machine = machine_info()
    source = git_state()

    keep = a.workdir is not None
    wd = a.workdir or Path(tempfile.mkdtemp(prefix="lockgate-rollout-"))
    wd.mkdir(parents=True, exist_ok=True)
    wd = wd.resolve()
    try:
        if (wd / "expected.json").exists():
            model_source = f"prepared earlier in {wd}" + (" by w6_prepare.py" if (wd / "mlflow_model").exists() else "")
        elif anchor_python("mlflow").exists():
            model_source = "the anchor's w6_prepare.py (MLflow anchor venv)"
        else:
            model_source = "w6_common.load_or_train in lockgate's venv (no MLflow anchor venv)"
        expected = w6.prepare_files(wd, common, log)
        home = wd / "rollout-ws"
        prep: dict[str, Any] = {"model_source": model_source}
        if not home.exists():
            prep.update(build_workspace(home, wd, w6, common, base_cfg, log))
        records: list[dict[str, Any]] = []
        checks: list[dict[str, Any]] = []
        for rnd in range(1, a.rounds + 1):
            k = (rnd - 1) % len(names)
            order = names[k:] + names[:k]
            if rnd % 2 == 0:
                order = order[::-1]
            for n in order:
                load = os.getloadavg()[0]
                log(f"round {rnd}/{a.rounds}: {n} (load {load:.2f})")
                state = start_rollout(home, n)
                t0 = time.perf_counter()
                try:
                    rs = w6.measure_lockgate(serve[n], drv, wd, home, expected, rnd, a.secs, a.c1_secs, a.warm_secs)
                finally:
                    check = end_rollout(home, n, state, time.perf_counter() - t0)
                check.update(config=n, round=rnd, loadavg_1m_at_start=round(load, 2))
                checks.append(check)
                for r in rs:
                    r["config"] = n
                    if "error" in r:
                        log(f"  {n}: ERROR {r['error']}\n{r.get('log_tail', '')}")
                    else:
                        log(
                            f"  c={r['connections']}: {r['rps']:.0f} req/s, p50 {r['p50_ms']:.3f} ms, "
                            f"p99 {r['p99_ms']:.2f} ms, errors {r['non2xx']}, "
                            f"{r['batches']['mean_rows_per_call'] or 0:.1f} rows/call, "
                            f"server CPU {r.get('server_cpu_us_per_request', '-')} µs/request"
                        )
                log(f"  check: {json.dumps({k: v for k, v in check.items() if k not in ('config', 'round')})}")
                records.extend(rs)
        return report(a, names, records, checks, started, machine, source, prep, serve)
    finally:
        if not keep:
            shutil.rmtree(wd, ignore_errors=True)


def report(
    a: argparse.Namespace,
    names: list[str],
    records: list[dict[str, Any]],
    checks: list[dict[str, Any]],
    started: datetime,
    machine: dict[str, Any],
    source: dict[str, Any],
    prep: dict[str, Any],
    serve: dict[str, Any],
) -> int:
    import lockgate

    ended = datetime.now(UTC)
    ok_records = [r for r in records if "connections" in r]
    errors = [r for r in records if "error" in r]

    def series(n: str, conns: int, key: str) -> list[float]:
        return [float(r[key]) for r in ok_records if r["config"] == n and r["connections"] == conns and key in r]

    def by_round(n: str, conns: int, key: str) -> dict[int, float]:
        return {
            r["round"]: float(r[key]) for r in ok_records if r["config"] == n and r["connections"] == conns and key in r
        }

    agg: dict[str, dict[str, Any]] = {}
    for n in names:
        agg[n] = {}
        for conns in (32, 1):
            for key in ("rps", "p50_ms", "p99_ms"):
                agg[n][f"{key}_c{conns}"] = _median_stat(series(n, conns, key))
        agg[n]["cpu_us_c32"] = _median_stat(series(n, 32, "server_cpu_us_per_request"))
        rows_call = [
            r["batches"]["mean_rows_per_call"]
            for r in ok_records
            if r["config"] == n and r["connections"] == 32 and r["batches"]["mean_rows_per_call"]
        ]
        agg[n]["rows_per_model_call_c32"] = _median_stat(rows_call)
        agg[n]["errors"] = sum(
            int(r[k])
            for r in ok_records
            if r["config"] == n
            for k in ("non2xx", "connect_err", "read_err", "timeout_err")
        )
        agg[n]["answers_match"] = all(r.get("response_matches") for r in ok_records if r["config"] == n)
        runs = {(r["round"]): r for r in ok_records if r["config"] == n}
        agg[n]["prediction_log_rows_per_request"] = _median_stat(
            [r["prediction_log_rows"] / r["requests_counted_by_wrk_and_checks"] for r in runs.values()]
        )

    def med(n: str, key: str) -> float | None:
        stat = agg.get(n, {}).get(key)
        return None if not stat else float(stat["median"])

    def paired(n: str, conns: int, key: str) -> list[float]:
        mine, base = by_round(n, conns, key), by_round("plain", conns, key)
        return [mine[r] / base[r] for r in sorted(mine) if r in base and base[r] > 0]

    ratios: dict[str, dict[str, Any]] = {}
    for n in names:
        if n == "plain":
            continue
        ratios[n] = {}
        for label, conns, key in (("rps_c32", 32, "rps"), ("p50_c32", 32, "p50_ms"), ("p50_c1", 1, "p50_ms")):
            ratios[n][label] = {
                "of_medians": _ratio(med(n, f"{key}_c{conns}"), med("plain", f"{key}_c{conns}")),
                "per_round": paired(n, conns, key),
            }
        ratios[n]["cpu_per_request_c32"] = {
            "of_medians": _ratio(med(n, "cpu_us_c32"), med("plain", "cpu_us_c32")),
            "per_round": paired(n, 32, "server_cpu_us_per_request"),
        }
        ratios[n]["p99_c32"] = {"of_medians": _ratio(med(n, "p99_ms_c32"), med("plain", "p99_ms_c32"))}
        ratios[n]["p99_c1"] = {"of_medians": _ratio(med(n, "p99_ms_c1"), med("plain", "p99_ms_c1"))}

    def rget(n: str, label: str) -> float | None:
        value = ratios.get(n, {}).get(label, {}).get("of_medians")
        return None if value is None else float(value)

    goals: list[dict[str, Any]] = []
    if "canary" in ratios and "split" in ratios:
        canary, split = med("canary", "rps_c32"), med("split", "rps_c32")
        r = _ratio(canary, split)
        goals.append(
            {
                "goal": "canary analysis costs < 2% of throughput: canary req/s / split req/s "
                f"(the same 50/50 routing, no analysis; c=32) >= {GOAL_CANARY_RPS}",
                "measured": r,
                "pass": r is not None and r >= GOAL_CANARY_RPS,
            }
        )
    if "shadow" in ratios:
        for label, text in (("p50_c1", "1 connection"), ("p50_c32", "32 connections")):
            r = rget("shadow", label)
            goals.append(
                {
                    "goal": f"shadow adds < 5% to the stable p50: shadow p50 / plain p50 ({text}) <= {GOAL_SHADOW_P50}",
                    "measured": r,
                    "pass": r is not None and r <= GOAL_SHADOW_P50,
                }
            )
    did_work = {n: all(c["did_work"] for c in checks if c["config"] == n) for n in names}
    consistent = all(did_work.values()) and not errors and all(agg[n]["answers_match"] for n in names)

    lines: list[str] = []

    def say(text: str = "") -> None:
        lines.append(text)
        print(text)

    def fig(x: float | None, digits: int | None = None) -> str:
        if x is None:
            return "-"
        if digits is None:
            digits = 0 if abs(x) >= 100 else 1 if abs(x) >= 10 else 2 if abs(x) >= 1 else 3
        return f"{x:,.{digits}f}"

    def cell(stat: dict[str, Any] | None, digits: int | None = None) -> str:
        if not stat:
            return "-"
        s = fig(stat["median"], digits)
        if stat["n"] > 1:
            s += f" ({fig(stat['min'], digits)}-{fig(stat['max'], digits)})"
        return s

    def rx(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    lg_v = lockgate.__version__
    if source["commit"]:
        lg_v += f" @ {source['commit']}{' + uncommitted src changes' if source['dirty'] else ''}"
    loads = [c["loadavg_1m_at_start"] for c in checks]
    say(
        f"Rollout overhead (W6 model and request), {a.rounds} round(s), wrk {a.secs} s at 32 connections (-t2) after "
        f"{a.warm_secs} s warm-up, {a.c1_secs} s at 1 connection; {started:%Y-%m-%d %H:%M}-{ended:%H:%M} UTC"
    )
    say(
        f"lockgate {lg_v}; {machine['cores']} cores, {machine['cpu']}, Python {machine['python']}; "
        f"1-minute load {min(loads, default=0):.1f}-{max(loads, default=0):.1f} at the starts of the runs"
    )
    say(f"server: {serve['plain'].settings}; model: {prep.get('model_source', 'prepared earlier (--workdir)')}")
    say()
    header = ["config", "req/s c=32", "p50 ms c=32", "p99 ms c=32", "p50 ms c=1", "p99 ms c=1"]
    header += ["server CPU µs/request c=32", "rows/model call"]
    header += ["log rows/request", "errors"]
    rows = [
        [
            n,
            cell(agg[n]["rps_c32"]),
            cell(agg[n]["p50_ms_c32"]),
            cell(agg[n]["p99_ms_c32"]),
            cell(agg[n]["p50_ms_c1"]),
            cell(agg[n]["p99_ms_c1"]),
            cell(agg[n]["cpu_us_c32"]),
            cell(agg[n]["rows_per_model_call_c32"], 1),
            cell(agg[n]["prediction_log_rows_per_request"], 2),
            str(agg[n]["errors"]),
        ]
        for n in names
    ]
    say(render_table(header, rows))
    say()
    rheader = ["ratio to plain", "req/s c=32", "p50 c=32", "p50 c=1", "server CPU/request c=32", "p99 c=32"]
    rheader += ["p99 c=1"]
    rrows = []
    for n, rs in ratios.items():

        def both(label: str, rs: dict[str, Any] = rs) -> str:
            per = rs[label]["per_round"]
            text = rx(rs[label]["of_medians"])
            return text + (f" (rounds {min(per):.3f}-{max(per):.3f})" if len(per) > 1 else "")

        rrows.append([n, both("rps_c32"), both("p50_c32"), both("p50_c1"), both("cpu_per_request_c32")])
        rrows[-1].append(rx(rs["p99_c32"]["of_medians"]))
        rrows[-1].append(rx(rs["p99_c1"]["of_medians"]))
    say("ratios: configuration / plain, of the medians over rounds (range of the per-round ratios)")
    say(render_table(rheader, rrows))
    say()
    say(
        render_table(
            ["goal", "measured", "result"],
            [[g["goal"], rx(g["measured"]), "PASS" if g["pass"] else "FAIL"] for g in goals],
        )
    )
    say()
    for c in checks:
        if c["config"] in ("canary", "canary1"):
            say(
                f"{c['config']} r{c['round']}: {c['analysis_events']} analyses ({c['analyses_per_s']}/s; outcomes "
                f"{c['outcomes']}), {c['windows_with_traffic_on_both_arms']} windows with traffic on both arms "
                f"(up to {c['max_stable_requests_in_a_window']} stable / {c['max_canary_requests_in_a_window']} canary "
                f"requests), still at {c['percent_at_end']}%: {'OK' if c['did_work'] else 'NO-OP?'}"
            )
        elif c["config"] == "shadow":
            say(
                f"shadow r{c['round']}: {c['shadow_compared']} answers compared of {c['primary_requests']} primary "
                f"requests ({c['shadow_requests']} shadow scorings, {c['shadow_errors']} errors, agreement "
                f"{c['agreement']}): {'OK' if c['did_work'] else 'NO-OP?'}"
            )
        elif c["config"] == "split":
            say(
                f"split r{c['round']}: {c['challenger_requests']} challenger / {c['primary_requests']} primary "
                f"requests, {c['analysis_events']} analyses: {'OK' if c['did_work'] else 'NO-OP?'}"
            )
    if errors:
        say("servers that did not answer: " + ", ".join(f"{r['config']} r{r['round']}" for r in errors))
    say(f"results consistent (answers match, rollouts did their work, no errors): {'yes' if consistent else 'NO'}")

    summary = {
        "benchmark": "rollout_overhead",
        "date": started.isoformat(timespec="seconds"),
        "ended": ended.isoformat(timespec="seconds"),
        "rounds": a.rounds,
        "secs": {"c32": a.secs, "c1": a.c1_secs, "warm": a.warm_secs},
        "machine": machine,
        "lockgate": lg_v,
        "preparation": prep,
        "server": serve["plain"].settings,
        "canary": {"steps": list(CANARY_STEPS), "interval": CANARY_INTERVAL, "policy": HOLD_POLICY},
        "aggregate": agg,
        "ratios": ratios,
        "goals": goals,
        "checks": checks,
        "consistent": consistent,
        "records": records,
    }
    a.out_dir.mkdir(parents=True, exist_ok=True)
    json_path = a.out_dir / f"rollout_overhead-{started:%Y%m%d-%H%M%S}.json"
    json_path.write_text(json.dumps(summary, indent=1, default=str))
    print(f"\nJSON: {json_path}")
    print(json.dumps({k: v for k, v in summary.items() if k != "records"}, default=str))
    return 0 if consistent and all(g["pass"] for g in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
