"""The two CPU kernels that dominate a full-batch step of the four-slice DLPFC integration, timed
the old way and the way the package does them now (medians of repeats, this machine's threads):

- the sparse input times a 256-column dense matrix, forward (X W) and backward (X^T G): one CSR
  product against column blocks of 64 (``spotscape._sparse._csr_mm``);
- similarity scaling's top-k search: one full similarity matrix per slice pair against blocks of
  queries small enough to stay in cache (``losses._topk_means``);
- the first layer of both augmented views, X diag(m_v) W1 forward and backward: one masked product
  per view against one shared X W1 minus each view's dropped columns (``SparseMatrix.mm_masked``);
- CSR index type: int64 indices, which the CPU kernel copies to int32 on every product, against
  int32 indices (``_sparse._to_torch_csr``).

    python benchmarks/kernels.py

Prints a markdown table; the values do not depend on the timing (checked here too).
"""
from __future__ import annotations

import time

import anndata as ad
import numpy as np
import torch
import torch.nn.functional as F

from dlpfc import DATA, SLICES
from spotscape import Spotscape, losses
from spotscape._sparse import SparseMatrix, _csr_mm, _to_torch_csr


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def compare(before, now, rounds):
    """Median seconds of each, run in alternation (this machine's speed drifts between minutes)."""
    before(), now()
    times = np.array([[timed(before), timed(now)] for _ in range(rounds)])
    return tuple(np.median(times, axis=0))


def topk_means_unblocked(query, key_sets, k):
    """The earlier search: one query x key-set similarity matrix per pair, top-k on it whole."""
    out = []
    for keys in key_sets:
        with torch.no_grad():
            idx = (query @ keys.T).topk(k, dim=1).indices
        out.append((query.unsqueeze(1) * keys[idx]).sum(-1).mean(1))
    return out


def main():
    model = Spotscape([ad.read_h5ad(DATA / f"{s}.h5ad") for s in SLICES], n_domains=7, seed=0, device="cpu")
    x, _, rows = model._prepare(model.slices)
    a, a_t = _to_torch_csr(x, "cpu"), _to_torch_csr(x.T.tocsr(), "cpu")
    assert a.crow_indices().dtype == torch.int32
    a64, a64_t = (torch.sparse_csr_tensor(m.crow_indices().long(), m.col_indices().long(), m.values(), size=m.shape) for m in (a, a_t))
    g = torch.Generator().manual_seed(0)
    w = torch.randn(x.shape[1], 256, generator=g)
    grad = torch.randn(x.shape[0], 256, generator=g)
    assert torch.equal(a @ w, _csr_mm(a, w)) and torch.equal(a_t @ grad, _csr_mm(a_t, grad))
    assert torch.equal(_csr_mm(a64, w), _csr_mm(a, w)) and torch.equal(_csr_mm(a64_t, grad), _csr_mm(a_t, grad))
    z = F.normalize(torch.randn(x.shape[0], 64, generator=g), dim=1)
    sets = [z[torch.from_numpy(r)] for r in rows]
    new = losses._topk_means(sets[0], sets, 5)
    old = topk_means_unblocked(sets[0], sets, 5)
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(new, old))

    xs = SparseMatrix(x)
    w1 = w.clone().requires_grad_()
    masks = [torch.from_numpy((np.random.default_rng(v).random(x.shape[1]) >= 0.2).astype(np.float32)) for v in (1, 2)]
    grads = [grad, grad.flip(0)]
    views_old = [xs.mm(w1 * m[:, None]) for m in masks]
    views_new = xs.mm_masked(w1, masks)
    assert all(torch.allclose(p, q, rtol=1e-5, atol=1e-3) for p, q in zip(views_old, views_new))  # rounding only

    def first_layer(views):
        h = views()
        torch.autograd.grad(sum((v * gv).sum() for v, gv in zip(h, grads)), w1)

    def ss(search):
        for q in sets:
            search(q, sets, 5)

    lines = [
        ("X W (forward), X 14,364 x 3,851 CSR, W 256 columns", *compare(lambda: a @ w, lambda: _csr_mm(a, w), 15)),
        ("X^T G (backward), G 256 columns", *compare(lambda: a_t @ grad, lambda: _csr_mm(a_t, grad), 15)),
        ("similarity-scaling top-k search, 4 slices (one step, forward)",
         *compare(lambda: ss(topk_means_unblocked), lambda: ss(losses._topk_means), 10)),
        ("first layer of two views, X diag(m_v) W1, forward + backward",
         *compare(lambda: first_layer(lambda: [xs.mm(w1 * m[:, None]) for m in masks]),
                  lambda: first_layer(lambda: xs.mm_masked(w1, masks)), 15)),
        ("X W + X^T G (chunked), int64 vs int32 CSR indices",
         *compare(lambda: (_csr_mm(a64, w), _csr_mm(a64_t, grad)), lambda: (_csr_mm(a, w), _csr_mm(a_t, grad)), 15)),
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; spots per slice {[len(r) for r in rows]}, "
          f"input fill {x.nnz / (x.shape[0] * x.shape[1]):.3f}\n")
    print("| kernel | before (s) | now (s) | speed-up |\n|---|---|---|---|")
    for name, before, now in lines:
        print(f"| {name} | {before:.3f} | {now:.3f} | {before / now:.1f}x |")


if __name__ == "__main__":
    main()
