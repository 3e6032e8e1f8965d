"""Where the seed-to-seed spread of the single-slice ARI comes from, and three label-free ideas
to reduce it, on the DLPFC slices (fast default schedule, true k = 7):

- k-means restarts: the same embedding clustered with 5 k-means seeds (10 restarts each). If the
  ARI moves little, the spread is the training's, not the clustering's.
- choosing a training seed without labels: per slice, does the seed with the lowest k-means
  inertia, the highest silhouette or the lowest final loss have the best ARI? Reported as the ARI
  of the seed each criterion picks against the mean over seeds, and Spearman's rho per slice.
- seed ensembles: the unit-length embeddings of three seeds side by side (each scaled by 1/sqrt 3),
  clustered once, against the mean ARI of the three alone.
- spatial smoothing: each spot's embedding averaged with its 6 nearest spots before k-means.

    python benchmarks/seed_variance.py --seeds 6
    python benchmarks/seed_variance.py --seeds 6 --datasets starmap dlpfc_4_integrated --out benchmarks/results/seed_variance_more
    python benchmarks/seed_variance.py --seeds 6 --manifest benchmarks/peers/manifest_heldout.json --datasets 151510_500genes \
        --out benchmarks/results/seed_variance_151510

Datasets come from a peers-runner manifest (several files: the slices integrated); k = the number of
labels. Writes OUT.{json,md} (default benchmarks/results/seed_variance).
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import anndata as ad
import numpy as np
from scipy.stats import spearmanr
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.neighbors import NearestNeighbors

import spotscape as ss
from dlpfc import HERE, SLICES  # the DLPFC benchmark's slices


def unit(z):
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def ari(y, m, z, seed, k):
    return adjusted_rand_score(y[m], KMeans(k, n_init=10, random_state=seed).fit_predict(z)[m])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--data", default=str(HERE.parents[1] / "shared" / "data"))
    ap.add_argument("--manifest", default=str(HERE / "peers" / "manifest_shared.json"))
    ap.add_argument("--datasets", nargs="*", default=SLICES, help="names in the manifest (default: the four DLPFC slices)")
    ap.add_argument("--out", default=str(HERE / "results" / "seed_variance"))
    args = ap.parse_args()
    runs, ensembles = [], []
    manifest = {d["name"]: d for d in json.loads(Path(args.manifest).read_text())["datasets"]}
    for s in args.datasets:
        slices = [ad.read_h5ad(Path(args.data, f)) for f in manifest[s]["files"]]
        y = np.concatenate([b.obs[manifest[s]["label"]].astype(str).to_numpy() for b in slices])
        m = (y != "nan") & (y != "")
        k = len(np.unique(y[m]))
        nbrs, start = [], 0  # each spot's 6 nearest spots of its own slice (itself first)
        for b in slices:
            nbrs.append(start + NearestNeighbors(n_neighbors=7).fit(b.obsm["spatial"]).kneighbors(b.obsm["spatial"])[1])
            start += b.n_obs
        nbrs = np.vstack(nbrs)
        zs = []
        for seed in range(args.seeds):
            model = ss.Spotscape(slices if len(slices) > 1 else slices[0], seed=seed, device="cpu").fit(progress=False)
            z = model.get_latent_representation()
            zs.append(z)
            km = KMeans(k, n_init=10, random_state=seed).fit(z)
            row = {"slice": s, "seed": seed,
                   "ari": adjusted_rand_score(y[m], km.labels_[m]),
                   "ari_kmeans_seeds": [ari(y, m, z, ks, k) for ks in range(5)],
                   "ari_smoothed": ari(y, m, unit(z[nbrs].mean(1)), seed, k),
                   "inertia": km.inertia_ / len(z),
                   "silhouette": float(silhouette_score(z, km.labels_, sample_size=min(3000, len(z)), random_state=0)),
                   "final_loss": model.history[-1]["loss"]}
            runs.append(row)
            print(json.dumps(row), flush=True)
        for trio in itertools.combinations(range(args.seeds), 3):
            z = np.hstack([zs[i] for i in trio]) / np.sqrt(3)
            ensembles.append({"slice": s, "seeds": list(trio), "ari": ari(y, m, z, 0, k),
                              "members_mean": float(np.mean([runs[-args.seeds + i]["ari"] for i in trio]))})
        Path(args.out + ".json").write_text(json.dumps({"runs": runs, "ensembles": ensembles}, indent=1))
    Path(args.out + ".md").write_text(markdown(runs, ensembles, args))
    print(Path(args.out + ".md").read_text())


def markdown(runs, ensembles, args) -> str:
    lines = [f"ARI over training seeds 0-{args.seeds - 1} (k-means, true k; `python benchmarks/seed_variance.py "
             f"--seeds {args.seeds} --datasets {' '.join(args.datasets)}`).", "",
             "| slice | ARI mean ± sd over training seeds | range | spread over 5 k-means seeds (mean of max - min) | "
             "smoothed over 6 neighbours | inertia picks | silhouette picks | loss picks | rho(ARI, -inertia) | "
             "rho(ARI, silhouette) | rho(ARI, -loss) | 3-seed ensemble (mean over trios) | its members' mean |",
             "|---" * 13 + "|"]
    for s in args.datasets:
        rs = [r for r in runs if r["slice"] == s]
        a = np.array([r["ari"] for r in rs])
        pick = {c: rs[int(np.argmin([sign * r[c] for r in rs]))]["ari"] for c, sign in
                (("inertia", 1), ("silhouette", -1), ("final_loss", 1))}
        rho = {c: spearmanr(a, [sign * r[c] for r in rs])[0] for c, sign in
               (("inertia", -1), ("silhouette", 1), ("final_loss", -1))}
        es = [e for e in ensembles if e["slice"] == s]
        lines.append(f"| {s} | {a.mean():.3f} ± {a.std():.3f} | {a.min():.3f}-{a.max():.3f} | "
                     f"{np.mean([max(r['ari_kmeans_seeds']) - min(r['ari_kmeans_seeds']) for r in rs]):.4f} | "
                     f"{np.mean([r['ari_smoothed'] for r in rs]):.3f} | "
                     f"{pick['inertia']:.3f} | {pick['silhouette']:.3f} | {pick['final_loss']:.3f} | "
                     f"{rho['inertia']:+.2f} | {rho['silhouette']:+.2f} | {rho['final_loss']:+.2f} | "
                     f"{np.mean([e['ari'] for e in es]):.3f} | {np.mean([e['members_mean'] for e in es]):.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
