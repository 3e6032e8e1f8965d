"""Plots (matplotlib with the Agg backend: no display needed). Each function can save to ``path``."""
from ._align import aligned
from ._de import de_dotplot
from ._domains import domains
from ._embedding import paga, umap

__all__ = ["aligned", "de_dotplot", "domains", "paga", "umap"]
