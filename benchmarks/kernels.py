"""The two CPU kernels that dominate a full-batch step of the four-slice DLPFC integration, timed
the old way and the way the package does them now (medians of repeats, this machine's threads):

- the sparse input times a 256-column dense matrix, forward (X W) and backward (X^T G), on the
  four slices and on 151673 and 151674 alone: torch's CSR product (MKL) against column blocks of 64 with int32
  indices, the package's path until 95d65da (``torch_csr_chunked`` below), and spotscape's numba
  kernel as it was until the commit after ea4a4e9 (the dense operand whole or in column blocks,
  the four slices' X^T G by scattering X's rows), against spotscape's kernel now
  (``spotscape._sparse._host_mm``: the dense operand in chunks of rows; X^T G as X^T's product);
- similarity scaling's top-k search: one full similarity matrix per slice pair against blocks of
  queries small enough to stay in cache (``losses._topk_means``), and in those blocks torch's
  ``topk`` against spotscape's kernel (``spotscape._topk``);
- the first layer of both augmented views, X diag(m_v) W1 forward and backward: one masked product
  per view against one shared X W1 minus each view's dropped columns (``SparseMatrix.mm_masked``);

    python benchmarks/kernels.py

Prints a markdown table; the values do not depend on the timing (checked here too).
"""
from __future__ import annotations

import time

import anndata as ad
import numba
import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from dlpfc import DATA, SLICES
from spotscape import Spotscape, losses
from spotscape import _sparse
from spotscape._sparse import HostCSR, SparseMatrix, _host_mm
from spotscape._topk import topk_indices


def torch_csr(m):
    """CSR tensor with int32 indices (the CPU kernel copies int64 ones to int32 on every product)."""
    return torch.sparse_csr_tensor(torch.from_numpy(m.indptr.astype(np.int32)), torch.from_numpy(m.indices.astype(np.int32)),
                                   torch.from_numpy(m.data), size=m.shape)


def torch_csr_chunked(a, dense):
    """``a @ dense`` 64 columns at a time (the slice of ``dense`` read at random stays in cache)."""
    return torch.cat([a @ dense[:, i : i + 64].contiguous() for i in range(0, dense.shape[1], 64)], 1)


def numba_unchunked(h, dense):
    """spotscape's numba kernel before the chunks of rows (until the commit after ea4a4e9): the dense
    operand whole, or in column blocks of at most 4 MB, i.e. ``_host_mm`` with its chunks switched
    off (the same sums as the kernel of that time, which it replaced)."""
    chunks = _sparse.MIN_PER_CHUNK
    _sparse.MIN_PER_CHUNK = np.inf
    try:
        return _host_mm(h, dense)
    finally:
        _sparse.MIN_PER_CHUNK = chunks


