"""Clustering metrics as the paper reports them: ARI, NMI, clustering accuracy (Hungarian), silhouette."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment


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
