"""Plots (matplotlib, no display needed)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _scatter(ax, xy, labels, title, spot_size):
    cats = pd.Categorical(pd.Series(labels).astype(str).where(pd.Series(labels).notna(), "NA"))
    cmap = plt.get_cmap("tab20")
    for i, c in enumerate(cats.categories):
        m = np.asarray(cats == c)
        color = "lightgrey" if c == "NA" else cmap(i % 20)
        ax.scatter(xy[m, 0], xy[m, 1], s=spot_size, color=color, label=c, linewidths=0)
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal")
    ax.invert_yaxis()
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=6, markerscale=2, frameon=False, loc="center left", bbox_to_anchor=(1, 0.5))


def domains(slices, names, domain_key="spotscape_domain", truth_key=None, spatial_key="spatial", path=None, scores=None):
    """One row per slice: found domains, and the truth beside them when ``truth_key`` is given."""
    ncol = 2 if truth_key else 1
    fig, axes = plt.subplots(len(slices), ncol, figsize=(4.8 * ncol, 4 * len(slices)), squeeze=False)
    for r, (a, name) in enumerate(zip(slices, names)):
        xy = np.asarray(a.obsm[spatial_key])
        size = max(2.0, 12000.0 / max(a.n_obs, 1))
        extra = ""
        if scores and scores.get(name, {}).get("ari") is not None:
            extra = f" (ARI {scores[name]['ari']:.2f})"
        _scatter(axes[r, 0], xy, a.obs[domain_key].to_numpy(), f"{name}: Spotscape domains{extra}", size)
        if truth_key:
            _scatter(axes[r, 1], xy, a.obs[truth_key].to_numpy(), f"{name}: {truth_key}", size)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig
