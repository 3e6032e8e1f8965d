"""Command line: a thin layer over the Python API (``spotscape --help``)."""
from __future__ import annotations

import argparse
import os
import sys
import time

from ._validate import SpotscapeInputError


def _batch_size(value: str):
    if value in ("auto", "full"):
        return "auto" if value == "auto" else None
    try:
        return int(value)
    except ValueError:
        raise SpotscapeInputError(f"--batch-size must be auto, full or a number of spots, got {value!r}.") from None


def _init_distributed(device: str) -> int:
    """Under torchrun (WORLD_SIZE > 1): join the process group (NCCL on GPUs, gloo on CPUs); returns the rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0
    import torch
    import torch.distributed as dist

    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda:
        local, n_gpus = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        if local >= n_gpus:
            from ._validate import SpotscapeInputError

            raise SpotscapeInputError(f"torchrun started {os.environ.get('LOCAL_WORLD_SIZE', local + 1)} processes on this machine but it has "
                                      f"{n_gpus} GPU(s): use --nproc-per-node {max(n_gpus, 1)}, or --device cpu for CPU processes.")
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank()


def _run(args) -> int:
    from . import io, pipeline
    from ._validate import check_writable

    check_writable(args.out)
    batch_size = _batch_size(args.batch_size)
    rank = _init_distributed(args.device)
    t0 = time.perf_counter()
    slices = [io.read(p, transpose=args.transpose, bin_size=args.bin_size) for p in args.inputs]
    names = [os.path.basename(p.split(",")[0].rstrip("/")).removesuffix(".gz").removesuffix(".gem").removesuffix(".h5ad")
             for p in args.inputs]
    if args.slice_key:
        if len(slices) != 1:
            raise SpotscapeInputError("--slice-key splits one input into slices; give a single INPUT with it.")
        from .core import split_slices

        slices, names, _ = split_slices(slices[0], args.slice_key)
        slices = [s.copy() for s in slices]
    timings = {"read_s": time.perf_counter() - t0}
    m = pipeline.run(
        slices, names, args.out, n_domains=args.n_domains, label_key=args.label_key, seed=args.seed, epochs=args.epochs,
        lr=args.lr, device=args.device, counts=not args.normalized, n_top_genes=args.n_top_genes, published=args.published, raw_z=args.raw_z,
        w_pcl=args.w_pcl, edge_drop=args.edge_drop, slice_norm={"auto": None, "on": True, "off": False}[args.slice_norm], progress=not args.quiet, save_model=args.save_model, timings=timings, batch_size=batch_size,
        retry=not args.no_retry,
    )
    if rank == 0:
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
    if "expression_coherence" in m:
        print("  expression coherence (1 = domains as coherent as clusters of the smoothed expression): "
              + "  ".join(f"{name} {'-' if c is None else f'{c:.2f}'}" for name, c in m["expression_coherence"].items()))
    if "retried" in m:
        from .report import retried_note

        print(f"spotscape: note: {retried_note(m['retried'])}", file=sys.stderr)
    for w in m.get("warnings", []):
        print(f"spotscape: warning: {w}", file=sys.stderr)
    from .metrics import MIXING_METRICS

    for key, mix in m.get("mixing", {}).items():
        shown = [f"{name} {mix[k]:.3f}" for k, name in MIXING_METRICS.items() if k in mix]
        if shown:
            print(f"  slice mixing, {key}: " + "  ".join(shown))


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


def _read_one(path: str):
    from . import io

    return io.read(path)


def _task_input(args, out_suffixes=(".h5ad",)):
    """Check the output file (and --plot) before any work, then read INPUT."""
    from ._validate import check_output_file

    check_output_file(args.out, out_suffixes)
    if getattr(args, "plot", None):
        check_output_file(args.plot, (".png", ".pdf", ".svg"))
    return _read_one(args.input)


def _need_obs(a, key, flag: str) -> None:
    if key and key not in a.obs:
        raise SpotscapeInputError(f"{flag} {key!r} is not a column of obs; columns: {list(a.obs.columns)[:15]}.")


def _domains(args) -> int:
    from . import io, tl
    from .metrics import cluster_scores

    a = _task_input(args)
    _need_obs(a, args.label_key, "--label-key")
    slice_key = args.slice_key
    if slice_key is None and args.refine and "slice" in a.obs:  # a `spotscape run` result: vote within each slice
        slice_key = "slice"
    tl.domains(a, n_domains=args.n_domains, use_rep=args.use_rep, method=args.method, refine=args.refine,
               slice_key=slice_key, seed=args.seed)
    info = a.uns["spotscape"]
    est = f" (estimated: {info['n_domains_evidence']})" if args.n_domains is None and "n_domains_evidence" in info else ""
    print(f"{info['n_domains']} domains by {args.method}{est} -> obs['spotscape_domain']")
    if args.label_key:
        for key in ["spotscape_domain"] + (["spotscape_domain_refined"] if args.refine else []):
            s = cluster_scores(a.obs[args.label_key], a.obs[key])
            print(f"  {key}: ARI {s['ari']:.3f}  NMI {s['nmi']:.3f}  CA {s['ca']:.3f}")
    io.write_h5ad(a, args.out)
    return 0


def _trajectory(args) -> int:
    from . import io, pl, tl

    a = _task_input(args)
    r = tl.trajectory(a, groups=args.groups, root=args.root, use_rep=args.use_rep, order=args.order, seed=args.seed)
    print(f"pseudotime from {r['root']} -> obs['spotscape_pseudotime']; PAGA -> uns['spotscape_paga']")
    print(r["connectivities"].round(2).to_string())
    if "spearman" in r:
        print(f"Spearman(pseudotime, order) = {r['spearman']:.3f}")
    if args.plot:
        pl.paga(a, path=args.plot)
    io.write_h5ad(a, args.out)
    return 0


def _impute(args) -> int:
    import numpy as np

    from . import io, tl
    from .core import Spotscape

    a = _task_input(args)
    if args.model:
        if args.holdout:
            raise SpotscapeInputError("--holdout trains a model on the masked data; it cannot be combined with --model.")
        model = Spotscape.load(args.model, adata=a, device=args.device)
    else:
        original = a
        if args.holdout:
            a, rows, cols = tl.mask_nonzero(a, args.holdout, seed=args.seed)
        model = Spotscape(a, slice_key=args.slice_key, counts=not args.normalized, seed=args.seed, device=args.device)
        model.fit(epochs=args.epochs, progress=not args.quiet)
    out = tl.denoise(model)
    if args.holdout:
        x = out.layers["spotscape_input"]
        groups = out.obs[args.slice_key].to_numpy() if args.slice_key else None
        preds = {"spotscape": out.layers["spotscape_denoised"],
                 "neighbour_mean": tl.neighbour_mean(x, np.asarray(out.obsm["spatial"]), groups),
                 "pca_30": tl.pca_reconstruction(x, 30, seed=args.seed)}
        scores = tl.imputation_scores(original, a, rows, cols, preds, model.genes)
        out.uns["spotscape"]["imputation"] = scores
        print(f"hidden {args.holdout:.0%} of non-zero counts ({scores['n_hidden']} on the model's genes):")
        for k in preds:
            print(f"  {k:15s} RMSE {scores[k]['rmse']:.3f}  L1 {scores[k]['l1']:.3f}")
    io.write_h5ad(out, args.out)
    print(f"{out.n_obs} spots x {out.n_vars} genes -> layers['spotscape_denoised'] in {args.out}")
    return 0


def _align(args) -> int:
    from . import io, pl, tl

    a = _task_input(args)
    _need_obs(a, args.slice_key, "--slice-key")
    _need_obs(a, args.label_key, "--label-key")
    names = [str(c) for c in a.obs[args.slice_key].astype("category").cat.categories]
    ref = 0 if args.reference is None else (names.index(args.reference) if args.reference in names else -999)
    if ref == -999:
        raise SpotscapeInputError(f"--reference {args.reference!r} is not a slice; slices: {', '.join(names)}.")
    res = tl.align(a, slice_key=args.slice_key, use_rep=args.use_rep, reference=ref, scale=args.scale,
                   refine=None if args.refine == "none" else args.refine, seed=args.seed)
    for name, r in res.items():
        print(f"  {name}: angle {r['angle']:.1f} deg, translation ({r['translation'][0]:.1f}, {r['translation'][1]:.1f}), "
              f"scale {r['scale']:.3f}, {r['n_inliers']}/{r['n_matches']} matches kept ({r['method']}"
              + (f"; refined onto {r['refined_onto']})" if r.get("refined_onto") else ")"))
    if args.label_key:
        key = args.slice_key
        for s1, s2 in zip(names[:-1], names[1:]):
            _, ari = tl.label_transfer(a[a.obs[key].astype(str) == s1], a[a.obs[key].astype(str) == s2], args.label_key, use_rep=args.use_rep)
            print(f"  label transfer {s1} -> {s2}: ARI {ari:.3f}")
    if args.plot:
        pl.aligned(a, slice_key=args.slice_key, path=args.plot)
    io.write_h5ad(a, args.out)
    print(f"aligned coordinates -> obsm['spatial_aligned'] in {args.out}")
    return 0


def _de(args) -> int:
    from . import pl, tl

    a = _task_input(args, (".csv", ".tsv"))
    table = tl.condition_de(a, args.condition_key, domain_key=args.domain_key, reference=args.reference, min_spots=args.min_spots)
    sep = "\t" if args.out.endswith(".tsv") else ","
    tmp = f"{args.out}.tmp-{os.getpid()}"
    try:
        table.to_csv(tmp, sep=sep, index=False)
        os.replace(tmp, args.out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    sig = table[table["qval"] < args.alpha]
    print(f"{len(sig)} of {len(table)} gene x domain tests with q < {args.alpha} -> {args.out}")
    for d, n in sig.groupby("domain", sort=False, observed=True).size().items():
        print(f"  domain {d}: {n}")
    if args.plot:
        labels = a.var["gene_symbol"] if "gene_symbol" in a.var else None
        pl.de_dotplot(table, path=args.plot, gene_labels=labels)
    return 0


def _report(args) -> int:
    from .report import write_report

    path = write_report(args.dir)
    print(f"report -> {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spotscape", description="Spotscape: spatial domains and multi-slice integration.")
    p.add_argument("--version", action="version", version=f"spotscape {__import__('spotscape').__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="embed one slice (or integrate several) and find spatial domains",
                       description="INPUT: an .h5ad file, a Space Ranger, Xenium, CosMx or MERSCOPE output folder, a Stereo-seq "
                                   ".gem(.gz) file, or COUNTS.csv,COORDS.csv. "
                                   "Several INPUTs are integrated into one representation.")
    r.add_argument("inputs", nargs="+", metavar="INPUT")
    r.add_argument("--out", required=True, help="output folder (result.h5ad, metrics.json, domains.png)")
    r.add_argument("--n-domains", type=int, help="number of domains (default: number of labels with --label-key, else estimated)")
    r.add_argument("--label-key", help="obs column with true domains: adds ARI/NMI/CA/silhouette to metrics.json")
    r.add_argument("--slice-key", help="obs column that splits a single INPUT into several slices")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--epochs", type=int, help="training epochs (default: the measured fast schedule)")
    r.add_argument("--lr", type=float, help="learning rate (default: the measured fast schedule)")
    r.add_argument("--published", action="store_true", help="the published schedule: 1,000 epochs at lr 1e-4 (one slice) / 5e-4, w_pcl 0.01, the published BatchNorm, and similarity scaling in mini-batches")
    r.add_argument("--w-pcl", type=float, help="weight of the prototype loss, several slices (default: 0.02, measured with "
                                                "per-slice BatchNorm; the published 0.01 with --published; README)")
    r.add_argument("--edge-drop", type=float, help="share of graph edges each augmented view drops (default: the published "
                                                   "0.2; 0 for domains one or two spots thick, e.g. ST olfactory bulb; README)")
    r.add_argument("--no-retry", action="store_true", help="keep the first training even where its domains do not follow "
                   "the expression (default: train once more with --edge-drop 0 there and keep the more coherent run, unless "
                   "--edge-drop or --published is given or several processes train; README)")
    r.add_argument("--slice-norm", default="auto", choices=["auto", "on", "off"],
                   help="encoder BatchNorm with each slice's own statistics (auto: on for several slices, off with --published)")
    r.add_argument("--raw-z", action="store_true", help="embed and cluster the raw z, as the published code does (default: unit-length z)")
    r.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    r.add_argument("--n-top-genes", type=int, default=5000)
    r.add_argument("--batch-size", default="auto", help="auto (mini-batches above 50,000 spots), full, or spots per mini-batch")
    r.add_argument("--normalized", action="store_true", help="X is already normalised and log-transformed (not raw counts)")
    r.add_argument("--transpose", action="store_true", help="CSV counts table is genes x spots")
    r.add_argument("--bin-size", type=int, default=50, help="Stereo-seq GEM input: bin side in DNBs (default 50)")
    r.add_argument("--save-model", action="store_true", help="also write model.pt (Spotscape.load)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_run)

    def task(name, help_, func, input_help="an .h5ad file written by `spotscape run` (result.h5ad) or any AnnData with the representation"):
        t = sub.add_parser(name, help=help_, description=help_)
        t.add_argument("input", metavar="INPUT", help=input_help)
        t.add_argument("--seed", type=int, default=0)
        t.set_defaults(func=func)
        return t

    t = task("domains", "cluster the representation into spatial domains (k-means, GMM or Leiden; k estimated when not given)", _domains)
    t.add_argument("--out", required=True, help="output .h5ad (the input plus obs['spotscape_domain'])")
    t.add_argument("--n-domains", type=int, help="number of domains (default: estimated: Leiden communities at resolution 0.2 "
                   "holding >= 2%% of the spots)")
    t.add_argument("--method", default="kmeans", choices=["kmeans", "gmm", "leiden"])
    t.add_argument("--refine", action="store_true", help="also write obs['spotscape_domain_refined'] (spatial majority vote)")
    t.add_argument("--slice-key", default=None, help="obs column naming the slice, so that refinement stays within a slice (default: "
                   "'slice' where obs has it, as `spotscape run` writes)")
    t.add_argument("--label-key", help="obs column with true domains: print ARI/NMI/CA")
    t.add_argument("--use-rep", default="X_spotscape")

    t = task("trajectory", "PAGA between groups and diffusion pseudotime on the representation", _trajectory)
    t.add_argument("--out", required=True, help="output .h5ad (obs['spotscape_pseudotime'], uns['spotscape_paga'])")
    t.add_argument("--groups", default="spotscape_domain", help="obs column of groups (default: spotscape_domain)")
    t.add_argument("--root", help="root group (default: the first in sorted order)")
    t.add_argument("--order", nargs="+", help="the expected order of the groups: reports Spearman(pseudotime, order)")
    t.add_argument("--plot", help="PAGA graph image (.png)")
    t.add_argument("--use-rep", default="X_spotscape")

    t = task("impute", "denoised / imputed expression from the decoder (trains a model unless --model is given)", _impute,
             input_help="an .h5ad file with raw counts and obsm['spatial']")
    t.add_argument("--out", required=True, help="output .h5ad: the model's genes, layers['spotscape_denoised']")
    t.add_argument("--model", help="a model saved by `spotscape run --save-model` (model.pt)")
    t.add_argument("--holdout", type=float, help="benchmark: hide this fraction of non-zero counts, train, score RMSE/L1 there")
    t.add_argument("--slice-key", help="obs column naming the slice")
    t.add_argument("--epochs", type=int)
    t.add_argument("--normalized", action="store_true", help="X is already normalised and log-transformed")
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    t.add_argument("--quiet", action="store_true")

    t = task("align", "register slices rigidly onto a reference through the representation", _align,
             input_help="an .h5ad file with several slices embedded together (result.h5ad of `spotscape run A B ...`)")
    t.add_argument("--out", required=True, help="output .h5ad (obsm['spatial_aligned'])")
    t.add_argument("--slice-key", default="slice", help="obs column naming the slice (default: slice)")
    t.add_argument("--reference", help="reference slice name (default: the first)")
    t.add_argument("--scale", action="store_true", help="also fit a scale factor")
    t.add_argument("--refine", choices=["neighbour", "reference", "none"], default="none",
                   help="a finer registration after the first fit: each slice onto the slice next to it in the "
                        "slices' order, towards the reference (neighbour: serial sections of one shape), onto the "
                        "reference itself, or none (default; it hurt where one slice holds tissue the other lacks)")
    t.add_argument("--label-key", help="obs column with labels: print label-transfer ARI between consecutive slices")
    t.add_argument("--plot", help="overlay of the aligned slices (.png)")
    t.add_argument("--use-rep", default="X_spotscape")

    t = task("de", "differential expression between conditions within each domain (Wilcoxon, Benjamini-Hochberg)", _de,
             input_help="an .h5ad file with raw counts, the condition and the domain of each spot (e.g. result.h5ad)")
    t.add_argument("--out", required=True, help="output table (.csv or .tsv): domain, gene, logfoldchange, pval, qval, ...")
    t.add_argument("--condition-key", required=True, help="obs column naming each spot's condition")
    t.add_argument("--domain-key", default="spotscape_domain")
    t.add_argument("--reference", help="the control condition (default: the first in sorted order)")
    t.add_argument("--min-spots", type=int, default=10)
    t.add_argument("--alpha", type=float, default=0.05, help="q threshold for the printed summary")
    t.add_argument("--plot", help="dot plot of the top genes per domain (.png)")

    t = sub.add_parser("report", help="one HTML page with the figures and metrics of a `spotscape run` folder")
    t.add_argument("dir", metavar="DIR")
    t.set_defaults(func=_report)

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
