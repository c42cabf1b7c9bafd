"""``lockgate triggers``: continuous-training triggers (cron, new data, manual), and firing them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from lockgate.cli._context import state
from lockgate.cli._output import JsonOpt, Output, short, table
from lockgate.clock import to_iso
from lockgate.errors import ConflictError, InvalidInputError, UserCodeError
from lockgate.pipelines import EXECUTORS, Trigger, TriggerFire, TriggerService, load_pipeline, parse_params

__all__ = ["app"]

app = typer.Typer(
    help="Continuous-training triggers: list, show, add, remove, enable, disable, fire.\n\n"
    "Example: lockgate triggers add nightly --pipeline examples/fraud/pipeline.py --cron '0 2 * * *' --cooldown 1h"
)

NameArg = Annotated[str, typer.Argument(help="The trigger's name.")]


def _when(ms: int | None) -> str:
    return (to_iso(ms) or "")[:19].replace("T", " ")


def _pipeline(t: Trigger) -> str:
    """The pipeline as the user wrote it: relative to the folder the trigger runs in."""
    path = Path(t.pipeline)
    return str(path.relative_to(t.workdir)) if path.is_relative_to(t.workdir) else t.pipeline


def _what(t: Trigger) -> str:
    if t.watch is not None:
        folder = Path(t.watch)
        return f"watch {folder.relative_to(t.workdir) if folder.is_relative_to(t.workdir) else folder}/"
    return f"cron {t.schedule}" if t.schedule else "manual"


def _cooldown(seconds: float) -> str:
    if not seconds:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


@app.command("list")
def list_triggers(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every trigger: what starts it, its pipeline, cooldown and when it fired last."""
    st = state(ctx)
    found = TriggerService(st.workspace()).list()
    if as_json:
        st.output.json([t.to_dict() for t in found])
        return
    if not found:
        st.output.info("no triggers yet; add one: lockgate triggers add NAME --pipeline FILE --cron '0 2 * * *'")
        return
    rows = [
        (
            t.name,
            _what(t),
            _pipeline(t),
            _cooldown(t.cooldown_s),
            "yes" if t.enabled else "no",
            _when(t.last_fired_at),
            _when(t.next_fire_at()),
        )
        for t in found
    ]
    columns = ["name", "when", "pipeline", "cooldown", "enabled", "last fired (UTC)", "next (UTC)"]
    st.output.print(table("triggers", columns, rows))


