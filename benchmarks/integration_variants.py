"""Integration of the four DLPFC donor-3 slices under option variants, several seeds: pooled and
per-slice ARI (k-means, true k, mean over 3 k-means seeds of 10 restarts) on the default
(unit-length) embedding. For trying levers on the integrated target; prints one line per run.

    python benchmarks/integration_variants.py hvg3000 0,1,2,3,4     # 3,000 genes instead of 5,000
    python benchmarks/integration_variants.py wss0.5 0,1,2,3,4      # similarity scaling weight 0.5
    python benchmarks/integration_variants.py base 0,1,2,3,4        # the defaults
    python benchmarks/integration_variants.py wss3 0 mixing         # also scIB batch mixing (peers runner's scores)
    python benchmarks/integration_variants.py pubbn+wpcl0.01 0,1,2,3,4 mixing  # the published BatchNorm and w_pcl

A variant joins parts with "+": hvgN (n_top_genes), wssW (w_ss), wpclW (w_pcl), warmF (PCL warm-up,
fraction of the epochs), topkK (similarity scaling's top-k), epN (epochs), lrL (learning rate),
tauT (PCL temperature), cos (cosine learning-rate decay), pclwarm0/1 (prototype k-means afresh at
every step, as published, or from the previous centroids, the default), slicebn / pubbn
(``Spotscape(slice_norm=True / False)``: the encoder's BatchNorm with each slice's own statistics,
or pooled as published), base (nothing).
One part patches the package for this process only, to test an idea before it earns an option:
libshared (library size over the genes measured in every slice instead of all genes of each file;
151674's file holds 5,000 genes, the others about 8,600, so the shared genes carry 88 % of its
counts against 69-70 % in the others).

Since commit 96ca51d the package's defaults for several slices are slicebn+wpcl0.02: the log's
lines before it ran with the published BatchNorm and w_pcl 0.01, so to rerun one of them put
"pubbn+wpcl0.01+" before its variant (its "slicebn" is now "slicebn+wpcl0.01", its "base"
"pubbn+wpcl0.01").

slicebn began as a patch of GCNEncoder.propagate here (log lines before the commit that made it
the ``slice_norm`` option); the option computes the same normalisation.
"""
from __future__ import annotations

import os
import sys
import time

import anndata as ad
import numpy as np

from dlpfc import DATA, SLICES, kmeans_aris  # the DLPFC benchmark's data folder, slices and k-means scoring
import spotscape.core
from spotscape import Spotscape, pp

SAVE = os.environ.get("SPOTSCAPE_SAVE_Z")


# variant part prefix -> (Spotscape() option or fit() option, its name, its type)
PARTS = {"hvg": ("init", "n_top_genes", int), "wss": ("fit", "w_ss", float), "wpcl": ("fit", "w_pcl", float),
         "warm": ("fit", "warmup", float), "ep": ("fit", "epochs", int), "lr": ("fit", "lr", float),
         "pclwarm": ("fit", "pcl_warm_start", lambda v: bool(int(v))), "tau": ("fit", "tau", float),
         "topk": ("fit", "topk", int),
         "cos": ("fit", "lr_schedule", lambda v: "cosine"),
         "slicebn": ("init", "slice_norm", lambda v: True), "pubbn": ("init", "slice_norm", lambda v: False)}


def patch_libshared(ads):
    """Library size over the genes every slice measured (the model's genes here: all 3,851 shared)."""
    spotscape.core.log_normalize = lambda a, genes, counts=True: pp.normalize(a[:, genes], genes, counts)


PATCHES = {"libshared": patch_libshared}


def options(variant: str) -> tuple[dict, dict, list]:
    """Spotscape() options, fit() options and the patches a variant names."""
    out = {"init": {}, "fit": {}}
    patches = []
    for part in variant.split("+"):
        if part in PATCHES:
            patches.append(PATCHES[part])
            continue
        if part == "base":
            continue
        prefix = next((p for p in PARTS if part.startswith(p)), None)
        if prefix is None:
            raise SystemExit(f"unknown variant part {part!r}")
        where, name, kind = PARTS[prefix]
        out[where][name] = kind(part[len(prefix):])
    return out["init"], out["fit"], patches


def labels_and_slices(ads):
    """Every spot's layer label (as text), which spots are labelled, and each spot's slice index."""
    labels = np.concatenate([a.obs["layer_guess"].astype(str).to_numpy() for a in ads])
    return labels, labels != "nan", np.repeat(np.arange(len(ads)), [a.n_obs for a in ads])


def main():
    variant, seeds = sys.argv[1], [int(s) for s in sys.argv[2].split(",")]
    mixing = sys.argv[3:] == ["mixing"]
    if mixing:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers"))
        from run import integration_scores  # the peers benchmark's scIB metrics
    init, fit, patches = options(variant)
    ads = [ad.read_h5ad(DATA / f"{s}.h5ad") for s in SLICES]
    for patch in patches:
        patch(ads)
    labels, ok, sid = labels_and_slices(ads)
    sid = sid[ok]
    res = []
    for seed in seeds:
        t0 = time.time()
        m = Spotscape(ads, seed=seed, device="cpu", n_domains=7, **init).fit(progress=False, **fit)
        z = m.get_latent_representation()
        if SAVE:  # SPOTSCAPE_SAVE_Z=DIR keeps each embedding (DIR/VARIANT_seedS.npy) for post-hoc scoring
            np.save(os.path.join(SAVE, f"{variant}_seed{seed}.npy"), z)
        pooled, per = kmeans_aris(z[ok], labels[ok], sid)
        res.append(pooled)
        line = f"{variant} seed {seed}: pooled {pooled:.3f} per " + " ".join(f"{v:.2f}" for v in per)
        if mixing:
            line += " | " + " ".join(f"{k} {v:.3f}" for k, v in integration_scores(z[ok], sid, labels[ok], seed).items())
        print(line + f" ({time.time() - t0:.0f}s)", flush=True)
    sd = np.std(res, ddof=1) if len(res) > 1 else 0.0
    print(f"== {variant} mean {np.mean(res):.3f} sd {sd:.3f}", flush=True)


if __name__ == "__main__":
    main()
