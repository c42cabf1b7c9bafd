"""``python -m lockgate``: the same as the ``lockgate`` command."""

from lockgate.cli import run

__all__: list[str] = []

if __name__ == "__main__":
    run()
