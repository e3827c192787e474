"""``discreteopt`` command line: options generated from the config dataclasses, runs, clear errors."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import subprocess
import sys

import pytest
import torch

from discreteopt import __version__, cli
from discreteopt.apps.pto import PtOConfig
from discreteopt.apps.route import RouteConfig


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``main(argv)`` -> (exit status, stdout, stderr); argparse errors exit through SystemExit."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------------------ runs
def test_route_runs_prints_table_and_writes_files(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "route", "--preset", "smoke", "--estimator", "blackbox", "--out", str(tmp_path))
    assert code == 0
    assert "cost_optimal_accuracy" in out and "| test  | blackbox" in out
    assert f"json: {tmp_path / 'route_blackbox.json'}" in out
    saved = json.loads((tmp_path / "route_blackbox.json").read_text())
    assert saved["config"]["n_train"] == 40 and saved["config"]["estimator"] == "blackbox"  # preset + option
    assert (tmp_path / "route_blackbox.png").is_file() and (tmp_path / "route_blackbox_curves.png").is_file()


def test_bench_quick_runs(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "bench", "--quick", "--methods", "2s,spo+", "--degrees", "2", "--epochs", "1",
                           "--no-progress", "--out", str(tmp_path))
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


# ------------------------------------------------------------------------------------------------ options
def test_options_are_generated_from_the_dataclass(capsys):
    code, out, _ = run_cli(capsys, "route", "--help")
    assert code == 0
    for f in dataclasses.fields(RouteConfig):
        assert "--" + f.name.replace("_", "-") in out
    assert "--no-progress" in out and "--preset" in out and "paper" in out
    assert "procedural" in out  # help text taken from the field's #: comment
    code, out, _ = run_cli(capsys, "bench", "--help")
    assert code == 0 and "--quick" in out and "--degrees INT [INT ...]" in out


def test_types_tuples_optionals_bools_and_presets():
    parser, _, loaded = cli.build_parser("route")
    args = parser.parse_args(["route", "--preset", "smoke", "--epochs", "1", "--sigma", "0.5", "--max-steps", "none",
                              "--no-progress", "--data-dir", "none"])
    cfg = cli.config_from_args(RouteConfig, args, loaded["route"].PRESETS)
    assert cfg.epochs == 1 and cfg.n_train == 40  # explicit option over preset over default
    assert cfg.sigma == 0.5 and cfg.max_steps is None and cfg.progress is False and cfg.data_dir is None
    parser, _, _ = cli.build_parser("bench")
    args = parser.parse_args(["bench", "--degrees", "1", "2,4", "--noises", "0,0.5", "--methods", "spo+"])
    cfg = cli.config_from_args(PtOConfig, args)
    assert cfg.degrees == (1, 2, 4) and cfg.noises == (0.0, 0.5) and cfg.methods == ("spo+",)
    assert cfg.n_train == PtOConfig().n_train  # untouched fields keep their defaults


def test_help_from_metadata_and_comments():
    @dataclasses.dataclass
    class Cfg:
        #: first line
        #: second line
        alpha: float = 1.0
        beta: int = dataclasses.field(default=3, metadata={"help": "from metadata", "choices": (3, 4)})
        names: tuple[str, ...] = ("a",)
        flag: bool = False

    parser = argparse.ArgumentParser()
    cli.add_config_arguments(parser, Cfg)
    text = parser.format_help()
    assert "first line second line (default: 1.0)" in " ".join(text.split())
    assert "from metadata" in text
    assert vars(parser.parse_args(["--names", "x,y", "--flag", "--beta", "4"])) == \
        {"names": ("x", "y"), "flag": True, "beta": 4}
    with pytest.raises(SystemExit):
        parser.parse_args(["--beta", "5"])  # not a choice


def test_explain_options_come_from_its_config():
    """The CLI glue works with the other apps' configs (tuples of ints and strings)."""
    parser, _, loaded = cli.build_parser("explain")
    module = loaded["explain"]
    args = parser.parse_args(["explain", "--ks", "5,10", "--methods", "imle", "--task", "digits"])
    cfg = cli.config_from_args(module.ExplainConfig, args)
    assert cfg.ks == (5, 10) and cfg.methods == ("imle",) and cfg.task == "digits"


def test_vae_subcommand(capsys):
    code, out, err = run_cli(capsys, "vae", "--help")
    if importlib.util.find_spec("discreteopt.apps.vae") is None:
        assert code == 2 and "no 'vae' app" in err
    else:
        from discreteopt.apps.vae import VAEConfig

        assert code == 0
        assert all("--" + f.name.replace("_", "-") in out for f in dataclasses.fields(VAEConfig))


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("argv, message", [
    (["route", "--estimator", "adam"], "estimator must be one of"),
    (["route", "--n-train", "abc"], "expected int"),
    (["route", "--n-train", "0"], "n_train must be >= 1"),
    (["route", "--preset", "huge"], "invalid choice"),
    (["route", "--map-style", "pixel"], "map_style"),
    (["route", "--preset", "smoke", "--data-dir", "/nonexistent/warcraft"], "is not a directory"),
    (["bench", "--degrees", "1,x"], "expected int"),
    (["bench", "--noises", "1.5"], "noises must be in [0, 1)"),
    (["bench", "--methods", "spo+,adam"], "methods must be a non-empty subset"),
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
    assert code == 0 and "--estimator" in out
