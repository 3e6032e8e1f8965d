"""Spotscape: global context-aware representation learning for spatial transcriptomics."""
from ._version import __version__
from ._validate import SpotscapeInputError
from .core import Spotscape
from . import datasets, io, pl, pp, tl  # noqa: E402  (scanpy-style namespaces)

__all__ = ["Spotscape", "SpotscapeInputError", "__version__", "datasets", "io", "pl", "pp", "tl"]
