"""Sparse matrices for torch: products with autograd, without densifying.

``SparseMatrix`` keeps a CSR copy of ``A`` and of ``A^T`` so that both the forward product
``A @ B`` and its gradient ``A^T @ dL/d(AB)`` are row-wise CSR kernels (torch's COO autograd
transposes and coalesces on every call, which is an order of magnitude slower).
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch

warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
warnings.filterwarnings("ignore", message=".*Sparse invariant checks are implicitly disabled.*")


def _to_torch_csr(m: sp.csr_matrix, device) -> torch.Tensor:
    """float32 CSR on ``device``; on a CPU with int32 indices (below 2^31 stored values): the CPU
    kernel copies int64 index arrays to int32 on every product. Same result bit for bit; X W + X^T G
    on the four-slice DLPFC input 0.589 -> 0.553 s (``benchmarks/kernels.py``)."""
    m = sp.csr_matrix(m, dtype=np.float32)
    m.sort_indices()
    cpu = torch.device(device).type == "cpu"
    index = np.int32 if cpu and max(m.nnz, *m.shape) < np.iinfo(np.int32).max else np.int64
    return torch.sparse_csr_tensor(
        torch.from_numpy(m.indptr.astype(index, copy=False)),
        torch.from_numpy(m.indices.astype(index, copy=False)),
        torch.from_numpy(m.data),
        size=m.shape,
        device=device,
        check_invariants=False,
    )


COLUMN_CHUNK = 64  # dense operand columns per CSR product


def _csr_mm(a: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """``a @ dense`` for CSR ``a``, 64 columns of ``dense`` at a time on a CPU: the slice of ``dense``
    that the kernel reads at random then stays in cache. The result is bitwise the same; for the
    14,364 x 3,851 DLPFC input times 256 columns it is 1.3x faster for ``A`` and 5.5x for ``A^T``
    (long rows) on this project's 2-core CPU (``benchmarks/kernels.py``)."""
    if dense.device.type != "cpu" or dense.shape[1] <= COLUMN_CHUNK:
        return a @ dense
    return torch.cat([a @ dense[:, i : i + COLUMN_CHUNK].contiguous() for i in range(0, dense.shape[1], COLUMN_CHUNK)], 1)


class _SparseMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, a_t, dense):  # noqa: D401 - torch API
        ctx.a_t = a_t
        return _csr_mm(a, dense)

    @staticmethod
    def backward(ctx, grad):
        return None, None, _csr_mm(ctx.a_t, grad)


DENSE_ABOVE = 0.25  # fill above which dense products are faster (benchmarks/results/dense_threshold.md)
DENSE_MAX_BYTES = 2 << 30


class SparseMatrix:
    """A fixed matrix ``A`` (n x m) usable in differentiable products ``A @ B``.

    Stored as CSR (with its transpose) when sparse; as a dense tensor when more than 25 % of it is
    filled and it takes under 2 GB, where a dense product is faster on a CPU.
    """

    def __init__(self, matrix, device="cpu", symmetric: bool = False):
        m = sp.csr_matrix(matrix, dtype=np.float32)
        self.shape = m.shape
        self.nnz = m.nnz
        n_cells = max(m.shape[0] * m.shape[1], 1)
        self.dense = m.nnz / n_cells > DENSE_ABOVE and n_cells * 4 < DENSE_MAX_BYTES
        self.device = device
        self._host_t = None  # A^T as scipy CSR, for column subsets (``mm_masked``)
        if self.dense:
            self._a = torch.from_numpy(m.toarray()).to(device)
            self._a_t = self._a.T
        else:
            self._a = _to_torch_csr(m, device)
            self._host_t = m if symmetric else m.T.tocsr()
            self._a_t = self._a if symmetric else _to_torch_csr(self._host_t, device)
        data = m.data.astype(np.float64)
        self.sum_sq = float((data**2).sum())
        self.col_sum = torch.from_numpy(np.asarray(m.sum(axis=0), dtype=np.float32).ravel()).to(device)

    def mm(self, dense: torch.Tensor) -> torch.Tensor:
        """``A @ dense``, differentiable in ``dense``."""
        if self.dense:
            return self._a @ dense
        return _SparseMM.apply(self._a, self._a_t, dense)

    def mm_masked(self, w: torch.Tensor, masks: list[torch.Tensor]) -> list[torch.Tensor]:
        """``A diag(m) w`` for each 0/1 column mask ``m``, differentiable in ``w``.

        Sparse: ``A w - A[:, dropped] w[dropped]``, one full product shared by all masks plus one over
        each mask's dropped columns (20 % of them for Spotscape's views): 1.4 products for two views
        instead of 2, forward and backward. Same value up to float rounding. CPU only: the column
        subsets are cut on the host, so on a GPU each view keeps its own masked product on the
        device (the path the H100 figures in the README ran; the shared product was not tried there).
        """
        if self.dense or self._a.device.type != "cpu":
            return [self.mm(w * m[:, None]) for m in masks]
        full = self.mm(w)
        out = []
        for m in masks:
            drop = torch.nonzero(m == 0).squeeze(1)
            if len(drop) == 0:
                out.append(full)
                continue
            sub_t = self._host_t[drop.cpu().numpy()]  # rows of A^T = columns of A
            sub, sub_t = _to_torch_csr(sub_t.T.tocsr(), self.device), _to_torch_csr(sub_t, self.device)
            out.append(full - _SparseMM.apply(sub, sub_t, w[drop]))
        return out

    def tmm(self, dense: torch.Tensor) -> torch.Tensor:
        """``A^T @ dense``, differentiable in ``dense``."""
        if self.dense:
            return self._a_t @ dense
        return _SparseMM.apply(self._a_t, self._a, dense)
