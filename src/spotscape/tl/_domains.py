"""Spatial domains: clustering of the representation, and optional spatial refinement."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._cluster import estimate_n_domains
from .._validate import SpotscapeInputError, check_n_domains
from ..graph import grouped_spatial_graph

METHODS = ("kmeans", "gmm", "leiden")


def _leiden(z: np.ndarray, n_domains: int | None, seed: int, resolution: float = 1.0, max_steps: int = 30):
    """Leiden on the kNN graph of ``z``; with ``n_domains``, bisect the resolution until that many come out."""
    import anndata as ad
    import scanpy as sc

    tmp = ad.AnnData(np.zeros((len(z), 1), dtype=np.float32))
    tmp.obsm["z"] = z
    sc.pp.neighbors(tmp, use_rep="z", n_neighbors=15, random_state=seed, transformer="sklearn")

    def run(res):
        sc.tl.leiden(tmp, resolution=res, random_state=seed, flavor="igraph", n_iterations=2, directed=False, key_added="l")
        return tmp.obs["l"].astype(int).to_numpy()

    if n_domains is None:
        return run(resolution), resolution
    lo, hi = 0.01, 3.0
    labels, res = run(resolution), resolution
    for _ in range(max_steps):
        k = len(np.unique(labels))
        if k == n_domains:
            break
        if k < n_domains:
            lo = res
        else:
            hi = res
        res = (lo + hi) / 2
        labels = run(res)
    return labels, res


def domains(
    adata,
    n_domains: int | None = None,
    use_rep: str = "X_spotscape",
    method: str = "kmeans",
    key_added: str = "spotscape_domain",
    n_init: int = 10,
    refine: bool = False,
    spatial_key: str = "spatial",
    slice_key: str | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Cluster ``obsm[use_rep]`` into spatial domains and write ``obs[key_added]`` (categorical).

    method: "kmeans" (``n_init`` restarts on the raw embedding, as the paper evaluates), "gmm"
    (Gaussian mixture with one shared full covariance: mclust's "EEE" model, in Python) or
    "leiden" (with ``n_domains``, the resolution is searched until that many domains come out).
    Without ``n_domains``, kmeans/gmm estimate it (``estimate_n_domains``: Leiden communities at
    resolution 0.2 holding >= 2 % of the spots; the community sizes go to
    ``uns['spotscape']['n_domains_evidence']``) and leiden uses resolution 1.
    ``refine``: also write ``obs[key_added + '_refined']``, each spot relabelled by the majority of
    itself and its spatial neighbours (the default spatial graph, within each ``obs[slice_key]``
    slice when given).
    """
    if use_rep not in adata.obsm:
        raise SpotscapeInputError(f"obsm[{use_rep!r}] is missing: run Spotscape(adata).fit() and .embed() first.")
    if method not in METHODS:
        raise SpotscapeInputError(f"unknown domain method {method!r}; available: {', '.join(METHODS)}.")
    z = np.asarray(adata.obsm[use_rep], dtype=np.float64)
    if not np.isfinite(z).all():
        raise SpotscapeInputError(f"obsm[{use_rep!r}] has NaN or infinite values in {int((~np.isfinite(z).all(1)).sum())} spots; "
                                  "embed again (a model whose training diverged gives such values).")
    check_n_domains(n_domains, adata.n_obs)
    if refine:  # checked before anything is written into adata
        if spatial_key not in adata.obsm:
            raise SpotscapeInputError(f"refine=True needs the coordinates in obsm[{spatial_key!r}]; store them there or leave refine off.")
        if slice_key is not None and slice_key not in adata.obs:
            raise SpotscapeInputError(f"slice_key {slice_key!r} is not a column of obs; give the column naming each spot's slice.")
        if slice_key is None and "slice" in adata.obs and adata.obs["slice"].nunique() > 1:
            warnings.warn(f"obs['slice'] names {adata.obs['slice'].nunique()} slices, but refine votes over all spots as one "
                          "slice (their coordinates may overlap); pass slice_key='slice' to keep the vote within each slice.",
                          stacklevel=2)
    info = dict(adata.uns.get("spotscape", {}))
    if n_domains is None and method != "leiden":
        n_domains, evidence = estimate_n_domains(z, seed=seed)
        info["n_domains_estimated"] = int(n_domains)
        info["n_domains_evidence"] = evidence
        check_n_domains(n_domains, adata.n_obs)
    from sklearn.cluster import KMeans  # sklearn here and below: 1-1.5 s of import that training never needs
    from sklearn.mixture import GaussianMixture

    if method == "kmeans":
        labels = KMeans(int(n_domains), n_init=n_init, random_state=seed).fit_predict(z)
    elif method == "gmm":
        labels = GaussianMixture(int(n_domains), covariance_type="tied", n_init=3, reg_covar=1e-4, random_state=seed).fit_predict(z)
    else:
        labels, info["leiden_resolution"] = _leiden(z, n_domains, seed)
    labels = _relabel(labels)
    k = int(labels.max()) + 1
    if n_domains is not None and k != int(n_domains):
        warnings.warn(f"{k} domain(s) came out where {int(n_domains)} were asked for ({method}): the embedding does not "
                      f"separate that many groups (uns['spotscape']['n_domains'] holds {k}).", stacklevel=2)
    info["n_domains"] = k
    info["domain_method"] = method
    refined = None
    if refine:
        groups = adata.obs[slice_key].to_numpy() if slice_key else None
        refined = refine_labels(labels, np.asarray(adata.obsm[spatial_key]), groups)
    adata.obs[key_added] = pd.Categorical(labels.astype(str), categories=[str(i) for i in range(k)])
    if refined is not None:
        adata.obs[key_added + "_refined"] = pd.Categorical(refined.astype(str), categories=[str(i) for i in range(k)])
    adata.uns["spotscape"] = info
    return labels


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Consecutive integers 0..k-1."""
    return np.unique(labels, return_inverse=True)[1]


def refine_labels(labels: np.ndarray, coords: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """Majority vote of each spot and its spatial neighbours (ties keep the spot's own label).

    ``groups`` (e.g. the slice of each spot): neighbours are only sought within a group, so
    slices are never linked, as in training.
    """
    labels = np.asarray(labels)
    g = grouped_spatial_graph(coords, groups)
    onehot = sp.csr_matrix((np.ones(len(labels)), (np.arange(len(labels)), labels)), shape=(len(labels), labels.max() + 1))
    votes = ((g + sp.identity(len(labels), format="csr")) @ onehot).toarray()
    own = votes[np.arange(len(labels)), labels]
    return np.where(own < votes.max(1), votes.argmax(1), labels)
