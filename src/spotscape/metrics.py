"""Clustering metrics as the paper reports them (ARI, NMI, clustering accuracy, silhouette), the scIB
benchmark's slice-mixing metrics for several slices (iLISI, batch ASW, graph connectivity), and a
label-free check that the domains follow the expression (``expression_coherence``)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from ._validate import SpotscapeInputError

MIXING_METRICS = {"ilisi": "iLISI", "batch_asw": "batch ASW", "graph_conn": "graph connectivity"}  # batch_mixing's keys, named
COHERENCE_WARN = 0.45  # expression_coherence below this: the domains may follow position, not expression (measured:
# 0.28-0.34 where spotscape fails on the olfactory bulb, 0.90-0.95 on DLPFC, STARmap and 151510, 0.65-0.68 on the noisy
# simulated demo; benchmarks/coherence.py)


def clustering_accuracy(truth, pred) -> float:
    """Fraction of spots whose cluster, matched one-to-one to a label (Hungarian), equals the truth."""
    t = pd.Categorical(np.asarray(truth).astype(str))
    p = pd.Categorical(np.asarray(pred).astype(str))
    table = pd.crosstab(t.codes, p.codes).to_numpy()
    r, c = linear_sum_assignment(-table)
    return float(table[r, c].sum() / table.sum())


def cluster_scores(truth, pred, embedding: np.ndarray | None = None, seed: int = 0, max_silhouette: int = 10000) -> dict:
    """ARI, NMI and clustering accuracy of ``pred`` against ``truth`` over labelled spots (NaN truth
    dropped); silhouette (cosine) of the embedding under the true labels, when given."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

    truth = pd.Series(np.asarray(truth, dtype=object))
    ok = truth.notna().to_numpy() & (truth.astype(str) != "nan").to_numpy()
    t, p = truth[ok].astype(str).to_numpy(), np.asarray(pred).astype(str)[ok]
    if not ok.any():
        return {"n_labelled": 0, "ari": None, "nmi": None, "ca": None}
    out = {
        "n_labelled": int(ok.sum()),
        "ari": float(adjusted_rand_score(t, p)),
        "nmi": float(normalized_mutual_info_score(t, p)),
        "ca": clustering_accuracy(t, p),
    }
    if embedding is not None and len(np.unique(t)) > 1:
        emb = np.asarray(embedding)[ok]
        n = min(len(t), max_silhouette)
        out["silhouette"] = float(silhouette_score(emb, t, metric="cosine", sample_size=n, random_state=seed))
    return out


def lisi(x: np.ndarray, batch, perplexity: int = 30, n_iter: int = 50, tol: float = 1e-5) -> np.ndarray:
    """Per-spot inverse Simpson index of ``batch`` (Harmony's LISI, as scIB computes it): among a
    spot's ``3 * perplexity`` nearest neighbours, Gaussian weights whose width is found by bisection
    so that their entropy is log(perplexity); 1 / sum over batches of the squared weight share.
    1 = the neighbourhood holds one batch, the number of batches = perfectly mixed."""
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(x, dtype=np.float64)
    k = min(3 * perplexity, x.shape[0] - 1)
    d, idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    d = d[:, 1:] ** 2
    d -= d.min(1, keepdims=True)
    codes = np.unique(np.asarray(batch), return_inverse=True)[1].ravel()[idx[:, 1:]]
    n, target = x.shape[0], np.log(perplexity)
    beta, lo, hi = np.ones(n), np.zeros(n), np.full(n, np.inf)
    p = np.empty_like(d)
    active = np.arange(n)
    for _ in range(n_iter):  # every spot's bisection at once; a spot stops when its entropy is within tol
        pa = np.exp(-d[active] * beta[active, None])
        s = pa.sum(1)
        h = np.log(s) + beta[active] * (d[active] * pa).sum(1) / s
        p[active] = pa
        done = np.abs(h - target) < tol
        up, down = active[~done & (h > target)], active[~done & (h <= target)]
        lo[up] = beta[up]
        beta[up] = np.where(np.isinf(hi[up]), beta[up] * 2, (beta[up] + hi[up]) / 2)
        hi[down] = beta[down]
        beta[down] = (beta[down] + lo[down]) / 2
        active = active[~done]
        if not len(active):
            break
    p /= p.sum(1, keepdims=True)
    share = np.zeros((n, codes.max() + 1))
    np.add.at(share, (np.repeat(np.arange(n), k), codes.ravel()), p.ravel())
    return 1.0 / (share ** 2).sum(1)


