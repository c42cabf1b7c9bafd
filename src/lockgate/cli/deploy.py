"""``lockgate deploy``: deployments, the named records a server serves model versions under."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from lockgate.cli._context import state
from lockgate.cli._output import JsonOpt, table
from lockgate.clock import to_iso
from lockgate.deploy import Deployment, ResolvedDeployment
from lockgate.errors import InvalidInputError
from lockgate.workspace import Workspace

__all__ = ["app"]

app = typer.Typer(
    help="Deployments and their rollouts: create, list, show, update, delete; shadow, canary, split, "
    "status, promote, rollback.\n\n"
    "Example: lockgate deploy create fraud-api --model models:/fraud@champion"
)

NameArg = Annotated[str, typer.Argument(help="The deployment's name.")]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", help="models:/NAME@ALIAS follows the alias; models:/NAME/N pins a version."),
]
BatchOpt = Annotated[int | None, typer.Option("--max-batch-size", help="Rows batched into one model call.")]
WaitOpt = Annotated[int | None, typer.Option("--max-wait-ms", help="How long a batch waits to fill, in ms.")]
QueueOpt = Annotated[int | None, typer.Option("--max-queue", help="Waiting requests before load is shed.")]
ServiceOpt = Annotated[
    str | None,
    typer.Option("--feature-service", help="Feature service for entity lookups (default: the model's binding)."),
]
StaleOpt = Annotated[
    str | None,
    typer.Option("--stale-policy", help="fail_closed, default or last_known (default: each feature view's own)."),
]
ContractOpt = Annotated[
    str | None,
    typer.Option("--contract", help="A registered data contract every request's rows must pass before scoring."),
]


def _settings(**options: Any) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}


def _when(ms: int) -> str:
    return (to_iso(ms) or "")[:19].replace("T", " ")


def _serves(resolved: ResolvedDeployment | None) -> str:
    if resolved is None:
        return ""
    return ", ".join(r.uri or "nothing (see show)" for r in resolved.routes)


@app.command()
def create(
    ctx: typer.Context,
    name: NameArg,
    model: Annotated[
        str, typer.Option("--model", help="models:/NAME@ALIAS follows the alias; models:/NAME/N pins a version.")
    ],
    max_batch_size: BatchOpt = None,
    max_wait_ms: WaitOpt = None,
    max_queue: QueueOpt = None,
    feature_service: ServiceOpt = None,
    stale_policy: StaleOpt = None,
    contract: ContractOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Deploy a model under a name (audited); a running server picks it up.

    Example: lockgate deploy create fraud-pinned --model models:/fraud/3 --max-batch-size 64
    """
    st = state(ctx)
    ws = st.workspace()
    settings = _settings(
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        max_queue=max_queue,
        feature_service=feature_service,
        stale_policy=stale_policy,
        contract=contract,
    )
    deployment = ws.deployments.create(name, model, settings=settings)
    resolved = ws.deployments.resolve_many([deployment])[name]
    if as_json:
        st.output.json(_show_dict(deployment, resolved))
        return
    follows = deployment.primary.follows
    how = f"following {deployment.primary.model}" if follows else "pinned"
    st.output.info(f"created deployment {name}: serves {_serves(resolved)} ({how}), revision {deployment.revision}")


