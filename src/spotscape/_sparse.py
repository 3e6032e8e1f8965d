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


def _csr_dense(indptr, indices, data, dense, out):
    """out = A @ dense for CSR ``A`` (float32), a row of ``out`` per task; four stored values per
    pass over the row of ``out``. Each row is summed by one thread in a fixed order, so the result
    does not depend on the number of threads. Against torch's CSR product (MKL) on this project's
    2-core CPU: 1.4x and 1.7x faster for 151673's 5,000-gene input times 256 columns, forward and
    backward (``benchmarks/kernels.py``)."""
    w = dense.shape[1]
    for i in numba.prange(len(indptr) - 1):
        acc = np.zeros(w, dtype=np.float32)
        j, end = indptr[i], indptr[i + 1]
        while j + 3 < end:
            v0, v1, v2, v3 = data[j], data[j + 1], data[j + 2], data[j + 3]
            r0, r1, r2, r3 = dense[indices[j]], dense[indices[j + 1]], dense[indices[j + 2]], dense[indices[j + 3]]
            for c in range(w):
                acc[c] += (v0 * r0[c] + v1 * r1[c]) + (v2 * r2[c] + v3 * r3[c])
            j += 4
        while j < end:
            v, r = data[j], dense[indices[j]]
            for c in range(w):
                acc[c] += v * r[c]
            j += 1
        out[i] = acc


PARTS = 8  # row ranges of ``_csr_t_dense``, fixed so that its sums do not depend on the thread count


def _csr_t_dense(indptr, indices, data, dense, n_out):
    """A^T @ dense for CSR ``A`` (n x n_out), scattering A's rows: ``PARTS`` fixed ranges of rows,
    each into its own n_out x w buffer, then the buffers added in order. Reads ``dense`` once, in
    order, where ``_csr_dense`` on A^T reads it at random (``_host_tmm`` picks)."""
    n, w = dense.shape
    buf = np.zeros((PARTS, n_out, w), dtype=np.float32)
    for p in numba.prange(PARTS):
        b = buf[p]
        for i in range(p * n // PARTS, (p + 1) * n // PARTS):
            row = dense[i]
            for j in range(indptr[i], indptr[i + 1]):
                v, o = data[j], b[indices[j]]
                for c in range(w):
                    o[c] += v * row[c]
    for p in range(1, PARTS):
        buf[0] += buf[p]
    return buf[0].copy()


_csr_dense_kernel, _csr_t_dense_kernel = parallel_jit(_csr_dense), parallel_jit(_csr_t_dense)


CACHE_BYTES = 4 << 20  # dense operand read per kernel call, at most (column blocks below)


def _host_mm(a: sp.csr_matrix, dense: torch.Tensor) -> torch.Tensor:
    """``a @ dense`` on the CPU, on torch's thread count. ``dense`` is read at random rows, so it is
    taken in blocks of columns that stay in cache (4 MB): whole for 256 columns of up to 4,096 rows
    (every single DLPFC slice), 64 columns at a time for 14,364 rows."""
    d = dense.detach().contiguous().numpy()
    if d.dtype != np.float32:
        return torch.from_numpy(np.asarray(a.astype(d.dtype) @ d))
    numba_threads_as_torch()
    cols = max(16, 1 << int(np.log2(max(CACHE_BYTES // (4 * max(d.shape[0], 1)), 1))))
    blocks = []
    for i in range(0, max(d.shape[1], 1), cols):
        block = np.ascontiguousarray(d[:, i : i + cols]) if cols < d.shape[1] else d
        out = np.empty((a.shape[0], block.shape[1]), dtype=np.float32)
        _csr_dense_kernel(a.indptr, a.indices, a.data, block, out)
        blocks.append(out)
    return torch.from_numpy(blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1))


def _host_tmm(a: sp.csr_matrix, a_t: sp.csr_matrix, dense: torch.Tensor) -> torch.Tensor:
    """``a^T @ dense`` on the CPU (``a_t`` = a^T in CSR). When ``dense`` is too large for cache and
    the result is not, A's rows are scattered instead (``_csr_t_dense``): the four slices'
    ``X^T G`` (14,364 x 3,851, 256 columns) 1.4x faster than torch's CSR product
    (``benchmarks/kernels.py``), where the blocked ``_host_mm`` on A^T was not."""
    w = dense.shape[1] if dense.dim() == 2 else 0
    if dense.dtype != torch.float32 or dense.shape[0] * w * 4 <= CACHE_BYTES or a.shape[1] * w * 4 > CACHE_BYTES:
        return _host_mm(a_t, dense)
    numba_threads_as_torch()
    return torch.from_numpy(_csr_t_dense_kernel(a.indptr, a.indices, a.data, dense.detach().contiguous().numpy(), a.shape[1]))


class _HostMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, a_t, dense):  # noqa: D401 - torch API
        ctx.a, ctx.a_t = a, a_t
        return _host_mm(a, dense)

    @staticmethod
    def backward(ctx, grad):
        return None, None, _host_tmm(ctx.a, ctx.a_t, grad)


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
            m.sort_indices()
            self._a, self._a_t = m, m if symmetric else m.T.tocsr()
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
        full = self.mm(w)
        out = []
        for m in masks:
            drop = torch.nonzero(m == 0).squeeze(1)
            if len(drop) == 0:
                out.append(full)
                continue
            sub_t = self._a_t[drop.numpy()]  # rows of A^T = columns of A
            out.append(full - _HostMM.apply(sub_t.T.tocsr(), sub_t, w[drop]))
        return out

    def tmm(self, dense: torch.Tensor) -> torch.Tensor:
        """``A^T @ dense``, differentiable in ``dense``."""
        if self.dense:
            return self._a_t @ dense
        return (_HostMM if self.host else _SparseMM).apply(self._a_t, self._a, dense)
