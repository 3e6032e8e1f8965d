"""Plots (matplotlib with the Agg backend: no display needed). Each function can save to ``path``.

The plotting modules load on first use (matplotlib and pyplot: about 0.5 s that training never needs)."""
from importlib import import_module

_WHERE = {"aligned": "_align", "de_dotplot": "_de", "domains": "_domains", "paga": "_embedding", "umap": "_embedding"}
__all__ = list(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_WHERE[name]}", __name__), name)


def __dir__():
    return sorted(__all__)
