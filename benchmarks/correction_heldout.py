"""The slice correction's smoothing (``tl.mnn_correct(smooth=...)``) on data it was not chosen on:
one file with several slices, trained once per seed, corrected with smooth 1 (each spot's own
move), 3, 5 (the default) and 10, scored by scIB's mixing metrics (``spotscape.metrics.batch_mixing``;
batch ASW and graph connectivity need a label column, e.g. cell types).

    python benchmarks/correction_heldout.py --file ../shared/data/merfish_hypothalamus_animal1_2planes/hypothalamus_animal1_bregma0.21_0.26.h5ad \\
        --slice-key sdimz --label-key Cell_class --drop-label Ambiguous --normalized --seeds 3 --out benchmarks/results/correction_merfish
    python benchmarks/correction_heldout.py --file ../shared/data/stahl2016_mob_and_bc_layers/breast_cancer_layers1-4_aligned.h5ad \\
        --slice-key slice --seeds 3 --out benchmarks/results/correction_breast_cancer

Writes OUT.json and OUT.md.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import anndata as ad
import numpy as np

import spotscape as ss
from spotscape.metrics import batch_mixing

SMOOTH = (1, 3, 5, 10)
METRICS = ("ilisi", "batch_asw", "graph_conn")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", required=True)
    ap.add_argument("--slice-key", required=True)
    ap.add_argument("--label-key")
    ap.add_argument("--drop-label", nargs="*", default=[], help="labels treated as unlabelled (e.g. Ambiguous)")
    ap.add_argument("--normalized", action="store_true", help="X is normalised, not counts")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    a = ad.read_h5ad(args.file)
    groups = a.obs[args.slice_key].astype(str).to_numpy()
    labels = None
    if args.label_key:
        labels = a.obs[args.label_key].astype(str).to_numpy().astype(object)
        labels[np.isin(labels, args.drop_label)] = np.nan
    runs = []
    for seed in range(args.seeds):
        model = ss.Spotscape(a, slice_key=args.slice_key, counts=not args.normalized, seed=seed).fit(progress=False)
        z = model.get_latent_representation()
        row = {"seed": seed, "plain": batch_mixing(z, groups, labels, seed=seed)}
        for smooth in SMOOTH:
            row[f"smooth {smooth}"] = batch_mixing(ss.tl.mnn_correct(z, groups, smooth=smooth), groups, labels, seed=seed)
        runs.append(row)
        print(json.dumps(row), flush=True)
    Path(args.out + ".json").write_text(json.dumps({"file": args.file, "slice_key": args.slice_key, "label_key": args.label_key,
                                                     "runs": runs}, indent=1))
    names = ["plain"] + [f"smooth {s}" for s in SMOOTH]
    metrics = [m for m in METRICS if m in runs[0]["plain"]]
    lines = [f"`{Path(args.file).name}`, slices by `{args.slice_key}`" + (f", labels `{args.label_key}`" if args.label_key else "")
             + f"; per seed 0-{args.seeds - 1} (`python benchmarks/correction_heldout.py`, see its docstring).", "",
             "| embedding | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(" / ".join(f"{r[n][m]:.3f}" for r in runs) for m in metrics) + " |")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
