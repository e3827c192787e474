"""``discreteopt`` command line: one vocabulary of flags across commands, real defaults in the help, runs,
deprecated spellings, clear errors."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import re
import subprocess
import sys

import pytest
import torch

from discreteopt import __version__, cli
from discreteopt.apps.pto import PtOConfig
from discreteopt.apps.route import RouteConfig

COMMANDS = list(cli.APPS)
#: two valid estimator names per command
TWO = {"route": ("blackbox", "imle"), "explain": ("imle", "l2x"), "vae": ("imle", "st"), "bench": ("2s", "spo+")}
#: the flags every command has, and the ones some commands have
SHARED = ["--preset", "--estimators", "--seed", "--out", "--lam", "--samples", "--epochs", "--batch-size", "--lr",
          "--progress"]
SOME = {"--n-train": {"route", "explain", "bench"}, "--n-test": {"route", "explain", "bench"}, "--scale": {"route", "explain", "bench"}, "--device": {"route", "explain", "vae"},
        "--max-steps": {"route", "explain", "vae"}, "--workers": {"route"}, "--seeds": {"bench"}}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``main(argv)`` -> (exit status, stdout, stderr); argparse errors exit through SystemExit."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def parse(command: str, *argv: str):
    """The config ``discreteopt COMMAND argv...`` would run."""
    parser, _, loaded = cli.build_parser(command)
    module = loaded[command]
    args = parser.parse_args([command, *argv])
    return cli.config_from_args(getattr(module, cli.APPS[command].config), args, module.PRESETS)


def help_text(capsys, command: str) -> str:
    code, out, _ = run_cli(capsys, command, "--help")
    assert code == 0
    return " ".join(out.split())  # argparse wraps lines


def option_dests(command: str) -> dict[str, str]:
    """``{flag: dest}`` of the command's parser, hidden (deprecated) spellings included."""
    _, commands, _ = cli.build_parser(command)
    return {s: a.dest for a in commands[command]._actions for s in a.option_strings}


# ------------------------------------------------------------------------------------------------ one vocabulary
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_accepts_the_shared_flags(command):
    cfg = parse(command, "--preset", "quick", "--estimators", *TWO[command], "--seed", "3", "--out", "somewhere",
                "--lam", "2.5", "--samples", "3", "--epochs", "1", "--no-progress")
    module = importlib.import_module(cli.APPS[command].module)
    estimators = getattr(cfg, "estimators", getattr(cfg, "methods", None))
    assert tuple(estimators) == TWO[command]
    assert (cfg.seed, cfg.out, cfg.lam, cfg.samples, cfg.epochs, cfg.progress) == (3, "somewhere", 2.5, 3, 1, False)
    quick = {k: v for k, v in module.PRESETS["quick"].items() if k not in ("epochs",)}
    assert quick and all(getattr(cfg, k) == v for k, v in quick.items())  # the preset under the explicit options
    assert parse(command, "--out", "none").out is None


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_the_same_presets_and_flag_names(command):
    module = importlib.import_module(cli.APPS[command].module)
    assert tuple(module.PRESETS) == cli.PRESET_NAMES and module.PRESETS["default"] == {}
    for preset in cli.PRESET_NAMES:
        cfg = parse(command, "--preset", preset)
        cfg.validate()
    dests = option_dests(command)
    for flag in SHARED:
        assert flag in dests, (command, flag)
    for flag, where in SOME.items():
        assert (flag in dests) == (command in where), (command, flag)
    fields = {f.name for f in dataclasses.fields(getattr(module, cli.APPS[command].config))}
    assert fields <= set(dests.values()), f"{command}: settings without a flag: {fields - set(dests.values())}"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_the_real_default_values(capsys, command):
    text = help_text(capsys, command)
    module = importlib.import_module(cli.APPS[command].module)
    defaults = getattr(module, cli.APPS[command].config)()
    assert "shared options (the same flag in every command)" in text and "DEFAULT_" not in text

    def option_help(flag: str) -> str:  # the help of one option: up to the next option
        return re.search(re.escape(flag) + r" [A-Z]+ (.*?)(?= --[a-z])", text).group(1)

    assert option_help("--lam").endswith(f"(default: {defaults.lam})")
    assert option_help("--seed").endswith(f"(default: {defaults.seed})")
    assert option_help("--epochs").endswith(f"(default: {defaults.epochs})")
    assert "quick:" in text and "paper:" in text  # what each preset sets
    if command == "route":
        assert "(default: per estimator: imle 0.03, aimle 0.03, perturbed 0.5, fy 0.5, score 0.5)" in text
        assert "--no-progress" in text and "procedural" in text
    if command == "bench":
        assert "--degrees INT [INT ...]" in text and "(default: 1 2 4 6)" in text


def test_lists_take_spaces_commas_and_all():
    assert parse("route", "--estimators", "imle,fy", "st").estimators == ("imle", "fy", "st")
    assert parse("route", "--estimators", "all").estimators == tuple(__import__(
        "discreteopt.apps.route", fromlist=["x"]).ESTIMATORS)
    cfg = parse("bench", "--degrees", "1", "2,4", "--noises", "0,0.5", "--estimators", "spo+")
    assert cfg.degrees == (1, 2, 4) and cfg.noises == (0.0, 0.5) and cfg.methods == ("spo+",)
    assert cfg.n_train == PtOConfig().n_train  # untouched settings keep their defaults
    cfg = parse("explain", "--ks", "5,10", "--estimators", "imle", "--task", "digits")
    assert cfg.ks == (5, 10) and cfg.estimators == ("imle",) and cfg.task == "digits"


def test_explicit_options_beat_the_preset_which_beats_the_defaults():
    cfg = parse("route", "--preset", "quick", "--epochs", "1", "--scale", "0.5", "--max-steps", "none",
                "--no-progress", "--data-dir", "none")
    assert cfg.epochs == 1 and cfg.n_train == 400 and cfg.width == 16  # explicit > preset > default
    assert cfg.scale == 0.5 and cfg.max_steps is None and cfg.progress is False and cfg.data_dir is None
    assert parse("route").n_train == RouteConfig().n_train


@pytest.mark.parametrize("command, old, value, field, expected", [
    ("route", "--estimator", "imle,fy", "estimators", ("imle", "fy")),
    ("route", "--sigma", "0.2", "scale", 0.2),
    ("explain", "--methods", "imle", "estimators", ("imle",)),
    ("explain", "--noise-scale", "0.7", "scale", 0.7),
    ("bench", "--methods", "spo+", "methods", ("spo+",)),
    ("bench", "--sigma", "0.3", "sigma", 0.3),
])
def test_deprecated_spellings_still_work_and_warn(capsys, command, old, value, field, expected):
    cfg = parse(command, old, value)
    assert getattr(cfg, field) == expected
    err = capsys.readouterr().err
    assert f"{old} is deprecated; use --" in err
    assert re.search(re.escape(old) + r"(?![-\w])", help_text(capsys, command)) is None  # hidden from the help


def test_bench_quick_is_a_deprecated_alias_of_preset_quick(capsys):
    assert parse("bench", "--quick").n_train == parse("bench", "--preset", "quick").n_train == 200
    assert "--quick is deprecated; use --preset quick" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ runs
def test_route_runs_prints_table_with_units_and_writes_files(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "route", "--preset", "quick", "--estimators", "blackbox", "--n-train", "40",
                           "--n-val", "20", "--n-test", "20", "--max-steps", "3", "--width", "8", "--no-progress",
                           "--out", str(tmp_path))
    assert code == 0
    assert "cost-optimal" in out and "| test  | blackbox" in out
    assert re.search(r"\| train +\| blackbox +\| \d+\.\d% +\| \d+\.\d% +\| \d\.\d{4} +\| [\d.]+ s +\|", out), out
    assert f"json: {tmp_path / 'route_blackbox.json'}" in out
    saved = json.loads((tmp_path / "route_blackbox.json").read_text())
    assert saved["config"]["n_train"] == 40 and saved["config"]["estimators"] == ["blackbox"]
    assert saved["config"]["width"] == 8 and saved["config"]["epochs"] == 2  # option, preset
    assert set(saved["seconds"]) >= {"pool_start", "train"}
    assert (tmp_path / "route_blackbox.png").is_file() and (tmp_path / "route_blackbox_curves.png").is_file()


def test_bench_quick_runs(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "bench", "--preset", "quick", "--estimators", "2s,spo+", "--degrees", "2",
                           "--epochs", "1", "--no-progress", "--out", str(tmp_path))
    assert code == 0
    header = out.splitlines()[0]
    assert "2s" in header and "spo+" in header and "pfyl" not in header
    saved = json.loads((tmp_path / "bench_pto.json").read_text())
    assert saved["config"]["n_train"] == 200 and saved["config"]["degrees"] == [2]  # quick preset + overrides
    assert (tmp_path / "bench_pto.png").is_file()


def test_python_dash_m_and_version():
    res = subprocess.run([sys.executable, "-m", "discreteopt", "--version"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == f"discreteopt {__version__}"


def test_options_on_your_own_parser():
    """add_config_arguments / config_from_args: a command's options (without --preset) on another parser, as the
    examples use them; absent options stay absent, so the caller can tell them apart from defaults."""
    from discreteopt.apps.vae import VAEConfig

    parser = argparse.ArgumentParser()
    cli.add_config_arguments(parser, VAEConfig)
    args = parser.parse_args(["--estimators", "imle", "st", "--epochs", "5"])
    assert vars(args) == {"estimators": ("imle", "st"), "epochs": 5}
    cfg = cli.config_from_args(VAEConfig, args)
    assert cfg.estimators == ("imle", "st") and cfg.epochs == 5 and cfg.lam == VAEConfig().lam
    assert "--preset" not in parser.format_help()

    @dataclasses.dataclass
    class Other:
        x: int = 1

    with pytest.raises(TypeError, match="no command-line options"):
        cli.add_config_arguments(argparse.ArgumentParser(), Other)


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("argv, message", [
    (["route", "--estimators", "adam"], "invalid choice 'adam'"),
    (["route", "--n-train", "abc"], "expected int"),
    (["route", "--n-train", "0"], "n_train must be >= 1"),
    (["route", "--preset", "huge"], "invalid choice"),
    (["route", "--preset", "smoke"], "invalid choice"),  # the old name of quick
    (["route", "--map-style", "pixel"], "invalid choice"),
    (["route", "--preset", "quick", "--data-dir", "/nonexistent/warcraft"], "is not a directory"),
    (["explain", "--estimators", "imle,gumbel"], "invalid choice 'gumbel'"),
    (["vae", "--estimators", "imle", "--samples", "0"], "samples must be an integer >= 1"),
    (["bench", "--degrees", "1,x"], "expected int"),
    (["bench", "--noises", "1.5"], "noises must be in [0, 1)"),
    (["bench", "--estimators", "spo+,adam"], "invalid choice 'adam'"),
    (["teleport"], "invalid choice"),
    ([], "required"),
])
def test_bad_options_exit_2_with_a_clear_message(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert message in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_on_a_machine_without_cuda(capsys):
    code, _, err = run_cli(capsys, "route", "--device", "cuda")
    assert code == 2 and "CUDA is not available" in err


def test_missing_app_gives_a_clear_error(capsys, monkeypatch):
    monkeypatch.setitem(cli.APPS, "ghost", cli.App("discreteopt.apps._no_such_app", "Cfg", "run", "an absent app"))
    code, _, err = run_cli(capsys, "ghost")
    assert code == 2 and "no 'ghost' app" in err
    code, out, _ = run_cli(capsys, "route", "--help")  # the other commands are unaffected
    assert code == 0 and "--estimators" in out
