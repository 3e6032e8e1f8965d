"""UMAP of the representation and the PAGA graph of a trajectory."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ._domains import _scatter  # noqa: E402


def _finish(fig, path):
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def umap(adata, color=("spotscape_domain",), use_rep: str = "X_spotscape", path=None, seed: int = 0, n_neighbors: int = 15):
    """UMAP of ``obsm[use_rep]``, one panel per ``obs`` column in ``color`` (e.g. domain and slice).

    The coordinates are cached in ``obsm['X_spotscape_umap']`` (the only write to ``adata``)."""
    import anndata as ad
    import scanpy as sc

    color = [color] if isinstance(color, str) else list(color)
    if "X_spotscape_umap" not in adata.obsm or adata.obsm["X_spotscape_umap"].shape[0] != adata.n_obs:
        tmp = ad.AnnData(np.zeros((adata.n_obs, 1), dtype=np.float32))
        tmp.obsm["rep"] = np.asarray(adata.obsm[use_rep])
        sc.pp.neighbors(tmp, use_rep="rep", n_neighbors=n_neighbors, random_state=seed, transformer="sklearn")
        sc.tl.umap(tmp, random_state=seed)
        adata.obsm["X_spotscape_umap"] = tmp.obsm["X_umap"]
    xy = adata.obsm["X_spotscape_umap"] * np.array([1, -1])  # _scatter flips y for tissue images
    fig, axes = plt.subplots(1, len(color), figsize=(4.8 * len(color), 4), squeeze=False)
    size = max(1.0, 6000.0 / max(adata.n_obs, 1))
    for ax, key in zip(axes[0], color):
        _scatter(ax, xy, adata.obs[key].to_numpy(), f"UMAP of {use_rep}: {key}", size)
        ax.set_aspect("auto")
    return _finish(fig, path)


def paga(adata, path=None, threshold: float = 0.05):
    """The PAGA graph written by ``spotscape.tl.trajectory``: groups as nodes (size = spots, colour =
    median pseudotime), edges weighted by connectivity (those below ``threshold`` hidden)."""
    info = adata.uns.get("spotscape_paga")
    if info is None:
        raise ValueError("no PAGA result in uns['spotscape_paga']: run spotscape.tl.trajectory first.")
    groups = list(info["groups"])
    conn = np.asarray(info["connectivities"], dtype=float)
    key = info["groups_key"]
    labels = adata.obs[key].astype(str).to_numpy()
    pt = adata.obs.get("spotscape_pseudotime")
    sizes = np.array([(labels == g).sum() for g in groups], dtype=float)
    med = np.array([np.nanmedian(pt.to_numpy()[labels == g]) if pt is not None else i for i, g in enumerate(groups)])
    # layout: groups ordered by median pseudotime along x, spread in y by a spectral coordinate of the graph
    lap = np.diag(conn.sum(1)) - conn
    y = np.linalg.eigh(lap)[1][:, 2] if len(groups) > 2 else np.zeros(len(groups))
    pos = np.column_stack([np.argsort(np.argsort(med)), y * 3])
    fig, ax = plt.subplots(figsize=(1.2 * len(groups) + 2, 3.5))
    for i in range(len(groups)):
        for j in range(i + 1, len(groups)):
            if conn[i, j] >= threshold:
                ax.plot(*pos[[i, j]].T, color="grey", lw=6 * conn[i, j], alpha=0.7, zorder=1)
    sc_ = ax.scatter(pos[:, 0], pos[:, 1], s=300 + 1500 * sizes / sizes.max(), c=med, cmap="viridis", zorder=2,
                     edgecolors="black")
    for (px, py), g in zip(pos, groups):
        ax.annotate(g, (px, py), ha="center", va="center", fontsize=8, color="white", weight="bold", zorder=3)
    title = f"PAGA on the representation ({key}, root {info['root']})"
    if "spearman" in info:
        title += f"; Spearman(pseudotime, order) = {info['spearman']:.2f}"
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.margins(0.15)
    fig.colorbar(sc_, ax=ax, label="median pseudotime", shrink=0.8)
    return _finish(fig, path)
