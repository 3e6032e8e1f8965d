"""Spatial domains: clustering of the representation."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans

from .._cluster import estimate_n_domains
from .._validate import SpotscapeInputError, check_n_domains

def domains(
    adata,
    n_domains: int | None = None,
    use_rep: str = "X_spotscape",
    method: str = "kmeans",
    key_added: str = "spotscape_domain",
    n_init: int = 10,
    seed: int = 0,
) -> np.ndarray:
    """Cluster ``obsm[use_rep]`` into spatial domains and write ``obs[key_added]`` (categorical).

    method "kmeans": k-means with ``n_init`` restarts on the raw embedding, as the paper evaluates.
    Without ``n_domains`` the number is estimated (``estimate_n_domains``), and the scores per
    candidate go to ``uns['spotscape']['n_domains_scores']``.
    """
    if use_rep not in adata.obsm:
        raise SpotscapeInputError(f"obsm[{use_rep!r}] is missing: run Spotscape(adata).fit() and .embed() first.")
    z = np.asarray(adata.obsm[use_rep])
    info = adata.uns.setdefault("spotscape", {})
    if n_domains is None:
        n_domains, scores = estimate_n_domains(z, seed=seed)
        info["n_domains_estimated"] = int(n_domains)
        info["n_domains_scores"] = {str(k): v for k, v in scores.items()}
    check_n_domains(n_domains, adata.n_obs)
    if method != "kmeans":
        raise SpotscapeInputError(f"unknown domain method {method!r}; available: 'kmeans'.")
    labels = KMeans(int(n_domains), n_init=n_init, random_state=seed).fit_predict(z)
    adata.obs[key_added] = pd.Categorical(labels.astype(str), categories=[str(i) for i in range(int(n_domains))])
    info["n_domains"] = int(n_domains)
    return labels
