"""``lockgate models``: list, show, alias and delete registered models."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.panel import Panel

from lockgate.cli._context import state
from lockgate.cli._output import JsonOpt, short, table
from lockgate.clock import to_iso
from lockgate.errors import InvalidInputError
from lockgate.refs import parse_model_ref

__all__ = ["app"]

app = typer.Typer(help="Registered models: list, show, alias, delete.\n\nExample: lockgate models show fraud")


@app.command("list")
def list_models(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every registered model with its latest version and aliases."""
    st = state(ctx)
    models = st.workspace().models.list()
    if as_json:
        st.output.json(
            [
                {
                    "name": m["name"],
                    "latest_version": m["latest"],
                    "versions": m["versions"] or 0,
                    "aliases": m["aliases"],
                    "created_at": to_iso(m["created_at"]),
                    "created_by": m["created_by"],
                }
                for m in models
            ]
        )
        return
    if not models:
        st.output.info("no models registered yet")
        return
    rows = [
        (
            m["name"],
            m["latest"] or "",
            m["versions"] or 0,
            ", ".join(f"{a}→{v}" for a, v in sorted(m["aliases"].items())),
            m["created_by"],
        )
        for m in models
    ]
    st.output.print(table("models", ["name", "latest", "versions", "aliases", "created by"], rows))


@app.command()
def show(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="A model name, or models:/NAME/VERSION or models:/NAME@ALIAS.")],
    as_json: JsonOpt = False,
) -> None:
    """A model's versions, or one version in detail."""
    st = state(ctx)
    ws = st.workspace()
    if model.startswith("models:/"):
        mv = ws.models.get(model)
        if as_json:
            st.output.json(mv.to_dict())
            return
        sig = mv.signature
        lines = [
            f"[bold]{escape(mv.uri)}[/]" + escape(f"  aliases: {', '.join(mv.aliases)}" if mv.aliases else ""),
            escape(
                f"flavor {mv.flavor} ({sig.get('kind', '?')})  registered {to_iso(mv.created_at)} by {mv.created_by}"
            ),
            f"artifact sha256 {mv.artifact_sha256}",
            f"from run {('runs:/' + mv.run_id) if mv.run_id else '(none)'}",
        ]
        if mv.features:
            lines.append(escape(f"features {', '.join(mv.features)}"))
        st.output.print(Panel("\n".join(lines), title="model version", expand=False))
        if sig.get("inputs"):
            st.output.print(
                table("inputs", ["name", "type", "shape"], [(i["name"], i["type"], i["shape"]) for i in sig["inputs"]])
            )
        if sig.get("outputs"):
            st.output.print(
                table(
                    "outputs", ["name", "type", "shape"], [(o["name"], o["type"], o["shape"]) for o in sig["outputs"]]
                )
            )
        return
    versions = ws.models.versions(model)
    if as_json:
        st.output.json({"name": model, "versions": [v.to_dict() for v in versions]})
        return
    rows = [
        (v.version, ", ".join(v.aliases), v.flavor, short(v.run_id), (to_iso(v.created_at) or "")[:19], v.created_by)
        for v in versions
    ]
    st.output.print(table(f"model {model}", ["version", "aliases", "flavor", "run", "created (UTC)", "by"], rows))


@app.command()
def alias(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="Alias, e.g. champion.")],
    version: Annotated[int | None, typer.Argument(help="Version to point the alias at.")] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove the alias instead.")] = False,
) -> None:
    """Point NAME@ALIAS at VERSION (audited), or remove it with --delete."""
    st = state(ctx)
    ws = st.workspace()
    if delete:
        ws.models.delete_alias(name, alias_name)
        st.output.info(f"removed alias {name}@{alias_name}")
        return
    if version is None:
        raise InvalidInputError(
            f"give the version to point {name}@{alias_name} at, e.g. lockgate models alias {name} {alias_name} 3"
        )
    mv = ws.models.set_alias(name, alias_name, version)
    st.output.info(f"models:/{name}@{alias_name} → {mv.uri}")


@app.command()
def delete(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="A model name (all versions) or models:/NAME/VERSION.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a model version, or a whole model."""
    st = state(ctx)
    ws = st.workspace()
    if model.startswith("models:/"):
        ref = parse_model_ref(model)
        mv = ws.models.get(ref)
        target, version = mv.uri, mv.version
    else:
        ws.models.versions(model)
        target, version = f"model '{model}' and all its versions", None
    if not yes and not typer.confirm(f"delete {target}?"):
        raise typer.Exit(1)
    ws.models.delete(ref.name if version is not None else model, version)
    st.output.info(f"deleted {target}")
