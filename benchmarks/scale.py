"""Scaling (issue #5): simulated layered tissues (the demo simulator) of 10k, 30k, 100k (and 300k)
spots x 2,000 genes, simulated once into benchmarks/results/cache/; each run in its own process,
reading the .h5ad to domains: total time, time per epoch and peak memory; a log-log plot and the
fitted exponents.

    python benchmarks/scale.py                       # 10k 30k 100k, default schedule and mode
    python benchmarks/scale.py --sizes 10000 30000 100000 300000 --batch-size 4096
    python benchmarks/scale.py --device cuda --out benchmarks/results/scale_gpu   # on a GPU

Writes benchmarks/results/scale.json, scale.md and scale.png.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

SIMULATE = r"""
import sys
import anndata as ad
import spotscape as ss
n, seed, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
# above 100k: side-by-side copies of one tissue of at most 100k spots (the simulator holds dense spots x
# genes arrays; one seed, so that a domain has the same marker genes in every copy)
parts, left, x0 = [], n, 0.0
while left > 0:
    a = ss.datasets.simulate_tissue(n_spots=min(left, 100_000), n_genes=2000, n_domains=5, seed=seed)
    a.obsm["spatial"][:, 0] += x0
    x0 = a.obsm["spatial"][:, 0].max() + 1000.0
    a.obs_names = [f"p{len(parts)}_{i}" for i in a.obs_names]
    parts.append(a)
    left -= a.n_obs
a = parts[0] if len(parts) == 1 else ad.concat(parts, merge="first")
a.write_h5ad(path)
"""

CHILD = r"""
import json, resource, sys, time
import anndata as ad
import spotscape as ss
from spotscape.metrics import cluster_scores
n, epochs, batch, seed, path, device = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
t0 = time.perf_counter()
a = ad.read_h5ad(path)
m = ss.Spotscape(a, seed=seed, device=device)
kw = {} if epochs == "default" else {"epochs": int(epochs)}
bs = "auto" if batch == "auto" else (None if batch == "full" else int(batch))
m.fit(progress=False, batch_size=bs, **kw)
m.embed()
ss.tl.domains(a, n_domains=5, seed=seed)
total = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
gpu = {}
if m.device.type == "cuda":
    import torch
    from spotscape.pipeline import peak_gpu_memory_mb
    gpu = {"peak_gpu_mb": peak_gpu_memory_mb(m.device), "gpu": torch.cuda.get_device_name(m.device)}
print(json.dumps({**gpu, "spots": n, "seconds_total": total, "seconds_train": m.timings["train_s"],
                  "epochs": len(m.history), "seconds_per_epoch": m.timings["train_s"] / len(m.history),
                  "mode": "full batch" if m.train_config.batch_size is None else f"mini-batch {m.train_config.batch_size}",
                  "peak_mb": rss, "ari": cluster_scores(a.obs["domain"], a.obs["spotscape_domain"])["ari"]}))
"""


def fit_exponent(x, y) -> float:
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", nargs="+", type=int, default=[10000, 30000, 100000])
    ap.add_argument("--epochs", default="default")
    ap.add_argument("--batch-size", default="auto", help="auto, full, or a number of spots")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--out", default=str(RESULTS / "scale"))
    ap.add_argument("--replot", action="store_true", help="only rebuild the table and plot from OUT.json")
    args = ap.parse_args()
    rows = json.loads(Path(args.out + ".json").read_text()) if args.replot else []
    for n in [] if args.replot else args.sizes:
        data = RESULTS / "cache" / f"tissue_{n}_seed{args.seed}.h5ad"  # simulated once, in its own process
        if not data.exists():
            data.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, "-c", SIMULATE, str(n), str(args.seed), str(data)], check=True)
        cmd = [sys.executable, "-c", CHILD, str(n), args.epochs, args.batch_size, str(args.seed), str(data), args.device]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            row = json.loads(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 else {"spots": n, "error": res.stderr[-1500:]}
        except subprocess.TimeoutExpired:
            row = {"spots": n, "error": f"timeout after {args.timeout} s"}
        rows.append(row)
        print(json.dumps(row), flush=True)
        Path(args.out + ".json").write_text(json.dumps(rows, indent=1))
    ok = [r for r in rows if "error" not in r]
    gpu = next((r["gpu"] for r in ok if "gpu" in r), None)
    lines = ["| spots | mode | epochs | total s | s / epoch | peak MB | peak GPU MB | ARI |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['spots']} | failed: {r['error'][-120:]} | | | | | | |")
        else:
            gmb = f"{r['peak_gpu_mb']:.0f}" if "peak_gpu_mb" in r else "–"
            lines.append(f"| {r['spots']:,} | {r['mode']} | {r['epochs']} | {r['seconds_total']:.1f} | {r['seconds_per_epoch']:.2f} | "
                         f"{r['peak_mb']:.0f} | {gmb} | {r['ari']:.3f} |")
    lines += ["", f"Device: {gpu or 'CPU'}; peak MB is the host process's resident peak, peak GPU MB torch's allocated peak."]
    if len(ok) >= 2:
        n = [r["spots"] for r in ok]
        ex = {k: fit_exponent(n, [r[k] for r in ok]) for k in ("seconds_total", "seconds_per_epoch", "peak_mb")}
        lines += ["", f"Fitted exponents (log-log slope over {n[0]:,}-{n[-1]:,} spots): total time {ex['seconds_total']:.2f}, "
                      f"time per epoch {ex['seconds_per_epoch']:.2f}, peak memory {ex['peak_mb']:.2f}."]
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 4))
        for k, lab in (("seconds_total", "total time (s)"), ("seconds_per_epoch", "time per epoch (s)"), ("peak_mb", "peak memory (MB)")):
            ax.loglog(n, [r[k] for r in ok], "o-", label=f"{lab}, slope {ex[k]:.2f}")
        ax.loglog(n, np.array(n) / n[0] * ok[0]["seconds_per_epoch"], "k:", lw=1, label="linear (from time per epoch)")
        ax.set_xlabel("spots")
        ax.legend(fontsize=7)
        ax.set_title(f"spotscape on {gpu or 'a 2-core CPU'}, 2,000 genes", fontsize=9)
        fig.tight_layout()
        fig.savefig(args.out + ".png", dpi=110)
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
