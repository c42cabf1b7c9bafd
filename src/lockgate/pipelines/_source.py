"""A step's code identity: its own source plus every project module it uses.

"Project" means the folder of the pipeline file: editing a helper module there changes the
hash of every step that uses it, while installed libraries are covered by the environment
hash instead.
"""

from __future__ import annotations

import inspect
import sys
import types
from pathlib import Path
from typing import Any

from lockgate.hashing import canonical_json, sha256_bytes, sha256_file

__all__ = ["source_hash"]


def _module_file(obj: Any) -> Path | None:
    module = obj if isinstance(obj, types.ModuleType) else sys.modules.get(getattr(obj, "__module__", "") or "")
    file = getattr(module, "__file__", None)
    return Path(file).resolve() if file else None


def source_hash(fn: Any, project_root: Path) -> str:
    """sha256 of the function's source, of the same-file helpers it calls, and of the other
    project files it references (a module, or a function or class defined in one)."""
    root = project_root.resolve()
    home = _module_file(fn)
    files: dict[str, str] = {}
    sources: dict[str, str] = {}
    pending = [fn]
    seen: set[int] = set()
    while pending:
        obj = pending.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        sources[getattr(obj, "__qualname__", repr(obj))] = _source(obj)
        code = getattr(obj, "__code__", None)
        namespace = getattr(obj, "__globals__", {})
        for name in set(code.co_names) if code is not None else set():
            used = namespace.get(name)
            file = _module_file(used) if used is not None else None
            if file is None or root not in file.parents:
                continue  # builtins and installed libraries: the environment hash covers them
            if file == home and not isinstance(used, types.ModuleType):
                # A helper next to the step: its own source, so editing an unrelated step in
                # the same file does not invalidate this one.
                if inspect.isfunction(used) or inspect.isclass(used):
                    pending.append(used)
                continue
            files.setdefault(str(file.relative_to(root)), sha256_file(file))
    return sha256_bytes(
        canonical_json({"sources": dict(sorted(sources.items())), "files": dict(sorted(files.items()))})
    )


def _source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return repr(getattr(obj, "__code__", obj))
