"""Choosing the number of domains when it is not given."""
from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from ._validate import SpotscapeInputError

CANDIDATE_K = range(3, 13)


def estimate_n_domains(z: np.ndarray, candidates=CANDIDATE_K, seed: int = 0, max_spots: int = 5000) -> tuple[int, dict]:
    """The number of domains by the best cosine silhouette of k-means over ``candidates``
    (on at most ``max_spots`` spots drawn with ``seed``). Returns (k, {k: silhouette})."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(z), min(len(z), max_spots), replace=False)
    sub = z[idx]
    scores = {}
    for k in candidates:
        if k >= len(sub):
            break
        labels = KMeans(k, n_init=3, random_state=seed).fit_predict(sub)
        scores[int(k)] = float(silhouette_score(sub, labels, metric="cosine"))
    if not scores:
        raise SpotscapeInputError("too few spots to estimate the number of domains; pass n_domains.")
    return max(scores, key=scores.get), scores


