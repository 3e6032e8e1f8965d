"""Command line: a thin layer over the Python API (``spotscape --help``)."""
from __future__ import annotations

import argparse
import os
import sys
import time

from ._validate import SpotscapeInputError


def _run(args) -> int:
    from . import io, pipeline
    from ._validate import check_writable

    check_writable(args.out)
    t0 = time.perf_counter()
    slices = [io.read(p, transpose=args.transpose) if "," in p else io.read(p) for p in args.inputs]
    names = [os.path.basename(p.split(",")[0].rstrip("/")).removesuffix(".h5ad") for p in args.inputs]
    if args.slice_key:
        if len(slices) != 1:
            raise SpotscapeInputError("--slice-key splits one input into slices; give a single INPUT with it.")
        from .core import split_slices

        slices, names, _ = split_slices(slices[0], args.slice_key)
        slices = [s.copy() for s in slices]
    timings = {"read_s": time.perf_counter() - t0}
    m = pipeline.run(
        slices, names, args.out, n_domains=args.n_domains, label_key=args.label_key, seed=args.seed, epochs=args.epochs,
        lr=args.lr, device=args.device, counts=not args.normalized, n_top_genes=args.n_top_genes, published=args.published,
        progress=not args.quiet, save_model=args.save_model, timings=timings,
    )
    _summary(m, args.out)
    return 0


def _summary(m: dict, out: str) -> None:
    print(f"spotscape: {m['spots']} spots, {m['genes_model']} genes, {m['n_domains']} domains, "
          f"{m['seconds_total']:.1f} s, peak memory {m['peak_memory_mb']:.0f} MB -> {out}")
    if "pooled" in m:
        for name, s in m["slices"].items():
            if s["ari"] is None:
                print(f"  {name}: no labelled spots")
                continue
            print(f"  {name}: ARI {s['ari']:.3f}  NMI {s['nmi']:.3f}  CA {s['ca']:.3f}")
        if len(m["slices"]) > 1 and m["pooled"]["ari"] is not None:
            p = m["pooled"]
            print(f"  pooled: ARI {p['ari']:.3f}  NMI {p['nmi']:.3f}  CA {p['ca']:.3f}")


def _demo(args) -> int:
    from . import pipeline
    from ._validate import check_writable
    from .datasets import simulate_tissue

    check_writable(args.out)
    adata = simulate_tissue(n_spots=args.n_spots, seed=args.seed)
    print(f"demo: simulated layered tissue, {adata.n_obs} spots x {adata.n_vars} genes, "
          f"{adata.obs['domain'].nunique()} domains (Visium-like hexagonal grid)")
    m = pipeline.run([adata], ["demo"], args.out, label_key="domain", seed=args.seed, epochs=args.epochs,
                     device=args.device, progress=not args.quiet)
    floor = pipeline.pca_kmeans_ari(adata, "domain", m["n_domains"], seed=args.seed)
    m["pca_kmeans_ari"] = floor
    pipeline.write_json(os.path.join(args.out, "metrics.json"), m)
    _summary(m, args.out)
    print(f"ARI {m['pooled']['ari']:.3f} (PCA + k-means on the same data: {floor:.3f})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spotscape", description="Spotscape: spatial domains and multi-slice integration.")
    p.add_argument("--version", action="version", version=f"spotscape {__import__('spotscape').__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="embed one slice (or integrate several) and find spatial domains",
                       description="INPUT: an .h5ad file, a Space Ranger output folder, or COUNTS.csv,COORDS.csv. "
                                   "Several INPUTs are integrated into one representation.")
    r.add_argument("inputs", nargs="+", metavar="INPUT")
    r.add_argument("--out", required=True, help="output folder (result.h5ad, metrics.json, domains.png)")
    r.add_argument("--n-domains", type=int, help="number of domains (default: number of labels with --label-key, else estimated)")
    r.add_argument("--label-key", help="obs column with true domains: adds ARI/NMI/CA/silhouette to metrics.json")
    r.add_argument("--slice-key", help="obs column that splits a single INPUT into several slices")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--epochs", type=int, help="training epochs (default: the measured fast schedule)")
    r.add_argument("--lr", type=float, help="learning rate (default: the measured fast schedule)")
    r.add_argument("--published", action="store_true", help="the published schedule: 1,000 epochs at lr 1e-4 (one slice) / 5e-4")
    r.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    r.add_argument("--n-top-genes", type=int, default=5000)
    r.add_argument("--normalized", action="store_true", help="X is already normalised and log-transformed (not raw counts)")
    r.add_argument("--transpose", action="store_true", help="CSV counts table is genes x spots")
    r.add_argument("--save-model", action="store_true", help="also write model.pt (Spotscape.load)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_run)

    d = sub.add_parser("demo", help="run on the built-in simulated tissue (no download) and print the ARI")
    d.add_argument("--out", required=True)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--n-spots", type=int, default=3000)
    d.add_argument("--epochs", type=int)
    d.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=_demo)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SpotscapeInputError as e:
        print(f"spotscape: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
