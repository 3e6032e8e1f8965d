"""Unit-length z (the default embedding) against the raw z (the paper's evaluation): one model per
seed, k-means (true k, 10 restarts) on both, on STARmap and on simulated tissues. The DLPFC
comparison is `benchmarks/dlpfc.py` with and without `--raw-z`.

    python benchmarks/embedding_norm.py --seeds 3

Writes benchmarks/results/embedding_norm.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import anndata as ad
import numpy as np
from sklearn.cluster import KMeans

from spotscape import Spotscape
from spotscape.datasets import simulate_tissue
from spotscape.tl import estimate_n_domains
from spotscape.metrics import cluster_scores

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("SPOTSCAPE_DATA", HERE.parents[1] / "shared" / "data"))


def datasets():
    star = ad.read_h5ad(DATA / "starmap_visp_BY3_1k" / "starmap_BY3_1k_1207cells_labeled.h5ad")
    yield "STARmap (1,207 cells)", star, "domain_banksy_smoothed_manual"
    bulb = ad.read_h5ad(DATA / "stahl2016_mob_and_bc_layers" / "mouse_olfactory_bulb_mOB_262spots.h5ad")
    yield "mouse olfactory bulb (262 spots)", bulb, "layer"
    for n, g, k, s in [(1500, 500, 5, 0), (3000, 2000, 5, 0)]:
        yield f"simulated, {n} spots x {g} genes, {k} domains", simulate_tissue(n_spots=n, n_genes=g, n_domains=k, seed=s), "domain"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for name, a, key in datasets():
        labels = a.obs[key].astype(str).to_numpy()
        ok = labels != "nan"  # unlabelled spots are embedded but not scored
        k = len(set(labels[ok]))
        for seed in range(args.seeds):
            model = Spotscape(a, n_domains=k, seed=seed, device="cpu").fit(progress=False)
            row = {"dataset": name, "seed": seed, "k": k}
            for normalize in (True, False):
                z = model.get_latent_representation(normalize=normalize)
                pred = KMeans(k, n_init=10, random_state=seed).fit_predict(z[ok])
                row["unit" if normalize else "raw"] = cluster_scores(labels[ok], pred)["ari"]
                # the default estimate of k (no labels), on each embedding
                row["k_estimated_" + ("unit" if normalize else "raw")] = int(estimate_n_domains(z, seed=seed)[0])
            print(json.dumps(row), flush=True)
            rows.append(row)
    out = HERE / "results" / "embedding_norm"
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    lines = [f"k-means (true k, 10 restarts) on unit-length z and on raw z of the same model; seeds 0-{args.seeds - 1}. "
             f"Command: `python benchmarks/embedding_norm.py --seeds {args.seeds}`.", "",
             "| data | true k | ARI, unit-length z | ARI, raw z | per seed (unit / raw) | estimated k per seed (unit / raw) |", "|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["dataset"] for r in rows):
        r = [x for x in rows if x["dataset"] == name]
        u, w = [x["unit"] for x in r], [x["raw"] for x in r]
        per = ", ".join(f"{a:.3f} / {b:.3f}" for a, b in zip(u, w))
        ks = ", ".join(f"{x['k_estimated_unit']} / {x['k_estimated_raw']}" for x in r)
        lines.append(f"| {name} | {r[0]['k']} | {np.mean(u):.3f} ± {np.std(u):.3f} | {np.mean(w):.3f} ± {np.std(w):.3f} | {per} | {ks} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
