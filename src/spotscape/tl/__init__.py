"""Downstream tasks on the Spotscape representation (scanpy-style functional helpers)."""
from .._cluster import estimate_n_domains
from ._domains import domains

__all__ = ["domains", "estimate_n_domains"]