@numba.njit(parallel=True)
def _scatter(indptr, indices, data, dense, n_out, parts=8):
    """A^T @ dense by scattering A's rows into 8 fixed partial sums (the four slices' X^T G until
    the commit after ea4a4e9)."""
    n, w = dense.shape
    buf = np.zeros((parts, n_out, w), dtype=np.float32)
    for p in numba.prange(parts):
        b = buf[p]
        for i in range(p * n // parts, (p + 1) * n // parts):
            row = dense[i]
            for j in range(indptr[i], indptr[i + 1]):
                v, o = data[j], b[indices[j]]
                for c in range(w):
                    o[c] += v * row[c]
    for p in range(1, parts):
        buf[0] += buf[p]
    return buf[0].copy()


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


def topk_means_torch_topk(query, key_sets, k):
    """The blocked search with torch's ``topk`` (the package's path until 772bc10): ``_topk_means``
    with torch's ``topk`` in place of spotscape's kernel."""
    losses.topk_indices = lambda sim, kk: sim.topk(kk, dim=1).indices
    try:
        return losses._topk_means(query, key_sets, k)
    finally:
        losses.topk_indices = topk_indices


def main():
    model = Spotscape([ad.read_h5ad(DATA / f"{s}.h5ad") for s in SLICES], n_domains=7, seed=0, device="cpu")
    x, _, rows = model._prepare(model.slices)
    x.sort_indices()
    singles = []  # 151673 (8 % filled) and 151674 (15 %)
    for name in SLICES[:2]:
        one = Spotscape(ad.read_h5ad(DATA / f"{name}.h5ad"), n_domains=7, seed=0, device="cpu")
        singles.append((name, one._prepare(one.slices)[0]))
    g = torch.Generator().manual_seed(0)
    w = torch.randn(x.shape[1], 256, generator=g)
    grad = torch.randn(x.shape[0], 256, generator=g)
    products = []  # (name, the matrix as a torch CSR tensor, dense operand, spotscape's product, its previous one)
    for name, m in [("four slices, 14,364 x 3,851", x)] + [(f"{s}, {m.shape[0]:,} x {m.shape[1]:,}", m) for s, m in singles]:
        m.sort_indices()
        h, mt = HostCSR(m), m.T.tocsr()
        ht = HostCSR(mt)
        dw, dg = torch.randn(m.shape[1], 256, generator=g), torch.randn(m.shape[0], 256, generator=g)
        products += [(f"X W (forward), {name}, W 256 columns", torch_csr(m), dw, lambda h=h, d=dw: _host_mm(h, d),
                      lambda h=h, d=dw: numba_unchunked(h, d)),
                     (f"X^T G (backward), {name}, G 256 columns", torch_csr(mt), dg,
                      lambda ht=ht, d=dg: _host_mm(ht, d),
                      (lambda m=m, d=dg: torch.from_numpy(_scatter(m.indptr, m.indices, m.data, d.numpy(), m.shape[1])))
                      if m is x else (lambda ht=ht, d=dg: numba_unchunked(ht, d)))]
    for _, t, d, now, previous in products:  # same values up to float rounding (summation order)
        exact = torch.from_numpy(sp.csr_matrix((t.values().double().numpy(), t.col_indices().numpy(), t.crow_indices().numpy()),
                                               shape=t.shape) @ d.double().numpy())
        for got in (now(), previous(), torch_csr_chunked(t, d)):
            assert torch.allclose(got.double(), exact, rtol=1e-4, atol=1e-2)
    z = F.normalize(torch.randn(x.shape[0], 64, generator=g), dim=1)
    sets = [z[torch.from_numpy(r)] for r in rows]
    new = losses._topk_means(sets[0], sets, 5)
    old = topk_means_unblocked(sets[0], sets, 5)
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(new, old))
    assert all(torch.equal(p, q) for p, q in zip(new, topk_means_torch_topk(sets[0], sets, 5)))  # same indices, same order

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

    lines = [(name, *compare(lambda: torch_csr_chunked(t, d), now, 15)) for name, t, d, now, _ in products] + [
        (f"{name}: previous numba kernel against chunks of rows",
         *compare(previous, now, 15)) for name, t, d, now, previous in products] + [
        ("similarity-scaling top-k search, 4 slices (one step, forward)",
         *compare(lambda: ss(topk_means_unblocked), lambda: ss(losses._topk_means), 10)),
        ("similarity-scaling search in blocks: torch's topk against spotscape's kernel (one step, forward)",
         *compare(lambda: ss(topk_means_torch_topk), lambda: ss(losses._topk_means), 10)),
        ("first layer of two views, X diag(m_v) W1, forward + backward",
         *compare(lambda: first_layer(lambda: [xs.mm(w1 * m[:, None]) for m in masks]),
                  lambda: first_layer(lambda: xs.mm_masked(w1, masks)), 15)),
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; spots per slice {[len(r) for r in rows]}, "
          f"input fill {x.nnz / (x.shape[0] * x.shape[1]):.3f}\n")
    print("| kernel | before (s) | now (s) | speed-up |\n|---|---|---|---|")
    for name, before, now in lines:
        print(f"| {name} | {before:.3f} | {now:.3f} | {before / now:.1f}x |")


if __name__ == "__main__":
    main()
