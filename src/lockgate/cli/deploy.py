"""``lockgate deploy``: deployments, the named records a server serves model versions under."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from lockgate.cli._context import state
from lockgate.cli._output import JsonOpt, table
from lockgate.clock import to_iso
from lockgate.deploy import Deployment, ResolvedDeployment

__all__ = ["app"]

app = typer.Typer(
    help="Deployments: create, list, show, update, delete.\n\n"
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
