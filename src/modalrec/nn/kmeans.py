"""Mini-batch k-means in plain PyTorch (MISSRec's interest discovery).

Sculley, "Web-scale k-means clustering", WWW 2010: centroids start at k distinct points drawn
at random; each step assigns a random mini-batch to its nearest centroids and moves each centroid
towards the mean of its points with a per-centroid learning rate ``1 / count``. Only matrix
products, ``bincount`` and ``index_add_``: no CUDA-only kernels (the reference's vendored
TorchPQ/cupy kernels crash), the same code on CPU and GPU. Deterministic for a given ``seed`` on
CPU; on a GPU, ``index_add_`` may sum in a different order (differences at float rounding).
"""

from __future__ import annotations

import torch


def _nearest(x: torch.Tensor, c: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """Index of the nearest centroid (squared euclidean) of every row of ``x``."""
    c_sq = (c * c).sum(1)
    out = torch.empty(len(x), dtype=torch.long, device=x.device)
    for i in range(0, len(x), chunk):
        xb = x[i : i + chunk]
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; |x|^2 is constant per row
        out[i : i + chunk] = (c_sq[None, :] - 2.0 * (xb @ c.T)).argmin(1)
    return out


@torch.no_grad()
def kmeans(
    x: torch.Tensor, k: int, *, steps: int = 5, batch_size: int = 2048, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster the rows of ``x`` [M, d] into ``k`` clusters; returns (centroids [k, d], assignment [M]).

    ``steps`` mini-batch updates of ``max(batch_size, 1.1 k)`` random points each, then one exact
    assignment pass over all points (chunked).
    """
    m = len(x)
    if not 1 <= k <= m:
        raise ValueError(f"k-means: k={k} must be between 1 and the number of points {m}")
    x = x.float()
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    c = x[torch.randperm(m, generator=g)[:k].to(x.device)].clone()
    counts = torch.zeros(k, device=x.device)
    b = min(m, max(batch_size, int(1.1 * k)))
    for _ in range(steps):
        idx = torch.randperm(m, generator=g)[:b].to(x.device)
        xb = x[idx]
        a = _nearest(xb, c)
        n = torch.bincount(a, minlength=k).to(x.dtype)  # points per centroid in this batch
        sums = torch.zeros_like(c).index_add_(0, a, xb)  # [k, d]
        counts += n
        hit = n > 0
        lr = torch.zeros_like(counts)
        lr[hit] = n[hit] / counts[hit]  # moving average of every point the centroid has absorbed
        c[hit] = c[hit] + lr[hit, None] * (sums[hit] / n[hit, None] - c[hit])
    return c, _nearest(x, c)
