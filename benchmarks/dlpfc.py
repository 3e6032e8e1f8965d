"""DLPFC benchmark (issue #2): each of the four donor-3 slices alone and the four integrated,
several seeds, k-means with the true k. Every run is its own process (`spotscape run`), so wall
time and peak memory are that run's own, reading to written outputs.

    python benchmarks/dlpfc.py --seeds 5 --out benchmarks/results/dlpfc_2026-12-03   # the README table (2026-12-03)
    python benchmarks/dlpfc.py --seeds 1 --published --only 151673   # the published schedule, for the time ratio
    python benchmarks/dlpfc.py --seeds 5 --device cuda --out benchmarks/results/dlpfc_gpu   # on a GPU
    python benchmarks/dlpfc.py --seeds 5 --raw-z --out benchmarks/results/dlpfc_raw_z   # k-means on raw z, as the paper
    python benchmarks/dlpfc.py --seeds 5 --only integrated    # rerun one row; the other rows' runs are kept

Writes benchmarks/results/dlpfc.json and dlpfc.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import anndata as ad
import numpy as np

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("SPOTSCAPE_DATA", HERE.parents[1] / "shared" / "data")) / "dlpfc_subject3_banksy"
SLICES = ["151673", "151674", "151675", "151676"]
PUBLISHED_S_PER_EPOCH = 4.0  # METHOD.md: the published code on 151673 on this machine
PAPER = {"151673": 0.48, "integrated": 0.57}


def kmeans_aris(z, labels, slice_ids, n_init=10, repeats=3):
    """ARI of k-means with the true k on labelled spots ``z``: (pooled, per slice), each the mean over
    ``repeats`` k-means seeds of ``n_init`` restarts. Used by the exploratory scripts beside this one."""
    from sklearn.cluster import KMeans

    from spotscape.metrics import cluster_scores

    k = len(np.unique(labels))
    pooled, per = [], []
    for seed in range(repeats):
        p = KMeans(k, n_init=n_init, random_state=seed).fit_predict(z)
        pooled.append(cluster_scores(labels, p)["ari"])
        per.append([cluster_scores(labels[slice_ids == i], p[slice_ids == i])["ari"] for i in np.unique(slice_ids)])
    return float(np.mean(pooled)), np.mean(per, 0)


def run_spotscape(files, seed, extra, device="cpu"):
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "spotscape.cli", "run", *map(str, files), "--out", tmp, "--label-key", "layer_guess",
               "--seed", str(seed), "--quiet", "--device", device, *extra]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            return {"error": res.stderr[-2000:]}
        return json.loads(Path(tmp, "metrics.json").read_text())


def floors(seed):
    from spotscape.pipeline import pca_kmeans_ari

    out = {}
    for s in SLICES:
        a = ad.read_h5ad(DATA / f"{s}.h5ad")
        out[s] = {"pca": pca_kmeans_ari(a, "layer_guess", 7, seed), "pca_smoothed": pca_kmeans_ari(a, "layer_guess", 7, seed, smooth=True)}
    return out


def device_name(device: str) -> str:
    if device == "cuda":
        import torch

        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    import platform

    return f"CPU, {os.cpu_count()} cores ({platform.processor() or platform.machine()})"


def ms(vals):
    vals = [v for v in vals if v is not None]
    return f"{np.mean(vals):.3f} ± {np.std(vals):.3f}" if vals else "–"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--only", nargs="*", help="subset of: 151673 151674 151675 151676 integrated")
    ap.add_argument("--published", action="store_true", help="published schedule (1,000 epochs)")
    ap.add_argument("--batch-size", default="auto", help="auto | full | N (spotscape run --batch-size)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--raw-z", action="store_true", help="cluster the raw z as the published code does (spotscape run --raw-z)")
    ap.add_argument("--out", default=str(HERE / "results" / "dlpfc"))
    args = ap.parse_args()
    where = device_name(args.device)
    extra = (["--published"] if args.published else []) + (["--raw-z"] if args.raw_z else []) + ["--batch-size", args.batch_size]
    jobs = [(s, [DATA / f"{s}.h5ad"]) for s in SLICES] + [("integrated", [DATA / f"{s}.h5ad" for s in SLICES])]
    if args.only:
        jobs = [j for j in jobs if j[0] in args.only]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    runs = []
    if args.only and Path(args.out + ".json").exists():  # rerunning some datasets: keep the others' runs
        runs = [r for r in json.loads(Path(args.out + ".json").read_text())["runs"] if r["dataset"] not in args.only]
    kept = [name for name in SLICES + ["integrated"] if any(r["dataset"] == name for r in runs)]
    for name, files in jobs:
        for seed in range(args.seeds):
            m = run_spotscape(files, seed, extra, args.device)
            runs.append({"dataset": name, "seed": seed, "metrics": m})
            if "error" in m:
                print(f"{name} seed {seed}: FAILED {m['error'][-300:]}", flush=True)
            else:
                print(f"{name} seed {seed}: ARI {m['pooled']['ari']:.3f} NMI {m['pooled']['nmi']:.3f} CA {m['pooled']['ca']:.3f} "
                      f"{m['seconds_total']:.1f} s {m['peak_memory_mb']:.0f} MB", flush=True)
            Path(args.out + ".json").write_text(json.dumps({"runs": runs}, indent=1))  # nothing lost if a later run dies
    fl = floors(0)
    result = {"runs": runs, "floors": fl, "device": where, "published_s_per_epoch": PUBLISHED_S_PER_EPOCH, "schedule": "published" if args.published else "fast",
              "embedding": "raw z" if args.raw_z else "unit-length z"}
    Path(args.out + ".json").write_text(json.dumps(result, indent=1))

    lines = ["| data | ARI | NMI | CA | per-slice ARI (integrated) | wall s (median) | peak MB (median) | peak GPU MB (median) | speed-up vs published code | PCA+k-means ARI | smoothed-PCA floor ARI |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in [n for n in SLICES + ["integrated"] if n in kept or n in dict(jobs)]:
        ok = [r["metrics"] for r in runs if r["dataset"] == name and "error" not in r["metrics"]]
        if not ok:
            lines.append(f"| {name} | failed | | | | | | | | | |")
            continue
        pooled = [m["pooled"] for m in ok]
        per = ""
        if name == "integrated":
            per = ", ".join(f"{s}: {np.mean([m['slices'][s]['ari'] for m in ok]):.2f}" for s in SLICES)
        wall = np.median([m["seconds_total"] for m in ok])
        gpu_mb = f"{np.median([m['peak_gpu_memory_mb'] for m in ok]):.0f}" if "peak_gpu_memory_mb" in ok[0] else "–"
        speedup = f"{PUBLISHED_S_PER_EPOCH * 1000 / wall:.0f}x" if name != "integrated" else "–"
        f = fl.get(name, {})
        lines.append(
            f"| {name} | {ms([p['ari'] for p in pooled])} | {ms([p['nmi'] for p in pooled])} | {ms([p['ca'] for p in pooled])} | {per} | "
            f"{wall:.1f} | {np.median([m['peak_memory_mb'] for m in ok]):.0f} | {gpu_mb} | {speedup} | {f.get('pca', float('nan')):.3f} | {f.get('pca_smoothed', float('nan')):.3f} |")
    n_ok = len([r for r in runs if "error" not in r["metrics"]])
    if kept:
        lines.append("")
        lines.append(f"Kept from an earlier run of this script (not rerun now): {', '.join(kept)}.")
    lines.append("")
    lines.append(f"{n_ok}/{len(runs)} runs, seeds 0-{args.seeds - 1}, schedule: {result['schedule']}, k-means on {result['embedding']}; mean ± sd over seeds; k-means (10 restarts) with the true k on labelled spots. "
                 f"Device: {where}. Wall time and peak memory (host) are per run (own process), reading to written outputs. Published-code estimate: 4 s/epoch x 1,000 epochs (METHOD.md, 151673).")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
