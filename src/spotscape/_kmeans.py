"""Seeded k-means in torch (k-means++ start, Lloyd steps) for the prototypes of PCL."""
from __future__ import annotations

import torch


def kmeans(x: torch.Tensor, k: int, n_iter: int = 20, generator: torch.Generator | None = None, init: torch.Tensor | None = None):
    """Return (centroids k x d, labels n). ``init`` warm-starts from earlier centroids."""
    n = x.shape[0]
    k = min(k, n)
    if init is not None and init.shape[0] == k:
        c = init.clone()
    else:
        first = torch.randint(n, (1,), generator=generator, device="cpu").item()
        c = x[first : first + 1]
        d2 = ((x - c) ** 2).sum(1)
        for _ in range(1, k):
            probs = (d2 / d2.sum().clamp_min(1e-12)).cpu()
            nxt = torch.multinomial(probs, 1, generator=generator).item()
            c = torch.cat([c, x[nxt : nxt + 1]])
            d2 = torch.minimum(d2, ((x - x[nxt]) ** 2).sum(1))
    for _ in range(n_iter):
        labels = torch.cdist(x, c).argmin(1)
        sums = torch.zeros_like(c).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).to(x.dtype)
        empty = counts == 0
        new = sums / counts.clamp_min(1)[:, None]
        new[empty] = c[empty]
        if torch.allclose(new, c):
            c = new
            break
        c = new
    labels = torch.cdist(x, c).argmin(1)
    return c, labels
