"""torch's CPU thread count, kept from numba; spotscape's numba kernels compiled once and run on
torch's count.

The first of scanpy's parallel numba kernels to run in a process (e.g. seurat_v3 HVGs on sparse
counts) starts numba's OpenMP threading layer, which sets the OpenMP thread count that torch reads
to NUMBA_NUM_THREADS (every core of the machine). A count set by ``OMP_NUM_THREADS`` was then
ignored: with ``OMP_NUM_THREADS=1`` on a 2-core machine torch trained on 2 threads, and a job given
4 cores of a 64-core node would train on 64. numba does this once per process, at that start, so
spotscape starts the layer itself when it is imported (``spotscape.pp``, 7 ms) and puts torch's
count back: the count then holds for spotscape's calls into scanpy and for the user's own.
"""
from __future__ import annotations

import numba
import torch


def start_numba_threads() -> None:
    """Start numba's threading layer now (a no-op once started), keeping torch's thread count."""
    n = torch.get_num_threads()
    numba.get_num_threads()  # launches the layer's threads on first call
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def numba_threads_as_torch() -> None:
    """Run numba's parallel kernels (spotscape's own, on a CPU) on torch's thread count."""
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


def parallel_jit(f):
    """``f`` as a parallel numba kernel, compiled once per machine (about 7 s) and then loaded from
    numba's cache; compiled in every process where no cache location is writable."""
    try:
        return numba.njit(parallel=True, cache=True)(f)
    except RuntimeError:
        return numba.njit(parallel=True)(f)
