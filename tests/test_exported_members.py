"""The public surface is declared once and cannot drift (httpx's test, for lockgate)."""

from __future__ import annotations

import importlib
import pkgutil
import types

import lockgate


def test_all_is_sorted_and_matches_the_public_names_of_the_package() -> None:
    assert lockgate.__all__ == sorted(lockgate.__all__)
    assert len(set(lockgate.__all__)) == len(lockgate.__all__)
    public = [
        name
        for name, value in vars(lockgate).items()
        if (not name.startswith("_") or name == "__version__") and not isinstance(value, types.ModuleType)
    ]
    lazy = list(vars(lockgate)["_LAZY"])  # loaded on first use: the names are not there until then
    assert lockgate.__all__ == sorted({*public, *lazy})


def test_every_exported_name_exists_and_belongs_to_lockgate() -> None:
    for name in lockgate.__all__:
        value = getattr(lockgate, name)
        if name != "__version__":
            assert value.__module__.startswith("lockgate."), name


# Not library API: Alembic scripts (they run only inside a migration) and the version string.
_NOT_LIBRARY = ("lockgate.store.migrations", "lockgate._version")


def _modules() -> list[str]:
    return [
        info.name
        for info in pkgutil.walk_packages(lockgate.__path__, prefix="lockgate.")
        if not info.name.startswith(_NOT_LIBRARY)
    ]


def test_every_module_declares_an_all_whose_names_exist() -> None:
    missing = []
    for name in _modules():
        module = importlib.import_module(name)
        exported = getattr(module, "__all__", None)
        if exported is None:
            missing.append(name)
            continue
        for member in exported:
            assert hasattr(module, member), f"{name}.__all__ names {member!r}, which it does not define"
    assert missing == [], f"modules without __all__: {missing}"


def test_every_error_is_a_lockgate_error() -> None:
    errors = [getattr(lockgate, n) for n in lockgate.__all__ if n.endswith(("Error", "Denied", "Broken"))]
    assert errors
    for cls in errors:
        assert issubclass(cls, lockgate.LockgateError), cls
        assert isinstance(cls.exit_code, int)
