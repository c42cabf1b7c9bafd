"""``lockgate pipeline``: run a pipeline (cached, resumable) and check one for CI."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lockgate.cli._context import state
from lockgate.cli._output import JsonOpt, short, table
from lockgate.errors import CheckFailed
from lockgate.pipelines import (
    EXECUTORS,
    PipelineFailed,
    PipelineResult,
    load_pipeline,
    parse_params,
    reproduce,
    run_pipeline,
)
from lockgate.pipelines.checks import run_checks

__all__ = ["app", "reproduce_command"]

app = typer.Typer(
    help="Pipelines: run, check.\n\nExample: lockgate pipeline run examples/fraud/pipeline.py --param max_iter=100"
)

ParamOpt = Annotated[list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE, repeatable.")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="A TOML or JSON file of parameters.")]


def _steps_table(result: PipelineResult) -> object:
    rows = [(s.name, s.status, f"{s.seconds:.2f}s" if s.seconds else "", short(s.run_id)) for s in result.steps]
    return table(f"pipeline {result.pipeline}: run {short(result.run_id)}", ["step", "status", "took", "run"], rows)


@app.command()
def run(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="pipeline.py, or pipeline.py:NAME when it defines several.")],
    param: ParamOpt = None,
    config: ConfigOpt = None,
    resume: Annotated[str | None, typer.Option(help="Continue this failed pipeline run from its failed step.")] = None,
    executor: Annotated[str, typer.Option(help=f"Where steps run: {', '.join(EXECUTORS)}.")] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="The Ray cluster for --executor ray (e.g. ray://head:10001).")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Run every step, even with a cached result.")] = False,
    experiment: Annotated[str | None, typer.Option(help="Experiment (default: the pipeline's name).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a pipeline; steps with an unchanged cache key reuse their outputs."""
    st = state(ctx)
    ws = st.workspace()
    flow = load_pipeline(file)
    params = parse_params(flow, param or [], config)

    def progress(step: str, what: str) -> None:
        st.output.info(f"  {step}: {what}")

    st.output.info(f"running pipeline {flow.name} ({executor} executor)")
    try:
        result = run_pipeline(
            ws,
            flow,
            params=params,
            executor=executor,
            cache=not no_cache,
            resume=resume,
            experiment=experiment,
            progress=progress,
            ray_address=ray_address,
        )
    except PipelineFailed as failed:
        if as_json:
            st.output.json(_as_dict(failed.result))
        else:
            st.output.print(_steps_table(failed.result))
        raise
    if as_json:
        st.output.json(_as_dict(result))
        return
    st.output.print(_steps_table(result))
    st.output.info(
        f"{result.cache_hits} of {len(result.steps)} steps from the cache; see: lockgate runs show {short(result.run_id)}"
    )


def _as_dict(result: PipelineResult) -> dict[str, object]:
    return {
        "run_id": result.run_id,
        "pipeline": result.pipeline,
        "status": str(result.status),
        "steps": [{"name": s.name, "status": s.status, "run_id": s.run_id, "seconds": s.seconds} for s in result.steps],
    }


@app.command()
def check(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="pipeline.py, or pipeline.py:NAME.")],
    param: ParamOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate a pipeline for CI without training: imports, DAG, types, registered checks.

    Exits 1 when a check fails.
    """
    st = state(ctx)
    flow = load_pipeline(file)
    graph = flow.trace(**parse_params(flow, param or [], config))
    results = run_checks(graph)
    if as_json:
        st.output.json([{"check": r.name, "ok": r.ok, "message": r.message, "evidence": r.evidence} for r in results])
    else:
        st.output.print(
            table(
                f"pipeline {flow.name}: checks",
                ["check", "result", "details"],
                [(r.name, "ok" if r.ok else "FAILED", r.message) for r in results],
            )
        )
    failed = [r for r in results if not r.ok]
    if failed:
        raise CheckFailed(
            f"{len(failed)} of {len(results)} checks failed for pipeline {flow.name}: {failed[0].message}"
        )


def reproduce_command(
    ctx: typer.Context,
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="A finished pipeline run (id, prefix or runs:/ID).")],
    executor: Annotated[str, typer.Option(help=f"Where steps run: {', '.join(EXECUTORS)}.")] = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Rebuild a pipeline run in a fresh workspace with caching off and compare every output.

    Checks out the recorded commit with its dirty diff, compares the environment and the
    data, re-runs every step and compares each output's hash. Exits 1 unless it reproduced
    bit-for-bit. Example: lockgate reproduce 1a2b3c4d
    """
    st = state(ctx)
    st.output.info(f"reproducing run {run_ref} in a fresh workspace, caching off…")
    report = reproduce(st.workspace(), run_ref, executor=executor)
    if as_json:
        st.output.json(report.to_dict())
    else:
        rows = [(d.what, d.recorded, d.now, d.cause) for d in [*report.differences, *report.notes]]
        if rows:
            st.output.print(table("differences and notes", ["what", "recorded", "now", "likely cause"], rows))
        st.output.print(report.verdict)
    if not report.ok:
        raise CheckFailed(f"run {report.run_id[:8]} was not reproduced: {report.differences[0]}")
