"""Several slices in mini-batches, with and without similarity scaling (L_SS), on simulated slices
with a known batch effect (issue #5): the simulated tissue of the demo cut into left and right
halves (both hold every layer), the right half with 1.5x the library size and a third of the genes
scaled by 0.5-2x (`--no-batch-effect`: the halves as they are). Full batch vs mini-batches, L_SS
on vs off, each with the defaults for several slices (per-slice BatchNorm, w_pcl 0.02) and with the
published BatchNorm and w_pcl 0.01 (the defaults before 2026-12-01); pooled ARI of k-means (true k)
over both halves.

    python benchmarks/minibatch_integration_sim.py --seeds 2

Writes benchmarks/results/minibatch_integration_sim.json and .md.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp

import spotscape as ss
from spotscape.metrics import cluster_scores

HERE = Path(__file__).resolve().parent


def two_slices(tissue, batch_effect: bool):
    x = tissue.obsm["spatial"][:, 0]
    left, right = tissue[x < np.median(x)].copy(), tissue[x >= np.median(x)].copy()
    if batch_effect:
        rng = np.random.default_rng(0)
        scale = np.where(rng.random(tissue.n_vars) < 1 / 3, rng.uniform(0.5, 2.0, tissue.n_vars), 1.0) * 1.5
        right.X = sp.csr_matrix(rng.poisson(right.X.toarray() * scale).astype(np.float32))
    return [left, right]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--spots", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--no-batch-effect", action="store_true")
    ap.add_argument("--out", default=str(HERE / "results" / "minibatch_integration_sim"))
    args = ap.parse_args()
    tissue = ss.datasets.simulate_tissue(n_spots=args.spots, n_genes=500, n_domains=5, seed=1)
    configs = {}
    for norm, (slice_norm, w_pcl) in {"": (None, None), ", published BN, w_pcl 0.01": (False, 0.01)}.items():
        configs.update({f"full batch, L_SS on{norm}": (None, 1.0, slice_norm, w_pcl),
                        f"full batch, L_SS off{norm}": (None, 0.0, slice_norm, w_pcl),
                        f"mini-batch {args.batch_size}, L_SS on{norm}": (args.batch_size, 1.0, slice_norm, w_pcl),
                        f"mini-batch {args.batch_size}, L_SS off{' (default)' if not norm else norm}": (args.batch_size, 0.0, slice_norm, w_pcl)})
    runs = []
    for name, (batch, w_ss, slice_norm, w_pcl) in configs.items():
        for seed in range(args.seeds):
            slices = two_slices(tissue, not args.no_batch_effect)
            t = time.perf_counter()
            weights = {} if w_pcl is None else {"w_pcl": w_pcl}
            m = ss.Spotscape(slices, n_domains=5, seed=seed, slice_norm=slice_norm).fit(
                progress=False, batch_size=batch, epochs=args.epochs, w_ss=w_ss, **weights)
            z = m.get_latent_representation()
            pred = ss.tl.domains(ad.AnnData(obsm={"z": z}), n_domains=5, seed=seed, use_rep="z")
            truth = np.concatenate([a.obs["domain"].astype(str) for a in slices])
            ari = cluster_scores(truth, pred)["ari"]
            runs.append(dict(config=name, seed=seed, ari=ari, seconds=time.perf_counter() - t))
            print(f"{name} seed {seed}: ARI {ari:.3f}", flush=True)
    lines = [f"Two halves of a simulated tissue ({args.spots} spots, 500 genes, 5 domains), "
             f"{'no batch effect' if args.no_batch_effect else 'batch effect on the right half'}, {args.epochs} epochs, "
             f"{args.seeds} seeds; pooled ARI (k-means, k = 5)", "", "| training | ARI |", "|---|---|"]
    for name in configs:
        v = [r["ari"] for r in runs if r["config"] == name]
        lines.append(f"| {name} | {np.mean(v):.3f} ± {np.std(v):.3f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(dict(args=vars(args), runs=runs), indent=1))
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
