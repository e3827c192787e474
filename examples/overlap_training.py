"""Overlap the network with the solver workers: ``DiscreteLayer.forward_async`` in a training loop.

Warcraft-style shortest paths: ``CombResNet`` maps 96x96 images to 12x12 vertex costs, an I-MLE layer over
``GridShortestPath`` turns them into paths, the loss is the Hamming distance to the true paths. Each step
accumulates the gradients of ``--micro`` micro-batches, so both loops below compute the same update:

* **synchronous**: for each micro-batch, network forward -> solve (workers busy, device idle) -> backward;
* **overlapped**: the solves of micro-batch ``j`` are submitted with ``forward_async`` and, while the
  workers solve them, the network forward of micro-batch ``j + 1`` runs on the device; then ``j``'s result is
  collected and its backward runs (its backward solves go to the same pool).

The gain is the device time hidden behind the solves, at most ``min(network forward, solve)`` per micro-batch.
It shows on a GPU with CPU cores to spare; on a small CPU-only machine the network and the workers share the
same cores and there is little to hide. Run::

    python examples/overlap_training.py                      # GPU if available, cpu_count - 1 workers
    python examples/overlap_training.py --device cpu --workers 2 --steps 5
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import torch

import discreteopt as do
from discreteopt.data.warcraft import generate_warcraft
from discreteopt.models import CombResNet


def train(net, layer, images, paths, steps: int, batch: int, micro: int, overlap: bool, sync) -> tuple[float, float]:
    """Run ``steps`` optimiser steps; returns (seconds per step after the first, mean loss of the last step)."""
    opt = torch.optim.Adam(net.parameters(), lr=5e-4)
    times, last = [], 0.0
    for step in range(steps):
        sync()
        t0 = time.perf_counter()
        lo = (step * batch) % (len(images) - batch + 1)
        xs = images[lo:lo + batch].chunk(micro)  # micro x [b, 3, 96, 96]
        ys = paths[lo:lo + batch].chunk(micro)  # micro x [b, 12, 12]
        opt.zero_grad(set_to_none=True)
        handle, last = layer.forward_async(net(xs[0])), 0.0
        for j in range(micro):
            current = handle
            if overlap and j + 1 < micro:
                handle = layer.forward_async(net(xs[j + 1]))  # device works while the workers solve j
            y = current.result()  # [b, 12, 12]
            loss = (y - ys[j]).abs().mean() / micro  # Hamming loss, averaged over the micro-batches
            loss.backward()
            last += float(loss.detach())
            if not overlap and j + 1 < micro:
                handle = layer.forward_async(net(xs[j + 1]))  # only now: nothing overlaps
        opt.step()
        sync()
        if step > 0:  # the first step includes warm-up (workers building the solver, cuDNN autotuning)
            times.append(time.perf_counter() - t0)
    return sum(times) / len(times), last


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--micro", type=int, default=4)
    ap.add_argument("--samples", type=int, default=10, help="I-MLE samples per instance")
    args = ap.parse_args()

    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    data = generate_warcraft(4 * args.batch, size=12, seed=0)
    images = data.images().to(device)  # [N, 3, 96, 96]
    paths = torch.from_numpy(data.paths).to(device)  # [N, 12, 12]
    torch.manual_seed(0)
    net0 = CombResNet(grid_size=12).to(device)

    with do.executors.Processes(args.workers).start() as pool:
        results = {}
        for overlap in (False, True):
            net = copy.deepcopy(net0)
            layer = do.DiscreteLayer(do.solvers.GridShortestPath(), do.estimators.IMLE(lam=20.0, samples=args.samples),
                                     executor=pool, seed=0)
            results[overlap] = train(net, layer, images, paths, args.steps, args.batch, args.micro, overlap, sync)

    (t_sync, loss_sync), (t_over, loss_over) = results[False], results[True]
    print(f"device {device}, {args.workers} solver workers, batch {args.batch} = {args.micro} micro-batches, "
          f"{args.samples} I-MLE samples ({args.batch * args.samples} solves forward + as many backward per step)")
    print(f"{'loop':<12} {'s/step':>8} {'last loss':>10}")
    print(f"{'synchronous':<12} {t_sync:>8.3f} {loss_sync:>10.4f}")
    print(f"{'overlapped':<12} {t_over:>8.3f} {loss_over:>10.4f}")
    print(f"time saved by overlapping: {t_sync - t_over:+.3f} s/step ({100 * (t_sync - t_over) / t_sync:+.1f} %)")


if __name__ == "__main__":
    main()
