"""``python -m lockgate``: the same as the ``lockgate`` command."""

from lockgate.cli import run

if __name__ == "__main__":
    run()
