"""Small plain-torch models of the use cases.

* :class:`CombResNet` -- the cost network of the Warcraft experiments (Vlastelica et al., ICLR 2020): the stem and
  first residual stage of a ResNet18 (He et al., 2016), an adaptive max-pool to the ``k x k`` grid and a mean over
  channels, giving one cost per tile; a final positivity map keeps the costs valid for Dijkstra.
* :class:`MLP` -- a multilayer perceptron.
* :class:`TextExplainer` / :class:`TextPredictor` -- L2X-style (Chen et al., ICML 2018) token scorer and the
  predictor that only sees the selected tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """ResNet basic block: ``relu(x + bn(conv(relu(bn(conv(x))))))`` (3x3 convs, same width)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(h)))


POSITIVITY = ("softplus", "abs", "none")


class CombResNet(nn.Module):
    """Images ``[B, 3, 8k, 8k]`` -> vertex costs ``[B, k, k]``.

    ResNet18 stem (7x7 conv stride 2, BN, ReLU, 3x3 max-pool stride 2), ``blocks`` basic blocks of ``width``
    channels (ResNet18's first stage: 2 blocks of 64), ``AdaptiveMaxPool2d(k)``, channel mean, then
    ``positivity`` (``softplus``: smooth and > 0; ``abs`` as in the blackbox code; ``none``).
    """

    def __init__(self, grid_size: int = 12, in_channels: int = 3, width: int = 64, blocks: int = 2,
                 positivity: str = "softplus"):
        super().__init__()
        if positivity not in POSITIVITY:
            raise ValueError(f"positivity must be one of {POSITIVITY}; got {positivity!r}")
        self.grid_size = int(grid_size)
        self.positivity = positivity
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.stage = nn.Sequential(*[BasicBlock(width) for _ in range(blocks)])
        self.pool = nn.AdaptiveMaxPool2d(self.grid_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4:
            raise ValueError(f"images must have shape [B, C, H, W]; got {tuple(images.shape)}")
        h = self.pool(self.stage(self.stem(images)))  # [B, width, k, k]
        costs = h.mean(dim=1)  # [B, k, k]
        if self.positivity == "softplus":
            return F.softplus(costs)
        if self.positivity == "abs":
            return costs.abs()
        return costs


class MLP(nn.Sequential):
    """``sizes = [d_in, h_1, ..., d_out]``: Linear layers with ``activation`` in between (none after the last)."""

    def __init__(self, sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU, dropout: float = 0.0):
        if len(sizes) < 2:
            raise ValueError(f"sizes must list at least input and output sizes; got {list(sizes)}")
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(activation())
                if dropout:
                    layers.append(nn.Dropout(dropout))
        super().__init__(*layers)


class TextExplainer(nn.Module):
    """Token scores ``[B, L]`` from ids ``[B, L]``: embedding, a local conv (window 3) and a global context
    (max over positions) combined per position, as in L2X's explainer."""

    def __init__(self, vocab_size: int, embed_dim: int = 32, hidden: int = 64):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.local = nn.Conv1d(embed_dim, hidden, 3, padding=1)
        self.glob = nn.Linear(hidden, hidden)
        self.out = nn.Sequential(nn.ReLU(), nn.Conv1d(2 * hidden, hidden, 1), nn.ReLU(), nn.Conv1d(hidden, 1, 1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        e = self.embed(tokens).transpose(1, 2)  # [B, L, D] -> [B, D, L]
        h = F.relu(self.local(e))  # [B, H, L]
        g = self.glob(h.max(dim=2).values)  # [B, H]
        h = torch.cat([h, g[:, :, None].expand_as(h)], dim=1)  # [B, 2H, L]
        return self.out(h).squeeze(1)  # [B, L]


class TextPredictor(nn.Module):
    """Prediction from the selected tokens only: ``(ids [B, L], mask [B, L]) -> [B, out]``.

    The embeddings are multiplied by the (possibly relaxed) mask, then averaged over the selected mass and fed to an
    MLP.
    """

    def __init__(self, vocab_size: int, embed_dim: int = 32, hidden: int = 64, out: int = 1):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.head = MLP([embed_dim, hidden, out])

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        e = self.embed(tokens) * mask.unsqueeze(-1)  # [B, L, D]
        pooled = e.sum(1) / mask.sum(1, keepdim=True).clamp_min(1.0)  # [B, D]
        return self.head(pooled)