def batch_mixing(embedding: np.ndarray, batch, labels=None, n_neighbors: int = 15, perplexity: int = 30,
                 max_spots: int = 50000, seed: int = 0) -> dict:
    """How well the slices (``batch``) mix in ``embedding``, by the scIB benchmark's metrics; higher
    is better mixed, each in [0, 1].

    - ``ilisi``: median LISI of the slice labels, scaled by the number of slices ((LISI - 1) / (B - 1)).
    - ``batch_asw`` (needs ``labels``): within each label, 1 - |silhouette of the slice labels|,
      averaged over spots, then over labels.
    - ``graph_conn`` (needs ``labels``): within each label, the share of its spots in the largest
      connected part of the ``n_neighbors``-nearest-neighbour graph of all spots, averaged over labels.

    With ``labels`` only the labelled spots count (NaN / "nan" / "" dropped). Above ``max_spots``
    spots a random subset of that size (``seed``) is scored, so the cost stays bounded."""
    from scipy.sparse.csgraph import connected_components
    from sklearn.metrics import silhouette_samples
    from sklearn.neighbors import kneighbors_graph

    emb = np.asarray(embedding)
    batch = np.asarray(batch).astype(str)
    if emb.ndim != 2 or len(batch) != emb.shape[0]:
        raise SpotscapeInputError(f"embedding must be (spots x dims) with one slice label per spot (got {emb.shape} and "
                                  f"{len(batch)} labels).")
    if labels is not None and len(labels) != len(batch):
        raise SpotscapeInputError(f"{len(labels)} labels for {len(batch)} spots: give one per spot (NaN where unlabelled).")
    keep = np.ones(len(batch), dtype=bool)
    if labels is not None:
        lab = pd.Series(np.asarray(labels, dtype=object))
        keep = (lab.notna() & ~lab.astype(str).isin(["nan", ""])).to_numpy()
        labels = lab.astype(str).to_numpy()
    rows = np.flatnonzero(keep)
    if len(rows) > max_spots:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_spots, replace=False))
    emb, batch = emb[rows], batch[rows]
    n_batches = len(np.unique(batch))
    out = {"spots_scored": int(len(rows)), "n_batches": n_batches}
    if n_batches < 2 or len(rows) < 3:
        return out
    out["ilisi"] = float((np.median(lisi(emb, batch, perplexity)) - 1) / (n_batches - 1))
    if labels is None:
        return out
    labels = labels[rows]
    asw, conn = [], []
    graph = kneighbors_graph(emb, min(n_neighbors, len(rows) - 1), include_self=False)
    for lab in np.unique(labels):
        m = labels == lab
        if len(np.unique(batch[m])) >= 2 and m.sum() >= 3:
            asw.append(np.mean(1 - np.abs(silhouette_samples(emb[m], batch[m]))))
        idx = np.flatnonzero(m)
        _, comp = connected_components(graph[idx][:, idx], directed=False)
        conn.append(np.bincount(comp).max() / len(idx))
    if asw:
        out["batch_asw"] = float(np.mean(asw))
    out["graph_conn"] = float(np.mean(conn))
    return out


