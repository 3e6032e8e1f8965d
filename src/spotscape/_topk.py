"""Indices of each row's k largest values, for similarity scaling's search (``losses._topk_means``).

On a CPU a numba kernel: one pass over each row keeping the k best in a small sorted list, so
nearly every value costs one comparison (torch's ``topk`` partially sorts each row); 1.0-1.1x for
similarity scaling's whole search, where the products dominate (``benchmarks/kernels.py``). Same indices
in the same order (largest first) as ``torch.topk``, except among exactly equal values, where
this keeps the first. On a GPU, ``torch.topk``.
"""
from __future__ import annotations

import numba
import numpy as np
import torch

from ._threads import numba_threads_as_torch, parallel_jit


def _topk_rows(sim, k, out):
    for i in numba.prange(sim.shape[0]):
        vals = np.full(k, -np.inf, dtype=sim.dtype)
        best = np.zeros(k, dtype=np.int64)
        row = sim[i]
        for j in range(sim.shape[1]):
            v = row[j]
            if v > vals[k - 1]:
                p = k - 1
                while p > 0 and vals[p - 1] < v:
                    vals[p], best[p] = vals[p - 1], best[p - 1]
                    p -= 1
                vals[p], best[p] = v, j
        out[i] = best


_kernel = parallel_jit(_topk_rows)


def topk_indices(sim: torch.Tensor, k: int) -> torch.Tensor:
    """``sim.topk(k, dim=1).indices`` of a 2-D tensor without gradient (k <= number of columns)."""
    if sim.device.type != "cpu" or sim.dtype not in (torch.float32, torch.float64) or k < 1:
        return sim.topk(k, dim=1).indices
    s = sim.detach().contiguous().numpy()
    out = np.empty((s.shape[0], k), dtype=np.int64)
    numba_threads_as_torch()
    _kernel(s, k, out)
    return torch.from_numpy(out)
