"""Variants of spotscape's CPU sparse kernel (``spotscape._sparse``) on a DLPFC slice's input, for a
new machine: the chunk of the dense operand's rows kept in cache (``CHUNK_BYTES``), and the kernel
compiled with fused multiply-adds allowed (``fastmath={"contract"}``) or with fast-math, against
the package's kernel; and torch's own CSR product (MKL's sparse BLAS on a CPU build). Prints the
median over rounds of 10 products, X W and X^T G with 256 columns, and the largest difference from
the package's result.

    python benchmarks/kernel_variants.py --slices 151674 151673 --rounds 3
"""
from __future__ import annotations

import argparse
import time

import anndata as ad
import numba
import numpy as np
import torch

from dlpfc import DATA
from spotscape import Spotscape
from spotscape import _sparse as S


def timed(f, n=10):
    t0 = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t0) / n * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slices", nargs="+", default=["151674", "151673"])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    kernels = {"package": S._csr_dense_chunked_kernel,
               "contract": numba.njit(parallel=True, fastmath={"contract"})(S._csr_dense_chunked),
               "fastmath": numba.njit(parallel=True, fastmath=True)(S._csr_dense_chunked)}
    default_chunk = S.CHUNK_BYTES
    for name in args.slices:
        m = Spotscape(ad.read_h5ad(DATA / f"{name}.h5ad"), seed=0, device="cpu")
        x, _, _ = m._prepare(m.slices)
        a, a_t = S.HostCSR(x), S.HostCSR(x.T.tocsr())
        w = np.random.default_rng(0).standard_normal((x.shape[1], 256)).astype(np.float32)
        g = np.random.default_rng(1).standard_normal((x.shape[0], 256)).astype(np.float32)
        print(f"{name}: {x.shape[0]} spots x {x.shape[1]} genes, {x.nnz / x.shape[0]:.0f} stored values per row")
        chunks = {}
        for _ in range(args.rounds):
            for cb in (64 << 10, 128 << 10, 256 << 10, 512 << 10, 768 << 10):
                S.CHUNK_BYTES = cb
                chunks.setdefault(cb, []).append((timed(lambda: S._host_mm(a, torch.from_numpy(w))),
                                                  timed(lambda: S._host_mm(a_t, torch.from_numpy(g)))))
        S.CHUNK_BYTES = default_chunk
        for cb, v in chunks.items():
            xw, xtg = np.median(np.array(v), 0)
            print(f"  chunk {cb >> 10} KB{' (package)' if cb == default_chunk else ''}: X W {xw:.1f} ms, X^T G {xtg:.1f} ms")

        def run(kernel, mat, dense):
            starts = mat.starts(S.CHUNK_BYTES // (4 * dense.shape[1]))
            out = np.zeros((mat.shape[0], dense.shape[1]), np.float32)
            kernel(starts, mat.m.indices, mat.m.data, dense, out, 8 * numba.get_num_threads())
            return out

        S.numba_threads_as_torch()
        ref = run(kernels["package"], a, w)
        res = {}
        for _ in range(args.rounds):
            for kname, k in kernels.items():
                diff = float(np.abs(run(k, a, w) - ref).max())
                res.setdefault(kname, []).append((timed(lambda: run(k, a, w)), timed(lambda: run(k, a_t, g)), diff))
        for kname, v in res.items():
            xw, xtg, diff = np.median(np.array(v), 0)
            print(f"  kernel {kname}: X W {xw:.1f} ms, X^T G {xtg:.1f} ms, largest difference {diff:.1e}")
        csr, csr_t = S._to_torch_csr(x, "cpu"), S._to_torch_csr(x.T.tocsr(), "cpu")
        tw, tg = torch.from_numpy(w), torch.from_numpy(g)
        diff = float(np.abs((csr @ tw).numpy() - ref).max())
        v = [(timed(lambda: csr @ tw), timed(lambda: csr_t @ tg)) for _ in range(args.rounds)]
        xw, xtg = np.median(np.array(v), 0)
        print(f"  torch CSR product ({torch.get_num_threads()} threads): X W {xw:.1f} ms, X^T G {xtg:.1f} ms, "
              f"largest difference {diff:.1e}", flush=True)


if __name__ == "__main__":
    main()
