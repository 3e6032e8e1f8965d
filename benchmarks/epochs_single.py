"""ARI along the default single-slice schedule, at several epoch counts, scored exactly as the peers
benchmark scores (k-means with the true k, 10 starts, ``random_state`` = seed; ``peers/run.py``).

With a constant learning rate and no loss that starts late (one slice: no prototypes), a run of E
epochs is the first E epochs of a longer run with the same seed, so one 100-epoch run per seed gives
the embedding of every shorter schedule: the script records it after each checkpoint epoch (the
package's own ``fit``, with a hook on ``Trainer.epoch``) and prints one JSON line per
(dataset, seed, checkpoint), then a markdown table (mean ± sd over seeds, and training seconds).

    python benchmarks/epochs_single.py --data ../shared/data --manifest benchmarks/peers/manifest_shared.json \
        --seeds 0 1 2 3 4 5 6 7 8 9 --checkpoints 30 40 50 60 70 80 100 --out benchmarks/results/epochs_single
    python benchmarks/epochs_single.py --summary benchmarks/results/epochs_single.jsonl
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers"))


def curve(files, label, seed, checkpoints):
    import anndata as ad

    import spotscape
    from spotscape import train
    from run import load_truth, score  # the peers benchmark's labels and scoring

    truth, batch = load_truth(files, label)
    k = len(np.unique(truth[truth != ""]))
    model = spotscape.Spotscape(ad.read_h5ad(files[0]), n_domains=k, seed=seed, device="cpu")
    embeddings, clock = {}, {"train": 0.0}
    original = train.Trainer.epoch

    def epoch(self, e):
        t0 = time.perf_counter()
        rec = original(self, e)
        clock["train"] += time.perf_counter() - t0
        if e + 1 in checkpoints:
            embeddings[e + 1] = (model.get_latent_representation(), clock["train"])
        return rec

    train.Trainer.epoch = epoch
    try:
        model.fit(epochs=max(checkpoints), progress=False)
    finally:
        train.Trainer.epoch = original
    for e in checkpoints:
        z, spent = embeddings[e]
        yield e, score(z, None, truth, batch, k, seed)["kmeans"], spent


def summary(lines):
    runs = defaultdict(list)
    for r in lines:
        runs[(r["dataset"], r["epochs"])].append(r)
    datasets = list(dict.fromkeys(d for d, _ in runs))
    epochs = sorted({e for _, e in runs})
    out = ["| epochs | " + " | ".join(datasets) + " | mean of the datasets | training s (median per dataset) |",
           "|---" * (len(datasets) + 3) + "|"]
    for e in epochs:
        cells, means, secs = [], [], []
        for d in datasets:
            a = np.array([r["ari"] for r in runs[(d, e)]])
            cells.append(f"{a.mean():.3f} ± {a.std(ddof=1) if len(a) > 1 else 0:.3f} (n={len(a)})")
            means.append(a.mean())
            secs.append(f"{np.median([r['train_s'] for r in runs[(d, e)]]):.0f}")
        out.append(f"| {e} | " + " | ".join(cells) + f" | {np.mean(means):.3f} | " + " / ".join(secs) + " |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--summary", metavar="JSONL", help="print the table of saved lines instead of training")
    ap.add_argument("--data")
    ap.add_argument("--manifest")
    ap.add_argument("--datasets", nargs="+", help="names from the manifest (default: its single-slice datasets)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--checkpoints", nargs="+", type=int, default=[40, 50, 60, 70, 80, 100])
    ap.add_argument("--out", help="append JSON lines to OUT.jsonl and write the table to OUT.md")
    args = ap.parse_args()
    if args.summary:
        print(summary([json.loads(s) for s in Path(args.summary).read_text().splitlines() if s.strip()]))
        return
    if not (args.data and args.manifest):
        sys.exit("--data and --manifest are needed (or --summary)")
    sets = [d for d in json.loads(Path(args.manifest).read_text())["datasets"]
            if (d["name"] in args.datasets if args.datasets else len(d["files"]) == 1)]
    lines = []
    jsonl = Path(args.out).with_suffix(".jsonl") if args.out else None
    for d in sets:
        files = [Path(args.data, f) for f in d["files"]]
        for seed in args.seeds:
            for e, s, spent in curve(files, d["label"], seed, sorted(set(args.checkpoints))):
                row = {"dataset": d["name"], "seed": seed, "epochs": e, "ari": s["ari"], "nmi": s["nmi"], "acc": s["acc"],
                       "train_s": round(spent, 2)}
                lines.append(row)
                print(json.dumps(row), flush=True)
                if jsonl:
                    with jsonl.open("a") as f:
                        f.write(json.dumps(row) + "\n")
    table = summary(lines)
    print(table)
    if args.out:
        everything = [json.loads(s) for s in jsonl.read_text().splitlines() if s.strip()]
        Path(args.out).with_suffix(".md").write_text(
            "ARI (same k-means as benchmarks/peers) after E epochs of the default single-slice schedule (lr 1e-3), "
            "mean ± sd over seeds; `python benchmarks/epochs_single.py` (its docstring).\n\n" + summary(everything) + "\n")


if __name__ == "__main__":
    main()
