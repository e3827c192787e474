"""The use cases end to end, one module each (see :mod:`discreteopt.cli` for the command line).

Every app module exposes a config dataclass, a ``run`` function ``cfg -> dict`` (results, also saved as JSON
with PNG figures under ``cfg.out``) and ``results_table(result) -> str``:

* :mod:`~discreteopt.apps.route`   -- ``RouteConfig`` / ``run_route`` (``train_route`` for one estimator):
  learning to route on Warcraft maps;
* :mod:`~discreteopt.apps.explain` -- ``ExplainConfig`` / ``run_explain``: L2X-style subset selection;
* :mod:`~discreteopt.apps.vae`     -- ``VAEConfig`` / ``run_vae``: discrete VAE on digits;
* :mod:`~discreteopt.apps.pto`     -- ``PtOConfig`` / ``run_benchmark``: predict-then-optimise benchmark.

Modules are imported on demand (``from discreteopt.apps import route``); nothing is imported here.
"""
