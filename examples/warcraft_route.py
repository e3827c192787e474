"""Learning to route on Warcraft maps with I-MLE: the library's API in one training loop.

A CNN reads the map image and predicts one cost per tile; a solver layer turns the costs into the shortest
top-left -> bottom-right path (Dijkstra, on CPU worker processes), and I-MLE supplies the gradient of the Hamming
loss to the true path. Evaluation solves the predicted costs without noise and scores the path with the true
costs (cost-optimal accuracy, the number the papers report).

    python examples/warcraft_route.py                                  # CPU, generated maps, ~2 minutes
    python examples/warcraft_route.py --device cuda --workers 8 --n-train 30000 --epochs 17
    python examples/warcraft_route.py --data-dir warcraft_shortest_path_oneskin   # the real .npy files

The full experiment, every estimator, figures and JSON: ``discreteopt route --help``
(:mod:`discreteopt.apps.route`).
"""

from __future__ import annotations

import argparse

import torch

import discreteopt as do
from discreteopt.data.warcraft import generate_warcraft, load_warcraft
from discreteopt.metrics import shortest_path_metrics
from discreteopt.models import CombResNet


def images(maps, device) -> torch.Tensor:
    """uint8 maps ``[N, 8k, 8k, 3]`` -> float ``[N, 3, 8k, 8k]`` in [0, 1] on ``device``."""
    return torch.from_numpy(maps).to(device).permute(0, 3, 1, 2).float().div_(255.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=0, help="solver processes (0: solve in this process)")
    parser.add_argument("--data-dir", default=None, help="folder with the real Warcraft .npy files")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)

    if args.data_dir:
        train, test = load_warcraft(args.data_dir, "train", n=args.n_train), load_warcraft(args.data_dir, "test",
                                                                                          n=args.n_test)
    else:
        train, test = generate_warcraft(args.n_train, 12, seed=0), generate_warcraft(args.n_test, 12, seed=1)

    executor = do.executors.Processes(args.workers) if args.workers else do.executors.Inline()
    solver = do.solvers.GridShortestPath(neighbourhood=8)
    # Sum-of-Gamma noise (k ~ path length) at a small temperature: the network's costs are of order 1
    layer = do.DiscreteLayer(solver, do.estimators.IMLE(lam=20.0, noise=do.noise.SumOfGamma(k=12, scale=0.03)),
                             executor=executor)
    model = CombResNet(grid_size=12, width=32).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    x_train, y_train = images(train.maps, device), torch.from_numpy(train.paths).to(device)
    with executor:
        for epoch in range(args.epochs):
            model.train()
            for idx in torch.randperm(len(train)).split(70):
                costs = model(x_train[idx])  # [b, 12, 12], on the device
                path = layer(costs)  # solved on the executor, returned on the device
                # Hamming distance summed over tiles, mean over the batch (the published lam=20 assumes it)
                loss = (path * (1 - y_train[idx]) + (1 - path) * y_train[idx]).sum((1, 2)).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            print(f"epoch {epoch + 1}: last batch Hamming loss {loss.item():.2f}")

        model.eval()
        layer.eval()  # eval(): the unperturbed MAP path
        with torch.no_grad():
            pred = torch.cat([layer(model(images(test.maps[i:i + 250], device))).cpu()
                              for i in range(0, len(test), 250)])
    metrics = shortest_path_metrics(pred, test.weights, test.paths)
    print({k: round(v, 4) for k, v in metrics.items()})


if __name__ == "__main__":  # needed: worker processes re-import this file
    main()
