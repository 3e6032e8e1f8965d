"""GPU check (issue #5): the CUDA path end to end on the demo tissue, against the CPU, on a machine
with a CUDA GPU. Each line is one fit (own seed, same data):

  cpu full batch / cuda full batch (twice: same seed, same result?) / cuda mini-batch /
  cuda two slices (similarity scaling + prototypes) / cuda save -> load -> same embedding /
  cuda denoise (decoder) shape and finiteness.

    python benchmarks/gpu_check.py --out benchmarks/results/gpu_check

Writes OUT.json and prints a table. Exits 1 if any check fails.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import anndata as ad
import numpy as np
import torch

import spotscape as ss
from spotscape.metrics import cluster_scores


def fit(adata, device, seed=0, **kw):
    a = adata.copy()
    t0 = time.perf_counter()
    m = ss.Spotscape(a, seed=seed, device=device)
    m.fit(progress=False, **kw)
    z = m.embed()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    ss.tl.domains(a, n_domains=5, seed=seed)
    return m, a, z, secs, cluster_scores(a.obs["domain"], a.obs["spotscape_domain"])["ari"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-spots", type=int, default=3000)
    ap.add_argument("--out", default="benchmarks/results/gpu_check")
    ap.add_argument("--device", default="cuda", help="cuda; cpu only to dry-run this script")
    args = ap.parse_args()
    dev = args.device
    assert dev == "cpu" or torch.cuda.is_available(), "no CUDA GPU visible to torch"
    gpu = torch.cuda.get_device_name() if dev == "cuda" else "CPU (dry run)"
    tissue = ss.datasets.simulate_tissue(n_spots=args.n_spots, seed=0)
    rows, ok = [], True

    def row(name, secs, ari, note="", passed=True):
        nonlocal ok
        ok &= bool(passed)
        rows.append({"check": name, "seconds": secs, "ari": ari, "note": note, "passed": bool(passed)})
        print(f"{name:28s} {secs:7.1f} s  ARI {ari:.3f}  {'ok' if passed else 'FAILED'}  {note}", flush=True)

    _, _, z_cpu, s, ari_cpu = fit(tissue, "cpu")
    row("cpu full batch", s, ari_cpu)
    _, _, _, s_warm, _ = fit(tissue, dev)  # CUDA context, kernels and cuSPARSE handles: first-use costs
    m1, a1, z1, s1, ari1 = fit(tissue, dev)
    _, _, z2, _, ari2 = fit(tissue, dev)
    same = float(np.abs(z1 - z2).max())
    row("cuda full batch", s1, ari1, f"first call {s_warm:.1f} s with CUDA start-up; ARI vs cpu {ari1 - ari_cpu:+.3f}",
        abs(ari1 - ari_cpu) <= 0.05)
    row("cuda same seed again", s1, ari2, f"max |z1 - z2| = {same:.2e}", same == 0.0)
    _, _, _, s, ari = fit(tissue, dev, batch_size=512)
    row("cuda mini-batch 512", s, ari, f"vs full batch {ari - ari1:+.3f}", ari >= ari1 - 0.05)

    # two slices: the second the same simulated layout at 1.5x library size (a batch effect); same
    # seed, so a domain has the same marker genes in both
    b = ss.datasets.simulate_tissue(n_spots=args.n_spots, seed=0, mean_library=2250.0)
    j = ad.concat([tissue, b], label="slice", keys=["a", "b"], index_unique="-")
    t0 = time.perf_counter()
    m2 = ss.Spotscape(j, slice_key="slice", seed=0, device=dev, n_domains=5)
    m2.fit(progress=False)
    m2.embed()
    secs = time.perf_counter() - t0
    ss.tl.domains(j, n_domains=5, seed=0)
    ari_two = cluster_scores(j.obs["domain"], j.obs["spotscape_domain"])["ari"]
    row("cuda two slices", secs, ari_two, "similarity scaling + prototypes", ari_two >= ari1 - 0.1)

    with tempfile.TemporaryDirectory() as tmp:
        m1.save(f"{tmp}/m.pt")
        back = ss.Spotscape.load(f"{tmp}/m.pt", adata=tissue.copy(), device=dev)
        zb = back.get_latent_representation()
    d = float(np.abs(zb - z1).max())
    row("cuda save -> load", 0.0, ari1, f"max |z - z_loaded| = {d:.2e}", d < 1e-5)
    t0 = time.perf_counter()
    den = ss.tl.denoise(m1, a1.copy())
    x = den.layers["spotscape_denoised"]
    row("cuda denoise", time.perf_counter() - t0, ari1, f"layer {x.shape}", np.isfinite(np.asarray(x)).all())

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps({"gpu": gpu, "torch": torch.__version__, "n_spots": args.n_spots,
                                                    "rows": rows, "all_passed": ok}, indent=1))
    print(f"{gpu}, torch {torch.__version__}: {'all checks passed' if ok else 'SOME CHECKS FAILED'}")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
