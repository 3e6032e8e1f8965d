"""Spotscape: global context-aware representation learning for spatial transcriptomics."""
__version__ = "0.1.0"

from ._validate import SpotscapeInputError  # noqa: E402
from .core import Spotscape  # noqa: E402

__all__ = ["Spotscape", "SpotscapeInputError", "__version__"]
