"""Quick start: learn vertex costs so that a shortest-path layer reproduces target paths.

A linear model maps per-tile features to costs ``[B, 12, 12]``; a ``DiscreteLayer`` around the grid Dijkstra
solver returns 0/1 path masks; I-MLE supplies the gradient of a Hamming loss to the true paths.

Run: ``python examples/quickstart.py`` (about 10 s on a laptop CPU).
"""

from __future__ import annotations

import torch

import discreteopt as do


def main(steps: int = 150, batch: int = 32, k: int = 12, features: int = 5, seed: int = 0) -> dict[str, float]:
    gen = torch.Generator().manual_seed(seed)
    true_w = torch.randn(features, generator=gen)  # hidden linear cost model
    solver = do.solvers.GridShortestPath()  # costs [B, k, k] -> path mask [B, k, k]

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = torch.randn(n, k, k, features, generator=gen)  # [n, k, k, F]
        costs = torch.nn.functional.softplus(x @ true_w) + 0.1  # [n, k, k] positive
        return x, costs, solver.solve(costs)

    torch.manual_seed(seed)  # the model's initial weights
    model = torch.nn.Linear(features, 1)
    # Gumbel-perturbed costs go negative, where Dijkstra is not exact and no exact shift exists on this grid: the
    # default guard would clamp them to 0 with a GuardWarning; Clamp() accepts I-MLE's / blackbox's rule knowingly
    # (the clamped fraction is counted in layer.stats.clamped_entries / guarded_entries)
    layer = do.DiscreteLayer(solver, do.estimators.IMLE(lam=10.0, samples=4), guard=do.estimators.Clamp(), seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x_test, c_test, y_test = sample(200)
    for _ in range(steps):
        x, _, y_true = sample(batch)
        costs = torch.nn.functional.softplus(model(x).squeeze(-1))  # [B, k, k, 1] -> [B, k, k]
        path = layer(costs)  # mean over the 4 perturbed solutions, [B, k, k]
        loss = (path - y_true).abs().sum((1, 2)).mean()  # Hamming distance per map
        opt.zero_grad()
        loss.backward()
        opt.step()
    layer.eval()  # MAP solution, no noise
    with torch.no_grad():
        pred = layer(torch.nn.functional.softplus(model(x_test).squeeze(-1)))
    ratio = (solver.objective(c_test, pred) / solver.objective(c_test, y_test)).mean().item()  # true cost
    hamming = (pred != y_test).float().mean().item()
    print(f"test: true cost of the predicted paths / optimal = {ratio:.4f}   Hamming error per tile: {hamming:.4f}")
    return {"cost_ratio": ratio, "hamming": hamming}


if __name__ == "__main__":
    main()
