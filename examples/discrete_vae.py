"""Discrete VAE on scikit-learn digits with categorical latents: I-MLE, AIMLE, Gumbel-softmax, ST, REINFORCE+RLOO.

The heart of the I-MLE variant (see :mod:`discreteopt.apps.vae` for the whole model)::

    import discreteopt as do
    layer = do.DiscreteLayer(do.solvers.Argmax(), do.estimators.IMLE(lam=10.0, samples=2),
                             return_samples=True)                  # one categorical variable per row
    theta = encoder(x).reshape(B * V, K)                           # logits of V variables with K classes
    z = layer(theta).reshape(B, V, S, K).permute(2, 0, 1, 3)       # [S, B, V, K] exact one-hot samples
    loss = bce(decoder(z.flatten(-2)), x).sum(-1).mean() + kl_to_uniform(theta.reshape(B, V, K)).mean()

Run ``python examples/discrete_vae.py`` (every estimator, a few minutes on 2 CPU cores) or with any option of
``discreteopt vae``, e.g. ``--estimators imle gumbel --epochs 10 --out runs/vae``. It prints the negative-ELBO table
and writes ``vae.json``, ``vae_curves.png`` and ``vae_reconstructions.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from discreteopt.apps import vae
from discreteopt.cli import add_config_arguments, config_from_args


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Discrete VAE on scikit-learn digits (see the module docstring).")
    add_config_arguments(parser, vae.VAEConfig)
    cfg = config_from_args(vae.VAEConfig, parser.parse_args(argv))
    result = vae.run_vae(cfg)
    print(vae.results_table(result))
    for kind, path in result.get("files", {}).items():
        print(f"{kind}: {path}")
    return result


if __name__ == "__main__":
    main()
