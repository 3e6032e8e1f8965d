"""Sparse matrices for torch: products with autograd, without densifying.

``SparseMatrix`` keeps ``A`` and ``A^T`` in CSR so that both the forward product ``A @ B`` and its
gradient ``A^T @ dL/d(AB)`` are row-wise CSR kernels (torch's COO autograd transposes and coalesces
on every call, which is an order of magnitude slower). On a CPU the kernel is spotscape's own
(numba, below); on a GPU, torch's CSR product.
"""
from __future__ import annotations

import warnings

import numba
import numpy as np
import scipy.sparse as sp
import torch

from ._threads import numba_threads_as_torch, parallel_jit

warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
warnings.filterwarnings("ignore", message=".*Sparse invariant checks are implicitly disabled.*")


def _to_torch_csr(m: sp.csr_matrix, device) -> torch.Tensor:
    m = sp.csr_matrix(m, dtype=np.float32)
    m.sort_indices()
    return torch.sparse_csr_tensor(torch.from_numpy(m.indptr.astype(np.int64)), torch.from_numpy(m.indices.astype(np.int64)),
                                   torch.from_numpy(m.data), size=m.shape, device=device, check_invariants=False)


def _chunk_starts(indptr, indices, step, k):
    """starts[i, c]: where row i's stored values in columns [c * step, (c + 1) * step) begin
    (indices sorted within rows); starts[i, k] = the row's end."""
    n = len(indptr) - 1
    starts = np.empty((n, k + 1), dtype=np.int64)
    for i in numba.prange(n):
        c = 0
        starts[i, 0] = indptr[i]
        for j in range(indptr[i], indptr[i + 1]):
            while indices[j] >= (c + 1) * step:
                c += 1
                starts[i, c] = j
        while c < k:
            c += 1
            starts[i, c] = indptr[i + 1]
    return starts


