"""``lockgate batch-predict``: score Parquet files with a registered model, as a tracked run."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from lockgate.cli._context import state
from lockgate.cli._output import JsonOpt, Output, short

__all__ = ["batch_predict_command"]


class Executor(StrEnum):
    local = "local"
    ray = "ray"


def batch_predict_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="models:/NAME/VERSION or models:/NAME@ALIAS.")],
    inputs: Annotated[
        list[str],
        typer.Option(
            "--input", "-i", help="Parquet file, folder, glob ('data/*.parquet') or s3://bucket/prefix; repeatable."
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="The Parquet file to write the scores to.")],
    executor: Annotated[Executor, typer.Option(help="Score in this process (local) or on a Ray cluster.")] = (
        Executor.local
    ),
    ray_address: Annotated[
        str | None,
        typer.Option(help="The Ray cluster for --executor ray: HOST:PORT or ray://HOST:10001 (default: RAY_ADDRESS)."),
    ] = None,
    chunk_rows: Annotated[int | None, typer.Option(help="Rows scored at a time (default 65,536).")] = None,
    threads: Annotated[
        int | None, typer.Option(help="Chunks scored at once with --executor local (default: one per core).")
    ] = None,
    id_column: Annotated[
        str | None, typer.Option(help="An input column to copy as each row's id (default: input_file and row).")
    ] = None,
    onnx: Annotated[
        bool, typer.Option("--onnx/--no-onnx", help="Score scikit-learn models through ONNX Runtime when they convert.")
    ] = True,
    experiment: Annotated[str, typer.Option(help="Experiment of the run that records the scoring.")] = "batch-predict",
    as_json: JsonOpt = False,
) -> None:
    """Score Parquet files with a registered model and write the predictions to one Parquet file.

    The output has a row id, the model name and version, and the predictions; nothing is
    written when an input does not match the model's signature. The scoring is a run whose
    lineage links the inputs' content hashes, the model version and the output.

    Example: lockgate batch-predict models:/fraud@champion --input 'data/*.parquet' --output scores.parquet
    """
    from lockgate.serving._batch_scoring import DEFAULT_CHUNK_ROWS, batch_predict

    st = state(ctx)
    ws = st.workspace()
    with _Bar(st.output, enabled=not as_json) as bar:
        result = batch_predict(
            ws,
            model,
            inputs,
            output,
            id_column=id_column,
            chunk_rows=DEFAULT_CHUNK_ROWS if chunk_rows is None else chunk_rows,
            threads=threads,
            prefer_onnx=onnx,
            executor=executor.value,
            ray_address=ray_address,
            experiment=experiment,
            progress=bar.update,
        )
    if as_json:
        st.output.json(result.to_dict())
        return
    st.output.print(
        f"scored {result.rows:,} rows in {result.seconds:.1f}s ({result.rows_per_second:,.0f} rows/s) "
        f"with {result.model_uri} ({result.runtime}) → {result.output}; run {short(result.run_id)}"
    )


class _Bar:
    """A rich progress bar (rows, rate, time left) on a terminal; nothing otherwise or with -q."""

    def __init__(self, output: Output, *, enabled: bool) -> None:
        self._enabled = enabled and not output.quiet and output.err.is_terminal
        self._output = output
        self._progress: Any = None
        self._task: Any = None
        self._started = 0.0

    def __enter__(self) -> _Bar:
        if self._enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("scoring"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=self._output.err,
                transient=True,
            )
            self._progress.start()
        return self

    def update(self, done: int, total: int) -> None:
        if self._progress is None:
            return
        if self._task is None:
            self._task = self._progress.add_task("scoring", total=total, rate="")
            self._started = time.monotonic()
        # The average since the start: rich's windowed speed jumps about with uneven chunk times.
        elapsed = time.monotonic() - self._started
        rate = f"{done / elapsed:,.0f} rows/s" if elapsed > 0.5 else ""
        self._progress.update(self._task, completed=done, rate=rate)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
