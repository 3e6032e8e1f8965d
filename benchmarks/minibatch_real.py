"""Mini-batch mode on real data (issue #5): DLPFC slices forced into mini-batches against full
batch (same seed, same everything else), and the MERFISH hypothalamus slice in both modes.
Each run is its own process (`spotscape run`), so time and memory are that run's own.

    python benchmarks/minibatch_real.py --seeds 2 --batch-size 1024

Writes benchmarks/results/minibatch_real.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("SPOTSCAPE_DATA", HERE.parents[1] / "shared" / "data"))
SETS = {  # file, label column, extra `spotscape run` options
    **{s: (DATA / "dlpfc_subject3_banksy" / f"{s}.h5ad", "layer_guess", []) for s in ("151673", "151674", "151675", "151676")},
    # 2 z-planes, 161 genes, volume-normalised values (not counts), cell classes (no domain labels)
    "merfish": (DATA / "merfish_hypothalamus_animal1_2planes" / "hypothalamus_animal1_bregma0.21_0.26.h5ad", "Cell_class",
                ["--normalized", "--slice-key", "sdimz"]),
}


def run(path, label, seed, batch, extra, epochs=None):
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "spotscape.cli", "run", str(path), "--out", tmp, "--seed", str(seed), "--quiet",
               "--device", "cpu", "--batch-size", batch, *extra]
        if epochs:
            cmd += ["--epochs", str(epochs)]
        if label:
            cmd += ["--label-key", label]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            return {"error": res.stderr[-1500:]}
        m = json.loads(Path(tmp, "metrics.json").read_text())
        return {"ari": m["pooled"]["ari"], "nmi": m["pooled"]["nmi"], "seconds": m["seconds_total"],
                "peak_mb": m["peak_memory_mb"], "epochs": m["epochs_run"], "mode": m["training_mode"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--batch-size", default="1024")
    ap.add_argument("--only", nargs="*", default=list(SETS))
    ap.add_argument("--epochs", type=int, help="epochs for the mini-batch runs (default: the package's own choice)")
    args = ap.parse_args()
    out = HERE / "results" / "minibatch_real"
    rows = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").exists() else []
    for name in args.only:
        path, label, extra = SETS[name]
        if name == "merfish":  # volume-normalised values: log1p them once (the model reads log-normalised data)
            import anndata as ad

            cached = HERE / "results" / "cache" / "merfish_log1p.h5ad"
            if not cached.exists():
                a = ad.read_h5ad(path)
                a.X = np.log1p(np.asarray(a.X.todense() if hasattr(a.X, "todense") else a.X, dtype=np.float32))
                a.obs["sdimz"] = a.obs["sdimz"].astype(str)
                cached.parent.mkdir(parents=True, exist_ok=True)
                a.write_h5ad(cached)
            path = cached
        for seed in range(args.seeds):
            mini = args.batch_size + (f" e{args.epochs}" if args.epochs else "")
            for batch in ("full", mini):
                if any(r["data"] == name and r["seed"] == seed and r["batch"] == batch and "error" not in r for r in rows):
                    continue  # already measured (the JSON keeps every run; rerunning resumes)
                size, epochs = batch.split(" e") if " e" in batch else (batch, None)
                r = {"data": name, "seed": seed, "batch": batch, "label": label, **run(path, label, seed, size, extra, epochs)}
                rows.append(r)
                print(json.dumps(r), flush=True)
                out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    lines = ["| data | mode | runs | ARI | NMI | epochs | wall s (median) | peak MB |", "|---|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["data"] for r in rows):
        for batch in dict.fromkeys(r["batch"] for r in rows if r["data"] == name):
            rs = [r for r in rows if r["data"] == name and r["batch"] == batch and "error" not in r]
            if not rs:
                continue
            a = [r["ari"] for r in rs]
            lines.append(f"| {name} | {rs[0]['mode']} | {len(rs)} | {np.mean(a):.3f} ± {np.std(a):.3f} | "
                         f"{np.mean([r['nmi'] for r in rs]):.3f} | {rs[0]['epochs']} | {np.median([r['seconds'] for r in rs]):.1f} | "
                         f"{np.median([r['peak_mb'] for r in rs]):.0f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
