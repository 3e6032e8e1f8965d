"""Choosing the number of domains when it is not given.

Default criterion (``"leiden"``): Leiden communities of the representation's 15-nearest-neighbour
graph at resolution 0.2, counting those that hold at least 2 % of the spots. Measured on the
four DLPFC donor-3 slices (true k = 7): 7, 8, 8, 9; on two slices it was not tuned on, STARmap
(7 layers) 8 and the mouse olfactory bulb (5 layers) 4. The silhouette criterion (best cosine
silhouette of k-means over k = 3..12) gave 3, 6, 5, 3 and 3, 12 there; it stays available.
"""
from __future__ import annotations

import numpy as np

from ._validate import SpotscapeInputError

CANDIDATE_K = range(3, 13)
LEIDEN_RESOLUTION = 0.2
MIN_FRACTION = 0.02


def _subsample(z: np.ndarray, max_spots: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return z[rng.choice(len(z), min(len(z), max_spots), replace=False)]


def _leiden_count(z: np.ndarray, seed: int, resolution: float, min_fraction: float) -> tuple[int, dict]:
    import anndata as ad
    import scanpy as sc

    tmp = ad.AnnData(np.zeros((len(z), 1), dtype=np.float32))
    tmp.obsm["z"] = np.asarray(z, dtype=np.float32)
    sc.pp.neighbors(tmp, use_rep="z", n_neighbors=15, random_state=seed, transformer="sklearn")
    sc.tl.leiden(tmp, resolution=resolution, random_state=seed, flavor="igraph", n_iterations=2, directed=False, key_added="l")
    frac = np.sort(tmp.obs["l"].value_counts(normalize=True).to_numpy())[::-1]
    k = max(2, int((frac >= min_fraction).sum()))
    return k, {"criterion": "leiden", "resolution": resolution, "min_fraction": min_fraction,
               "community_fractions": [round(float(f), 4) for f in frac]}


def estimate_n_domains(z: np.ndarray, method: str = "leiden", candidates=CANDIDATE_K, seed: int = 0, max_spots: int = 20000,
                       resolution: float = LEIDEN_RESOLUTION, min_fraction: float = MIN_FRACTION) -> tuple[int, dict]:
    """The number of domains, and the evidence for it (a JSON-friendly dict).

    ``method="leiden"`` (default): see the module docstring; evidence = the fraction of spots in
    each community. ``method="silhouette"``: the k in ``candidates`` with the best cosine silhouette
    of k-means; evidence = the score per k. At most ``max_spots`` spots (drawn with ``seed``) are used.
    """
    if len(z) < 10:
        raise SpotscapeInputError("too few spots to estimate the number of domains; pass n_domains.")
    sub = _subsample(np.asarray(z), max_spots, seed)
    if method == "leiden":
        return _leiden_count(sub, seed, resolution, min_fraction)
    if method != "silhouette":
        raise SpotscapeInputError(f"unknown criterion {method!r} for the number of domains; use 'leiden' or 'silhouette'.")
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    scores = {}
    for k in candidates:
        if k >= len(sub):
            break
        labels = KMeans(k, n_init=3, random_state=seed).fit_predict(sub)
        scores[int(k)] = float(silhouette_score(sub, labels, metric="cosine"))
    if not scores:
        raise SpotscapeInputError("too few spots to estimate the number of domains; pass n_domains.")
    best = max(scores, key=scores.get)
    return best, {"criterion": "silhouette", "scores": {str(k): round(v, 4) for k, v in scores.items()}}
