"""``lockgate features``: apply definitions (with a diff), list and show them with their
consumers, materialize with a progress bar, and check freshness and training-serving skew.

The offline and online engines (DuckDB, SQLite or Redis) and scipy are imported by the
commands that use them, never at start.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from lockgate.cli._context import state
from lockgate.cli._output import JsonOpt, Output, short, table
from lockgate.clock import to_iso
from lockgate.errors import InvalidInputError
from lockgate.features import (
    ApplyPlan,
    IncompatibleFeatureChange,
    RegisteredDefinition,
)
from lockgate.features._catalog import feature_type_names
from lockgate.features._freshness import readable
from lockgate.features._specs import view_from_spec

__all__ = ["app"]

app = typer.Typer(
    help="The feature store: apply, list, show, materialize, freshness, skew.\n\n"
    "Example: lockgate features apply examples/fraud/features.py --dry-run"
)

_MARK = {"added": "+", "changed": "~", "unchanged": "=", "removed": "-"}


def _when(ms: int | None) -> str:
    return (to_iso(ms) or "")[:16].replace("T", " ")


def _time(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _seconds(value: timedelta | None) -> str:
    return "" if value is None else readable(value)


def _parse_time(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    if text == "now":
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError(
            f"{option} {text!r} is not a time; write it as ISO 8601, e.g. 2026-11-28T06:00:00Z, or 'now'"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# -- apply ---------------------------------------------------------------------------------------


@app.command()
def apply(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A Python file defining entities, views, on-demand features, services.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; write nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Register the definitions in FILE and show what changed; refused (exit 1), naming each
    model version, when a change removes or retypes a feature a registered model reads.

    Example: lockgate features apply examples/fraud/features.py
    """
    st = state(ctx)
    features = st.workspace().features
    try:
        plan = features.apply(file, dry_run=dry_run)
    except IncompatibleFeatureChange as exc:
        _print_plan(st.output, exc.plan, as_json)
        if not as_json:
            _print_violations(st.output, exc.plan)
        raise typer.Exit(1) from None
    _print_plan(st.output, plan, as_json)
    if plan.violations:  # a dry run reports what the real one would refuse
        if not as_json:
            _print_violations(st.output, plan)
        raise typer.Exit(1)


def _print_plan(output: Output, plan: ApplyPlan, as_json: bool) -> None:
    if as_json:
        output.json(plan.to_dict())
        return
    for change in plan.changes:
        if change.action == "unchanged":
            continue
        label = f"{_MARK[change.action]} {change.kind.replace('_', ' ')} {change.name}"
        if change.action == "added":
            output.print(escape(f"{label} (version {short(change.version, 12)})"))
        elif change.action == "changed":
            output.print(escape(f"{label} ({short(change.previous, 12)} → {short(change.version, 12)})"))
            for field in change.fields:
                output.print(escape(f"    {field}"))
        else:
            output.print(escape(f"{label} (not in the file; kept registered, apply never deletes)"))
    verb = "would apply" if not plan.applied and not plan.violations else "applied" if plan.applied else "refused"
    output.info(f"{verb}: {plan.summary()}")


def _print_violations(output: Output, plan: ApplyPlan) -> None:
    count = len(plan.violations)
    output.error(f"the definitions were not applied: {count} consumer{'s' if count != 1 else ''} would break")
    for v in plan.violations:
        output.err.print(f"  - {v.message}", soft_wrap=True, markup=False, highlight=False)


# -- list and show -------------------------------------------------------------------------------


@app.command("list")
def list_definitions(
    ctx: typer.Context,
    kind: Annotated[
        str | None, typer.Option(help="Only this kind: entity, feature_view, on_demand_feature, feature_service.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every registered definition's current version, with owner and the model versions using it.

    Example: lockgate features list --kind feature_view
    """
    st = state(ctx)
    registry = st.workspace().features.registry
    found = registry.list(kind)
    consumers = {d.name: registry.consumers(d.name) for d in found if d.kind == "feature_view"}
    if as_json:
        st.output.json(
            [
                {**_meta(d), "consumers": [c.to_dict() for c in consumers.get(d.name, [])]}
                if d.kind == "feature_view"
                else _meta(d)
                for d in found
            ]
        )
        return
    if not found:
        st.output.info("no feature definitions registered yet; apply some: lockgate features apply FILE")
        return
    rows = [
        (
            d.kind.replace("_", " "),
            d.name,
            short(d.version, 12),
            d.spec.get("owner") or "",
            ", ".join(str(c) for c in consumers.get(d.name, [])),
            _when(d.created_at),
            d.created_by,
        )
        for d in found
    ]
    st.output.print(
        table("feature definitions", ["kind", "name", "version", "owner", "used by", "applied (UTC)", "by"], rows)
    )


@app.command()
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A feature view (or entity, on-demand feature, service) name.")],
    kind: Annotated[str | None, typer.Option(help="The kind, when several kinds use the name.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """A definition: its fields, features, owner, the model versions using it, and its versions.

    Example: lockgate features show card_aggregates
    """
    st = state(ctx)
    features = st.workspace().features
    registry = features.registry
    found = registry.get(name, kind=kind)
    history = registry.versions(name, kind=found.kind)
    consumers = registry.consumers(name) if found.kind == "feature_view" else []
    bindings = registry.bindings(service=name) if found.kind == "feature_service" else []
    if as_json:
        st.output.json(
            {
                **found.to_dict(),
                "consumers": [c.to_dict() for c in consumers],
                "bindings": [b.to_dict() for b in bindings],
                "history": [_meta(v) for v in history],
            }
        )
        return
    spec = found.spec
    st.output.print(
        escape(
            f"{found.kind.replace('_', ' ')} {found.name}  version {short(found.version, 12)}  "
            f"applied {_when(found.created_at)} UTC by {found.created_by}"
        )
    )
    for key in ("description", "owner"):
        if spec.get(key):
            st.output.print(escape(f"{key}: {spec[key]}"))
    if found.kind == "feature_view":
        _show_view(st.output, spec)
        users = [(str(c), c.via or "(feature references)", ", ".join(c.features)) for c in consumers]
        st.output.print(table("used by", ["model version", "through service", "features"], users or [("none", "", "")]))
    elif found.kind == "feature_service":
        st.output.print(escape("features: " + ", ".join(spec["features"])))
        rows = [(b.model_ref, short(b.service_version, 12), _when(b.created_at), b.created_by) for b in bindings]
        st.output.print(table("bound model versions", ["model version", "service version", "bound (UTC)", "by"], rows))
    elif found.kind == "on_demand_feature":
        st.output.print(escape(f"inputs: {', '.join(spec['inputs'])}  type: {spec['dtype']}"))
        st.output.print(escape(f"examples: {len(spec.get('examples') or [])}  defined in: {found.origin or 'unknown'}"))
    else:
        st.output.print(escape(f"join keys: {', '.join(spec['join_keys'])}"))
    st.output.print(
        table(
            f"versions of {name}",
            ["version", "current", "applied (UTC)", "by"],
            [(short(v.version, 12), "yes" if v.current else "", _when(v.created_at), v.created_by) for v in history],
        )
    )


def _show_view(output: Output, spec: dict[str, Any]) -> None:
    source = spec["source"]
    keys = ", ".join(k for e in spec["entities"] for k in e["join_keys"])
    output.print(escape(f"entities: {', '.join(e['name'] for e in spec['entities'])} (join keys {keys})"))
    output.print(escape(f"source: {source['path']} (event time {source['event_time']})"))
    output.print(
        escape(
            f"ttl {spec['ttl']}  freshness SLA {spec.get('freshness_sla') or 'none'}  "
            f"stale policy {spec['stale_policy']}  online {'yes' if spec.get('online', True) else 'no'}"
        )
    )
    if spec.get("tags"):
        output.print(escape("tags: " + ", ".join(f"{k}={v}" for k, v in spec["tags"].items())))
    types = feature_type_names(view_from_spec(spec))
    if spec.get("aggregations"):
        how = {a["name"]: f"{a['function']}({a['column']}) over {a['window']}" for a in spec["aggregations"]}
    else:
        how = dict.fromkeys(types, "sql" if spec.get("sql") else "from the source")
    output.print(table("features", ["feature", "type", "computed as"], [(n, t, how[n]) for n, t in types.items()]))


def _meta(d: RegisteredDefinition) -> dict[str, Any]:
    return {k: v for k, v in d.to_dict().items() if k != "spec"} | {"owner": d.spec.get("owner")}


# -- materialize ---------------------------------------------------------------------------------


@app.command()
def materialize(
    ctx: typer.Context,
    start: Annotated[
        str | None, typer.Option(help="Re-read from this time (ISO 8601), instead of where the last run stopped.")
    ] = None,
    end: Annotated[str | None, typer.Option(help="Up to this time (ISO 8601; default now).")] = None,
    view: Annotated[list[str] | None, typer.Option("--view", help="Only this view; repeatable.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compute computed views into the offline store, then bring the online store up to END,
    incrementally, with a progress bar per view.

    Example: lockgate features materialize --end 2026-11-28T06:00:00Z
    """
    st = state(ctx)
    features = st.workspace().features
    begin, until = _parse_time(start, "--start"), _parse_time(end, "--end")
    with _Bars(st.output, enabled=not as_json) as bars:
        report = features.materialize(start=begin, end=until, views=view, progress=bars.update)
    if as_json:
        st.output.json(report.to_dict())
        return
    for name, rows in report.computed.items():
        st.output.info(f"computed {name}: {rows} rows written to the offline store")
    rows_ = [
        (r.view, _time(r.start) or "(beginning)", _time(r.end), r.rows_in_window, r.entities, r.written)
        for r in report.views
    ]
    st.output.print(
        table(
            f"materialized up to {_time(report.end)}",
            ["view", "from", "to", "rows in window", "entities", "written"],
            rows_,
        )
    )


class _Bars:
    """One rich progress bar per view (rows, rate, time left) on a terminal; nothing otherwise."""

    def __init__(self, output: Output, *, enabled: bool) -> None:
        self._enabled = enabled and not output.quiet and output.err.is_terminal
        self._output = output
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> _Bars:
        if self._enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                ProgressColumn,
                Task,
                TextColumn,
                TimeRemainingColumn,
            )
            from rich.text import Text

            class Rate(ProgressColumn):
                """Rows per second (rich's own speed column counts bytes)."""

                def render(self, task: Task) -> Text:
                    return Text("" if task.speed is None else f"{task.speed:,.0f} rows/s")

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                Rate(),
                TimeRemainingColumn(),
                console=self._output.err,
            )
            self._progress.start()
        return self

    def update(self, view: str, rows: int, total: int | None) -> None:
        if self._progress is None:
            return
        task = self._tasks.get(view)
        if task is None or (total is not None and self._progress.tasks[task].total is None):
            label = f"{view} (computing)" if total is None else view
            if task is not None:
                self._progress.update(task, description=label, total=total, completed=rows)
                return
            self._tasks[view] = self._progress.add_task(label, total=total)
            return
        self._progress.update(task, completed=rows)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


# -- freshness and skew --------------------------------------------------------------------------


@app.command()
def freshness(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Per view: the newest event, how far behind now it is, the SLA, and a status; exit 1 when a
    view is late or has no rows (a gate for CI and schedules).

    Example: lockgate features freshness --json
    """
    st = state(ctx)
    report = st.workspace().features.freshness()
    if as_json:
        st.output.json(report.to_dict())
    elif not report.views:
        st.output.info("no feature views registered yet; apply some: lockgate features apply FILE")
    else:
        rows = [
            (
                v.view,
                _time(v.latest_event),
                _seconds(v.lag),
                _seconds(v.sla) or "none",
                v.status.upper() if not v.passed else v.status,
                _time(v.materialized_through),
            )
            for v in report.views
        ]
        st.output.print(
            table(
                f"freshness at {_time(report.now)}",
                ["view", "latest event", "lag", "SLA", "status", "online through"],
                rows,
            )
        )
    if not report.passed:
        if not as_json:
            names = ", ".join(v.view for v in report.failures)
            st.output.error(f"not fresh: {names}; check the upstream data, then: lockgate features materialize")
        raise typer.Exit(1)


@app.command()
def skew(
    ctx: typer.Context,
    view: Annotated[str, typer.Argument(help="A feature view.")],
    sample: Annotated[int, typer.Option(help="Compare up to this many entities.")] = 1000,
    payload: Annotated[
        Path | None, typer.Option(help="A JSON file with an example serving payload (a row of fields, or rows).")
    ] = None,
    psi_max: Annotated[float, typer.Option(help="Fail a feature whose PSI is above this.")] = 0.2,
    ks_alpha: Annotated[float, typer.Option(help="Fail a feature whose KS test p-value is below this.")] = 0.01,
    as_json: JsonOpt = False,
) -> None:
    """Compare the online store's values with the offline data for the same entities (PSI and KS
    per feature) and check an example payload against the definitions; exit 1 on skew.

    Example: lockgate features skew card_aggregates --payload request.json
    """
    st = state(ctx)
    example = _read_payload(payload) if payload is not None else None
    report = st.workspace().features.skew(view, sample=sample, payload=example, psi_max=psi_max, ks_alpha=ks_alpha)
    if as_json:
        st.output.json(report.to_dict())
    else:
        rows = [
            (
                f.feature,
                f.dtype,
                f"{f.psi:.4f}",
                "" if f.ks_statistic is None else f"{f.ks_statistic:.3f}",
                "" if f.ks_pvalue is None else f"{f.ks_pvalue:.3g}",
                f"{f.mismatched}/{f.entities}",
                f.missing_online,
                "ok" if f.passed else "SKEW",
            )
            for f in report.features
        ]
        st.output.print(
            table(
                f"skew of {view}: online vs offline for {report.entities} entities",
                ["feature", "type", "PSI", "KS", "KS p", "differ", "missing online", "result"],
                rows,
            )
        )
        for p in report.payload or []:
            st.output.print(escape(f"payload {p.severity}: {p.message}"))
    if not report.passed:
        if not as_json:
            st.output.error(
                f"feature view '{view}' fails the skew check (a feature with PSI above {psi_max} or KS p below "
                f"{ks_alpha}, or a payload error); materialize it again or fix the payload"
            )
        raise typer.Exit(1)


def _read_payload(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise InvalidInputError(
            f"cannot read the payload file {path} ({exc.strerror or exc}); check the path"
        ) from None
    except ValueError as exc:
        raise InvalidInputError(f"the payload file {path} is not JSON ({exc}); fix it") from None
