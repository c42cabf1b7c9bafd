"""``lockgate runs``: list, show, compare, search and delete runs."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.panel import Panel

from lockgate.cli._context import state
from lockgate.cli._output import JsonOpt, human_bytes, short, table
from lockgate.clock import to_iso
from lockgate.entities import RunRecord
from lockgate.errors import InvalidInputError

__all__ = ["app"]

app = typer.Typer(help="Runs: list, show, compare, search, delete.\n\nExample: lockgate runs list --experiment fraud")

ExperimentOpt = Annotated[str | None, typer.Option("--experiment", "-e", help="Only runs of this experiment.")]


def _duration(run: RunRecord) -> str:
    ms = run.duration_ms
    return "" if ms is None else f"{ms / 1000:.1f}s"


def _run_rows(runs: list[RunRecord], metric_keys: list[str]) -> list[list[str]]:
    return [
        [
            short(r.id),
            r.experiment,
            r.name,
            str(r.status),
            (to_iso(r.start_time) or "")[:19].replace("T", " "),
            _duration(r),
            *[f"{r.metrics[k]:.4g}" if k in r.metrics else "" for k in metric_keys],
        ]
        for r in runs
    ]


def _print_runs(ctx: typer.Context, runs: list[RunRecord], as_json: bool, title: str) -> None:
    out = state(ctx).output
    if as_json:
        out.json([r.to_dict() for r in runs])
        return
    if not runs:
        out.info("no runs found")
        return
    # The metrics most runs share, at most three, so the table fits a terminal.
    counts: dict[str, int] = {}
    for r in runs:
        for k in r.metrics:
            counts[k] = counts.get(k, 0) + 1
    keys = sorted(sorted(counts), key=lambda k: -counts[k])[:3]
    out.print(
        table(title, ["id", "experiment", "name", "status", "started (UTC)", "took", *keys], _run_rows(runs, keys))
    )


@app.command("list")
def list_runs(
    ctx: typer.Context,
    experiment: ExperimentOpt = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Include child runs (pipeline steps).")] = False,
    limit: Annotated[int, typer.Option(help="Show at most this many runs.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Top-level runs, newest first."""
    ws = state(ctx).workspace()
    runs = ws.runs.list(experiment=experiment, include_children=all_runs, limit=limit)
    _print_runs(ctx, runs, as_json, "runs")


