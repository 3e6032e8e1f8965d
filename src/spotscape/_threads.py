"""torch's CPU thread count, kept across calls into scanpy.

The first of scanpy's parallel numba kernels to run in a process (seurat_v3 HVGs on sparse counts)
starts numba's OpenMP threading layer, which sets the OpenMP thread count that torch reads to
NUMBA_NUM_THREADS (every core of the machine). A thread count set by ``OMP_NUM_THREADS`` was then
ignored: with ``OMP_NUM_THREADS=1`` on a 2-core machine torch trained on 2 threads, and a job
given 4 cores of a 64-core node would train on 64. (A count set by ``torch.set_num_threads``
survived.) Every spotscape function that calls scanpy restores the count it found.
"""
from __future__ import annotations

import functools

import torch


def keeps_torch_threads(fn):
    """Decorator: ``torch.get_num_threads()`` is the same after ``fn`` as before it."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        n = torch.get_num_threads()
        try:
            return fn(*args, **kwargs)
        finally:
            if torch.get_num_threads() != n:
                torch.set_num_threads(n)

    return wrapper