def _csr_dense_chunked(starts, indices, data, dense, out, blocks):
    """out += A @ dense for CSR ``A`` (float32), ``dense`` taken in chunks of rows (``starts``:
    ``_chunk_starts``; one chunk: the whole of it) small enough to stay in a core's own cache while
    a block of A's rows reads it at random. Each row of ``out`` is summed by one thread, chunk after
    chunk, four stored values per pass over the row: the result does not depend on ``blocks`` or
    the number of threads."""
    n, k, w = starts.shape[0], starts.shape[1] - 1, dense.shape[1]
    for b in numba.prange(blocks):
        for c in range(k):
            for i in range(b * n // blocks, (b + 1) * n // blocks):
                acc, j, end = out[i], starts[i, c], starts[i, c + 1]
                while j + 3 < end:
                    v0, v1, v2, v3 = data[j], data[j + 1], data[j + 2], data[j + 3]
                    r0, r1, r2, r3 = dense[indices[j]], dense[indices[j + 1]], dense[indices[j + 2]], dense[indices[j + 3]]
                    for q in range(w):
                        acc[q] += (v0 * r0[q] + v1 * r1[q]) + (v2 * r2[q] + v3 * r3[q])
                    j += 4
                while j < end:
                    v, r = data[j], dense[indices[j]]
                    for q in range(w):
                        acc[q] += v * r[q]
                    j += 1


_chunk_starts_kernel, _csr_dense_chunked_kernel = parallel_jit(_chunk_starts), parallel_jit(_csr_dense_chunked)


CACHE_BYTES = 4 << 20  # dense operand read per kernel call, at most (column blocks below)
CHUNK_BYTES = 128 << 10  # dense operand's rows per chunk (``_csr_dense_chunked``): this many bytes,
# a quarter of a core's L2 cache here; 64 KB and 256 KB timed the same (benchmarks/kernels.py)
MIN_PER_CHUNK = 8  # chunks only where A's rows hold at least this many stored values per chunk on average


class HostCSR:
    """A fixed CSR matrix (scipy's, ``.m``, indices sorted) for the CPU kernels, with the chunk
    starts of ``_csr_dense_chunked`` kept per chunk size once computed."""

    def __init__(self, m: sp.csr_matrix):
        m.sort_indices()
        self.m, self.shape, self.nnz = m, m.shape, m.nnz
        self._starts: dict[int, np.ndarray] = {}

    def starts(self, step: int) -> np.ndarray:
        if step not in self._starts:
            k = -(-self.shape[1] // step)
            self._starts[step] = _chunk_starts_kernel(self.m.indptr, self.m.indices, step, k)
        return self._starts[step]


def _host_mm(a: HostCSR | sp.csr_matrix, dense: torch.Tensor) -> torch.Tensor:
    """``a @ dense`` on the CPU, on torch's thread count. ``dense`` is read at random rows, so it is
    cut to fit in cache: in chunks of 128 KB of rows where A's rows hold enough stored values per
    chunk (the 5,000-gene input of a DLPFC slice times 256 columns: 40 chunks, 11 to 19 stored
    values per row and chunk; 1.2-1.5x faster than whole, ``benchmarks/kernels.py``), otherwise
    whole or in blocks of columns of at most 4 MB (the spatial graph, 7 values per row)."""
    a = a if isinstance(a, HostCSR) else HostCSR(a)
    m = a.m
    d = dense.detach().contiguous().numpy()
    if d.dtype != np.float32:
        return torch.from_numpy(np.asarray(m.astype(d.dtype) @ d))
    numba_threads_as_torch()
    step = max(1, CHUNK_BYTES // (4 * max(d.shape[1], 1)))
    k = -(-a.shape[1] // step)
    if k > 1 and a.nnz >= MIN_PER_CHUNK * k * a.shape[0]:  # chunks of rows, all columns at once
        starts, cols = a.starts(step), max(d.shape[1], 1)
    else:  # one chunk, in blocks of columns
        starts = a.starts(max(a.shape[1], 1))
        cols = max(16, 1 << int(np.log2(max(CACHE_BYTES // (4 * max(d.shape[0], 1)), 1))))
    row_blocks = max(1, min(a.shape[0], 8 * numba.get_num_threads()))
    blocks = []
    for i in range(0, max(d.shape[1], 1), cols):
        block = np.ascontiguousarray(d[:, i : i + cols]) if cols < d.shape[1] else d
        out = np.zeros((a.shape[0], block.shape[1]), dtype=np.float32)
        _csr_dense_chunked_kernel(starts, m.indices, m.data, block, out, row_blocks)
        blocks.append(out)
    return torch.from_numpy(blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1))


class _HostMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, a_t, dense):  # noqa: D401 - torch API
        ctx.a_t = a_t
        return _host_mm(a, dense)

    @staticmethod
    def backward(ctx, grad):
        return None, None, _host_mm(ctx.a_t, grad)


class _MaskedMM(torch.autograd.Function):
    """``A w - A[:, d] w[d]`` for each view's dropped columns ``d``; the gradient in ``w``:
    ``A^T (sum of the views' gradients)``, less ``A[:, d]^T g_v`` in the rows ``d`` of each view."""

    @staticmethod
    def forward(ctx, w, a, a_t, views):  # noqa: D401 - torch API
        ctx.a_t, ctx.views = a_t, views
        full = _host_mm(a, w)
        return tuple(full - _host_mm(sub, w[drop]) if len(drop) else full.clone() for drop, sub, _ in views)

    @staticmethod
    def backward(ctx, *grads):
        grad = _host_mm(ctx.a_t, sum(grads[1:], grads[0]))
        for (drop, _, sub_t), g in zip(ctx.views, grads):
            if len(drop):
                grad[drop] -= _host_mm(sub_t, g)
        return grad, None, None, None


class _SparseMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, a_t, dense):  # noqa: D401 - torch API
        ctx.a_t = a_t
        return a @ dense

    @staticmethod
    def backward(ctx, grad):
        return None, None, ctx.a_t @ grad


DENSE_ABOVE = 0.25  # fill above which dense products are faster (benchmarks/results/dense_threshold.md)
DENSE_MAX_BYTES = 2 << 30


class SparseMatrix:
    """A fixed matrix ``A`` (n x m) usable in differentiable products ``A @ B``.

    Stored as CSR (with its transpose; scipy's on a CPU, torch's on a GPU) when sparse; as a dense
    tensor when more than 25 % of it is filled and it takes under 2 GB, where a dense product is
    faster on a CPU.
    """

    def __init__(self, matrix, device="cpu", symmetric: bool = False):
        m = sp.csr_matrix(matrix, dtype=np.float32)
        self.shape = m.shape
        self.nnz = m.nnz
        n_cells = max(m.shape[0] * m.shape[1], 1)
        self.dense = m.nnz / n_cells > DENSE_ABOVE and n_cells * 4 < DENSE_MAX_BYTES
        self.device = device
        self.host = not self.dense and torch.device(device).type == "cpu"  # products by ``_host_mm``
        if self.dense:
            self._a = torch.from_numpy(m.toarray()).to(device)
            self._a_t = self._a.T
        elif self.host:
            self._a = HostCSR(m)
            self._a_t = self._a if symmetric else HostCSR(m.T.tocsr())
        else:
            self._a = _to_torch_csr(m, device)
            self._a_t = self._a if symmetric else _to_torch_csr(m.T.tocsr(), device)
        data = m.data.astype(np.float64)
        self.sum_sq = float((data**2).sum())
        self.col_sum = torch.from_numpy(np.asarray(m.sum(axis=0), dtype=np.float32).ravel()).to(device)

    def mm(self, dense: torch.Tensor) -> torch.Tensor:
        """``A @ dense``, differentiable in ``dense``."""
        if self.dense:
            return self._a @ dense
        return (_HostMM if self.host else _SparseMM).apply(self._a, self._a_t, dense)

    def mm_masked(self, w: torch.Tensor, masks: list[torch.Tensor]) -> list[torch.Tensor]:
        """``A diag(m) w`` for each 0/1 column mask ``m``, differentiable in ``w``.

        Sparse: ``A w - A[:, dropped] w[dropped]``, one full product shared by all masks plus one over
        each mask's dropped columns (20 % of them for Spotscape's views): 1.4 products for two views
        instead of 2, forward and backward. Same value up to float rounding. CPU only: the column
        subsets are cut on the host, so on a GPU each view keeps its own masked product on the
        device (the path the H100 figures in the README ran; the shared product was not tried there).
        """
        if not self.host:
            return [self.mm(w * m[:, None]) for m in masks]
        views = []
        for m in masks:
            drop = torch.nonzero(m == 0).squeeze(1)
            sub_t = self._a_t.m[drop.numpy()]  # rows of A^T = columns of A
            views.append((drop, HostCSR(sub_t.T.tocsr()), HostCSR(sub_t)))  # A[:, drop] and its transpose
        return list(_MaskedMM.apply(w, self._a, self._a_t, views))

    def tmm(self, dense: torch.Tensor) -> torch.Tensor:
        """``A^T @ dense``, differentiable in ``dense``."""
        if self.dense:
            return self._a_t @ dense
        return (_HostMM if self.host else _SparseMM).apply(self._a_t, self._a, dense)