def expression_coherence(x, domains, coords, n_neighbors: int = 7, n_comps: int = 30, max_spots: int = 20000,
                         seed: int = 0) -> float:
    """Do the domains follow the expression? No labels needed. On the first ``n_comps`` principal
    components of the standardised genes of ``x`` (log-normalised expression, spots x genes, sparse
    or dense; one slice), averaged over each spot's ``n_neighbors`` nearest spots in ``coords``
    (itself included, as the benchmark's smoothed-PCA floor averages its PCs; 1: no averaging):
    the share of their variance the domains explain, over the share that as many k-means clusters
    of them explain. Spots whose domain is missing (NaN) are left out.

    Near 1: the domains split the smoothed expression as well as its own clusters do (measured
    0.90-0.95 for spotscape on DLPFC, STARmap and 151510; the annotations 0.82-0.89). Low: the
    domains cut across the expression, e.g. patches that follow the tissue's position (0.28-0.34
    where spotscape fails on the Stahl olfactory bulb, whose layers are one or two spots thick,
    against 0.82 for its annotated layers; README, "Held out"). Very noisy spots lower it for any
    labelling: 0.65-0.68 on the simulated demo tissue, 0.66-0.70 for its truth
    (``benchmarks/coherence.py``). NaN when there is nothing to score (one domain, constant
    genes, or too few spots for the averaging to leave any variance).
    Memory linear in the input (sparse PCA); above ``max_spots`` spots the PCA and k-means are
    fitted on a seeded subsample and applied to every spot.
    """
    import scipy.sparse as sp
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors
    from sklearn.utils.sparsefuncs import mean_variance_axis

    labels = pd.Series(np.asarray(domains, dtype=object))
    coords = np.asarray(coords, dtype=np.float64)
    if not (x.shape[0] == len(labels) == len(coords)):
        raise SpotscapeInputError(f"expression ({x.shape[0]} spots), domains ({len(labels)}) and coordinates "
                                  f"({len(coords)}) must have one row per spot.")
    x = sp.csr_matrix(x, dtype=np.float32)
    x.sum_duplicates()
    ok = labels.notna().to_numpy()
    if not ok.all():
        x, coords = x[np.flatnonzero(ok)], coords[ok]
    domains = labels[ok].astype(str).to_numpy()
    n, k = x.shape[0], len(np.unique(domains))
    var = mean_variance_axis(x, 0)[1].astype(np.float64)  # exactly 0 for a constant gene (E[x^2] - mean^2 is not)
    genes = np.flatnonzero(var > 1e-12)
    x = x[:, genes] @ sp.diags((1.0 / np.sqrt(var[genes])).astype(np.float32))  # centred by the PCA
    n_pcs = min(n_comps, min(x.shape) - 1)
    if k < 2 or n <= k or n_pcs < 1:
        return float("nan")
    n_fit = max(max_spots, 10 * k, n_comps + 1)
    sub = np.sort(np.random.default_rng(seed).choice(n, n_fit, replace=False)) if n > n_fit else None
    pca = PCA(n_pcs, svd_solver="arpack", random_state=seed)
    pcs = (pca.fit_transform(x) if sub is None else pca.fit(x[sub]).transform(x)).astype(np.float64)
    if n_neighbors > 1:
        idx = NearestNeighbors(n_neighbors=min(n_neighbors, n)).fit(coords).kneighbors(coords)[1]
        rows = np.repeat(np.arange(n), idx.shape[1])
        pcs = sp.csr_matrix((np.full(idx.size, 1.0 / idx.shape[1]), (rows, idx.ravel())), shape=(n, n)) @ pcs
    total = ((pcs - pcs.mean(0)) ** 2).sum()
    if not total > 1e-12 * max(1.0, (pcs**2).sum()):
        return float("nan")

    def explained(codes):
        codes = np.unique(codes, return_inverse=True)[1]
        means = np.zeros((codes.max() + 1, pcs.shape[1]))
        np.add.at(means, codes, pcs)
        means /= np.bincount(codes)[:, None]
        return 1.0 - ((pcs - means[codes]) ** 2).sum() / total

    reference = explained(KMeans(k, n_init=4, random_state=seed).fit(pcs if sub is None else pcs[sub]).predict(pcs))
    return float(explained(domains) / reference) if reference > 0 else float("nan")
