"""W5 validation: lockgate's contract validator against pandera (the anchor), side by side, as ratios.

The workload is the anchor's (``shared/bench/anchors/w5_pandera.py``, the W5 rows of its README):
a 1,000,000 x 20 pandas frame from the anchor's own ``make_frame`` (1 int64 id, 14 float64, 5
string categoricals of 10 levels, numpy seed 0), and the anchor's dirty copy (an out-of-range
value, a bad category, a null in a non-null column, a duplicated id). The schema is the anchor's
``make_schema``: dtype checks on all 20 columns, non-null on 10, ranges on 10, ``isin`` on 5,
``unique`` on the id, strict columns. lockgate's contract is *translated from that pandera
schema object* (printed by the pandera worker), so both check exactly the same rules.

The frames are written once to Parquet in a temp folder, and each tool's worker reads them back
into the same in-memory pandas frame before any timing (pandas 3.1 + pyarrow in both: strings are
Arrow-backed). pandera runs in its own venv, with pyarrow installed, the anchor's "fair
comparator" row; lockgate validates the very same pandas frame (its conversion to Arrow is
inside the timing). Each tool runs as its own fresh process, ``--rounds`` times, alternating
(L P, P L, ...), each with ``--repeats`` validations of the clean frame and of the dirty one;
figures pool every validation: median (min-max, n). Ratio = pandera / lockgate.

Memory added during a validation is measured two ways, and the goal uses the larger:
  - RSS: peak resident size sampled every 5 ms by a thread (/proc/self/statm) minus the size before;
  - Arrow: the peak of a proxy of Arrow's memory pool installed for that one call (exact for Arrow
    buffers, blind to numpy's).
tracemalloc would see neither Arrow's allocations nor most of numpy's.

Also measured, lockgate only unless noted: the same frames as Arrow tables (no pandas edge); the
same frames with the fixed-width string path switched off (every string column through Arrow's
hash ``is_in``); validating a ``--big-rows`` (10,000,000) row Parquet file by path (read +
validate) next to pandera's ``read_parquet`` + ``validate``; and the serving path: 1 and 100 rows
against a 10-column contract, as row dicts and as a record batch.

    python bench/w5_contracts.py                    # 1M rows, 3 rounds x 5 repeats, plus 10M from Parquet (~3 min)
    python bench/w5_contracts.py --big-rows 0       # skip the 10M file
    python bench/w5_contracts.py --setup-pandera    # create the pandera venv (pinned, + pyarrow) first
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path
from typing import Any, ClassVar

from _common import (
    anchor_dir,
    anchor_python,
    fmt_ratio,
    git_state,
    machine_info,
    pct_us,
    render_table,
    run_json_process,
    summ,
)

ANCHOR_SCRIPT = "w5_pandera.py"
PANDERA_VENV = "pandera-pyarrow"
# The anchor's published W5 figures with pyarrow installed (shared/bench/anchors/README.md,
# 2026-11-29), used only by --lockgate-only.
PUBLISHED_PANDERA = {"clean_s": 0.164, "dirty_s": 0.294, "added_mb": 123.0}


# -- shared by both workers (stdlib + numpy only: this file also runs in pandera's venv) -----------


class PeakRSS:
    """Peak resident memory during a block, sampled by a thread (the anchor's method, via /proc)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.page = os.sysconf("SC_PAGE_SIZE")

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def __enter__(self) -> PeakRSS:
        self.start = self.rss()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def added_mb(self) -> float:
        return (self.peak - self.start) / 2**20


class ArrowPeak:
    """Peak of Arrow allocations during a block, through a proxy of the default pool.

    Buffers allocated through a proxy are freed through it, possibly after the block, so
    proxies are kept alive until the process ends (workers leave with os._exit).
    """

    kept: ClassVar[list[Any]] = []

    def __enter__(self) -> ArrowPeak:
        try:
            import pyarrow as pa
        except ImportError:
            self.pa = None
            return self
        self.pa = pa
        self.base = pa.default_memory_pool()
        self.proxy = pa.proxy_memory_pool(self.base)
        ArrowPeak.kept.append(self.proxy)
        pa.set_memory_pool(self.proxy)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pa is not None:
            self.pa.set_memory_pool(self.base)

    @property
    def added_mb(self) -> float | None:
        return None if self.pa is None else self.proxy.max_memory() / 2**20


def measured(fn: Any, repeats: int, *args: Any) -> tuple[list[float], list[float], list[float | None], Any]:
    """Run ``fn(*args)`` ``repeats`` times: seconds, RSS added (MB), Arrow peak (MB), last result."""
    times, rss, arrow, result = [], [], [], None
    for _ in range(repeats):
        gc.collect()
        with PeakRSS() as peak, ArrowPeak() as apeak:
            t0 = time.perf_counter()
            result = fn(*args)
            times.append(time.perf_counter() - t0)
        rss.append(peak.added_mb)
        arrow.append(apeak.added_mb)
    return times, rss, arrow, result


def _anchor_module() -> types.ModuleType:
    """The anchor script as a module, for its data generator and schema (not copied here)."""
    sys.path.insert(0, str(anchor_dir()))
    try:
        import psutil  # noqa: F401  (the anchor imports it; only its sampler uses it)
    except ImportError:
        sys.modules["psutil"] = types.ModuleType("psutil")
    import w5_pandera

    return w5_pandera


def _finish(out: dict[str, Any]) -> None:
    print(json.dumps(out), flush=True)
    sys.stdout.flush()
    os._exit(0)  # see ArrowPeak: no interpreter teardown while proxy pools own buffers


def _warm(path: Path) -> None:
    """Read the file once, untimed, so both tools find it in the page cache."""
    with open(path, "rb") as f:
        while f.read(1 << 26):
            pass


def _frame_mb(df: Any) -> float:
    return float(df.memory_usage(deep=True).sum()) / 2**20


# -- pandera worker (runs in pandera's venv) --------------------------------------------------------


def pandera_schema() -> dict[str, Any]:
    """The anchor's pandera schema, as plain data lockgate's contract is translated from."""
    schema = _anchor_module().make_schema()
    columns = {}
    for name, col in schema.columns.items():
        checks = []
        for check in col.checks:
            stats = {
                k: (list(v) if isinstance(v, (list, tuple, set, frozenset)) else v) for k, v in check.statistics.items()
            }
            checks.append({"name": check.name, "statistics": stats})
        columns[name] = {
            "dtype": str(col.dtype),
            "nullable": bool(col.nullable),
            "unique": bool(col.unique),
            "checks": checks,
        }
    return {"strict": bool(schema.strict), "columns": columns}


def _pandera_failures(exc: Any, schema: dict[str, Any]) -> list[dict[str, Any]]:
    """pandera's failure cases as (column, check, rows, values), named the way lockgate names them."""
    cases = exc.failure_cases
    out = []
    for (column, check), group in cases.groupby(["column", "check"], sort=True):
        values = group["failure_case"].tolist()
        if check.startswith("in_range"):
            spec = next(c["statistics"] for c in schema["columns"][column]["checks"] if c["name"] == "in_range")
            kind = "min" if float(values[0]) < spec["min_value"] else "max"
        else:
            kind = {"isin": "allowed", "not_nullable": "not_null", "field_uniqueness": "unique"}.get(
                check.split("(")[0], check
            )
        shown = (
            sorted({int(i) for i in group["index"]})
            if kind == "not_null"
            else sorted({_plain(v) for v in values}, key=str)
        )
        out.append({"column": column, "check": kind, "rows": len(group), "values": shown})
    return sorted(out, key=lambda f: (f["column"], f["check"]))


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def pandera_worker(data: Path, repeats: int, big: Path | None) -> None:
    import pandas as pd
    import pandera
    import pandera.errors

    anchor = _anchor_module()
    spec = pandera_schema()
    schema = anchor.make_schema()
    clean = pd.read_parquet(data / "clean.parquet")
    dirty = pd.read_parquet(data / "dirty.parquet")
    schema.validate(clean.head(1000), lazy=True)  # warm-up, as the anchor does

    def run(frame: Any) -> list[dict[str, Any]]:
        try:
            schema.validate(frame, lazy=True)
        except pandera.errors.SchemaErrors as exc:
            return _pandera_failures(exc, spec)
        return []

    out: dict[str, Any] = {"tool": "pandera", "version": pandera.__version__, "pandas": pd.__version__}
    try:
        import pyarrow

        out["pyarrow"] = pyarrow.__version__
    except ImportError:
        out["pyarrow"] = None
    out["frame_mb"] = _frame_mb(clean)
    _frames(out, run, repeats, clean=clean, dirty=dirty)
    del clean, dirty
    if big is not None:
        _warm(big)
        out["big_s"], out["big_rss_mb"], _, out["big_failures"] = measured(
            lambda path: run(pd.read_parquet(path)), max(1, repeats // 2), big
        )
    _finish(out)


def _frames(out: dict[str, Any], run: Any, repeats: int, *, prefix: str = "", **frames: Any) -> None:
    """Time ``run`` on each named frame; with ``prefix`` only the times are kept."""
    for name, frame in frames.items():
        seconds, rss, arrow, failures = measured(run, repeats, frame)
        out[f"{prefix}{name}_s"] = seconds
        if not prefix:
            out[f"{name}_rss_mb"], out[f"{name}_arrow_mb"], out[f"{name}_failures"] = rss, arrow, failures
        else:
            out[f"{prefix}{name}_failures"] = failures


# -- lockgate worker -----------------------------------------------------------------------------


def _lockgate_failures(report: Any) -> list[dict[str, Any]]:
    out = []
    for f in report.failures:
        values = sorted(f.examples) if f.check == "not_null" else sorted(set(f.examples), key=str)
        out.append({"column": f.column, "check": f.check, "rows": f.rows, "values": values})
    return sorted(out, key=lambda f: (f["column"] or "", f["check"]))


def _serving(contract_yaml: str, data: Path, calls: int) -> dict[str, Any]:
    """The serving path: a few rows against a 10-column contract, per call."""
    import pyarrow.parquet as pq

    import lockgate.data._validate as v
    from lockgate.data import Contract

    full = Contract.from_yaml(contract_yaml)
    keep = ["id", *[f"num_{i}" for i in range(5)], *[f"cat_{j}" for j in range(4)]]
    contract = Contract.from_dict({**full.to_dict(), "columns": {k: full.to_dict()["columns"][k] for k in keep}})
    table = pq.read_table(data / "clean.parquet", columns=keep).slice(0, 100)
    out: dict[str, Any] = {"columns": len(keep)}
    for rows in (1, 100):
        batch = table.slice(0, rows).to_batches()[0]
        records = table.slice(0, rows).to_pylist()
        for label, payload in (("records", records), ("record_batch", batch)):
            for _ in range(50):
                v.validate(payload, contract)
            times = []
            for _ in range(calls):
                t0 = time.perf_counter()
                report = v.validate(payload, contract)
                times.append(time.perf_counter() - t0)
            assert report.passed, report.failures
            out[f"{label}_{rows}"] = pct_us(times)
    return out


def lockgate_worker(data: Path, repeats: int, big: Path | None, serving_calls: int) -> None:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    import lockgate
    import lockgate.data._checks as checks
    from lockgate.data import Contract
    from lockgate.data._validate import validate

    contract_yaml = (data / "contract.yaml").read_text()
    contract = Contract.from_yaml(contract_yaml)
    clean = pd.read_parquet(data / "clean.parquet")
    dirty = pd.read_parquet(data / "dirty.parquet")
    validate(clean.head(1000), contract)  # warm-up: imports, the contract's cached plan

    def run(frame: Any) -> list[dict[str, Any]]:
        return _lockgate_failures(validate(frame, contract))

    out: dict[str, Any] = {
        "tool": "lockgate",
        "version": lockgate.__version__,
        "pandas": pd.__version__,
        "pyarrow": pa.__version__,
    }
    out["frame_mb"] = _frame_mb(clean)
    _frames(out, run, repeats, clean=clean, dirty=dirty)
    checks.FIXED_WIDTH = False
    _frames(out, run, repeats, prefix="generic_", clean=clean, dirty=dirty)
    checks.FIXED_WIDTH = True
    out["generic_same_failures"] = out["generic_dirty_failures"] == out["dirty_failures"]
    arrow_clean, arrow_dirty = pq.read_table(data / "clean.parquet"), pq.read_table(data / "dirty.parquet")
    out["arrow_mb"] = arrow_clean.nbytes / 2**20
    _frames(out, run, repeats, prefix="arrow_", clean=arrow_clean, dirty=arrow_dirty)
    out["arrow_same_failures"] = out["arrow_dirty_failures"] == out["dirty_failures"]
    report = validate(clean, contract)
    t0 = time.perf_counter()
    _ = report.profiles
    out["profiles_s"] = time.perf_counter() - t0
    del clean, dirty, arrow_clean, arrow_dirty, report

    if serving_calls:
        out["serving"] = _serving(contract_yaml, data, serving_calls)
    if big is not None:
        _warm(big)
        out["big_rows"] = pq.read_metadata(big).num_rows
        out["big_s"], out["big_rss_mb"], out["big_arrow_mb"], out["big_failures"] = measured(
            run, max(1, repeats // 2), big
        )
        from lockgate.data._sources import Source

        # The read alone, through the same reader validate(path) uses; the last table is kept.
        reads, _, _, table = measured(lambda path: Source.parse(path).read(), max(1, repeats // 2), big)
        out["big_read_s"] = reads
        out["big_table_mb"] = table.nbytes / 2**20
        out["big_table_s"], _, _, _ = measured(run, max(1, repeats // 2), table)
    _finish(out)


# -- the driver ----------------------------------------------------------------------------------


def translate(spec: dict[str, Any]) -> dict[str, Any]:
    """pandera's schema (as printed by the pandera worker) as a lockgate contract."""
    types_ = {
        "int64": "int64",
        "float64": "float64",
        "str": "string",
        "string": "string",
        "string[pyarrow]": "string",
        "object": "string",
    }
    columns: dict[str, Any] = {}
    for name, col in spec["columns"].items():
        out: dict[str, Any] = {"type": types_[col["dtype"]], "nullable": col["nullable"]}
        if col["unique"]:
            out["unique"] = True
        for check in col["checks"]:
            stats = check["statistics"]
            if check["name"] == "in_range":
                # lockgate's bounds are inclusive, as pandera's in_range is by default.
                assert stats.get("include_min", True)
                assert stats.get("include_max", True)
                out["min"], out["max"] = stats["min_value"], stats["max_value"]
            elif check["name"] == "isin":
                out["allowed"] = sorted(stats["allowed_values"])
            else:
                raise SystemExit(f"the anchor schema has a check this benchmark cannot translate: {check['name']}")
        columns[name] = out
    return {
        "name": "w5",
        "columns": columns,
        "extra_columns": "error" if spec["strict"] else "allow",
        # pandera's schema has no duplicate-row rule; the contract must not add one.
        "duplicate_rows": None,
    }


def make_data(workdir: Path, rows: int, big_rows: int) -> dict[str, Any]:
    """The anchor's frames, written once: clean, dirty (the anchor's four edits), and the big file."""
    import numpy as np

    anchor = _anchor_module()
    t0 = time.perf_counter()
    df = anchor.make_frame(rows)
    df.to_parquet(workdir / "clean.parquet", index=False)
    # The anchor's dirty copy, edit for edit (w5_pandera.py, main()).
    bad = df.copy()
    bad.loc[5, "num_0"] = 1e9
    bad.loc[6, "cat_0"] = "zzz"
    bad.loc[7, "num_1"] = np.nan
    bad.loc[8, "id"] = 0
    bad.to_parquet(workdir / "dirty.parquet", index=False)
    del df, bad
    facts: dict[str, Any] = {"rows": rows, "datagen_s": time.perf_counter() - t0}
    if big_rows:
        t0 = time.perf_counter()
        big = anchor.make_frame(big_rows)
        big.to_parquet(workdir / "big.parquet", index=False, row_group_size=1_000_000)
        facts["big_parquet_mb"] = (workdir / "big.parquet").stat().st_size / 2**20
        facts["big_datagen_s"] = time.perf_counter() - t0
        del big
    gc.collect()
    return facts


def _pool(results: list[dict[str, Any]], key: str) -> list[float]:
    return [x for r in results for x in r.get(key, [])]


def _cell(xs: list[float], scale: float = 1.0, digits: int = 3) -> str:
    if not xs:
        return "-"
    s = summ([x * scale for x in xs])
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f}, n={s['n']})"


def _med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def _peak(results: list[dict[str, Any]], key: str) -> float | None:
    xs = [x for x in _pool(results, key) if x is not None]
    return max(xs) if xs else None


def report(
    lock: list[dict[str, Any]], pand: list[dict[str, Any]], *, published: bool, facts: dict[str, Any]
) -> dict[str, Any]:
    first = lock[0]
    out: dict[str, Any] = {"facts": facts}
    rows = []
    ratios = {}

    def _min(xs: list[float]) -> float | None:
        return min(xs) if xs else None

    for label, key in (("{} frame, pandas in", "{}_s"), ("{}, fixed-width string path off", "generic_{}_s")):
        for phase in ("clean", "dirty"):
            lg_xs = _pool(lock, key.format(phase))
            pd_xs = [PUBLISHED_PANDERA[f"{phase}_s"]] if published else _pool(pand, f"{phase}_s")
            ratio = _ratio(_med(pd_xs), _med(lg_xs))
            if key == "{}_s":
                ratios[phase] = ratio
            by_min = "-" if published else fmt_ratio(_ratio(_min(pd_xs), _min(lg_xs)))
            rows.append([label.format(phase), _cell(lg_xs), _cell(pd_xs), fmt_ratio(ratio), by_min])
    for phase in ("clean", "dirty"):
        rows.append([f"{phase}, Arrow table in", _cell(_pool(lock, f"arrow_{phase}_s")), "-", "-", "-"])
    print(
        render_table(
            [
                f"W5 {facts['rows']:,} x 20, seconds: median (min-max, n)",
                "lockgate",
                "pandera (published)" if published else "pandera",
                "ratio",
                "ratio of minimums",
            ],
            rows,
        )
    )
    print()

    lg_added = max(_peak(lock, "clean_rss_mb") or 0, _peak(lock, "dirty_rss_mb") or 0)
    lg_arrow = max(_peak(lock, "clean_arrow_mb") or 0, _peak(lock, "dirty_arrow_mb") or 0)
    pd_added = (
        PUBLISHED_PANDERA["added_mb"]
        if published
        else max(_peak(pand, "clean_rss_mb") or 0, _peak(pand, "dirty_rss_mb") or 0)
    )
    pd_arrow = None if published else max(_peak(pand, "clean_arrow_mb") or 0, _peak(pand, "dirty_arrow_mb") or 0)
    frame_mb = first["frame_mb"]
    mem_rows = [
        ["peak RSS added during a validation (max)", f"{lg_added:.1f} MB", f"{pd_added:.1f} MB"],
        [
            "peak Arrow pool during a validation (max)",
            f"{lg_arrow:.1f} MB",
            "-" if pd_arrow is None else f"{pd_arrow:.1f} MB",
        ],
        ["the frame (pandas, deep)", f"{frame_mb:.1f} MB", f"{frame_mb:.1f} MB"],
    ]
    print(render_table(["memory", "lockgate", "pandera"], mem_rows))
    profiles = [r["profiles_s"] for r in lock if "profiles_s" in r]
    if profiles:
        print(f"lockgate's column profiles (for the HTML report, computed on first use): {_cell(profiles)} s")
    print()

    lg_fail = [r["dirty_failures"] for r in lock]
    # Every lockgate run, on pandas and on Arrow, with and without the fixed-width path, found the same.
    same_runs = all(
        r["dirty_failures"] == lg_fail[0] and r["generic_same_failures"] and r["arrow_same_failures"] for r in lock
    )
    pd_fail = None if published else pand[0]["dirty_failures"]
    same = pd_fail is not None and lg_fail[0] == pd_fail
    clean_ok = all(not r["clean_failures"] for r in lock) and (published or all(not r["clean_failures"] for r in pand))
    print("dirty frame, lockgate:", json.dumps(lg_fail[0]))
    if pd_fail is not None:
        print("dirty frame, pandera: ", json.dumps(pd_fail))
    print()

    goals = [
        {
            "goal": "clean frame >= 3x faster than pandera",
            "value": fmt_ratio(ratios["clean"]),
            "pass": (ratios["clean"] or 0) >= 3,
        },
        {
            "goal": "dirty frame >= 3x faster than pandera",
            "value": fmt_ratio(ratios["dirty"]),
            "pass": (ratios["dirty"] or 0) >= 3,
        },
        {
            "goal": "same failures found (dirty), none on the clean frame",
            "value": "same" if same and same_runs and clean_ok else ("not compared" if published else "DIFFERENT"),
            "pass": bool(same and same_runs and clean_ok),
        },
        {
            "goal": "peak memory added < half the frame",
            "value": f"{max(lg_added, lg_arrow):.1f} MB of {frame_mb / 2:.1f} MB",
            "pass": max(lg_added, lg_arrow) < frame_mb / 2,
        },
    ]
    print(
        render_table(
            ["goal", "measured", "result"], [[g["goal"], g["value"], "PASS" if g["pass"] else "FAIL"] for g in goals]
        )
    )
    print()

    if "big_s" in first:
        big_rows = [
            [
                f"{first['big_rows']:,} rows: validate(path) = read + validate",
                _cell(_pool(lock, "big_s")),
                _cell(_pool(pand, "big_s")) if pand and "big_s" in pand[0] else "-",
                fmt_ratio(_ratio(_med(_pool(pand, "big_s")), _med(_pool(lock, "big_s"))))
                if pand and "big_s" in pand[0]
                else "-",
            ],
            ["  reading the file alone (lockgate.data._sources)", _cell(_pool(lock, "big_read_s")), "-", "-"],
            ["  validate(table) on the table read", _cell(_pool(lock, "big_table_s")), "-", "-"],
            [
                "  peak RSS added (read + validate)",
                f"{_peak(lock, 'big_rss_mb') or 0:.0f} MB (table {first['big_table_mb']:.0f} MB)",
                f"{_peak(pand, 'big_rss_mb') or 0:.0f} MB" if pand and "big_s" in pand[0] else "-",
                "-",
            ],
        ]
        print(
            render_table(
                [
                    f"{first['big_rows']:,} rows from Parquet, seconds",
                    "lockgate",
                    "pandera (read_parquet + validate)",
                    "ratio",
                ],
                big_rows,
            )
        )
        print()
    if "serving" in first:
        s = first["serving"]
        srows = [
            [label, f"{s[key]['p50_us']:.0f}", f"{s[key]['p99_us']:.0f}"]
            for label, key in (
                ("1 row as a dict", "records_1"),
                ("1 row as a RecordBatch", "record_batch_1"),
                ("100 rows as dicts", "records_100"),
                ("100 rows as a RecordBatch", "record_batch_100"),
            )
        ]
        print(render_table([f"serving path, {s['columns']}-column contract, per call", "p50 us", "p99 us"], srows))
        print()
    out.update({"ratios": ratios, "goals": goals, "lockgate": lock, "pandera": pand})
    return out


def setup_pandera(python: Path) -> None:
    """The pandera venv: the anchor's pins plus pyarrow at lockgate's version (the fair comparator)."""
    import pyarrow

    pins = anchor_dir() / "pins" / "requirements-pandera.txt"
    venv = python.parent.parent
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-r", str(pins), f"pyarrow=={pyarrow.__version__}"], check=True
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--big-rows", type=int, default=10_000_000, help="rows of the Parquet file read by path (0: skip)")
    ap.add_argument("--rounds", type=int, default=3, help="processes per tool, alternating (default 3)")
    ap.add_argument("--repeats", type=int, default=5, help="validations of each frame per process (default 5)")
    ap.add_argument("--serving-calls", type=int, default=2000)
    ap.add_argument("--pandera-python", type=Path, default=None, help=f"default: the anchor venv 'venv-{PANDERA_VENV}'")
    ap.add_argument(
        "--setup-pandera", action="store_true", help="create the pandera venv (pinned + pyarrow) if missing"
    )
    ap.add_argument("--lockgate-only", action="store_true", help="no pandera: compare with its published figures")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--worker", choices=["lockgate", "pandera", "pandera-schema"], help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--big", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker == "pandera-schema":
        _finish(pandera_schema())
    if args.worker == "pandera":
        pandera_worker(args.data, args.repeats, args.big)
    if args.worker == "lockgate":
        lockgate_worker(args.data, args.repeats, args.big, args.serving_calls)

    here = Path(__file__).resolve()
    pandera_python = args.pandera_python or anchor_python(PANDERA_VENV)
    if not args.lockgate_only and not pandera_python.exists():
        if args.setup_pandera:
            setup_pandera(pandera_python)
        else:
            print(
                f"pandera's venv is missing ({pandera_python}); create it with --setup-pandera "
                f"(the anchor's pins plus pyarrow), or run --lockgate-only",
                file=sys.stderr,
            )
            return 2
    with tempfile.TemporaryDirectory(prefix="lockgate-w5-", dir=args.workdir) as tmp:
        work = Path(tmp)
        print(
            f"generating {args.rows:,} rows (and {args.big_rows:,} for the Parquet file) with the anchor's make_frame ...",
            file=sys.stderr,
        )
        facts = make_data(work, args.rows, args.big_rows)
        import yaml

        spec = None
        contract = _mirror_contract()
        if not args.lockgate_only:
            spec = run_json_process(
                [str(pandera_python), str(here), "--worker", "pandera-schema"], label="pandera schema"
            )
            contract = translate(spec)
            if contract != _mirror_contract():
                print(
                    "note: the anchor's schema changed since _mirror_contract() was written; using the translation",
                    file=sys.stderr,
                )
        (work / "contract.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
        big = ["--big", str(work / "big.parquet")] if args.big_rows else []
        common = ["--data", str(work), "--repeats", str(args.repeats), *big]
        lock: list[dict[str, Any]] = []
        pand: list[dict[str, Any]] = []
        for r in range(args.rounds):
            order = ["lockgate", "pandera"] if r % 2 == 0 else ["pandera", "lockgate"]
            for tool in order:
                if tool == "pandera" and args.lockgate_only:
                    continue
                print(f"round {r + 1}/{args.rounds}: {tool}", file=sys.stderr)
                if tool == "lockgate":
                    calls = ["--serving-calls", str(args.serving_calls if r == 0 else 0)]
                    lock.append(
                        run_json_process(
                            [sys.executable, str(here), "--worker", "lockgate", *common, *calls],
                            label="lockgate worker",
                        )
                    )
                else:
                    pand.append(
                        run_json_process(
                            [str(pandera_python), str(here), "--worker", "pandera", *common], label="pandera worker"
                        )
                    )
        print()
        print(f"lockgate {lock[0]['version']} (pandas {lock[0]['pandas']}, pyarrow {lock[0]['pyarrow']})", end="")
        if pand:
            print(f"; pandera {pand[0]['version']} (pandas {pand[0]['pandas']}, pyarrow {pand[0]['pyarrow']})", end="")
        print(f"; {machine_info()}")
        print()
        result = report(lock, pand, published=args.lockgate_only, facts=facts)
        result.update({"machine": machine_info(), "git": git_state(), "contract": contract, "pandera_schema": spec})
        print(json.dumps(result))
        ok = all(g["pass"] for g in result["goals"])
        return 0 if ok else 1


def _mirror_contract() -> dict[str, Any]:
    """For --lockgate-only (no pandera to print its schema): the anchor's make_schema, restated."""
    columns: dict[str, Any] = {"id": {"type": "int64", "nullable": False, "unique": True}}
    for i in range(14):
        spec: dict[str, Any] = {"type": "float64", "nullable": i >= 9}
        if i < 10:
            spec["min"], spec["max"] = i - 20.0 * (1 + i * 0.1), i + 20.0 * (1 + i * 0.1)
        columns[f"num_{i}"] = spec
    for j in range(5):
        columns[f"cat_{j}"] = {"type": "string", "nullable": True, "allowed": [f"c{j}_{k}" for k in range(10)]}
    return {"name": "w5", "columns": columns, "extra_columns": "error", "duplicate_rows": None}


if __name__ == "__main__":
    sys.exit(main())
