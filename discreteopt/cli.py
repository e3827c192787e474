"""``discreteopt`` command line: the use cases and benchmarks, one subcommand each.

::

    discreteopt route   [--estimator imle] [--device cuda] [--workers 8] [--out runs/route] ...
    discreteopt explain [--task text] [--methods imle l2x softsub] ...
    discreteopt vae     ...
    discreteopt bench   [--quick] [--degrees 1 2 4 6] ...
    python -m discreteopt ...                      (the same)

Every subcommand is an *app*: a module of :mod:`discreteopt.apps` with a config dataclass, a ``run`` function
``cfg -> dict`` and ``results_table(result) -> str``. The subcommand's options are generated from the dataclass
fields (name ``n_train`` -> ``--n-train``, type, default; help from ``field(metadata={"help": ...})`` or from the
``#:`` comment above the field), so an option is never listed twice. An app module may define ``PRESETS``
(``{name: {field: value}}``), selected with ``--preset NAME``; options given explicitly override the preset.
An app module is imported only when its subcommand runs, so a missing optional app does not break the others.

Invalid settings (the config's ``validate()``) and missing data files exit with status 2 and a one-line
message naming the option, as argparse does for malformed options.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import re
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any

__all__ = ["APPS", "App", "add_config_arguments", "build_parser", "config_from_args", "main"]


@dataclasses.dataclass(frozen=True)
class App:
    """Where a subcommand lives: ``module`` defines ``config`` (a dataclass), ``run`` and ``table``."""

    module: str
    config: str
    run: str
    summary: str
    table: str = "results_table"
    #: extra boolean flags that select a preset (``--quick`` = ``--preset quick``)
    preset_flags: tuple[str, ...] = ()

    def load(self) -> types.ModuleType:
        return importlib.import_module(self.module)


APPS: dict[str, App] = {
    "route": App("discreteopt.apps.route", "RouteConfig", "run_route",
                 "learning to route: Warcraft shortest paths from map images (CNN + solver layer)"),
    "explain": App("discreteopt.apps.explain", "ExplainConfig", "run_explain",
                   "subset selection for explanations: L2X-style top-k explainers (I-MLE, L2X, SoftSub)"),
    "vae": App("discreteopt.apps.vae", "VAEConfig", "run_vae",
               "discrete VAE on digits with categorical latents (I-MLE, AIMLE, Gumbel-softmax, ST, REINFORCE)"),
    "bench": App("discreteopt.apps.pto", "PtOConfig", "run_benchmark",
                 "predict-then-optimise benchmark: PyEPO 5x5 shortest path, normalised regret per method",
                 preset_flags=("quick",)),
}


# ============================================================================== dataclass -> argparse
def _field_comments(cls: type) -> dict[str, str]:
    """``#:`` comments written above (or after) each field in the class body, joined per field."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    comments: dict[str, str] = {}
    pending: list[str] = []
    for line in source.splitlines():
        stripped = line.strip()
        m = re.match(r"#:\s?(.*)", stripped)
        if m:
            pending.append(m.group(1).strip())
            continue
        m = re.match(r"(\w+)\s*:[^=]*(=.*)?$", stripped)
        if m and not stripped.startswith(("def ", "class ", "return ", "@")):
            inline = re.search(r"#:\s?(.*)$", stripped)
            text = " ".join([*pending, inline.group(1).strip()] if inline else pending)
            if text:
                comments[m.group(1)] = text
        pending = []
    return comments


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; anything else -> ``(tp, False)``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _scalar_parser(tp: Any, optional: bool, option: str):
    """A function ``str -> value`` for argparse (``none`` -> ``None`` for optional fields)."""
    if tp not in (int, float, str):
        raise TypeError(f"option {option}: unsupported field type {tp!r} (int, float, str, bool, tuples of "
                        "those and optionals are)")

    def parse(text: str):
        if optional and text.lower() in ("none", "null"):
            return None
        try:
            return tp(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {tp.__name__}{' or none' if optional else ''}; "
                                             f"got {text!r}") from None

    parse.__name__ = tp.__name__  # argparse names the type in its messages
    return parse


def _split_commas(values: list[str]) -> list[str]:
    """``["1,2", "4"]`` -> ``["1", "2", "4"]``: tuples accept spaces, commas or both."""
    return [v for item in values for v in item.split(",") if v != ""]


