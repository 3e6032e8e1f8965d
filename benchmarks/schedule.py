"""How the default training schedule was chosen: ARI along training for several learning rates.

    python benchmarks/schedule.py --slices 151673 --lrs 3e-4 1e-3 3e-3 --epochs 150 --every 25 --seeds 0 1
    python benchmarks/schedule.py --slices 151673 151674 151675 151676 --lrs 1e-3 2e-3 --epochs 120 --every 20
    python benchmarks/schedule.py --summary LOG...   # markdown table of saved runs' output: mean ARI over seeds

Prints one line per evaluation: the loss terms, pooled ARI and per-slice ARI (k-means, true k,
mean over 3 k-means seeds) on unit-length z (the default embedding) and on raw z (the paper's),
and the training seconds so far.
"""
from __future__ import annotations

import argparse
import re
import time
from collections import defaultdict
from pathlib import Path

import anndata as ad
import numpy as np

from dlpfc import DATA, kmeans_aris  # the DLPFC benchmark's data folder and its k-means scoring
from spotscape import Spotscape
from spotscape.train import TrainConfig, Trainer, full_batch_data


def curve(slices, lr, epochs, every, seed, options):
    ads = [ad.read_h5ad(DATA / f"{s}.h5ad") for s in slices]
    model = Spotscape(ads if len(ads) > 1 else ads[0], seed=seed, device="cpu", n_domains=7)
    x, adj, rows = model._prepare(model.slices)
    data = full_batch_data(x, adj, rows)
    # the package's loss weights for this many slices (w_pcl 0.02 for several) unless options say otherwise
    weights = {k: v for k, v in model.default_schedule().items() if k not in ("epochs", "lr")}
    trainer = Trainer(model.net, data, TrainConfig(epochs=epochs, lr=lr, n_domains=7, **{**weights, **options}), seed=seed)
    labels = np.concatenate([a.obs["layer_guess"].astype(str).to_numpy() for a in ads])
    ok = labels != "nan"
    sid = np.concatenate([[i] * a.n_obs for i, a in enumerate(ads)])[ok]
    spent = 0.0
    for epoch in range(epochs):
        t0 = time.perf_counter()
        rec = trainer.epoch(epoch)
        spent += time.perf_counter() - t0
        if (epoch + 1) % every == 0:
            scores = []
            for normalize in (True, False):  # unit-length z (the default embedding), raw z (the paper's)
                z = model.get_latent_representation(normalize=normalize)[ok]
                pooled, per = kmeans_aris(z, labels[ok], sid, n_init=5)
                per_txt = " (" + " ".join(f"{v:.2f}" for v in per) + ")" if len(ads) > 1 else ""
                scores.append(f"{pooled:.3f}{per_txt}")
            terms = " ".join(f"{k} {v:.4f}" for k, v in rec.items() if k != "epoch")
            print(f"lr {lr:g} seed {seed} epoch {epoch + 1}: {terms} | ARI unit z {scores[0]}, raw z {scores[1]} | train {spent:.0f} s", flush=True)


def summary(logs, epochs=None):
    """Markdown table from saved output of this script: unit-z ARI per lr and epoch, mean over seeds,
    one column per log (named by its file stem), then the mean over each lr's last three evaluations."""
    line = re.compile(r"lr (\S+) seed (\d+) epoch (\d+):.*ARI unit z ([0-9.]+)")
    cols = []  # per log: (lr, epoch) -> ARIs over seeds
    for f in logs:
        runs = defaultdict(list)
        with open(f) as fh:
            for m in filter(None, map(line.match, fh)):
                runs[(float(m[1]), int(m[3]))].append(float(m[4]))
        cols.append(runs)
    keys = {k for c in cols for k in c}
    n_seeds = max(len(v) for c in cols for v in c.values())
    print("| lr | epoch | " + " | ".join(Path(f).stem for f in logs) + " | mean |")
    print("|---|---|" + "---|" * (len(logs) + 1))
    for lr in sorted({lr for lr, _ in keys}):
        eps = sorted(ep for l, ep in keys if l == lr)
        rows = [(str(ep), [ep]) for ep in eps if epochs is None or ep in epochs]
        last = eps[-3:]  # fewer than three evaluations: all of them
        rows.append((f"{last[0]}-{last[-1]} (mean)", last))
        for label, group in rows:
            vals = [np.mean([x for e in group for x in c.get((lr, e), [])] or [np.nan]) for c in cols]
            print(f"| {lr:g} | {label} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {np.nanmean(vals):.3f} |")
    print(f"\nunit-length z, k-means with the true k (3 k-means seeds x 5 restarts), mean over {n_seeds} training seeds")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--summary", nargs="+", metavar="LOG", help="print a table from saved output instead of training")
    ap.add_argument("--show", nargs="+", type=int, help="with --summary: only these epochs")
    ap.add_argument("--slices", nargs="+", default=["151673"])
    ap.add_argument("--lrs", nargs="+", type=float, default=[1e-3])
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--options", default="", help="TrainConfig options, e.g. 'w_ss=0,w_pcl=0' or 'lr_schedule=cosine'")
    args = ap.parse_args()
    if args.summary:
        return summary(args.summary, args.show)
    options = {k: (v if k == "lr_schedule" else float(v)) for k, v in (kv.split("=") for kv in args.options.split(",") if kv)}
    for lr in args.lrs:
        for seed in args.seeds:
            curve(args.slices, lr, args.epochs, args.every, seed, options)


if __name__ == "__main__":
    main()
