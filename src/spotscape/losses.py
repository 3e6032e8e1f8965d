"""Spotscape's losses, as in METHOD.md.

Z1, Z2 are the embeddings of the two augmented views; every loss L2-normalises them first.

- similarity telescope  L_SC = MSE(S, S^T),  S = Z1 Z2^T
- reconstruction        L_RE = (MSE(X, X^1) + MSE(X, X^2)) / 2
- similarity scaling    L_SS = mean_i (topk_own(i) - topk_other(i))^2
- prototypical CL       L_PCL = mean_t CE(cos(z1, C_t) / tau, cluster_t)

``similarity_telescope`` and ``reconstruction`` give the same values (and gradients) as the
dense formulas in ``*_dense`` below, but never build the N x N or N x genes matrices:
||S - S^T||^2 = 2 tr(G1 G2) - 2 tr(C C) with the d x d Grams G1 = Z1^T Z1, G2 = Z2^T Z2,
C = Z2^T Z1; and ||X - (H W^T + b)||^2 expands into the sparse product X W and 256 x 256 Grams.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._gather import gather_rows
from ._sparse import SparseMatrix
from ._topk import topk_indices


def similarity_telescope(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """MSE(S, S^T) for S = normalize(Z1) normalize(Z2)^T, in O(N d^2) time and O(N d) memory."""
    a = F.normalize(z1, dim=1).double()
    b = F.normalize(z2, dim=1).double()
    n = a.shape[0]
    sq_norm = ((a.T @ a) * (b.T @ b)).sum()  # ||S||_F^2 = tr(G1 G2)
    c = b.T @ a
    trace_ss = (c * c.T).sum()  # tr(S S) = tr(C C)
    return (2.0 * (sq_norm - trace_ss) / (n * n)).float()


def similarity_telescope_dense(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """The literal formula (N x N); for tests and small inputs."""
    s = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T
    return F.mse_loss(s, s.T)


class _Gram(torch.autograd.Function):
    """A^T A, its gradient A (G + G^T) in one product (autograd's product rule takes two)."""

    @staticmethod
    def forward(ctx, a):  # noqa: D401 - torch API
        ctx.save_for_backward(a)
        return a.T @ a

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return a @ (g + g.T)


def reconstruction(x: SparseMatrix, hidden: list[torch.Tensor], weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """L_RE = mean over views v of MSE(X, X^v), X^v = H_v W^T + b (the decoder's last, linear layer),
    over all N x G entries, without forming any N x G matrix:

    ||X - X^v||^2 = ||X||^2 - 2 <X, X^v> + ||X^v||^2, with
    <X, X^v> = sum(H_v * (X W)) + b . colsum(X)   (X W: one sparse product, shared by the views,
               and summed over the views as sum((H_1 + H_2) * (X W)))
    ||X^v||^2 = sum((H_v^T H_v) * (W^T W)) + 2 (1^T H_v) W^T b + N ||b||^2.
    """
    n, g = x.shape
    views = len(hidden)
    xw = x.mm(weight)  # N x hidden
    ww = _Gram.apply(weight).double()
    wb = weight.T @ bias
    cross = (sum(hidden[1:], hidden[0]) * xw).sum().double() + views * (bias * x.col_sum).sum().double()
    pred_sq = sum(((_Gram.apply(h).double() * ww).sum() + 2.0 * (h.sum(0) @ wb).double()) for h in hidden)
    pred_sq = pred_sq + views * n * (bias.double() ** 2).sum()
    return ((views * x.sum_sq - 2.0 * cross + pred_sq) / (n * g * views)).float()


def reconstruction_dense(x: torch.Tensor, predictions: list[torch.Tensor]) -> torch.Tensor:
    """The literal formula; for tests and small inputs."""
    return sum(F.mse_loss(p, x) for p in predictions) / len(predictions)


def _topk_means(query: torch.Tensor, key_sets: list[torch.Tensor], k: int, block: int = 1 << 19) -> list[torch.Tensor]:
    """For each key set, the mean of each query's k largest similarities to it (all normalised).

    The top-k indices are searched without gradient, a block of queries at a time (2^19
    similarities, 2 MB, so that the block is still in cache when top-k reads it: about 2x faster
    than whole query x key matrices on this project's CPU, ``benchmarks/kernels.py``), and the
    chosen similarities are recomputed with gradient: the same value and gradient as ``topk`` on the
    full matrix.
    """
    out = []
    for keys in key_sets:
        kk = min(k, keys.shape[0])
        chunk = max(64, block // max(keys.shape[0], 1))  # 64 rows at least: few calls on large slices
        with torch.no_grad():
            idx = torch.cat([topk_indices(query[i : i + chunk] @ keys.T, kk) for i in range(0, query.shape[0], chunk)])
        out.append((query.unsqueeze(1) * gather_rows(keys, idx)).sum(-1).mean(1))  # keys[idx], deterministic
    return out


def similarity_scaling(z1: torch.Tensor, z2: torch.Tensor, slices: list[torch.Tensor], k: int = 5) -> torch.Tensor:
    """L_SS: each spot's mean top-k similarity within its own slice should equal that to every other slice.

    ``slices`` holds the row indices of each slice; S is the cross-view similarity (view-1 rows,
    view-2 columns), as for L_SC. As published, the own-slice top-k includes the spot's own
    counterpart in view 2. Averaged over ordered slice pairs (s, t), each the mean over the spots
    of s, as METHOD.md states it. (The published code sums over pairs, which for four slices weighs
    L_SS 12 times more; on the four DLPFC slices that lowered per-slice ARI from 0.5 to 0.25.)
    """
    a = F.normalize(z1, dim=1)
    b = F.normalize(z2, dim=1)
    key_sets = [b[rows] for rows in slices]
    terms = []
    for s, own in enumerate(slices):
        means = _topk_means(a[own], key_sets, k)
        terms += [((means[s] - means[t]) ** 2).mean() for t in range(len(slices)) if t != s]
    if not terms:
        return z1.new_zeros(())
    return torch.stack(terms).mean()


def similarity_scaling_dense(z1: torch.Tensor, z2: torch.Tensor, slices: list[torch.Tensor], k: int = 5) -> torch.Tensor:
    """The literal formula on the N x N matrix; for tests."""
    s = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T
    terms = []
    for i, own in enumerate(slices):
        inside = s[own][:, own].topk(k, dim=1).values.mean(1)
        for j, other in enumerate(slices):
            if i != j:
                terms.append(F.mse_loss(inside, s[own][:, other].topk(k, dim=1).values.mean(1)))
    return torch.stack(terms).mean()


def prototypical_contrastive(
    z1: torch.Tensor, prototypes: list[tuple[torch.Tensor, torch.Tensor]], tau: float = 0.75
) -> torch.Tensor:
    """L_PCL: cross-entropy pulling each view-1 embedding to its cluster's centroid.

    ``prototypes`` holds, per granularity, (centroids K x d, assignment of every spot);
    logits are cosine similarities over ``tau``; the loss is averaged over granularities.
    """
    a = F.normalize(z1, dim=1)
    losses = [F.cross_entropy(a @ F.normalize(c, dim=1).T / tau, labels) for c, labels in prototypes]
    return torch.stack(losses).mean()
