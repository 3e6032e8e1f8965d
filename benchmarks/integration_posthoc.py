"""Post-hoc corrections of a saved four-slice DLPFC embedding, scored like integration_variants.py
(pooled ARI of k-means with the true k, and the peers runner's scIB mixing): the embedding as is,
each slice's mean subtracted ("center"), and each slice standardised ("zscore"), both followed by
the unit length the package gives its embedding.

    SPOTSCAPE_SAVE_Z=/tmp/z python benchmarks/integration_variants.py base 0,1 mixing
    python benchmarks/integration_posthoc.py /tmp/z/base_seed0.npy /tmp/z/base_seed1.npy
"""
from __future__ import annotations

import os
import sys

import anndata as ad
import numpy as np

from dlpfc import DATA, SLICES, kmeans_aris
from integration_variants import labels_and_slices
from spotscape.core import unit_rows

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers"))
from run import integration_scores  # noqa: E402  the peers benchmark's scIB metrics


def per_slice(z, sid, scale):
    z = z.copy()
    for s in np.unique(sid):
        rows = sid == s
        z[rows] -= z[rows].mean(0)
        if scale:
            z[rows] /= z[rows].std(0).clip(1e-6)
    return unit_rows(z)


def main():
    ads = [ad.read_h5ad(DATA / f"{s}.h5ad", backed="r") for s in SLICES]
    labels, ok, sid = labels_and_slices(ads)
    corrections = {"as_is": lambda z: z, "center": lambda z: per_slice(z, sid, False),
                   "zscore": lambda z: per_slice(z, sid, True)}
    for path in sys.argv[1:]:
        z0 = np.load(path)
        for name, correct in corrections.items():
            z = correct(z0)
            pooled, _ = kmeans_aris(z[ok], labels[ok], sid[ok])
            mix = integration_scores(z[ok], sid[ok], labels[ok], 0)
            print(f"{os.path.basename(path)} {name}: pooled {pooled:.3f} | "
                  + " ".join(f"{k} {v:.3f}" for k, v in mix.items()), flush=True)


if __name__ == "__main__":
    main()
