"""W3 online features: lockgate against Feast (the anchor), side by side in one session.

The workload is the anchor's (``shared/bench/anchors/w3_feast_online.py``, the W3 rows of its
README): ``--entities`` ids (default 100,000) x 10 events each, 5 float64 features, numpy seed
0, ttl 30 days; the data comes from the anchor's own ``make_feats``, imported from its file.

  materialize  all 1,000,000 rows into SQLite (Feast: ``store.materialize`` over the full range;
               lockgate: ``materialize`` streaming the same Parquet file in record batches);
  read 1       one entity per call. lockgate reads every entity once, in random order
               (``--calls1``, default 100,000 distinct entities); Feast its default 1,000 calls;
  read 100     100 distinct entities per call (lockgate ``--calls100`` calls, default 1,000 =
               every entity once; Feast its default 200 calls);
  Redis        lockgate only: materialize into Redis on 127.0.0.1, then reads of 1 and 100.

Every lockgate answer carries each value with its event time, age and status; nothing is
cached between calls. Both tools run as their own processes, alternating: ``--rounds`` rounds
of one Feast process and one lockgate process, the order flipping every round. Figures are the
median over processes of each process's p50 (p99); ratios are Feast / lockgate.

    python bench/w3_online.py                    # 100k entities, 2 rounds (about 2 minutes)
    python bench/w3_online.py --lockgate-only    # no Feast venv: compares with the published anchor
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import resource
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
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

ANCHOR_SCRIPT = "w3_feast_online.py"
# The anchor's published figures (shared/bench/anchors/README.md, 2026-11-29, feast 0.67.0),
# used only by --lockgate-only, when Feast cannot run in this session.
PUBLISHED_FEAST: dict[str, Any] = {
    "materialize_s": {"median": 18.6, "min": 16.7, "max": 21.6, "n": 3},
    "get_online_1_entity": {"p50_us": 419.0, "p99_us": 1051.0},
    "get_online_100_entities": {"p50_us": 12200.0, "p99_us": 15300.0},
}
GOAL_MATERIALIZE_X = 5.0
GOAL_READ1_US = 80.0
GOAL_READ100_US = 1200.0
GOAL_REDIS1_US = 1000.0


def load_anchor() -> ModuleType:
    """The anchor script as a module, for its data generator (run from its file, never copied)."""
    path = anchor_dir() / ANCHOR_SCRIPT
    spec = importlib.util.spec_from_file_location("w3_feast_anchor", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load the anchor script {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the lockgate side: one process ---------------------------------------------------------------


def lockgate_worker(args: argparse.Namespace) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    import lockgate
    from lockgate.features import Entity, FeatureView, ParquetSource
    from lockgate.features._online import open_online_store

    anchor = load_anchor()
    feats = anchor.make_feats(args.entities)
    names = [f"f{k}" for k in range(anchor.NFEAT)]
    out: dict[str, Any] = {
        "workload": "W3_online_reads",
        "tool": "lockgate",
        "version": lockgate.__version__,
        "python": sys.version.split()[0],
        "entities": args.entities,
        "feature_rows": len(feats),
    }
    with tempfile.TemporaryDirectory(prefix="lockgate-w3-") as tmp:
        parquet = Path(tmp) / "feats.parquet"
        pq.write_table(pa.Table.from_pandas(feats, preserve_index=False), parquet)

        def view(ttl_days: int) -> FeatureView:
            return FeatureView(
                name="fv",
                entities=[Entity("entity", join_keys=["entity_id"])],
                ttl=timedelta(days=ttl_days),
                source=ParquetSource(str(parquet), event_time="event_timestamp", created_time="created"),
                features=dict.fromkeys(names, "float64"),
                stale_policy="last_known",
            )

        # lockgate windows materialization by created time when the rows have it (late rows
        # still count), so the end that covers every row is the last created time; Feast's,
        # by event time, is the last event time. Both then hold the latest row per entity.
        end = (feats["created"].max() + timedelta(seconds=1)).to_pydatetime()
        now = (feats["event_timestamp"].max() + timedelta(seconds=1)).to_pydatetime()
        latest = (
            feats.sort_values(["entity_id", "event_timestamp", "created"])
            .groupby("entity_id")
            .tail(1)
            .set_index("entity_id")
        )
        order = list(range(args.entities))
        random.Random(0).shuffle(order)

        sqlite_view = view(anchor.TTL_DAYS)
        store = open_online_store(None, home=Path(tmp))
        try:
            t0 = time.perf_counter()
            result = store.materialize(sqlite_view, pq.ParquetFile(parquet).iter_batches(batch_size=65_536), end=end)
            out["materialize_s"] = time.perf_counter() - t0
            out["materialize_result"] = {
                "rows_read": result.rows_read,
                "entities": result.entities,
                "written": result.written,
            }
            t0 = time.perf_counter()
            again = store.materialize(sqlite_view, pq.ParquetFile(parquet).iter_batches(batch_size=65_536), end=end)
            out["materialize_again_s"] = time.perf_counter() - t0
            out["materialize_again_written"] = again.written
            out["online_db_mb"] = sum(p.stat().st_size for p in Path(tmp).glob("online.db*")) / 2**20
            out.update(_reads(store, sqlite_view, order, now, args.calls1, args.calls100, names, latest, "sqlite"))
        finally:
            store.close()

        out["redis"] = _redis_phase(args, view, parquet, end, now, order, names, latest, open_online_store)
    out["ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _reads(
    store: Any,
    view: Any,
    order: list[int],
    now: datetime,
    calls1: int,
    calls100: int,
    names: list[str],
    latest: Any,
    label: str,
) -> dict[str, Any]:
    clock = time.perf_counter
    for e in order[:20]:  # warm-up, as the anchor does
        store.read(view, [{"entity_id": e}], now=now)
    n1 = min(calls1, len(order))
    lat1 = []
    last1 = None
    for e in order[:n1]:
        request = [{"entity_id": e}]
        t0 = clock()
        last1 = store.read(view, request, now=now)
        lat1.append(clock() - t0)
    lat100 = []
    checked = mismatches = 0
    statuses: dict[str, int] = {}
    for i in range(calls100):
        start = (i * 100) % max(len(order) - 99, 1)
        request = [{"entity_id": e} for e in order[start : start + 100]]
        t0 = clock()
        answer = store.read(view, request, now=now)
        lat100.append(clock() - t0)
        if i % 50 == 0:  # correctness on a sample: the latest row per entity, event time included
            for row in answer:
                expected = latest.loc[row.key]
                checked += 1
                same = all(abs(row.values[f] - expected[f]) <= 1e-12 for f in names)
                same = same and row.event_time == expected["event_timestamp"].to_pydatetime()
                same = same and row.age is not None and row.status in ("fresh", "stale")
                mismatches += not same
                statuses[row.status] = statuses.get(row.status, 0) + 1
    assert last1 is not None
    assert len(last1) == 1
    return {
        f"{label}_read_1_entity": pct_us(lat1),
        f"{label}_read_100_entities": pct_us(lat100),
        f"{label}_per_entity_us_at_100": float(np.median(lat100)) * 1e6 / 100,
        f"{label}_distinct_entities_read_1": n1,
        f"{label}_check_sample_entities": checked,
        f"{label}_check_mismatches": mismatches,
        f"{label}_check_statuses": statuses,
    }


def _redis_phase(
    args: argparse.Namespace,
    view: Any,
    parquet: Path,
    end: datetime,
    now: datetime,
    order: list[int],
    names: list[str],
    latest: Any,
    open_online_store: Any,
) -> dict[str, Any]:
    import pyarrow.parquet as pq

    if args.no_redis:
        return {"skipped": "--no-redis"}
    prefix = f"lockgate-bench-w3-{uuid.uuid4().hex[:8]}:"
    from lockgate.errors import LockgateError

    try:
        store = open_online_store(f"{args.redis_url}?prefix={prefix}", home=parquet.parent)
    except LockgateError as exc:  # the report says why Redis was not measured; the goal then fails
        return {"skipped": str(exc)}
    # Redis expires a value at event time + ttl by its own clock, and the anchor's events are
    # from 2024: with the anchor's 30-day ttl nothing would be stored. A 10-year ttl keeps them.
    redis_view = view(3650)
    try:
        t0 = time.perf_counter()
        result = store.materialize(redis_view, pq.ParquetFile(parquet).iter_batches(batch_size=65_536), end=end)
        out: dict[str, Any] = {"url": store.url, "materialize_s": time.perf_counter() - t0, "written": result.written}
        out.update(
            _reads(store, redis_view, order, now, args.redis_calls1, args.redis_calls100, names, latest, "redis")
        )
        return out
    finally:
        store.drop(redis_view)
        store.close()


# -- the driver --------------------------------------------------------------------------------------


def agg_calls(results: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """Median over processes of each process's p50 and p99 (each process pools its own calls)."""
    items = [r[key] for r in results if r.get(key)]
    if not items:
        return None
    p50 = [float(i["p50_us"]) for i in items]
    p99 = [float(i["p99_us"]) for i in items]
    return {
        "p50_us": float(np.median(p50)),
        "p50_min_us": min(p50),
        "p50_max_us": max(p50),
        "p99_us": float(np.median(p99)),
        "calls": int(sum(int(i.get("calls", 0)) for i in items)),
        "processes": len(items),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def _p50(stats: dict[str, Any] | None, key: str = "p50_us") -> float | None:
    return None if stats is None or stats.get(key) is None else float(stats[key])


def _us(us: float | None) -> str:
    if us is None:
        return "-"
    return f"{us:.1f} µs" if us < 1000 else f"{fmt_ms(us)} ms"


def _range(stats: dict[str, Any] | None) -> str:
    if not stats or stats.get("processes", 1) < 2:
        return ""
    return f" ({_us(stats['p50_min_us'])}-{_us(stats['p50_max_us'])})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--entities", type=int, default=100_000, help="entity ids; feature rows = 10x (default 100,000)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of one process per tool (default 2)")
    ap.add_argument("--calls1", type=int, default=100_000, help="lockgate 1-entity reads, distinct entities")
    ap.add_argument("--calls100", type=int, default=1_000, help="lockgate 100-entity reads")
    ap.add_argument("--feast-calls1", type=int, default=1_000, help="Feast 1-entity reads (anchor default 1,000)")
    ap.add_argument("--feast-calls100", type=int, default=200, help="Feast 100-entity reads (anchor default 200)")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="Redis for the Redis reads")
    ap.add_argument("--redis-calls1", type=int, default=20_000, help="Redis 1-entity reads, distinct entities")
    ap.add_argument("--redis-calls100", type=int, default=200, help="Redis 100-entity reads")
    ap.add_argument("--no-redis", action="store_true", help="skip the Redis reads")
    ap.add_argument("--lockgate-only", action="store_true", help="skip Feast; compare with the published anchor")
    ap.add_argument("--feast-python", type=Path, default=None, help="python of the Feast venv (default: anchor venv)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        print(json.dumps(lockgate_worker(args), default=str))
        return 0

    started = datetime.now(UTC)
    machine = machine_info()
    source = git_state()
    feast_py = args.feast_python or anchor_python("feast")
    script = anchor_dir() / ANCHOR_SCRIPT
    with_feast = not args.lockgate_only
    if not script.exists():
        print(f"the anchor script {script} is missing; set $LOCKGATE_ANCHORS", file=sys.stderr)
        return 2
    if with_feast and not feast_py.exists():
        print(
            f"Feast anchor venv not found ({feast_py}).\nCreate it once with:  {anchor_dir() / 'setup.sh'} feast\n"
            "or run lockgate alone (compared with the published anchor figures):  "
            "python bench/w3_online.py --lockgate-only",
            file=sys.stderr,
        )
        return 2

    worker_args = [
        *("--entities", str(args.entities), "--calls1", str(args.calls1), "--calls100", str(args.calls100)),
        *("--redis-url", args.redis_url, "--redis-calls1", str(args.redis_calls1)),
        *("--redis-calls100", str(args.redis_calls100)),
        *(["--no-redis"] if args.no_redis else []),
    ]
    feast_args = ["--entities", str(args.entities), "--calls1", str(args.feast_calls1)]
    feast_args += ["--calls100", str(args.feast_calls100)]
    results: dict[str, list[dict[str, Any]]] = {"lockgate": [], "feast": []}
    for i in range(args.rounds):
        order = ["lockgate", "feast"] if i % 2 == 0 else ["feast", "lockgate"]
        for tool in order:
            if tool == "feast" and not with_feast:
                continue
            with tempfile.TemporaryDirectory(prefix=f"w3-{tool}-") as tmp:
                env = {**os.environ, "TMPDIR": tmp}
                if tool == "lockgate":
                    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", *worker_args]
                else:
                    cmd = [str(feast_py), str(script), *feast_args]
                load = os.getloadavg()[0]
                t0 = time.perf_counter()
                out = run_json_process(cmd, env=env, label=tool)
                out["_wall_s"] = time.perf_counter() - t0
                out["_loadavg_1m_at_start"] = round(load, 2)
                results[tool].append(out)
            print(
                f"[round {i + 1}/{args.rounds}] {tool}: {out['_wall_s']:.1f} s, materialize "
                f"{out['materialize_s']:.2f} s (load {load:.2f})",
                file=sys.stderr,
                flush=True,
            )

    lg_runs, fe_runs = results["lockgate"], results["feast"]
    lg_mat = summ([r["materialize_s"] for r in lg_runs])
    fe_mat = summ([r["materialize_s"] for r in fe_runs]) if with_feast else PUBLISHED_FEAST["materialize_s"]
    rows_spec = [
        ("read 1 entity, SQLite", "sqlite_read_1_entity", "get_online_1_entity"),
        ("read 100 entities, SQLite", "sqlite_read_100_entities", "get_online_100_entities"),
        ("read 1 entity, Redis (loopback)", "redis_read_1_entity", "get_online_1_entity"),
        ("read 100 entities, Redis (loopback)", "redis_read_100_entities", "get_online_100_entities"),
    ]
    redis_runs = [r["redis"] for r in lg_runs if isinstance(r.get("redis"), dict) and "skipped" not in r["redis"]]
    reads: dict[str, Any] = {}
    for label, lg_key, fe_key in rows_spec:
        lg_stats = agg_calls(redis_runs if lg_key.startswith("redis") else lg_runs, lg_key)
        fe_stats = agg_calls(fe_runs, fe_key) if with_feast else dict(PUBLISHED_FEAST[fe_key])
        reads[label] = {
            "lockgate": lg_stats,
            "feast_sqlite": fe_stats,
            "ratio_p50": ratio(_p50(fe_stats), _p50(lg_stats)),
            "ratio_p99": ratio(_p50(fe_stats, "p99_us"), _p50(lg_stats, "p99_us")),
        }
    mat_ratio = ratio(fe_mat["median"], lg_mat["median"])
    read1 = _p50(reads["read 1 entity, SQLite"]["lockgate"])
    read100 = _p50(reads["read 100 entities, SQLite"]["lockgate"])
    redis1 = _p50(reads["read 1 entity, Redis (loopback)"]["lockgate"])
    checks = [
        {
            "goal": f"materialize into SQLite >= {GOAL_MATERIALIZE_X:g}x faster than Feast",
            "value": fmt_ratio(mat_ratio),
            "pass": mat_ratio is not None and mat_ratio >= GOAL_MATERIALIZE_X,
        },
        {
            "goal": f"SQLite read p50, 1 entity < {GOAL_READ1_US:g} µs",
            "value": _us(read1),
            "pass": read1 is not None and read1 < GOAL_READ1_US,
        },
        {
            "goal": f"SQLite read p50, 100 entities < {GOAL_READ100_US / 1000:g} ms",
            "value": _us(read100),
            "pass": read100 is not None and read100 < GOAL_READ100_US,
        },
        {
            "goal": f"Redis read p50, 1 entity < {GOAL_REDIS1_US / 1000:g} ms",
            "value": _us(redis1),
            "pass": redis1 is not None and redis1 < GOAL_REDIS1_US,
        },
    ]
    mismatches = {
        "lockgate sqlite": sum(r["sqlite_check_mismatches"] for r in lg_runs),
        "lockgate redis": sum(r.get("redis_check_mismatches", 0) for r in redis_runs),
        "feast": sum(r["check_mismatches"] for r in fe_runs),
    }
    written = sorted({r["materialize_result"]["written"] for r in lg_runs})
    again = sorted({r["materialize_again_written"] for r in lg_runs})
    consistent = not any(mismatches.values()) and written == [args.entities] and again == [0]

    lg_v = lg_runs[0]["version"]
    if source["commit"]:
        lg_v += f" @ {source['commit']}{' + uncommitted src changes' if source['dirty'] else ''}"
    fe_v = fe_runs[0]["version"] if fe_runs else "0.67.0 (published)"
    print(
        f"W3 online features, {args.entities:,} entities x 10 events, 5 float64 features, {args.rounds} round(s); "
        f"lockgate {lg_v} vs Feast {fe_v} (SQLite online store); {started:%Y-%m-%d %H:%M} UTC; "
        f"{machine['cores']} cores, {machine['cpu']}, Python {machine['python']}"
    )
    if not with_feast:
        print("Feast did not run in this session: its figures are the anchor README's (2026-11-29), not same-session.")
    print("ratio = Feast / lockgate (higher means lockgate is faster); p50 is the median of per-process p50s.")
    print("Feast reads are SQLite in every row; lockgate's Redis rows are compared with Feast's SQLite figures.")
    print()
    fe_name = "Feast" if with_feast else "Feast (published)"

    def total(s: dict[str, Any]) -> str:
        return f"{s['median']:.2f} s" + (f" ({s['min']:.2f}-{s['max']:.2f}, n={s['n']})" if s.get("n", 1) > 1 else "")

    print(
        render_table(
            ["materialize 1M rows -> 100k entities", "lockgate", fe_name, "ratio"],
            [["SQLite", total(lg_mat), total(fe_mat), fmt_ratio(mat_ratio)]]
            + (
                [["Redis (lockgate only)", total(summ([r["materialize_s"] for r in redis_runs])), "-", "-"]]
                if redis_runs
                else []
            ),
        )
    )
    print()
    table = []
    for label, r in reads.items():
        table.append(
            [
                label,
                _us(_p50(r["lockgate"])) + _range(r["lockgate"]),
                _us(_p50(r["lockgate"], "p99_us")),
                f"{(r['lockgate'] or {}).get('calls', 0):,}",
                _us(_p50(r["feast_sqlite"])) + _range(r["feast_sqlite"]),
                _us(_p50(r["feast_sqlite"], "p99_us")),
                fmt_ratio(r["ratio_p50"]),
                fmt_ratio(r["ratio_p99"]),
            ]
        )
    print(
        render_table(
            [
                "online read",
                "lockgate p50",
                "lockgate p99",
                "calls",
                f"{fe_name} p50",
                f"{fe_name} p99",
                "ratio p50",
                "ratio p99",
            ],
            table,
        )
    )
    print()
    print(
        render_table(
            ["goal", "measured", "result"], [[g["goal"], g["value"], "PASS" if g["pass"] else "FAIL"] for g in checks]
        )
    )
    skipped = [r["redis"]["skipped"] for r in lg_runs if "skipped" in r.get("redis", {})]
    if skipped:
        print(f"\nRedis not measured: {skipped[0]}")
    print(
        f"\ncheck: sampled values against the latest row per entity, mismatches {mismatches}; lockgate wrote "
        f"{written} entities, then {again} on a second materialize to the same end: "
        f"{'consistent' if consistent else 'MISMATCH'}"
    )
    summary = {
        "workload": "W3_online",
        "date": started.isoformat(timespec="seconds"),
        "entities": args.entities,
        "rounds": args.rounds,
        "feast_source": "same session" if with_feast else "published anchor 2026-11-29",
        "machine": machine,
        "versions": {"lockgate": lg_v, "feast": fe_v},
        "materialize": {"lockgate": lg_mat, "feast": fe_mat, "ratio": mat_ratio},
        "reads": reads,
        "goals": checks,
        "consistent_results": consistent,
        "processes": results,
    }
    print(json.dumps(summary, default=str))
    return 0 if all(g["pass"] for g in checks) and consistent else 1


if __name__ == "__main__":
    sys.exit(main())
