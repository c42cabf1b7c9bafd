"""``lockgate serve``: the inference server's processes, sockets and signals.

One listening socket is bound here and shared by every worker process, created with
``IPPROTO_TCP`` as its protocol: asyncio turns ``TCP_NODELAY`` on for accepted sockets only
when the listener says it is TCP, and uvicorn's own multi-worker supervisor binds with
protocol 0, which leaves Nagle's algorithm on and adds about 40 ms to every keep-alive
request (uvicorn issue #3149; the W6 anchor notes measured it).

With several workers each is a spawned process running its own event loop and its own copy
of every model. The first worker accepts connections at once and answers health checks while
it loads (not ready); the others accept only once their models are loaded and that first
worker's are too, so a request never lands on a loading worker while another is ready. A
worker that dies is replaced the same way, after a pause that grows while workers keep dying
young. Metrics are shared through prometheus_client's multiprocess folder.

Shutdown on SIGTERM or SIGINT (the supervisor passes it to every worker): readiness turns
false at once while requests are still answered; after ``drain_seconds`` (time for a load
balancer to stop sending) the listener closes, requests in flight finish (up to
``graceful_seconds``), queued rows are scored, the prediction log is written out, and the
process exits 0. A second signal cuts the drain short; a second SIGINT stops at once.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from lockgate.config import Settings
from lockgate.errors import InvalidInputError, UnavailableError
from lockgate.serving._jobs import Jobs

__all__ = ["ServeOptions", "bind_listener", "open_jobs", "serve"]

_log = logging.getLogger("lockgate.serve")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeOptions:
    """How ``lockgate serve`` runs (the deployments themselves carry the batching settings)."""

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    prefer_onnx: bool = True
    poll_seconds: float = 1.0
    max_body_bytes: int = 8 * 1024 * 1024
    drain_seconds: float = 0.0
    graceful_seconds: float = 30.0
    prediction_log: bool = True
    identity: str = "service:lockgate-serve"
    feature_time: datetime | None = None
    """Judge online feature ages at this fixed time instead of the wall clock (replays, demos)."""
    job_workers: int | None = None
    """Async jobs each worker process scores at once; None takes the ``job_workers`` setting,
    0 turns async jobs off."""

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise InvalidInputError(f"--workers must be at least 1, not {self.workers}")
        if not 0 <= self.port <= 65535:
            raise InvalidInputError(f"--port must be between 0 and 65535, not {self.port}")
        if not self.poll_seconds > 0:
            raise InvalidInputError(f"--poll must be a positive number of seconds, not {self.poll_seconds}")
        if not 0 <= self.drain_seconds < 3600:
            raise InvalidInputError(f"--drain must be between 0 and 3600 seconds, not {self.drain_seconds}")
        if self.graceful_seconds < 0:
            raise InvalidInputError(f"graceful_seconds must not be negative, not {self.graceful_seconds}")
        if self.feature_time is not None and self.feature_time.tzinfo is None:
            raise InvalidInputError("--feature-time must carry a time zone, e.g. 2026-11-28T00:00:00Z")
        if self.job_workers is not None and self.job_workers < 0:
            raise InvalidInputError(f"--job-workers must be 0 or more, not {self.job_workers}")
        if self.max_body_bytes < 1:
            raise InvalidInputError(f"--max-body-mb must be positive, not {self.max_body_bytes / 1024 / 1024:g}")


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket whose accepted connections get ``TCP_NODELAY`` from asyncio."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UnavailableError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(home: str | Path | None, options: ServeOptions, *, announce: Any = None) -> int:
    """Serve every deployment of the workspace at ``home`` until SIGTERM or SIGINT.

    ``announce(address)`` is called once the socket listens (the CLI prints the address).
    Returns the exit code.
    """
    sock = bind_listener(options.host, options.port)
    address = "{}:{}".format(*sock.getsockname()[:2])
    if announce is not None:
        announce(address)
    if options.workers == 1:
        try:
            return run_worker(home, options, sock)
        finally:
            sock.close()
    metrics_dir = tempfile.mkdtemp(prefix="lockgate-metrics-")
    try:
        return _supervise(home, options, sock, metrics_dir)
    finally:
        sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


# A worker that lived less than this counts as dying young: the next restart waits longer.
_YOUNG_SECONDS = 10.0
_MAX_RESTART_PAUSE = 30.0


def _supervise(home: str | Path | None, options: ServeOptions, sock: socket.socket, metrics_dir: str) -> int:
    from lockgate.serving._metrics import mark_dead

    context = multiprocessing.get_context("spawn")
    stopping: float | None = None  # when the first signal came
    signals: list[int] = []
    first_loaded = context.Event()  # set by worker 0 once loaded (or here, when a worker is replaced)

    def start(i: int, *, late: bool) -> Any:
        process = context.Process(
            target=_worker_main,
            args=(home, options, sock, metrics_dir, late, first_loaded),
            name=f"lockgate-serve-{i}",
            daemon=False,
        )
        process.start()
        return process

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        if stopping is None:
            stopping = time.monotonic()
        signals.append(signum)
        for p in workers:
            if p.pid is not None and p.is_alive():
                os.kill(p.pid, signum if len(signals) > 1 else signal.SIGTERM)

    workers: list[Any] = []
    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}  # before any worker
    # The first worker answers health checks (not ready) while it loads; the others, and every
    # replacement, accept connections only once their models are loaded.
    for i in range(options.workers):
        workers.append(start(i, late=i > 0))
    started = [time.monotonic()] * options.workers
    pause = [0.0] * options.workers
    due: dict[int, float] = {}  # worker index -> when its replacement starts
    try:
        while True:
            now = time.monotonic()
            if stopping is not None:
                if not any(p.is_alive() for p in workers):
                    break
                if now > stopping + options.drain_seconds + options.graceful_seconds + 10.0:
                    for p in workers:
                        if p.is_alive():
                            _log.error("worker pid %s did not stop in time; killing it", p.pid)
                            p.kill()
            else:
                for i, p in enumerate(workers):
                    if p.is_alive() or i in due:
                        continue
                    young = now - started[i] < _YOUNG_SECONDS
                    pause[i] = min(max(2 * pause[i], 1.0), _MAX_RESTART_PAUSE) if young else 0.0
                    _log.error(
                        "worker %s (pid %s) exited with %s; starting a new one%s",
                        i,
                        p.pid,
                        p.exitcode,
                        f" in {pause[i]:.0f} s" if pause[i] else "",
                    )
                    if p.pid is not None:
                        mark_dead(p.pid, metrics_dir)
                    first_loaded.set()  # the first worker may be the one that died loading
                    due[i] = now + pause[i]
                for i, when in list(due.items()):
                    if now >= when:
                        del due[i]
                        workers[i] = start(i, late=True)
                        started[i] = time.monotonic()
            time.sleep(0.1)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    # A worker that died before the signal (its replacement not started yet) is not a failed
    # stop, nor is one the signal ended before it could handle it (still importing: it had
    # served nothing).
    clean = (0, -signal.SIGTERM, -signal.SIGINT)
    codes = [p.exitcode for i, p in enumerate(workers) if i not in due]
    return 0 if all(c in clean for c in codes) else 1


def _worker_main(
    home: str | Path | None, options: ServeOptions, sock: socket.socket, metrics_dir: str, late: bool, first: Any
) -> None:
    from lockgate.serving._metrics import enable_multiprocess

    enable_multiprocess(metrics_dir)
    raise SystemExit(run_worker(home, options, sock, join_when_loaded=late, first_loaded=first))


def run_worker(
    home: str | Path | None,
    options: ServeOptions,
    sock: socket.socket,
    *,
    join_when_loaded: bool = False,
    first_loaded: Any = None,
) -> int:
    """One server process: the workspace, the models, the event loop, until a signal.

    With ``join_when_loaded`` it accepts connections only once its models are loaded, and
    ``first_loaded`` (a ``multiprocessing.Event``) is set; without, it sets that event once
    loaded."""
    import uvicorn

    from lockgate.serving._app import InferenceApp
    from lockgate.serving._host import ModelHost
    from lockgate.serving._metrics import ServerMetrics
    from lockgate.serving._predlog import PredictionLog
    from lockgate.workspace import Workspace

    ws = Workspace.open(home, identity=options.identity)
    metrics = ServerMetrics()
    prediction_log = None
    if options.prediction_log:
        prediction_log = PredictionLog(ws.settings.resolved_prediction_log, s3_endpoint_url=ws.settings.s3_endpoint_url)
    host = ModelHost(
        ws,
        metrics,
        prefer_onnx=options.prefer_onnx,
        poll_seconds=options.poll_seconds,
        feature_time=options.feature_time,
        drain_seconds=max(options.graceful_seconds, 1.0),
        wait_until_loaded=join_when_loaded,
        first_loaded=first_loaded,
    )
    jobs = open_jobs(ws.settings, options)
    app = InferenceApp(host, metrics, prediction_log=prediction_log, max_body_bytes=options.max_body_bytes, jobs=jobs)
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=int(options.graceful_seconds),
        timeout_keep_alive=30,
        server_header=False,
        date_header=False,
    )
    server = _draining_server(config, host, options.drain_seconds)
    try:
        server.run(sockets=[sock])
    finally:
        if prediction_log is not None:
            prediction_log.close()  # already closed by a graceful shutdown; not after a forced one
        if jobs is not None:
            jobs.close()  # already closed by a graceful shutdown; not after a forced one
        ws.close()
    return 0


def open_jobs(settings: Settings, options: ServeOptions) -> Jobs | None:
    """The async jobs of one server process, from the settings (the job store, callbacks)
    and ``--job-workers``; None when they are off."""
    workers = settings.job_workers if options.job_workers is None else options.job_workers
    if workers == 0:
        return None
    # Running jobs get the server's graceful time to finish at shutdown; the rest go back to
    # the queue for the next process.
    return Jobs.from_settings(settings, workers=workers, stop_grace_s=options.graceful_seconds)


def _draining_server(config: Any, host: Any, drain_seconds: float) -> Any:
    """A uvicorn server whose shutdown first turns readiness false for ``drain_seconds``.

    uvicorn's own signal handler raises the signal again once the server has stopped, so a
    graceful stop would end as "killed by SIGTERM" (exit -15, and a supervisor that counts
    that as a failure); this one records no signal, so the process exits 0.
    """
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.should_exit:
                if sig == signal.SIGINT:
                    self.force_exit = True  # a second Ctrl-C: stop waiting for requests
                return
            if host.wait_until_loaded and not host.accepting:
                # Still loading, so not accepting connections yet: nothing to drain or log, and
                # no reason to finish loading models only to stop.
                _log.warning("stopped while loading models (pid %s)", os.getpid())
                os._exit(0)
            if not host.stopping:
                # Readiness answers 503 from now on; requests are still answered during the
                # drain, so those routed before the balancer noticed are not lost.
                host.stop_taking_traffic()
                if drain_seconds > 0:
                    timer = threading.Timer(drain_seconds, self._end_drain)
                    timer.daemon = True
                    timer.start()
                    return
            self.should_exit = True  # a second signal during the drain cuts it short

        def _end_drain(self) -> None:
            self.should_exit = True

    return Server(config)
