"""W6 in process: lockgate's model runtimes against the bare model calls, no server.

The anchor's W6 model and data (``shared/bench/anchors/w6_common.py``, imported from the
anchor folder, never copied): GradientBoostingClassifier(100 trees, depth 3) on 20,000 x 20
rows, requests drawn from ``default_rng(1)``. For batch sizes 1, 8 and 32, each method is
timed per call (``--calls`` calls per method per repeat after 200 warm-up calls; methods
alternate within each repeat, as the anchor's ``w6_inprocess.py`` does):

- ``sklearn_numpy``: ``model.predict_proba`` on a prebuilt float64 array (the anchor's 444 µs row)
- ``sklearn_pandas``: ``model.predict_proba`` on a prebuilt DataFrame (the anchor's 1,364 µs row)
- ``lockgate_sklearn``: ``SklearnRuntime.predict`` on a prebuilt ``NumericBatch`` (labels and
  probabilities, both, as serving returns them)
- ``onnx_bare``: ``InferenceSession.run`` on a prebuilt float32 array, one intra-op thread
  (the anchor's 9.9 µs row); ``onnx_default_session``: the same with onnxruntime's default
  session options, to show what the tuning buys
- ``lockgate_onnx``: ``OnnxRuntime.predict`` (converted by ``OnnxRuntime.convert`` and
  checked against scikit-learn on 32 rows)
- ``lockgate_onnx_from_records``: ``from_records`` on JSON-like dicts, then ``OnnxRuntime.predict``
  (the request path minus HTTP)

Prints a table and, last, one JSON line. Run from the repo root:

    .venv/bin/python bench/w6_inprocess_runtimes.py [--calls 2000] [--repeats 3] [--model model.pkl]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import anchor_dir, machine_info, pct_us, render_table

from lockgate.serving import NumericBatch, OnnxRuntime, Signature, SklearnRuntime, from_records

BATCHES = (1, 8, 32)


def load_w6_common() -> Any:
    path = anchor_dir() / "w6_common.py"
    spec = importlib.util.spec_from_file_location("w6_common", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}; set LOCKGATE_ANCHORS to the anchors folder")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def time_calls(fn: Callable[[], Any], calls: int) -> list[float]:
    pc = time.perf_counter
    ts = []
    for _ in range(calls):
        t0 = pc()
        fn()
        ts.append(pc() - t0)
    return ts


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default=None, help="the anchor's model.pkl (default: train it here, about 15 s)")
    a = ap.parse_args()

    import onnxruntime as ort
    import pandas as pd
    import sklearn
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    # The bare numpy call on a model fitted on a DataFrame warns on every call.
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    c = load_w6_common()
    t0 = time.perf_counter()
    model = c.load_or_train(a.model)
    fit_s = time.perf_counter() - t0
    signature = Signature.from_registry(
        {"inputs": [{"name": n, "type": "double"} for n in c.COLUMNS], "kind": "classifier", "classes": [0, 1]}
    )
    rows = np.random.default_rng(1).normal(size=(max(BATCHES), c.N_FEATURES)).round(6)
    rows[0] = c.request_row()  # the anchor's single request row first

    sk_rt = SklearnRuntime(model, signature)
    example = NumericBatch(rows[:32].copy(), signature.names)
    conversion = OnnxRuntime.convert(model, signature, example)
    if conversion.runtime is None:
        raise SystemExit(f"ONNX conversion rejected: {conversion.reason}")
    onnx_rt = conversion.runtime
    onx = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, c.N_FEATURES]))],
        options={id(model): {"zipmap": False}},
    )
    tuned = ort.SessionOptions()
    tuned.intra_op_num_threads = 1
    bare = ort.InferenceSession(onx.SerializeToString(), tuned, providers=["CPUExecutionProvider"])
    default = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    out_name = bare.get_outputs()[1].name

    results: dict[str, dict[int, list[dict[str, float | int]]]] = {}
    checks: dict[str, float] = {}
    for n in BATCHES:
        arr = rows[:n].copy()
        arr32 = arr.astype(np.float32)
        df = pd.DataFrame(arr, columns=c.COLUMNS)
        batch = NumericBatch(arr.copy(), signature.names)
        records = [dict(zip(c.COLUMNS, map(float, r), strict=True)) for r in arr]
        fns: dict[str, Callable[[], Any]] = {
            "sklearn_numpy": lambda arr=arr: model.predict_proba(arr),
            "sklearn_pandas": lambda df=df: model.predict_proba(df),
            "lockgate_sklearn": lambda batch=batch: sk_rt.predict(batch),
            "onnx_bare": lambda arr32=arr32: bare.run([out_name], {"input": arr32}),
            "onnx_default_session": lambda arr32=arr32: default.run([out_name], {"input": arr32}),
            "lockgate_onnx": lambda batch=batch: onnx_rt.predict(batch),
            "lockgate_onnx_from_records": lambda records=records: onnx_rt.predict(from_records(records, signature)),
        }
        ref = model.predict_proba(arr)
        lg_sk = sk_rt.predict(batch)
        lg_onnx = onnx_rt.predict(batch)
        checks[f"sklearn_runtime_max_abs_diff_n{n}"] = float(np.abs(lg_sk.probabilities - ref).max())
        checks[f"onnx_runtime_max_abs_diff_n{n}"] = float(np.abs(lg_onnx.probabilities - ref).max())
        if not (np.array_equal(lg_sk.label, model.predict(arr)) and np.array_equal(lg_onnx.label, model.predict(arr))):
            print("MISMATCH: labels differ from model.predict", file=sys.stderr)
            return 1
        for fn in fns.values():
            for _ in range(200):
                fn()
        for _ in range(a.repeats):
            for name, fn in fns.items():
                results.setdefault(name, {}).setdefault(n, []).append(pct_us(time_calls(fn, a.calls)))

    def p50(name: str, n: int) -> float:
        return statistics.median(float(r["p50_us"]) for r in results[name][n])

    table = []
    for name in results:
        row = [name]
        for n in BATCHES:
            runs = [float(r["p50_us"]) for r in results[name][n]]
            row.append(f"{p50(name, n):,.1f} ({min(runs):,.1f}-{max(runs):,.1f})")
            row.append(f"{p50(name, n) / n:,.2f}")
        table.append(row)
    headers = ["method"] + [h for n in BATCHES for h in (f"p50 µs/call n={n}", f"µs/row n={n}")]
    print(render_table(headers, table))
    overhead = {
        f"n={n}": {
            "lockgate_sklearn_minus_sklearn_numpy_us": round(p50("lockgate_sklearn", n) - p50("sklearn_numpy", n), 1),
            "lockgate_onnx_minus_onnx_bare_us": round(p50("lockgate_onnx", n) - p50("onnx_bare", n), 1),
            "from_records_us": round(p50("lockgate_onnx_from_records", n) - p50("lockgate_onnx", n), 1),
        }
        for n in BATCHES
    }
    print(json.dumps(overhead, indent=1))
    info = {
        "workload": "W6-inprocess-runtimes",
        "versions": {
            "sklearn": sklearn.__version__,
            "onnxruntime": ort.__version__,
            "pandas": pd.__version__,
            "numpy": np.__version__,
        },
        "calls": a.calls,
        "repeats": a.repeats,
        "model_fit_or_load_s": round(fit_s, 2),
        "onnx_check_max_abs_diff_32_rows": conversion.max_abs_diff,
        "checks": checks,
        "p50_us": {
            name: {str(n): [r["p50_us"] for r in runs] for n, runs in per.items()} for name, per in results.items()
        },
        "p99_us": {
            name: {str(n): [r["p99_us"] for r in runs] for n, runs in per.items()} for name, per in results.items()
        },
        "overhead_us": overhead,
        "machine": machine_info(),
    }
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
