"""``python -m discreteopt``: the command line of :mod:`discreteopt.cli`."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