@app.command("list")
def list_deployments(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every deployment, with the model versions it serves now."""
    st = state(ctx)
    ws = st.workspace()
    found = ws.deployments.list()
    resolved = ws.deployments.resolve_many(found)
    if as_json:
        st.output.json([_show_dict(d, resolved.get(d.name)) for d in found])
        return
    if not found:
        st.output.info("no deployments yet; create one: lockgate deploy create NAME --model models:/NAME@ALIAS")
        return
    rows = [
        (
            d.name,
            d.primary.model,
            _serves(resolved.get(d.name)),
            d.revision,
            f"{_when(d.updated_at)} by {d.updated_by}",
        )
        for d in found
    ]
    st.output.print(table("deployments", ["name", "model", "serves now", "revision", "updated (UTC)"], rows))


@app.command()
def show(ctx: typer.Context, name: NameArg, as_json: JsonOpt = False) -> None:
    """One deployment: its routes and the versions they resolve to now, settings, revision, history."""
    st = state(ctx)
    ws = st.workspace()
    deployment = ws.deployments.get(name)
    resolved = ws.deployments.resolve_many([deployment]).get(name)
    if as_json:
        st.output.json(_show_dict(deployment, resolved))
        return
    s = deployment.settings
    st.output.print(
        table(
            f"deployment {deployment.name}",
            ["field", "value"],
            [
                ("revision", deployment.revision),
                ("max batch size", s.max_batch_size),
                ("max wait", f"{s.max_wait_ms} ms"),
                ("max queue", s.max_queue),
                ("stale policy", s.stale_policy or "each feature view's own"),
                ("feature service", s.feature_service or "the one the model version is bound to"),
                ("contract", s.contract or "none (the model's signature is checked)"),
                ("created", f"{_when(deployment.created_at)} by {deployment.created_by}"),
                ("updated", f"{_when(deployment.updated_at)} by {deployment.updated_by}"),
            ],
        )
    )
    routes = resolved.routes if resolved else ()
    rows = [(r.route.role, f"{r.route.weight:g}", r.route.model, r.uri or "nothing", r.problem or "") for r in routes]
    st.output.print(table("routes", ["role", "weight", "model", "serves now", "problem"], rows))


@app.command()
def update(
    ctx: typer.Context,
    name: NameArg,
    model: ModelOpt = None,
    max_batch_size: BatchOpt = None,
    max_wait_ms: WaitOpt = None,
    max_queue: QueueOpt = None,
    feature_service: ServiceOpt = None,
    stale_policy: StaleOpt = None,
    contract: ContractOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a deployment's model or settings (only the options given); audited.

    Example: lockgate deploy update fraud-api --model models:/fraud/4 --max-wait-ms 2
    """
    st = state(ctx)
    ws = st.workspace()
    settings = _settings(
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        max_queue=max_queue,
        feature_service=feature_service,
        stale_policy=stale_policy,
        contract=contract,
    )
    before = ws.deployments.get(name)
    deployment = ws.deployments.update(name, model=model, settings=settings or None)
    if as_json:
        st.output.json(_show_dict(deployment, ws.deployments.resolve_many([deployment]).get(name)))
        return
    if deployment.revision == before.revision:
        st.output.info(f"deployment {name} unchanged (revision {deployment.revision})")
    else:
        st.output.info(f"updated deployment {name} to revision {deployment.revision}")


@app.command()
def delete(
    ctx: typer.Context,
    name: NameArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a deployment; running servers stop serving it (the audit log keeps its history)."""
    st = state(ctx)
    ws = st.workspace()
    ws.deployments.get(name)
    if not yes and not typer.confirm(f"delete deployment {name}?"):
        raise typer.Exit(1)
    ws.deployments.delete(name)
    st.output.info(f"deleted deployment {name}")


def _show_dict(deployment: Deployment, resolved: ResolvedDeployment | None) -> dict[str, Any]:
    data = deployment.to_dict()
    if resolved is not None:
        data["routes"] = [r.to_dict() for r in resolved.routes]
    return data


# -- rollouts ---------------------------------------------------------------------------------

CandidateOpt = Annotated[str, typer.Option("--candidate", help="The model version to roll out: models:/NAME/N.")]
StickyOpt = Annotated[
    str | None,
    typer.Option("--sticky-key", help="A record field that keeps one caller on one arm (entities use their keys)."),
]


@app.command()
def shadow(ctx: typer.Context, name: NameArg, candidate: CandidateOpt, as_json: JsonOpt = False) -> None:
    """Send a copy of every request to a candidate, off the response path; both answers are logged.

    Example: lockgate deploy shadow fraud-api --candidate models:/fraud/5
    """
    st = state(ctx)
    deployment = st.workspace().rollouts.shadow(name, candidate)
    _started(st, deployment, as_json, f"{name}: {_candidate(deployment)} shadows every request")


@app.command()
def canary(
    ctx: typer.Context,
    name: NameArg,
    candidate: CandidateOpt,
    steps: Annotated[str, typer.Option("--steps", help="Traffic percentages, rising to 100.")] = "5,25,50,100",
    interval: Annotated[str, typer.Option("--interval", help="Time between analyses: 60s, 5m, ...")] = "60s",
    max_error_rate_increase: Annotated[
        float | None, typer.Option("--max-error-rate-increase", help="Error rate allowed over the stable one's.")
    ] = None,
    max_latency_ratio: Annotated[
        float | None, typer.Option("--max-latency-ratio", help="p99 latency allowed, times the stable one's.")
    ] = None,
    max_psi: Annotated[float | None, typer.Option("--max-psi", help="Largest score PSI against stable.")] = None,
    min_requests: Annotated[
        int | None, typer.Option("--min-requests", help="Requests per arm a window needs to be judged.")
    ] = None,
    failure_limit: Annotated[
        int | None, typer.Option("--failure-limit", help="Failed analyses in a row that roll back.")
    ] = None,
    sticky_key: StickyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Start a canary: the analysis advances it through the steps and promotes it, or rolls it back.

    Example: lockgate deploy canary fraud-api --candidate models:/fraud/4 --steps 5,25,50,100 --interval 60s
    """
    st = state(ctx)
    policy = _settings(
        max_error_rate_increase=max_error_rate_increase,
        max_latency_ratio=max_latency_ratio,
        max_psi=max_psi,
        min_requests=min_requests,
        failure_limit=failure_limit,
    )
    deployment = st.workspace().rollouts.canary(
        name, candidate, steps=_steps(steps), interval=interval, policy=policy, sticky_key=sticky_key
    )
    rollout = deployment.rollout
    assert rollout is not None
    _started(
        st,
        deployment,
        as_json,
        f"{name}: canary {_candidate(deployment)} at {rollout.steps[0]}% of traffic; "
        f"analysed every {rollout.interval_ms / 1000:g}s (watch: lockgate deploy status {name})",
    )


@app.command()
def split(
    ctx: typer.Context,
    name: NameArg,
    challenger: Annotated[str, typer.Option("--challenger", help="The challenger: models:/NAME/N.")],
    weight: Annotated[float, typer.Option("--weight", help="The challenger's share of traffic, in percent.")],
    sticky_key: StickyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Champion-challenger: a fixed, sticky share of traffic goes to the challenger until promoted or rolled back.

    Example: lockgate deploy split fraud-api --challenger models:/fraud/4 --weight 20
    """
    st = state(ctx)
    deployment = st.workspace().rollouts.split(name, challenger, percent=weight, sticky_key=sticky_key)
    _started(st, deployment, as_json, f"{name}: challenger {_candidate(deployment)} takes {weight:g}% of traffic")


@app.command()
def status(ctx: typer.Context, name: NameArg, as_json: JsonOpt = False) -> None:
    """A deployment's rollout: weights, each arm's figures, analysis results and decisions so far."""
    st = state(ctx)
    report = st.workspace().rollouts.status(name)
    if as_json:
        st.output.json(report.to_dict())
        return
    deployment, rollout = report.deployment, report.deployment.rollout
    if rollout is None:
        st.output.info(f"{name}: no rollout running; serves {deployment.primary.model}")
    else:
        progress = ""
        if rollout.strategy == "canary":
            steps = " → ".join(f"[{s}%]" if i == rollout.step else f"{s}%" for i, s in enumerate(rollout.steps))
            due = report.next_analysis_at
            progress = f"; steps {steps}; failures {rollout.failures}/{rollout.policy.failure_limit}"
            if due is not None:
                progress += f"; next analysis {_when(due)} UTC"
        st.output.info(
            f"{name}: {rollout.strategy} of {rollout.candidate} since {_when(rollout.started_at)} UTC "
            f"by {rollout.started_by}{progress}"
        )
    st.output.print(
        table("routes", ["role", "weight", "model"], [(r.role, f"{r.weight:.0%}", r.model) for r in deployment.routes])
    )
    if report.arms:
        rows = [
            (
                a["role"],
                a["version"],
                a["requests"],
                _pct(a["error_rate"]),
                _ms(a["p50_ms"]),
                _ms(a["p99_ms"]),
                _pct(a.get("agreement")),
                _num(a.get("score_correlation")),
            )
            for a in report.arms
        ]
        start, end = report.window
        title = f"arms, {_when(start)} to {_when(end)} UTC" + (
            "" if report.score_psi is None else f" (score PSI {report.score_psi:.3f})"
        )
        columns = ["role", "version", "requests", "errors", "p50", "p99", "agreement", "score corr."]
        st.output.print(table(title, columns, rows))
    if report.events:
        events = [_event_row(e) for e in report.events[:15]]
        st.output.print(table("rollout decisions (newest first)", ["when (UTC)", "event", "by", "details"], events))


@app.command()
def promote(
    ctx: typer.Context,
    name: NameArg,
    reason: Annotated[str, typer.Option("--reason", help="Why, for the audit log.")] = "promoted by hand",
    as_json: JsonOpt = False,
) -> None:
    """Promote the rollout's candidate now (the deployment's alias moves through the registry's gates)."""
    _end_rollout(
        ctx,
        name,
        as_json,
        lambda ws: ws.rollouts.promote(name, reason=reason),
        lambda candidate, d: f"promoted {candidate}: {name} serves it to all traffic ({d.primary.model})",
    )


@app.command()
def rollback(
    ctx: typer.Context,
    name: NameArg,
    reason: Annotated[str, typer.Option("--reason", help="Why, for the audit log.")] = "rolled back by hand",
    as_json: JsonOpt = False,
) -> None:
    """End the rollout: the candidate's route goes and the stable version takes all traffic."""
    _end_rollout(
        ctx,
        name,
        as_json,
        lambda ws: ws.rollouts.rollback(name, reason=reason),
        lambda candidate, d: f"rolled back {candidate}: {name} serves {d.primary.model} to all traffic",
    )


def _end_rollout(
    ctx: typer.Context,
    name: str,
    as_json: bool,
    end: Callable[[Workspace], Deployment],
    says: Callable[[str, Deployment], str],
) -> None:
    st = state(ctx)
    ws = st.workspace()
    rollout = ws.rollouts.get_rollout(name).rollout  # ConflictError when there is none
    assert rollout is not None
    deployment = end(ws)
    if as_json:
        st.output.json(deployment.to_dict())
    else:
        st.output.info(says(rollout.candidate, deployment))


@app.command()
def analyze(ctx: typer.Context, name: NameArg, as_json: JsonOpt = False) -> None:
    """Run the canary analysis now and apply its decision (a running server does this every interval)."""
    st = state(ctx)
    decision = st.workspace().rollouts.analyze(name, force=True)
    assert decision is not None
    if as_json:
        st.output.json(decision.to_dict())
        return
    st.output.info(f"{name}: {decision.action} at {decision.percent}% ({decision.verdict.reason})")


def _started(st: Any, deployment: Deployment, as_json: bool, message: str) -> None:
    if as_json:
        st.output.json(deployment.to_dict())
    else:
        st.output.info(f"{message}; revision {deployment.revision}")


def _candidate(deployment: Deployment) -> str:
    assert deployment.rollout is not None
    return deployment.rollout.candidate


def _steps(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InvalidInputError(
            f"--steps {text!r} must be whole percentages separated by commas, e.g. 5,25,50,100"
        ) from None


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.1f} ms"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _event_row(event: dict[str, Any]) -> tuple[str, str, str, str]:
    kind = event["event"]
    if kind == "analysis":
        detail = f"{event['action']} at {event['percent']}%: {event['verdict']['reason']}"
        kind = f"analysis → {event['action']}"
    elif kind == "advanced":
        detail = f"now {event['percent']:g}% of traffic"
    elif kind == "started":
        detail = f"{event['strategy']} of {event['candidate']} (stable {event.get('stable')})"
    elif kind == "promoted":
        detail = f"{event['candidate']}: {event.get('how', '')}"
    elif kind == "rolled_back":
        detail = f"{event['candidate']}: {event.get('reason', '')}"
    else:
        detail = ""
    return _when(event["at"]), kind, event["actor"], detail
