"""``discreteopt`` command line: the use cases and benchmarks, one subcommand each.

::

    discreteopt route   [--estimators imle blackbox] [--preset quick] [--device cuda] [--workers 8] ...
    discreteopt explain [--estimators imle l2x softsub] [--task digits] [--ks 5 10] ...
    discreteopt vae     [--estimators imle st] [--preset quick] ...
    discreteopt bench   [--estimators spo+ pfyl] [--preset quick] [--degrees 1 6] ...
    python -m discreteopt ...                      (the same)

One vocabulary: a flag means the same thing in every command that has it.

==================  =====================================================================  ======================
flag                meaning                                                                commands
==================  =====================================================================  ======================
``--preset NAME``   start from ``quick`` / ``default`` / ``large`` / ``paper`` settings    all
                    (options given explicitly override the preset)
``--estimators``    the gradient estimators (methods) to compare, one run each: names      all
                    separated by spaces or commas, or ``all``
``--seed N``        base random seed (data, initialisation, noise)                         all
``--out DIR``       folder for the JSON and PNG files (``none``: write nothing)            all
``--lam X``         finite-difference step of I-MLE / blackbox (AIMLE's initial step)      all
``--samples N``     noise samples per instance                                             all
``--epochs``,       training length and step size                                          all
``--batch-size``,
``--lr``
``--progress``      progress bars on stderr (``--no-progress``)                            all
``--n-train``,      training and test instances (the VAE's digits split is fixed)          route, explain, bench
``--n-test``
``--scale X``       noise scale (temperature) of the perturbation ``scale * eps``          route, explain, bench
``--device D``      device of the network: cpu, cuda, cuda:N, auto                         route, explain, vae
``--max-steps N``   stop each epoch after N steps (smoke runs)                             route, explain, vae
``--workers N``     solver worker processes (0: in the main process)                       route
``--seeds S ...``   several runs with seeds ``seed + s`` (error bars over seeds)           bench
==================  =====================================================================  ======================

Deprecated spellings still work and print a warning: ``--estimator`` and ``--methods`` (use ``--estimators``),
``--sigma`` and ``--noise-scale`` (use ``--scale``), ``bench --quick`` (use ``--preset quick``).

Every subcommand is an *app*: a module of :mod:`discreteopt.apps` with a config dataclass (the single source of
the default values), ``PRESETS`` (``{"quick": {...}, "default": {}, "large": {...}, "paper": {...}}``), a ``run``
function ``cfg -> dict`` and ``results_table(result) -> str``. Its options are written out below with plain
``argparse`` (one function per command, help text next to each flag); the help shows the config's default value.
An app module is imported only when its subcommand runs, so a missing optional app does not break the others.
:func:`add_config_arguments` and :func:`config_from_args` put a command's options on your own parser (the
examples do).

Invalid settings (the config's ``validate()``) and missing data files exit with status 2 and a one-line
message naming the option, as argparse does for malformed options.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["APPS", "PRESET_NAMES", "App", "add_config_arguments", "build_parser", "config_from_args", "main"]

#: the preset names every command accepts (``default`` = the config's defaults)
PRESET_NAMES = ("quick", "default", "large", "paper")


# ============================================================================== actions
def _warn_deprecated(parser: argparse.ArgumentParser, option: str | None, replacement: str | None) -> None:
    if replacement and option:
        print(f"{parser.prog}: warning: {option} is deprecated; use {replacement}", file=sys.stderr)


class _Store(argparse.Action):
    """Store the (already converted) value; a deprecated spelling (``replacement`` set) prints a warning."""

    def __init__(self, *args, replacement: str | None = None, **kwargs):
        self.replacement = replacement
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        _warn_deprecated(parser, option_string, self.replacement)
        setattr(namespace, self.dest, values)


class _StoreConst(_Store):
    """``--quick``: store a constant (the deprecated way to select a preset)."""

    def __init__(self, *args, const: Any = None, **kwargs):
        super().__init__(*args, nargs=0, const=const, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        _warn_deprecated(parser, option_string, self.replacement)
        setattr(namespace, self.dest, self.const)


class _List(_Store):
    """A list option: ``--xs 1 2 4``, ``--xs 1,2,4`` or both; values converted by ``element``, checked against
    ``choices`` (``all`` expands to every choice); stored as a tuple."""

    def __init__(self, *args, element: Callable[[str], Any] = str, choices: Sequence[str] | None = None,
                 **kwargs):
        self.element, self.allowed = element, tuple(choices) if choices is not None else None
        super().__init__(*args, nargs="+", **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        _warn_deprecated(parser, option_string, self.replacement)
        items = [v.strip() for item in values for v in item.split(",") if v.strip()]
        if not items:
            parser.error(f"argument {option_string}: expected at least one value")
        if self.allowed is not None:
            if items == ["all"]:
                items = list(self.allowed)
            bad = [v for v in items if v not in self.allowed]
            if bad:
                parser.error(f"argument {option_string}: invalid choice {', '.join(map(repr, bad))} (choose from "
                             f"{', '.join(self.allowed)}, or all)")
        try:
            setattr(namespace, self.dest, tuple(self.element(v) for v in items))
        except argparse.ArgumentTypeError as exc:
            parser.error(f"argument {option_string}: {exc}")


def _scalar(tp: type, optional: bool = False) -> Callable[[str], Any]:
    """``str -> tp`` for argparse; optional settings also take ``none``."""
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


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return " ".join(map(str, value))
    return str(value)


# ============================================================================== options per command
class _Options:
    """Adds one command's options to a parser: plain ``argparse`` calls whose help ends with the default value
    of the config dataclass ``cls`` (so the help cannot drift from the code). Options left out on the command
    line are absent from the namespace (``default=SUPPRESS``): presets and defaults fill them in."""

    def __init__(self, parser: argparse.ArgumentParser, cls: type, command: str):
        self.shared = parser.add_argument_group("shared options (the same flag in every command)")
        self.own = parser.add_argument_group(f"{command} options")
        self.defaults = cls()
        self.fields = {f.name for f in dataclasses.fields(cls)}

    def field(self, *names: str) -> str:
        """The first of ``names`` that is a field of the config (apps may spell a setting differently)."""
        return next((n for n in names if n in self.fields), names[0])

    def add(self, flag: str, help: str, *, dest: str | None = None, type: type = str, optional: bool = False,
            shared: bool = False, choices: Sequence[str] | None = None, metavar: str | None = None,
            default_text: str | None = None, deprecated: Sequence[str] = ()) -> None:
        dest = dest or flag.lstrip("-").replace("-", "_")
        group = self.shared if shared else self.own
        default = default_text if default_text is not None else _shown(getattr(self.defaults, dest))
        kwargs: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS}
        text = f"{help} (default: {default})".replace("%", "%%")
        if type is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, help=text, **kwargs)
            return
        kwargs.update(type=_scalar(type, optional), metavar=metavar or type.__name__.upper(), action=_Store)
        if choices is not None:
            kwargs["choices"] = list(choices)
            kwargs["metavar"] = metavar or "{" + ",".join(choices) + "}"
        group.add_argument(flag, help=text, **kwargs)
        for old in deprecated:
            group.add_argument(old, help=argparse.SUPPRESS, replacement=flag, **kwargs)

    def add_list(self, flag: str, help: str, *, dest: str | None = None, element: type = str,
                 choices: Sequence[str] | None = None, shared: bool = False, metavar: str | None = None,
                 deprecated: Sequence[str] = ()) -> None:
        dest = dest or flag.lstrip("-").replace("-", "_")
        group = self.shared if shared else self.own
        text = f"{help} (default: {_shown(getattr(self.defaults, dest))})".replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS, "action": _List,
                                  "element": _scalar(element), "choices": choices,
                                  "metavar": metavar or ("NAME" if choices is not None else element.__name__.upper())}
        group.add_argument(flag, help=text, **kwargs)
        for old in deprecated:
            group.add_argument(old, help=argparse.SUPPRESS, replacement=flag, **kwargs)

    # ------------------------------------------------------------------ the shared vocabulary
    def estimators(self, names: Sequence[str], help: str, deprecated: Sequence[str] = ()) -> None:
        self.add_list("--estimators", f"{help}: {', '.join(names)}; separated by spaces or commas, or all",
                      dest=self.field("estimators", "methods"), choices=names, shared=True, deprecated=deprecated)

    def training(self, lam_help: str, samples_help: str, *, optional_samples: bool = False,
                 samples_default: str | None = None) -> None:
        self.add("--epochs", "training epochs per run", type=int, shared=True)
        self.add("--batch-size", "instances per training step", type=int, shared=True)
        self.add("--lr", "Adam learning rate", type=float, shared=True)
        if "n_train" in self.fields:  # the VAE's data set has a fixed size
            self.add("--n-train", "training instances", type=int, shared=True)
            self.add("--n-test", "test instances", type=int, shared=True)
        self.add("--lam", lam_help, type=float, shared=True)
        self.add("--samples", samples_help, type=int, optional=optional_samples, shared=True,
                 default_text=samples_default)

    def run(self, *, seed_help: str = "random seed (data, initialisation, noise)", device: bool = True,
            max_steps: bool = True) -> None:
        self.add("--seed", seed_help, type=int, shared=True)
        if device:
            self.add("--device", "device of the network: cpu, cuda, cuda:N or auto", shared=True, metavar="DEVICE")
        self.add("--out", "folder for the JSON and PNG files (none: write nothing)", optional=True, shared=True,
                 metavar="DIR")
        self.add("--progress", "progress bars on stderr", type=bool, shared=True)
        if max_steps:
            self.add("--max-steps", "stop each epoch after this many steps (smoke runs; none: full epochs)",
                     type=int, optional=True, shared=True)


def _route_options(o: _Options) -> None:
    from .apps import route

    o.estimators(route.ESTIMATORS, "estimators to train, one network each, on the same maps",
                 deprecated=("--estimator",))
    o.training("finite-difference step of I-MLE and blackbox (AIMLE's initial step); the loss is the Hamming "
               "distance summed over tiles, as in the published code, so lam 20 at batch 70 means the same",
               "noise samples per map (score function: >= 2)", optional_samples=True,
               samples_default="per estimator: " + ", ".join(f"{k} {v}" for k, v in route.DEFAULT_SAMPLES.items()))
    o.add("--scale", "noise scale: Sum-of-Gamma temperature (imle, aimle), log-normal scale of the multiplicative "
          "perturbation (perturbed, fy), normal scale (score); blackbox and st use no noise", type=float,
          optional=True, shared=True, deprecated=("--sigma",),
          default_text="per estimator: " + ", ".join(f"{k} {v}" for k, v in route.DEFAULT_SCALE.items()))
    o.add("--workers", "solver worker processes (0: solve in the main process); started and warmed up before "
          "the training clock starts", type=int, shared=True)
    o.run()
    o.add("--size", "grid side k (maps are 8k x 8k pixels; published sizes 12, 18, 24, 30)", type=int)
    o.add("--n-val", "validation maps, scored after every epoch (learning curve; 0: none)", type=int)
    o.add("--width", "channels of the CombResNet (ResNet18's first stage has 64)", type=int)
    o.add("--map-style", "look of generated maps: tileset (like the published maps) or procedural (every tile "
          "textured independently: harder)", choices=route.STYLES)
    o.add("--data-dir", "folder with the real {train,val,test}_maps.npy, _vertex_weights.npy, "
          "_shortest_paths.npy files or its {size}x{size} sub-folder (none: generated maps)", optional=True,
          metavar="DIR")


def _explain_options(o: _Options) -> None:
    from .apps import explain

    o.estimators(explain.METHODS, "subset selectors to compare", deprecated=("--methods",))
    o.training("I-MLE finite-difference step lambda (on the gradient of the batch-mean loss); AIMLE's initial "
               "lambda", "noise samples / relaxed samples per example and step")
    o.add("--scale", "scale (temperature) of the I-MLE / AIMLE Sum-of-Gamma noise", type=float, shared=True,
          deprecated=("--noise-scale",))
    o.run()
    o.add("--task", "text (synthetic, or BeerAdvocate files) or digits (scikit-learn 8x8)", choices=explain.TASKS)
    o.add_list("--ks", "subset sizes k", element=int)
    o.add("--repeats", "independent runs per (estimator, k) with seeds seed, seed+1, ...; the table shows "
          "mean ± std", type=int)
    o.add("--aimle-target", "AIMLE: target number of changed entries per example and sample (2 = one swap)",
          type=float)
    o.add("--tau", "temperature of the L2X / SoftSub relaxations", type=float)
    o.add("--beer-reviews", "BeerAdvocate reviews file (SCORES<TAB>TOKENS per line) for the text task",
          optional=True, metavar="FILE")
    o.add("--beer-annotations", "BeerAdvocate annotations.json (rationale spans): test set with subset precision",
          optional=True, metavar="FILE")
    o.add("--beer-max-len", "BeerAdvocate reviews are truncated/padded to this many tokens", type=int)


def _vae_options(o: _Options) -> None:
    from .apps import vae

    o.estimators(vae.ESTIMATORS, "gradient estimators to compare")
    o.training("I-MLE finite-difference step lambda (on the gradient of the batch-mean loss); AIMLE's initial "
               "lambda", "latent samples per image and step, for every estimator (rloo needs >= 2)")
    o.run()
    o.add("--latents", "number V of categorical latent variables", type=int)
    o.add("--classes", "number K of classes of each latent variable", type=int)
    o.add("--hidden", "width h of the MLPs: encoder 64-2h-h-VK, decoder VK-h-2h-64", type=int)
    o.add("--aimle-target", "AIMLE: target number of non-zero gradient entries per latent variable and sample",
          type=float)
    o.add("--tau", "initial Gumbel-softmax / ST temperature", type=float)
    o.add("--tau-min", "lowest temperature of the annealing schedule", type=float)
    o.add("--tau-rate", "annealing rate r: tau_t = max(tau_min, tau exp(-r t)), t = step (0: constant tau)",
          type=float)
    o.add("--kl-warmup", "steps over which the KL weight rises linearly from 0 to 1 (0: full KL at once)", type=int)
    o.add("--eval-samples", "exact latent samples per test image for the -ELBO", type=int)


def _bench_options(o: _Options) -> None:
    from .apps import pto

    o.estimators(pto.METHODS, "methods to train (PyEPO's names)", deprecated=("--methods",))
    o.training("finite-difference step of blackbox (dbb) and I-MLE", "noise samples per instance of dpo, pfyl, "
               "imle and aimle")
    o.add("--scale", "noise scale of the perturbed methods (dpo, pfyl, imle, aimle)", type=float, shared=True,
          dest=o.field("scale", "sigma"), deprecated=("--sigma",))
    o.run(seed_help="base seed of the data generators (PyEPO's default 135); run s uses seed + s", device=False,
          max_steps=False)
    o.add_list("--seeds", "runs per setting, with data and torch seed seed + s (bars show mean ± sd over them)",
               element=int)
    o.add_list("--problems", "problems: shortest_path (5x5 grid, minimise), knapsack (maximise)",
               choices=pto.PROBLEMS)
    o.add_list("--degrees", "polynomial degrees of the cost model (1: linear, well specified)", element=int)
    o.add_list("--noises", "half-widths e of the multiplicative noise U(1-e, 1+e)", element=float)
    o.add("--p", "number of features", type=int)
    o.add("--imle-k", "Sum-of-Gamma k of I-MLE's noise (PyEPO's default 5)", type=int)
    o.add("--pg-h", "finite-difference width of the perturbation gradient (pg; PyEPO's sigma)", type=float)
    o.add("--solve-ratio", "fraction of each batch the pool methods send to the solver (PyEPO's solve_ratio)",
          type=float)
    o.add("--knapsack-items", "knapsack: number of items", type=int)
    o.add("--knapsack-dim", "knapsack: number of capacity rows", type=int)
    o.add("--knapsack-capacity", "knapsack: capacity of each row", type=float)
    o.add("--pyepo", "also train every shared method with PyEPO (needs the optional pyepo package)", type=bool)


@dataclasses.dataclass(frozen=True)
class App:
    """Where a subcommand lives: ``module`` defines ``config`` (a dataclass), ``run``, ``table`` and
    ``PRESETS``; ``options`` adds the command's flags to a parser."""

    module: str
    config: str
    run: str
    summary: str
    options: Callable[[_Options], None] | None = None
    table: str = "results_table"

    def load(self) -> types.ModuleType:
        return importlib.import_module(self.module)


APPS: dict[str, App] = {
    "route": App("discreteopt.apps.route", "RouteConfig", "run_route",
                 "learning to route: Warcraft shortest paths from map images (CNN + solver layer)", _route_options),
    "explain": App("discreteopt.apps.explain", "ExplainConfig", "run_explain",
                   "subset selection for explanations: L2X-style top-k explainers (I-MLE, L2X, SoftSub)",
                   _explain_options),
    "vae": App("discreteopt.apps.vae", "VAEConfig", "run_vae",
               "discrete VAE on digits with categorical latents (I-MLE, AIMLE, Gumbel-softmax, ST, REINFORCE)",
               _vae_options),
    "bench": App("discreteopt.apps.pto", "PtOConfig", "run_benchmark",
                 "predict-then-optimise benchmark: PyEPO shortest path and knapsack, normalised regret per method",
                 _bench_options),
}


def _app_of(cls: type) -> tuple[str, App]:
    for name, app in APPS.items():
        if app.config == cls.__name__ and cls.__module__ == app.module:
            return name, app
    raise TypeError(f"no command-line options are defined for {cls.__module__}.{cls.__name__}; the commands' "
                    f"configs are {', '.join(f'{a.module}.{a.config}' for a in APPS.values())}")


def _add_options(parser: argparse.ArgumentParser, command: str, app: App, cls: type,
                 presets: dict[str, dict[str, Any]] | None) -> None:
    if app.options is None:
        raise TypeError(f"command {command!r} defines no options")
    o = _Options(parser, cls, command)
    if presets is not None:
        o.shared.add_argument("--preset", choices=PRESET_NAMES, default=None, metavar="{" + ",".join(PRESET_NAMES)
                              + "}", help="start from these settings; options given explicitly override them: "
                              + "; ".join(f"{k}: {_describe_preset(presets.get(k))}" for k in PRESET_NAMES))
    app.options(o)


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add the options of the command whose config is ``cls`` (``RouteConfig``, ``ExplainConfig``, ``VAEConfig``,
    ``PtOConfig``) to ``parser`` -- everything but ``--preset``. Options not given are absent from the namespace;
    :func:`config_from_args` fills in presets and defaults.

    Example::

        parser = argparse.ArgumentParser()
        add_config_arguments(parser, VAEConfig)
        cfg = config_from_args(VAEConfig, parser.parse_args(["--estimators", "imle", "st", "--epochs", "5"]))
    """
    command, app = _app_of(cls)
    _add_options(parser, command, app, cls, presets=None)


def config_from_args(cls: type, namespace: argparse.Namespace, presets: dict[str, dict[str, Any]] | None = None):
    """The config ``cls``: its defaults, then the preset ``namespace.preset`` (if any), then the options given
    explicitly."""
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    preset = getattr(namespace, "preset", None)
    if preset is not None:
        if preset not in (presets or {}):
            raise ValueError(f"preset must be one of {', '.join(sorted(presets or {}))}; got {preset!r}")
        values.update(presets[preset])
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
        epilog="Run 'discreteopt COMMAND --help' for the options of a command. The same flag means the same "
               "thing in every command (--preset, --estimators, --seed, --out, --lam, --scale, ...).")
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
        _add_options(p, name, app, getattr(module, app.config), getattr(module, "PRESETS", {}))
        if name == "bench":  # the old spelling of --preset quick
            p.add_argument("--quick", dest="preset", action=_StoreConst, const="quick", help=argparse.SUPPRESS,
                           replacement="--preset quick")
    return parser, commands, loaded


def _describe_preset(values: dict[str, Any] | None) -> str:
    if values is None:
        return "(not defined)"
    if not values:
        return "the defaults shown below"
    return ", ".join(f"{k}={_shown(v)}" for k, v in values.items())


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