@app.command()
def search(
    ctx: typer.Context,
    filter_text: Annotated[
        str, typer.Argument(metavar="FILTER", help="e.g. \"metrics.auc > 0.9 and params.max_depth = '6'\"")
    ] = "",
    experiment: ExperimentOpt = None,
    order_by: Annotated[
        list[str] | None, typer.Option("--order-by", help="e.g. 'metrics.auc desc'; repeatable.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many runs.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Runs matching a filter over metrics, params, tags and attributes."""
    ws = state(ctx).workspace()
    runs = ws.runs.search(filter_text or None, experiment=experiment, order_by=order_by, max_results=limit)
    _print_runs(ctx, runs, as_json, f"runs matching {filter_text!r}" if filter_text else "runs")


@app.command()
def show(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Run id, id prefix or runs:/<id>.")],
    as_json: JsonOpt = False,
) -> None:
    """Everything recorded about one run."""
    st = state(ctx)
    ws = st.workspace()
    record = ws.runs.get(run)
    artifacts = ws.runs.artifacts(record.id)
    env = ws.runs.environment(record.id)
    graph = ws.lineage.walk(ws.node(record.uri), direction="both", depth=1)
    inputs = [e for e in graph.edges if e.dst_id == record.id and e.src_kind == "dataset"]
    outputs = [e for e in graph.edges if e.src_id == record.id and e.dst_kind == "model_version"]
    if as_json:
        data = record.to_dict()
        data["artifacts"] = artifacts
        data["environment"] = env
        data["inputs"] = [{"dataset": e.src_id, "role": e.relation.removeprefix("input:")} for e in inputs]
        data["outputs"] = [{"model_version": e.dst_id} for e in outputs]
        st.output.json(data)
        return
    code = "no repository"
    if record.git_commit:
        code = f"{record.git_commit[:12]} on {record.git_branch}" + (
            " (dirty, diff stored)" if record.git_dirty else ""
        )
    lines = [
        f"[bold]{escape(record.experiment)}/{escape(record.name)}[/]  {record.uri}",
        escape(
            f"status {record.status}  by {record.actor}  started {to_iso(record.start_time)}  took {_duration(record)}"
        ),
        escape(f"code {code}"),
        escape(
            f"environment {short(record.environment_hash, 12)}"
            + (f"  ({env['python']}, {env['package_count']} packages)" if env else "")
        ),
    ]
    if record.parent_id:
        lines.append(f"parent runs:/{record.parent_id}")
    st.output.print(Panel("\n".join(lines), title="run", expand=False))
    if record.params:
        st.output.print(table("params", ["key", "value"], record.params.items()))
    if record.metrics:
        st.output.print(
            table("metrics (latest)", ["key", "value"], [(k, f"{v:.6g}") for k, v in record.metrics.items()])
        )
    if record.tags:
        st.output.print(table("tags", ["key", "value"], record.tags.items()))
    if inputs or outputs:
        rows = [("input", e.src_id.split("@")[0], f"datasets:/{e.src_id[: e.src_id.index('@') + 13]}") for e in inputs]
        rows += [("output", e.dst_id, f"models:/{e.dst_id}") for e in outputs]
        st.output.print(table("lineage", ["direction", "name", "reference"], rows))
    if artifacts:
        st.output.print(
            table(
                "artifacts",
                ["path", "size", "sha256"],
                [(a["path"], human_bytes(a["size"]), short(a["sha256"], 12)) for a in artifacts],
            )
        )


@app.command()
def compare(
    ctx: typer.Context,
    runs: Annotated[list[str], typer.Argument(help="Two or more run ids.")],
    as_json: JsonOpt = False,
) -> None:
    """Params and metrics of several runs side by side; differing params are marked."""
    st = state(ctx)
    if len(runs) < 2:
        raise InvalidInputError("give at least two runs to compare, e.g. lockgate runs compare 1a2b3c4d 5e6f7a8b")
    ws = st.workspace()
    records = [ws.runs.get(r) for r in runs]
    params = sorted({k for r in records for k in r.params})
    metrics = sorted({k for r in records for k in r.metrics})
    if as_json:
        st.output.json(
            {
                "runs": [r.id for r in records],
                "params": {k: [r.params.get(k) for r in records] for k in params},
                "metrics": {k: [r.metrics.get(k) for r in records] for k in metrics},
            }
        )
        return
    header = ["", *[f"{short(r.id)} {r.name}" for r in records]]
    rows: list[list[str]] = []
    for k in params:
        values = [r.params.get(k, "") for r in records]
        marker = " *" if len(set(values)) > 1 else ""
        rows.append([f"params.{k}{marker}", *values])
    for k in metrics:
        rows.append([f"metrics.{k}", *[f"{r.metrics[k]:.6g}" if k in r.metrics else "" for r in records]])
    st.output.print(table("comparison (* differs)", header, rows))


@app.command()
def delete(
    ctx: typer.Context,
    runs: Annotated[list[str], typer.Argument(help="Run ids to delete.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete runs (soft: lineage and audit keep their history)."""
    st = state(ctx)
    ws = st.workspace()
    ids = [ws.runs.resolve(r) for r in runs]
    if not yes and not typer.confirm(f"delete {len(ids)} run(s)?"):
        raise typer.Exit(1)
    ws.runs.delete(ids)
    st.output.info(f"deleted {len(ids)} run(s): {', '.join(short(i) for i in ids)}")
