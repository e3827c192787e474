"""Learning to explain (L2X) with a top-k layer: I-MLE vs the relaxed subsets of L2X and SoftSub.

An explainer scores the tokens of a review (or the pixels of a digit), a selector keeps ``k`` of them and a predictor
sees only those. With I-MLE the selection is an exact k-subset (see :mod:`discreteopt.apps.explain`)::

    import discreteopt as do
    layer = do.DiscreteLayer(do.solvers.TopK(k),
                             do.estimators.IMLE(lam=1000.0, noise=do.noise.SumOfGamma(k=k)))
    mask = layer(explainer(tokens))                  # [B, n] k-hot (training: perturbed, eval: top-k)
    loss = ((predictor(tokens, mask).squeeze(-1) - y) ** 2).mean()

On the synthetic text task the relevant tokens are known, so subset precision is exact. Run
``python examples/l2x_explain.py`` (text task, k = 5, 10, 15), ``--task digits`` for scikit-learn digits with a
picture of the selected pixels, ``--beer-reviews FILE [--beer-annotations FILE]`` for BeerAdvocate aroma, or any
other option of ``discreteopt explain``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from discreteopt.apps import explain
from discreteopt.cli import add_config_arguments, config_from_args


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="L2X-style subset selection (see the module docstring).")
    add_config_arguments(parser, explain.ExplainConfig)
    cfg = config_from_args(explain.ExplainConfig, parser.parse_args(argv))
    result = explain.run_explain(cfg)
    print(explain.results_table(result))
    for kind, path in result.get("files", {}).items():
        print(f"{kind}: {path}")
    return result


if __name__ == "__main__":
    main()
