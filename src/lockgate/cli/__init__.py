"""The ``lockgate`` command line: ``lockgate NOUN VERB [ARGS] [--options]``.

Every error a user can cause is a :class:`~lockgate.errors.LockgateError`; this module turns
it into one sentence on stderr and an exit code (1 a requested check failed, 2 bad usage or
input, 3 an unavailable dependency), in one place.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from lockgate._version import __version__
from lockgate.cli import audit, batch, data, db, deploy, features, models, pipeline, runs, scheduler, triggers
from lockgate.cli._context import State, state
from lockgate.cli._output import Output, human_bytes
from lockgate.cli.demo import demo
from lockgate.cli.lineage import lineage
from lockgate.cli.serve import serve
from lockgate.errors import LockgateError
from lockgate.workspace import Workspace

__all__ = ["app", "main", "run"]

app = typer.Typer(
    name="lockgate",
    help="lockgate: from raw data to a monitored production deployment, through gates, with lineage.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(runs.app, name="runs")
app.add_typer(models.app, name="models")
app.add_typer(data.app, name="data")
app.add_typer(features.app, name="features")
app.add_typer(audit.app, name="audit")
app.add_typer(db.app, name="db")
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(triggers.app, name="triggers")
app.add_typer(scheduler.app, name="scheduler")
app.add_typer(deploy.app, name="deploy")
app.command("lineage")(lineage)
app.command("reproduce")(pipeline.reproduce_command)
app.command("demo")(demo)
app.command("serve")(serve)
app.command("batch-predict")(batch.batch_predict_command)


def _version(value: bool) -> None:
    if value:
        print(f"lockgate {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    home: Annotated[
        Path | None, typer.Option("--home", envvar="LOCKGATE_HOME", help="Workspace folder (default ./.lockgate).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or info messages.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    ctx.obj = State(home=home, output=Output(quiet=quiet, debug=debug))


@app.command()
def init(ctx: typer.Context) -> None:
    """Create (or open) a workspace and bring its schema up to date.

    Example: lockgate --home ./.lockgate init
    """
    st = state(ctx)
    ws = Workspace.open(st.home, upgrade=True)
    b = ws.backends()
    st.output.print(f"workspace {ws.home.resolve()}\nmetadata  {b['database_url']}\nartifacts {b['artifact_root']}")


@app.command()
def gc(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report what would be removed.")] = False,
    older_than: Annotated[float, typer.Option(help="Keep objects younger than this many seconds.")] = 3600.0,
) -> None:
    """Remove stored artifacts that no record points to, and checkpoints of finished pipeline runs.

    Example: lockgate gc --dry-run
    """
    st = state(ctx)
    report = st.workspace().gc(dry_run=dry_run, older_than_s=older_than)
    verb = "would remove" if dry_run else "removed"
    st.output.print(
        f"scanned {report.scanned} objects: {report.unreferenced} unreferenced, "
        f"{verb} {report.removed} ({human_bytes(report.freed_bytes)}), "
        f"and {report.checkpoints} checkpoint{'s' if report.checkpoints != 1 else ''} of finished pipeline runs"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lockgate`` script; returns the exit code."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        # Without standalone mode click returns a requested exit code instead of raising it.
        code = app(args=argv, prog_name="lockgate", standalone_mode=False)
    except LockgateError as exc:
        if debug:
            raise
        Output().error(str(exc))
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        Output().error("aborted")
        return 1
    except KeyboardInterrupt:
        Output().error("interrupted")
        return 130
    except typer.TyperException as exc:  # usage errors: unknown command, bad option
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            Output().error(str(exc))
        return 2
    except Exception as exc:
        if debug:
            raise
        Output().error(
            f"lockgate hit an internal error ({type(exc).__name__}: {exc}); rerun with --debug and report it"
        )
        return 1
    return code if isinstance(code, int) else 0


def run() -> None:
    """Console-script wrapper: exit with ``main``'s code."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
