"""Plot of slices after alignment (matplotlib, no display needed)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import anndata as ad  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _split(adatas_or_adata, slice_key, key):
    if isinstance(adatas_or_adata, ad.AnnData):
        a = adatas_or_adata
        if slice_key is None:
            return [np.asarray(a.obsm[key])], ["slice0"]
        groups = a.obs[slice_key].astype("category")
        cats = [c for c in groups.cat.categories if (groups == c).any()]
        return [np.asarray(a.obsm[key])[(groups == c).to_numpy()] for c in cats], [str(c) for c in cats]
    return [np.asarray(a.obsm[key]) for a in adatas_or_adata], [f"slice{i}" for i in range(len(adatas_or_adata))]


def aligned(adatas_or_adata, slice_key=None, spatial_key="spatial_aligned", path=None, before_key="spatial"):
    """Overlay of all slices in ``obsm[spatial_key]``, one colour per slice; with ``before_key``
    (default ``'spatial'``, ``None`` to leave it out) a "before" panel is drawn beside it."""
    panels = [(spatial_key, "after alignment")]
    first = adatas_or_adata if isinstance(adatas_or_adata, ad.AnnData) else adatas_or_adata[0]
    if before_key and before_key in first.obsm:
        panels.insert(0, (before_key, "before"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 4.4), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, (key, title) in zip(axes[0], panels):
        xys, names = _split(adatas_or_adata, slice_key, key)
        size = max(2.0, 12000.0 / max(sum(len(x) for x in xys), 1))
        for i, (xy, name) in enumerate(zip(xys, names)):
            ax.scatter(xy[:, 0], xy[:, 1], s=size, color=cmap(i % 10), label=name, linewidths=0, alpha=0.7)
        ax.set_title(f"{title} ({key})", fontsize=9)
        ax.set_aspect("equal")
        ax.invert_yaxis()
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, -1].legend(fontsize=6, markerscale=2, frameon=False, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig
