"""``lockgate serve``: serve every deployment of the workspace over HTTP."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from lockgate.cli._context import state
from lockgate.errors import InvalidInputError

__all__ = ["serve"]


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = 8080,
    workers: Annotated[int, typer.Option(help="Worker processes, each with its own copy of the models.")] = 1,
    onnx: Annotated[
        bool, typer.Option("--onnx/--no-onnx", help="Serve scikit-learn models through ONNX Runtime when they convert.")
    ] = True,
    poll: Annotated[float, typer.Option(help="Seconds between checks for changed deployments.")] = 1.0,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body accepted, in MiB.")] = 8.0,
    drain: Annotated[
        float, typer.Option(help="Seconds to keep serving, not ready, after SIGTERM (for a load balancer).")
    ] = 0.0,
    prediction_log: Annotated[
        bool, typer.Option("--prediction-log/--no-prediction-log", help="Log every prediction to Parquet.")
    ] = True,
    feature_time: Annotated[
        str | None,
        typer.Option(help="Judge online feature ages at this ISO time instead of the wall clock (replays and demos)."),
    ] = None,
    job_workers: Annotated[
        int | None,
        typer.Option(
            help="Async jobs each worker process scores at once (default: the job_workers setting, 4); 0 turns async jobs off."
        ),
    ] = None,
) -> None:
    """Serve every deployment: Open Inference Protocol v2 and a friendly JSON endpoint.

    New, changed and deleted deployments are picked up while running. Stop with SIGTERM or
    Ctrl-C: in-flight requests finish and the prediction log is written out first.

    Async jobs (POST /v1/endpoints/NAME/jobs) are kept in the workspace, or where jobs_url
    points (Redis), and shared by every server on that store.

    Example: lockgate serve --port 8080 --workers 2 --job-workers 8
    """
    from lockgate.serving._server import ServeOptions, open_jobs
    from lockgate.serving._server import serve as run

    st = state(ctx)
    options = ServeOptions(
        host=host,
        port=port,
        workers=workers,
        prefer_onnx=onnx,
        poll_seconds=poll,
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        drain_seconds=drain,
        prediction_log=prediction_log,
        feature_time=_instant(feature_time),
        job_workers=job_workers,
    )
    ws = st.workspace()  # opened (and migrated) once here, so workers only read
    home = ws.home
    count = len(ws.deployments.list())
    try:
        # The job store and callback settings are checked here, once: a Redis that does not
        # answer or an invalid allowlist stops the command instead of every worker.
        jobs = open_jobs(ws.settings, options)
        if jobs is not None:
            jobs.close()
    finally:
        ws.close()

    def announce(address: str) -> None:
        st.output.info(
            f"serving {count} deployment(s) from {home} on http://{address} with {workers} worker(s); "
            f"try: curl http://{address}/v1/endpoints"
        )

    code = run(home, options, announce=announce)
    raise typer.Exit(code)


def _instant(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError(f"--feature-time {text!r} is not an ISO time; use e.g. 2026-11-28T00:00:00Z") from None