class _TupleAction(argparse.Action):
    def __init__(self, *args, element=None, **kwargs):
        self.element = element
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        items = _split_commas(list(values))
        if not items:
            parser.error(f"argument {option_string}: expected at least one value")
        try:
            setattr(namespace, self.dest, tuple(self.element(v) for v in items))
        except argparse.ArgumentTypeError as exc:
            parser.error(f"argument {option_string}: {exc}")


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One option per field of the dataclass ``cls`` (values left unset are absent from the namespace).

    Types: ``int``, ``float``, ``str`` (``X | None`` also accepts ``none``), ``bool`` (``--x`` / ``--no-x``),
    ``tuple[T, ...]`` (``--xs 1 2 4`` or ``--xs 1,2,4``).
    """
    hints = typing.get_type_hints(cls)
    comments = _field_comments(cls)
    defaults = cls()
    for f in dataclasses.fields(cls):
        option = "--" + f.name.replace("_", "-")
        tp, optional = _unwrap_optional(hints[f.name])
        default = getattr(defaults, f.name)
        text = f.metadata.get("help") or comments.get(f.name, "")
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        help_text = f"{text} (default: {shown})" if text else f"(default: {shown})"
        help_text = help_text.replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        if tp is bool:
            parser.add_argument(option, action=argparse.BooleanOptionalAction, **kwargs)
        elif typing.get_origin(tp) is tuple:
            element, *rest = typing.get_args(tp)
            parser.add_argument(option, nargs="+", action=_TupleAction, metavar=element.__name__.upper(),
                                element=_scalar_parser(element, False, option), **kwargs)
        else:
            metavar = "DIR" if f.name in ("out", "data_dir") else tp.__name__.upper()
            parser.add_argument(option, type=_scalar_parser(tp, optional, option), metavar=metavar, **kwargs)


def config_from_args(cls: type, namespace: argparse.Namespace, presets: dict[str, dict[str, Any]] | None = None):
    """Defaults, then the selected preset, then the options given explicitly."""
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    preset = getattr(namespace, "preset", None)
    if preset is not None:
        values.update((presets or {})[preset])
    values.update({k: v for k, v in vars(namespace).items() if k in names})
    return cls(**values)


# ============================================================================== parser and dispatch
def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (its first positional word, when that is one), or None."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in APPS else None


def build_parser(command: str | None = None) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser],
                                                       dict[str, Any]]:
    """The ``discreteopt`` parser; only ``command``'s app is imported and gets its options.

    Returns the parser, the subcommands' parsers and ``{command: module or ModuleNotFoundError}`` for the
    imported app.
    """
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="discreteopt",
        description="Combinatorial solvers as trainable PyTorch layers: use cases and benchmarks.",
        epilog="Run 'discreteopt COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"discreteopt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    loaded: dict[str, Any] = {}
    commands: dict[str, argparse.ArgumentParser] = {}
    for name, app in APPS.items():
        p = sub.add_parser(name, help=app.summary, description=app.summary[0].upper() + app.summary[1:] + ".")
        commands[name] = p
        if name != command:
            continue
        try:
            module = app.load()
        except ModuleNotFoundError as exc:
            if exc.name != app.module:
                raise
            loaded[name] = exc
            continue
        loaded[name] = module
        presets: dict[str, dict[str, Any]] = getattr(module, "PRESETS", {})
        if presets:
            p.add_argument("--preset", choices=sorted(presets), default=None,
                           help="start from these settings (explicit options override them): " +
                           "; ".join(f"{k}: {_describe_preset(v)}" for k, v in presets.items()))
        for flag in app.preset_flags:
            p.add_argument(f"--{flag}", dest="preset", action="store_const", const=flag,
                           help=f"same as --preset {flag}")
        add_config_arguments(p, getattr(module, app.config))
    return parser, commands, loaded


def _describe_preset(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={' '.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in values.items())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``discreteopt`` and ``python -m discreteopt``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_of(argv)
    parser, commands, loaded = build_parser(command)
    args = parser.parse_args(argv)
    sub = commands[args.command]  # the command's own parser (its errors name the command)
    module = loaded.get(args.command)
    if isinstance(module, ModuleNotFoundError):
        sub.error(f"this installation has no '{args.command}' app ({APPS[args.command].module} is missing)")
    app = APPS[args.command]
    cls = getattr(module, app.config)
    try:
        cfg = config_from_args(cls, args, getattr(module, "PRESETS", {}))
        if hasattr(cfg, "validate"):
            cfg.validate()
    except (TypeError, ValueError) as exc:
        sub.error(str(exc))
    try:
        result = getattr(module, app.run)(cfg)
    except FileNotFoundError as exc:  # --data-dir and friends: a user error, not a crash
        sub.error(str(exc))
    print(getattr(module, app.table)(result))
    files = result.get("files") if isinstance(result, dict) else None
    if files:
        for kind, path in files.items():
            print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
