"""Spotscape: global context-aware representation learning for spatial transcriptomics."""
import os as _os

# Bitwise reproducibility on a CPU: torch's CPU build does its dense products with Intel MKL, whose
# default code path may round differently from one process to the next (memory alignment): on DLPFC
# 151673, seed 0, 5 epochs, 3 of 13 processes gave another embedding than the other 10 (losses 1e-7
# apart, a gap that grows with training: the four slices integrated, seed 0, scored pooled ARI 0.561
# in one process and 0.565 in another). With MKL's "strict" conditional numerical reproducibility 10
# of 10 processes gave one embedding, at no measured cost (151673, 100 epochs: median 39.6 s either
# way over 5 runs each). MKL reads the setting once, at its first product, so it takes effect when
# spotscape is imported before any torch computation; a value the user set is kept.
# tests/test_cli.py::test_run_real_slice_beats_pca_and_repeats_exactly checks two processes.
_os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

from ._version import __version__  # noqa: E402
from ._validate import SpotscapeInputError, SpotscapeTrainingError  # noqa: E402
from .core import Spotscape  # noqa: E402
from . import datasets, io, metrics, pl, pp, tl  # noqa: E402  (scanpy-style namespaces)

__all__ = ["Spotscape", "SpotscapeInputError", "SpotscapeTrainingError", "__version__", "datasets", "io", "metrics", "pl", "pp", "tl"]
