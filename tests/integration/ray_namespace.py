"""Running a Ray scenario inside private network and PID namespaces, for the Ray integration tests.

Ray binds the machine's non-loopback address even when told 127.0.0.1, except inside a
private network namespace, where loopback is all there is. ``unshare`` gives a scenario a
network namespace (only ``lo``) and a PID namespace of its own: ``ray stop`` there sees only
its own cluster, and when the namespace's first process ends the kernel ends every process
left in it (``--kill-child`` does so if ``unshare`` is killed).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

__all__ = ["NAMESPACE", "missing", "processes_mentioning", "require_ray_namespace", "run_in_namespace"]

REQUIRE = os.environ.get("LOCKGATE_REQUIRE_SERVICES", "") not in ("", "0", "false")
NAMESPACE = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]


def missing(what: str, why: str) -> None:
    """tests/conftest.py's ``service_missing``, for module-scoped setups."""
    message = f"{what} is not available ({why})"
    if REQUIRE:
        pytest.fail(f"{message}, and LOCKGATE_REQUIRE_SERVICES=1 requires it")
    pytest.skip(message)


def require_ray_namespace() -> None:
    """Skip (or fail, when services are required) unless Ray and a private namespace are available."""
    try:
        import ray  # noqa: F401
    except ImportError:
        missing("Ray", "install lockgate[ray]")
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        missing("a private network namespace for Ray", "unshare and ip (util-linux, iproute2) are not installed")
    probe = subprocess.run(
        [*NAMESPACE, "sh", "-c", "ip link set lo up"], capture_output=True, text=True, timeout=30, check=False
    )
    if probe.returncode != 0:
        missing("a private network namespace for Ray (unshare as root)", probe.stderr.strip() or "unshare failed")


def run_in_namespace(script: Path, *args: str, timeout: float) -> tuple[int, str]:
    """Run ``python script ARGS`` as the namespace's second process; returns (exit code, output).

    sh stays the namespace's first process (the command after it keeps it from exec'ing
    python) and reaps the daemons ``ray start`` leaves to it.
    """
    command = 'ip link set lo up || exit 1; "$0" "$@"; exit $?'
    child = subprocess.Popen(
        [*NAMESPACE, "sh", "-c", command, sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # unshare --kill-child takes the namespace's first process, and the kernel the rest.
        os.killpg(child.pid, signal.SIGKILL)
        output, _ = child.communicate()
        pytest.fail(f"the Ray scenario did not finish in {timeout:.0f} s:\n{output[-4000:]}")
    return child.returncode, output


def processes_mentioning(text: str) -> list[str]:
    """Processes on this machine whose command line mentions ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and text in (cmdline := (proc / "cmdline").read_bytes().decode(errors="replace")):
                found.append(f"{proc.name}: {cmdline.replace(chr(0), ' ')[:200]}")
    return found
