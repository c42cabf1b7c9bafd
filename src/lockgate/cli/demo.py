"""``lockgate demo``: the card-fraud story, one chapter per capability.

The story's work lives in ``lockgate.examples.fraud``; this module only tells it.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import typer
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table

from lockgate.cli._context import state
from lockgate.cli._demo_rollout import RolloutPlan, rollout_chapter
from lockgate.cli._demo_serving import serving_chapter
from lockgate.cli._output import Output, human_bytes, short, table
from lockgate.cli.lineage import render
from lockgate.errors import ConflictError, InvalidInputError
from lockgate.workspace import Workspace

__all__ = ["demo"]

_MARKER = ".lockgate-demo"


def _fresh_home(path: Path) -> Path:
    """A new demo workspace; an old one is replaced only if the demo made it."""
    if path.exists():
        if not (path / _MARKER).exists():
            raise ConflictError(f"{path} exists and was not made by the demo; pass --home with a new folder")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / _MARKER).write_text("made by lockgate demo; safe to delete\n")
    return path


class _Story:
    def __init__(self, out: Output) -> None:
        self.out = out
        self.timings: list[tuple[str, str, float]] = []

    def chapter(self, title: str, work: Callable[[], tuple[Any, RenderableType, str]]) -> Any:
        started = time.perf_counter()
        with self.out.err.status(f"{title}…"):
            result, body, summary = work()
        took = time.perf_counter() - started
        self.timings.append((title, summary, took))
        return result, body, took

    def show(self, number: int, title: str, body: Any, hint: str, took: float) -> None:
        content = Group(body, f"\n[dim]see more:[/] [bold]{hint}[/]") if hint else body
        self.out.print(Panel(content, title=f"[bold]{number}. {title}[/]", subtitle=f"{took:.1f}s", expand=True))


def demo(
    ctx: typer.Context,
    home: Annotated[Path, typer.Option(help="Folder for the demo workspace (replaced if the demo made it).")] = Path(
        "demo-workspace"
    ),
    days: Annotated[int, typer.Option(help="Days of transactions to generate.")] = 60,
) -> None:
    """Run the card-fraud story end to end on the embedded defaults.

    Example: lockgate demo --home /tmp/fraud-demo
    """
    # The story's imports (scikit-learn among them) load only when the demo runs, so every
    # other command starts fast.
    from lockgate.data import report_html, verdict
    from lockgate.examples.fraud.data import generate, labels_known_at, write_daily_parquet
    from lockgate.examples.fraud.features import FEATURES, request_fields
    from lockgate.examples.fraud.features import definitions as feature_definitions
    from lockgate.examples.fraud.pipeline import CONTRACT
    from lockgate.examples.fraud.pipeline import fraud as fraud_pipeline
    from lockgate.examples.fraud.train import entity_rows, input_example
    from lockgate.examples.fraud.train import fit as fit_model
    from lockgate.pipelines import DataRef, LocalExecutor, Scheduler, TriggerService, reproduce, run_pipeline

    if days < 45:
        raise InvalidInputError(
            f"the demo needs at least 45 days of data to train before the shift, not {days}; use --days 45 or more"
        )
    out = state(ctx).output
    story = _Story(out)
    hint_env = f"LOCKGATE_HOME={home / '.lockgate'}"

    # 1. Workspace ---------------------------------------------------------------------------
    def open_ws() -> tuple[Workspace, Table, str]:
        ws = Workspace.open(_fresh_home(home) / ".lockgate")
        b = ws.backends()
        grid = Table.grid(padding=(0, 2))
        grid.add_row("workspace", str(ws.home.resolve()))
        grid.add_row("metadata", f"{b['metadata']} ({b['database_url']})")
        grid.add_row("artifacts", f"{b['artifacts']} ({b['artifact_root']})")
        grid.add_row("identity", b["identity"])
        grid.add_row("scale out", "LOCKGATE_DATABASE_URL=postgresql://…  LOCKGATE_ARTIFACT_ROOT=s3://…")
        return ws, grid, "fresh SQLite + local artifacts"

    ws, body, took = story.chapter("Workspace", open_ws)
    story.show(1, "Workspace", body, f"{hint_env} lockgate runs list", took)

    # 2. Data ----------------------------------------------------------------------------------
    def make_data() -> tuple[Any, Table, str]:
        data = generate(days=days)
        files = write_daily_parquet(data.transactions.drop_columns(["is_fraud"]), home / "data" / "transactions")
        pq.write_table(data.labels, home / "data" / "labels.parquet")
        version = ws.datasets.log(
            data.transactions.drop_columns(["is_fraud"]), name="transactions", source_uri=str(files[0].parent)
        )
        tx = data.transactions
        now = data.end
        known = labels_known_at(data, now)
        labelled = pc.sum(pc.is_valid(known["is_fraud"])).as_py() / tx.num_rows
        before = tx.filter(pc.less(tx["ts"], data.shift_start))
        after = tx.filter(pc.greater_equal(tx["ts"], data.shift_start))
        grid = Table.grid(padding=(0, 2))
        grid.add_row("transactions", f"{tx.num_rows:,} over {days} days, {len(files)} daily Parquet files")
        grid.add_row("cards", f"{pc.count_distinct(tx['card_id']).as_py():,}")
        grid.add_row("fraud rate", f"{pc.mean(pc.cast(tx['is_fraud'], 'float64')).as_py():.2%}")
        grid.add_row("labels known today", f"{labelled:.0%} (chargebacks arrive 1 to 30 days late)")
        grid.add_row(
            "last two weeks",
            f"mean amount {pc.mean(before['amount']).as_py():.0f} → {pc.mean(after['amount']).as_py():.0f}, "
            f"new category 'crypto', card testing from a new country",
        )
        grid.add_row("dataset version", f"{version.uri} ({version.num_rows:,} rows, content-hashed)")
        return data, grid, f"{tx.num_rows:,} transactions"

    data, body, took = story.chapter("Data", make_data)
    story.show(2, "Data", body, f"{hint_env} lockgate audit log --object dataset:", took)

    # 3. Data gate -------------------------------------------------------------------------------
    def gate() -> tuple[None, Group, str]:
        registered = ws.data.contracts.register(CONTRACT)
        latest = sorted((home / "data" / "transactions").glob("*.parquet"))[-1]
        today = ws.data.admit(latest, name="transactions-daily", contract=registered.ref, now=data.end)
        # An upstream release renames a column and starts sending amounts in cents; its fix
        # restores the name but not the unit. The gate stops both, each with its report.
        batch = pq.read_table(latest)
        cents = batch.set_column(batch.schema.get_field_index("amount"), "amount", pc.multiply(batch["amount"], 100.0))
        renamed = cents.rename_columns(["category" if n == "merchant_category" else n for n in cents.column_names])
        incoming = home / "data" / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        stopped = []
        for label, table_ in (("v2", renamed), ("v3", cents)):
            path = incoming / f"{latest.stem}-{label}.parquet"
            pq.write_table(table_, path)
            admission = ws.data.admit(path, name="transactions-daily", contract=registered.ref, now=data.end)
            report_file = home / "reports" / f"{path.stem}.html"
            report_file.parent.mkdir(parents=True, exist_ok=True)
            report_file.write_text(report_html(admission.report))
            stopped.append((label, admission, report_file))
        failures = table(
            None,
            ["batch", "rule", "column", "level", "rows", "e.g."],
            [
                (name, f.check, f.column or "", f.severity, f"{f.rows:,}", _example(f.examples))
                for name, admission, _ in stopped
                for f in admission.report.failures
            ],
        )
        grid = Table.grid(padding=(0, 2))
        grid.add_row("contract", f"{registered.ref} (owner {registered.owner}, {registered.compatibility} compatible)")
        assert today.dataset is not None
        grid.add_row(
            "today's batch",
            f"{verdict(today.report)} → {today.dataset.uri} records passing {registered.ref}",
        )
        for label, admission, report_file in stopped:
            grid.add_row(f"batch {label}", f"{verdict(admission.report)}; nothing registered; {report_file}")
        registered_versions = len(ws.data.versions("transactions-daily"))
        grid.add_row("registered", f"{registered_versions} version of transactions-daily (the batch that passed)")
        summary = "good batch admitted; 2 broken batches stopped"
        return None, Group(grid, failures), summary

    _, body, took = story.chapter("Data gate", gate)
    story.show(3, "Data gate", body, f"{hint_env} lockgate data versions transactions-daily", took)

    # 4. Features --------------------------------------------------------------------------------
    # The folder the feature views read, named as the training pipeline's parameter names it.
    source = str(home / "data" / "transactions")

    def features() -> tuple[None, Group, str]:
        plan = ws.features.apply(feature_definitions(source))
        tx = data.transactions
        # Training rows: one per transaction of the last fortnight, just before the transaction
        # (what serving knows when it arrives), as the training pipeline builds them.
        rows = entity_rows(tx.drop_columns(["is_fraud"]))
        recent = rows.filter(
            pc.greater_equal(rows["ts"], pa.scalar(data.shift_start, type=rows.schema.field("ts").type))
        )
        started = time.perf_counter()
        training = ws.features.training_set(recent, "fraud_v1")
        joined_s = time.perf_counter() - started
        nulls = training["avg_amount_7d"].null_count
        materialized = ws.features.materialize(end=data.end)
        online_rows = sum(v.written for v in materialized.views)
        latest = pc.index(recent["ts"], pc.max(recent["ts"])).as_py()
        card_id = recent["card_id"][latest].as_py()  # the card seen last: its values are minutes old
        started = time.perf_counter()
        answer = ws.features.online("fraud_v1", [{"card_id": card_id, "amount": 250.0}], now=data.end)[0]
        lookup_ms = (time.perf_counter() - started) * 1000
        fresh = ws.features.freshness(now=data.end)
        grid = Table.grid(padding=(0, 2))
        grid.add_row(
            "applied", f"{len(plan.added)} definitions: entity card, view card_aggregates, amount_ratio, fraud_v1"
        )
        grid.add_row(
            "training set",
            f"{training.num_rows:,} rows x {training.num_columns} columns, point in time ({joined_s:.2f}s); "
            f"{nulls:,} rows whose card had no earlier transaction within the 7-day ttl kept as nulls",
        )
        grid.add_row("online", f"{online_rows:,} cards materialized into SQLite up to {data.end:%Y-%m-%d %H:%M}")
        values = "  ".join(
            f"{name} {answer.values[name]:.2f}"
            if isinstance(answer.values[name], float)
            else f"{name} {answer.values[name]}"
            for name in answer.values
        )
        age = max((a for a in answer.ages.values() if a is not None), default=0.0)
        grid.add_row(
            "lookup", f"card {card_id}: {values}  (age {age / 3600:.1f} h, {answer.status}, {lookup_ms:.1f} ms)"
        )
        rows = [
            (
                v.view,
                f"{v.latest_event:%Y-%m-%d %H:%M}" if v.latest_event else "",
                f"{v.lag.total_seconds() / 60:.0f} min" if v.lag is not None else "",
                f"{v.sla.total_seconds() / 3600:.0f} h" if v.sla is not None else "",
                str(v.status),
            )
            for v in fresh.views
        ]
        body = Group(grid, table(None, ["view", "latest event", "lag", "SLA", "freshness"], rows))
        return None, body, f"{training.num_rows:,}-row training set, {online_rows:,} cards online"

    _, body, took = story.chapter("Features", features)
    story.show(4, "Features", body, f"{hint_env} lockgate features freshness", took)

    # 5. Training --------------------------------------------------------------------------------
    as_of = data.shift_start

    pipeline_params = {
        "transactions": DataRef(source),
        "labels": DataRef(str(home / "data" / "labels.parquet")),
        "as_of": as_of.isoformat(),
    }

    def fit() -> tuple[str, Group, str]:
        params = pipeline_params
        pool = LocalExecutor()
        # A spot eviction mid-training: once two epochs are checkpointed the workers get SIGTERM.
        evict = threading.Thread(target=_evict_after_epochs, args=(ws, pool, 2), daemon=True)
        evict.start()
        try:
            first = run_pipeline(ws, fraud_pipeline, params=params, executor=pool)
        finally:
            pool.shutdown()
        evict.join(timeout=1)
        train_run = ws.runs.get(first.step_run("train_model") or "")
        metrics = first.output("evaluate")
        frame = first.output("training_set")
        # Bound to feature service fraud_v1 as it registers: its training set came through it.
        mv = ws.models.register(
            first.output("train_model"),
            name="fraud",
            run_id=first.step_run("train_model"),
            input_example=input_example(frame),
            features=FEATURES,
            description="HistGradientBoosting on card velocity, amount and time-of-day features",
        )
        bound = ws.features.service_of(mv.uri)
        ws.models.set_alias("fraud", "champion", mv.version)
        again = run_pipeline(ws, fraud_pipeline, params=params, executor="local")
        steps = table(
            None,
            ["step", "first run", "took", "second run"],
            [
                (a.name, a.status.lower(), f"{a.seconds:.1f}s", b.status.lower())
                for a, b in zip(first.steps, again.steps, strict=True)
            ],
        )
        grid = Table.grid(padding=(0, 2))
        grid.add_row("pipeline", f"examples/fraud/pipeline.py, local process pool, run {short(first.run_id)}")
        grid.add_row("trained as of", f"{as_of:%Y-%m-%d} (labels known by then; validated on a later time slice)")
        restored = train_run.tags.get("lockgate.restored_checkpoint")
        grid.add_row(
            "eviction",
            f"workers got SIGTERM during training; train_model ran again from epoch checkpoint {restored} "
            f"(attempt {train_run.tags.get('lockgate.attempts')})"
            if restored
            else "the training finished before the simulated eviction",
        )
        grid.add_row("metrics", "  ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
        grid.add_row("registered", f"{mv.uri} from runs:/{mv.run_id}  →  models:/fraud@champion")
        grid.add_row(
            "features",
            f"training set built through feature service {bound.service}; {mv.uri} is bound to it, "
            "so serving looks its card features up online with the same definitions"
            if bound is not None
            else "not bound to a feature service",
        )
        grid.add_row("second run", f"{again.cache_hits} of {len(again.steps)} steps from the cache (nothing changed)")
        summary = (
            f"AUC {metrics['auc']:.3f}, champion = v{mv.version}, rerun {again.cache_hits}/{len(again.steps)} cached"
        )
        return first.run_id, Group(steps, grid), summary

    run_id, body, took = story.chapter("Training pipeline", fit)
    story.show(5, "Training pipeline", body, f"{hint_env} lockgate runs list --all", took)

    # 6. Reproduce ---------------------------------------------------------------------------------
    def rebuild() -> tuple[bool, Group, str]:
        report = reproduce(ws, run_id)
        rows = [(d.what, d.recorded, d.now, d.cause) for d in [*report.differences, *report.notes]]
        parts: list[RenderableType] = [
            (
                f"run {short(run_id)} rebuilt in a fresh workspace with caching off "
                f"(run {short(report.reproduced_run_id)}): every step executed again"
            ),
        ]
        if rows:
            parts.append(table(None, ["what", "recorded", "now", "likely cause"], rows))
        parts.append(f"[bold]{report.verdict}[/]")
        return report.ok, Group(*parts), report.verdict

    _, body, took = story.chapter("Reproduce", rebuild)
    story.show(6, "Reproduce", body, f"{hint_env} lockgate reproduce {short(run_id)}", took)

    # 7. Continuous training ------------------------------------------------------------------------
    def retrain_on_new_data() -> tuple[None, Group, str]:
        folder = home / "data" / "transactions"
        triggers = TriggerService(ws)
        triggers.add(
            "new-transactions",
            pipeline=f"{inspect.getsourcefile(fraud_pipeline.fn)}:fraud",
            watch=folder,
            params=pipeline_params,
            cooldown="10m",
        )
        # A late batch lands: corrections for the last day, as an upstream system would deliver.
        last_day = data.transactions.filter(pc.greater_equal(data.transactions["ts"], data.end - timedelta(days=1)))
        late = last_day.slice(0, 200).drop_columns(["is_fraud"])
        late = late.set_column(0, "transaction_id", pc.binary_join_element_wise("late-", late["transaction_id"], ""))
        pq.write_table(late, folder / f"{data.end:%Y-%m-%d}-late.parquet")
        evaluation = Scheduler(ws, executor="local", isolate=False).evaluate_once()
        (fire,) = evaluation.ran
        children = [r for r in ws.runs.search(include_children=True) if r.parent_id == fire.run_id]
        rows = [
            (r.name, "cached" if r.tags.get("lockgate.cache") == "hit" else "ran")
            for r in sorted(children, key=lambda r: r.start_time)
        ]
        grid = Table.grid(padding=(0, 2))
        grid.add_row("trigger", f"new-transactions: watches {folder.name}/ for new data (cooldown 10 min)")
        grid.add_row("arrived", f"{late.num_rows} late transactions in {data.end:%Y-%m-%d}-late.parquet")
        grid.add_row("fired", f"reason {fire.reason}; pipeline run {short(fire.run_id)} {fire.status.lower()}")
        body = Group(grid, table(None, ["step", "this run"], rows))
        reran = sum(1 for _, what in rows if what == "ran")
        return None, body, f"new data fired a run: {reran} steps ran, {len(rows) - reran} cached"

    _, body, took = story.chapter("Continuous training", retrain_on_new_data)
    story.show(7, "Continuous training", body, f"{hint_env} lockgate triggers show new-transactions", took)

    # 8. Serving -----------------------------------------------------------------------------------
    def serve() -> tuple[None, Group, str]:
        # The last day's transactions as a payment system would send them: the card and the
        # transaction's own fields; the card's history comes from the online store.
        last_day = data.transactions.filter(pc.greater_equal(data.transactions["ts"], data.end - timedelta(days=1)))
        fields = request_fields(last_day.slice(0, 300)).drop_columns(["transaction_id", "ts"])
        picked = [{k: v if isinstance(v, str) else float(v) for k, v in row.items()} for row in fields.to_pylist()]
        _, body, summary = serving_chapter(ws, picked, now=data.end)
        return None, body, summary

    _, body, took = story.chapter("Serving", serve)
    story.show(8, "Serving", body, f"{hint_env} lockgate serve --port 8080", took)

    # 9. Rollout -----------------------------------------------------------------------------------
    def roll_out() -> tuple[None, Group, str]:
        # The retrained model: the run the late batch fired (every step cached now, outputs kept).
        retrained = run_pipeline(ws, fraud_pipeline, params=pipeline_params, executor="inline")
        frame = retrained.output("training_set")
        example = input_example(frame)
        good = ws.models.register(
            retrained.output("train_model"),
            name="fraud",
            run_id=retrained.step_run("train_model"),
            input_example=example,
            features=FEATURES,
            description="retrained after the late batch arrived",
        )
        # A training bug: labels joined to the wrong rows (shuffled). It scores, fast and
        # without errors, but not like the champion: only the score PSI can tell.
        shuffled = pc.take(frame["is_fraud"], pa.array(np.random.default_rng(7).permutation(frame.num_rows)))
        broken = frame.set_column(frame.schema.get_field_index("is_fraud"), "is_fraud", shuffled)
        bad = ws.models.register(
            fit_model(broken, {"max_iter": 20}),
            name="fraud",
            input_example=example,
            features=FEATURES,
            feature_service="fraud_v1",
            description="labels joined on the wrong key",
        )
        # Every transaction with its features as of training: the nightly batch to score.
        batch_input = home / "data" / "to-score.parquet"
        pq.write_table(
            pa.Table.from_pandas(input_example(frame, rows=frame.num_rows), preserve_index=False), batch_input
        )
        recent = frame.slice(max(0, frame.num_rows - 20_000))
        records = input_example(recent, rows=2000).to_dict("records")
        last_day = data.transactions.filter(pc.greater_equal(data.transactions["ts"], data.end - timedelta(days=1)))
        fields = request_fields(last_day.slice(0, 50)).drop_columns(["transaction_id", "ts"])
        entities = [{k: v if isinstance(v, str) else float(v) for k, v in row.items()} for row in fields.to_pylist()]
        plan = RolloutPlan(
            good=good.uri,
            bad=bad.uri,
            bad_story="labels joined on the wrong key",
            records=records,
            entities=entities,
            batch_input=batch_input,
            batch_output=home / "scores.parquet",
            now=data.end,
        )
        body, summary = rollout_chapter(ws, plan)
        return None, body, summary

    _, body, took = story.chapter("Rollout", roll_out)
    story.show(9, "Rollout", body, f"{hint_env} lockgate deploy status fraud-api", took)

    # 10. Lineage -----------------------------------------------------------------------------------
    def trace() -> tuple[None, Group, str]:
        graph = ws.lineage_of("models:/fraud@champion", direction="upstream")
        events = ws.openlineage("models:/fraud@champion", direction="upstream")
        model = ws.models.load("models:/fraud@champion")
        trees = render(ws, graph, "upstream")
        note = (
            f"\n{len(graph.edges)} edges; {len(events)} OpenLineage RunEvents; "
            f"champion loaded after its sha256 was verified ({type(model).__name__})"
        )
        return None, Group(*trees, note), f"{len(graph.nodes)} nodes traced"

    _, body, took = story.chapter("Lineage", trace)
    story.show(10, "Lineage", body, f"{hint_env} lockgate lineage models:/fraud@champion --format openlineage", took)

    # 11. Audit ------------------------------------------------------------------------------------
    def audit() -> tuple[None, Group, str]:
        report = ws.audit.verify()
        events = ws.audit.events(limit=6)
        rows = [(e.seq, e.actor, e.action, f"{e.object_kind}:{e.object_id[:40]}") for e in events]
        status = "[green]verified[/]" if report.ok else f"[red]BROKEN at {report.first_broken_seq}[/]"
        return (
            None,
            Group(
                f"{report.events_checked} events, hash-chained and sealed with the workspace key: {status}",
                table(None, ["seq", "actor", "action", "object"], rows),
            ),
            f"{report.events_checked} events verified",
        )

    _, body, took = story.chapter("Audit", audit)
    story.show(11, "Audit", body, f"{hint_env} lockgate audit verify", took)

    size = sum(o.size for o in ws.artifacts.iter_objects())
    summary = table(
        f"lockgate demo: done in {sum(t for _, _, t in story.timings):.1f}s ({human_bytes(size)} of artifacts)",
        ["chapter", "what happened", "took"],
        [(name, what, f"{t:.1f}s") for name, what, t in story.timings],
    )
    out.print(summary)
    out.print(
        Panel(
            "\n".join(
                [
                    f"export LOCKGATE_HOME={(home / '.lockgate').resolve()}",
                    "lockgate models show models:/fraud@champion",
                    "lockgate lineage models:/fraud@champion --upstream",
                    'lockgate runs search "metrics.auc > 0.9" --experiment fraud',
                ]
            ),
            title="try next",
            expand=False,
        )
    )
    ws.close()


def _evict_after_epochs(ws: Workspace, pool: Any, epochs: int) -> None:
    """Send SIGTERM to the pool's workers, as a spot eviction would, once the training step
    has checkpointed ``epochs`` epochs (gives up quietly after a minute)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        saved = [n for n in ws.artifacts.list_named("checkpoints") if "/train_model/" in n and n.endswith(".ckpt")]
        if saved and max(int(n.rsplit("/", 1)[-1].split("-", 1)[0]) for n in saved) >= epochs:
            for pid in pool.worker_pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            return
        time.sleep(0.05)


def _example(values: Any) -> str:
    """The first example value of a failure, short enough for a table cell."""
    if not values:
        return ""
    first = values[0]
    return f"{first:.6g}" if isinstance(first, float) else str(first)[:24]