@app.command()
def show(
    ctx: typer.Context,
    name: NameArg,
    limit: Annotated[int, typer.Option(help="How many recent firings to show.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """One trigger and its recent firings (why, by whom, which run)."""
    st = state(ctx)
    service = TriggerService(st.workspace())
    trigger = service.get(name)
    fires = service.history(name, limit=limit)
    if as_json:
        st.output.json({**trigger.to_dict(), "firings": [f.to_dict() for f in fires]})
        return
    params = " ".join(f"{k}={json.dumps(v)}" for k, v in trigger.params.items())
    st.output.print(
        table(
            f"trigger {trigger.name}",
            ["field", "value"],
            [
                ("when", _what(trigger)),
                ("pipeline", trigger.pipeline),
                ("params", params or "none"),
                ("runs in", trigger.workdir),
                ("cooldown", _cooldown(trigger.cooldown_s) or "none"),
                ("enabled", "yes" if trigger.enabled else "no"),
                ("created", f"{_when(trigger.created_at)} by {trigger.created_by}"),
            ],
        )
    )
    if fires:
        st.output.print(_fires_table(f"firings of {trigger.name}", fires))


def _fires_table(title: str, fires: list[TriggerFire]) -> object:
    rows = [(f.id, _when(f.fired_at), f.reason, f.actor, f.status, short(f.run_id), f.note or "") for f in fires]
    return table(title, ["#", "fired (UTC)", "reason", "by", "status", "run", "note"], rows)


@app.command()
def add(
    ctx: typer.Context,
    name: NameArg,
    pipeline: Annotated[str, typer.Option("--pipeline", help="pipeline.py, or pipeline.py:NAME.")],
    cron: Annotated[str | None, typer.Option(help="A cron schedule in UTC, e.g. '0 2 * * *'.")] = None,
    watch: Annotated[str | None, typer.Option(help="A folder: fire when a new or changed file lands in it.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE, repeatable.")] = None,
    cooldown: Annotated[str, typer.Option(help="Do not fire again within this long, e.g. 30m, 1h, 1d.")] = "0",
    disabled: Annotated[bool, typer.Option("--disabled", help="Record it switched off.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Add a trigger: --cron (a schedule), --watch (new data), or neither (fired by hand).

    Example: lockgate triggers add fresh-data --pipeline pipeline.py --watch data/transactions/
    """
    st = state(ctx)
    ws = st.workspace()
    params = parse_params(load_pipeline(pipeline), param or []) if param else {}
    trigger = TriggerService(ws).add(
        name, pipeline=pipeline, params=params, cron=cron, watch=watch, cooldown=cooldown, enabled=not disabled
    )
    if as_json:
        st.output.json(trigger.to_dict())
        return
    nxt = trigger.next_fire_at()
    st.output.info(f"added trigger {name} ({_what(trigger)})" + (f"; next due {_when(nxt)} UTC" if nxt else ""))


@app.command()
def remove(
    ctx: typer.Context,
    name: NameArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove a trigger and its firing history (the audit log keeps both)."""
    st = state(ctx)
    service = TriggerService(st.workspace())
    service.get(name)
    if not yes and not typer.confirm(f"remove trigger {name}?"):
        raise typer.Exit(1)
    service.remove(name)
    st.output.info(f"removed trigger {name}")


@app.command()
def enable(ctx: typer.Context, name: NameArg) -> None:
    """Switch a trigger on; its schedule counts from now, its folder's files are taken as seen."""
    st = state(ctx)
    TriggerService(st.workspace()).set_enabled(name, True)
    st.output.info(f"enabled trigger {name}")


@app.command()
def disable(ctx: typer.Context, name: NameArg) -> None:
    """Switch a trigger off (firings already waiting still run)."""
    st = state(ctx)
    TriggerService(st.workspace()).set_enabled(name, False)
    st.output.info(f"disabled trigger {name}")


@app.command()
def fire(
    ctx: typer.Context,
    name: NameArg,
    reason: Annotated[str, typer.Option(help="Why it runs; recorded on the firing and the run.")] = "manual",
    detail: Annotated[list[str] | None, typer.Option("--detail", "-d", help="KEY=VALUE evidence, repeatable.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Fire even in the cooldown or when disabled.")] = False,
    queue: Annotated[bool, typer.Option("--queue", help="Only record it; the scheduler runs it.")] = False,
    executor: Annotated[str, typer.Option(help=f"Where steps run: {', '.join(EXECUTORS)}.")] = "local",
    as_json: JsonOpt = False,
) -> None:
    """Fire a trigger by hand (you are recorded as its actor) and run its pipeline now.

    Example: lockgate triggers fire nightly --reason hotfix -d ticket=ML-42
    """
    st = state(ctx)
    service = TriggerService(st.workspace())
    fired = service.fire(name, reason, _details(detail or []), force=force)
    if not fired.fired:
        raise ConflictError(f"trigger '{name}' did not fire: {fired.note}; use --force to fire it anyway")
    if queue:
        _report(st.output, fired, as_json, f"firing {fired.id} of {name} recorded; the scheduler runs it")
        return

    def progress(step: str, what: str) -> None:
        st.output.info(f"  {step}: {what}")

    st.output.info(f"firing {fired.id} of {name}: running its pipeline ({executor} executor)")
    done = service.run(fired, executor=executor, progress=progress)
    _report(st.output, done, as_json, f"firing {done.id} of {name}: {done.status}, run {short(done.run_id)}")
    if done.status != "SUCCEEDED":
        raise UserCodeError(f"firing {done.id} of trigger '{name}' failed: {done.note}")


def _report(out: Output, fire: TriggerFire, as_json: bool, message: str) -> None:
    if as_json:
        out.json(fire.to_dict())
    else:
        out.info(message)


def _details(pairs: list[str]) -> dict[str, Any]:
    details: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"--detail {pair!r} must look like KEY=VALUE")
        try:
            details[key] = json.loads(text)
        except ValueError:
            details[key] = text
    return details
