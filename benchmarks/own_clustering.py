"""Spotscape's embedding under each clustering step that tools recommend, on the DLPFC slices:
k-means (the paper's evaluation), a Gaussian mixture with one shared covariance (mclust's "EEE",
what STAGATE, GraphST and BANKSY use), each also followed by spatial majority-vote refinement
(GraphST's and SpaGCN's last step). Everything through `spotscape.tl.domains`.

    python benchmarks/own_clustering.py --seeds 2

Writes benchmarks/results/own_clustering.{json,md}.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import anndata as ad
import numpy as np

import spotscape as ss
from dlpfc import DATA, HERE, SLICES  # the DLPFC benchmark's data folder and slices
from spotscape.metrics import cluster_scores

STEPS = [("kmeans", False), ("kmeans", True), ("gmm", False), ("gmm", True)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--slices", nargs="*", default=SLICES)
    ap.add_argument("--out", default=str(HERE / "results" / "own_clustering"))
    args = ap.parse_args()
    runs = []
    for s in args.slices:
        a = ad.read_h5ad(DATA / f"{s}.h5ad")
        for seed in range(args.seeds):
            m = ss.Spotscape(a, seed=seed, device="cpu").fit(progress=False)
            b = a.copy()
            m.embed(b)
            row = {"slice": s, "seed": seed}
            for method, refine in STEPS:
                ss.tl.domains(b, 7, method=method, refine=refine, seed=seed)
                key = "spotscape_domain_refined" if refine else "spotscape_domain"
                row[method + ("+refine" if refine else "")] = cluster_scores(a.obs["layer_guess"], b.obs[key])["ari"]
            runs.append(row)
            print(json.dumps(row), flush=True)
            Path(args.out + ".json").write_text(json.dumps(runs, indent=1))
    names = [m + ("+refine" if r else "") for m, r in STEPS]
    lines = ["ARI of spotscape's embedding (fast default schedule) under each clustering step, true k = 7; "
             f"mean ± sd over seeds 0-{args.seeds - 1}.", "", "| slice | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for s in args.slices:
        rs = [r for r in runs if r["slice"] == s]
        lines.append(f"| {s} | " + " | ".join(f"{np.mean([r[n] for r in rs]):.3f} ± {np.std([r[n] for r in rs]):.3f}" for n in names) + " |")
    lines.append("| mean | " + " | ".join(f"{np.mean([r[n] for r in runs]):.3f}" for n in names) + " |")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
