"""Downstream tasks on DLPFC (issue #4): domains per method and the estimated k, trajectory,
imputation, label transfer between consecutive slices, and differential expression between two
slices. One process, stage by stage; embeddings are cached in benchmarks/results/cache/ so a stage
can be rerun alone.

    python benchmarks/downstream.py                 # every stage (about 12 min on 2 cores)
    python benchmarks/downstream.py --stages domains trajectory

Writes benchmarks/results/downstream.json, downstream.md and figures in benchmarks/results/figures/.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import anndata as ad
import pandas as pd

import spotscape as ss
from spotscape.metrics import cluster_scores

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("SPOTSCAPE_DATA", HERE.parents[1] / "shared" / "data")) / "dlpfc_subject3_banksy"
SLICES = ["151673", "151674", "151675", "151676"]
LABEL = "layer_guess"
ORDER = ["L1", "L2", "L3", "L4", "L5", "L6", "WM"]
RESULTS = HERE / "results"
CACHE = RESULTS / "cache"
FIGS = RESULTS / "figures"
STAGES = ["domains", "trajectory", "impute", "integrated", "de"]


def read(s):
    return ad.read_h5ad(DATA / f"{s}.h5ad")


def embedded(name, slices, seed, **kw):
    """The slice(s) with obsm['X_spotscape'], from the cache or trained now."""
    path = CACHE / f"{name}_seed{seed}.h5ad"
    if path.exists():
        return ad.read_h5ad(path), None
    adatas = [read(s) for s in slices]
    a = adatas[0] if len(adatas) == 1 else ad.concat(adatas, label="slice", keys=slices, index_unique="-", merge="first")
    t0 = time.perf_counter()
    m = ss.Spotscape(a, slice_key="slice" if len(slices) > 1 else None, seed=seed, **kw)
    m.fit(progress=False)
    m.embed()
    a.uns["fit_seconds"] = time.perf_counter() - t0
    CACHE.mkdir(parents=True, exist_ok=True)
    a.write_h5ad(path)
    return a, m


def stage_domains(seed):
    out = {}
    for s in SLICES:
        a, _ = embedded(s, [s], seed)
        k_true = a.obs[LABEL].dropna().nunique()
        row = {"k_true": int(k_true), "fit_seconds": float(a.uns["fit_seconds"])}
        for method in ("kmeans", "gmm", "leiden"):
            ss.tl.domains(a, n_domains=k_true, method=method, refine=True, seed=seed)
            row[method] = cluster_scores(a.obs[LABEL], a.obs["spotscape_domain"])["ari"]
            row[method + "_refined"] = cluster_scores(a.obs[LABEL], a.obs["spotscape_domain_refined"])["ari"]
        ss.tl.domains(a, n_domains=None, seed=seed)
        info = a.uns["spotscape"]
        row["k_estimated"] = int(info["n_domains_estimated"])
        row["k_evidence"] = info["n_domains_evidence"]
        row["kmeans_estimated_k"] = cluster_scores(a.obs[LABEL], a.obs["spotscape_domain"])["ari"]
        out[s] = row
        print(s, {k: v for k, v in row.items() if k != "k_evidence"}, flush=True)
    return out


def stage_trajectory(seed):
    a, _ = embedded("151673", ["151673"], seed)
    r = ss.tl.trajectory(a, groups=LABEL, root="L1", order=ORDER)
    FIGS.mkdir(parents=True, exist_ok=True)
    ss.pl.paga(a, path=FIGS / "paga_151673.png")
    out = {"spearman": r["spearman"], "group_median_pseudotime": dict(zip(ORDER, r["group_median_pseudotime"])),
           "paga_chain": [float(r["connectivities"].iloc[i, i + 1]) for i in range(len(ORDER) - 1)]}
    print("trajectory", out, flush=True)
    return out


def stage_impute(seed):
    a = read("151673")
    masked, rows, cols = ss.tl.mask_nonzero(a, 0.1, seed=seed)
    t0 = time.perf_counter()
    m = ss.Spotscape(masked, seed=seed)
    m.fit(progress=False)
    d = ss.tl.denoise(m)
    fit_s = time.perf_counter() - t0
    x = d.layers["spotscape_input"]
    preds = {"spotscape": d.layers["spotscape_denoised"],
             "neighbour_mean": ss.tl.neighbour_mean(x, masked.obsm["spatial"]),
             "pca_30": ss.tl.pca_reconstruction(x, 30, seed=seed)}
    out = ss.tl.imputation_scores(a, masked, rows, cols, preds, m.genes)
    out["fit_seconds"] = fit_s
    print("impute", out, flush=True)
    return out


def stage_integrated(seed):
    a, _ = embedded("integrated", SLICES, seed, n_domains=7)
    ss.tl.domains(a, n_domains=7, seed=seed)
    out = {"pooled_ari": cluster_scores(a.obs[LABEL], a.obs["spotscape_domain"])["ari"], "label_transfer": {}}
    parts = {s: a[a.obs["slice"] == s] for s in SLICES}
    for s1, s2 in zip(SLICES[:-1], SLICES[1:]):
        for src, dst in ((s1, s2), (s2, s1)):
            _, ari = ss.tl.label_transfer(parts[src], parts[dst], LABEL)
            out["label_transfer"][f"{src}->{dst}"] = ari
    FIGS.mkdir(parents=True, exist_ok=True)
    ss.pl.umap(a, color=["spotscape_domain", "slice"], path=FIGS / "umap_integrated.png", seed=seed)
    print("integrated", out, flush=True)
    return out


def stage_de(seed):
    a, _ = embedded("integrated", SLICES, seed, n_domains=7)
    ss.tl.domains(a, n_domains=7, seed=seed)
    pair = a[a.obs["slice"].isin(["151673", "151674"])].copy()
    t0 = time.perf_counter()
    table = ss.tl.condition_de(pair, condition_key="slice", domain_key="spotscape_domain", reference="151673")
    sig = table[table["qval"] < 0.05]
    out = {"seconds": time.perf_counter() - t0, "tests": int(len(table)), "significant": int(len(sig)),
           "per_domain": {str(d): int((sig["domain"].astype(str) == str(d)).sum()) for d in pd.unique(table["domain"])}}
    FIGS.mkdir(parents=True, exist_ok=True)
    symbols = pair.var["gene_symbol"] if "gene_symbol" in pair.var else None
    ss.pl.de_dotplot(table, n_genes=4, path=FIGS / "de_151674_vs_151673.png", gene_labels=symbols)
    print("de", out, flush=True)
    return out


def markdown(res) -> str:
    lines = ["# Downstream tasks on DLPFC (donor 3), `python benchmarks/downstream.py`", ""]
    if "domains" in res:
        lines += ["## Domains: ARI per method (true k) and the estimated k", "",
                  "| slice | k-means | k-means + refine | GMM (tied) | GMM + refine | Leiden | Leiden + refine | true k | estimated k | ARI at estimated k |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for s, r in res["domains"].items():
            lines.append(f"| {s} | {r['kmeans']:.3f} | {r['kmeans_refined']:.3f} | {r['gmm']:.3f} | {r['gmm_refined']:.3f} | "
                         f"{r['leiden']:.3f} | {r['leiden_refined']:.3f} | {r['k_true']} | {r['k_estimated']} | {r['kmeans_estimated_k']:.3f} |")
        lines.append("")
    if "trajectory" in res:
        t = res["trajectory"]
        lines += ["## Trajectory (151673, groups = annotated layers, root L1)", "",
                  f"Spearman(pseudotime, layer order) = {t['spearman']:.3f}", "",
                  "| layer | " + " | ".join(ORDER) + " |", "|---" * (len(ORDER) + 1) + "|",
                  "| median pseudotime | " + " | ".join(f"{t['group_median_pseudotime'][g]:.2f}" for g in ORDER) + " |",
                  "", "PAGA connectivity between consecutive layers: " + ", ".join(f"{v:.2f}" for v in t["paga_chain"]), ""]
    if "impute" in res:
        r = res["impute"]
        lines += ["## Imputation (151673, 10 % of non-zero counts hidden, scored at the hidden entries)", "",
                  f"{r['n_hidden']} hidden entries on the model's genes; log-normalised scale.", "",
                  "| method | RMSE | L1 |", "|---|---|---|"]
        for k in ("spotscape", "neighbour_mean", "pca_30"):
            lines.append(f"| {k} | {r[k]['rmse']:.3f} | {r[k]['l1']:.3f} |")
        lines.append("")
    if "integrated" in res:
        r = res["integrated"]
        lines += ["## Label transfer between consecutive slices (the four integrated)", "",
                  f"Pooled ARI of the integrated run: {r['pooled_ari']:.3f}", "", "| source -> target | label-transfer ARI |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in r["label_transfer"].items()]
        lines.append("")
    if "de" in res:
        r = res["de"]
        lines += ["## Differential expression, 151674 vs 151673 within integrated domains", "",
                  f"{r['significant']} of {r['tests']} gene x domain tests with q < 0.05 ({r['seconds']:.1f} s).", "",
                  "| domain | significant genes |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in r["per_domain"].items()]
        lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stages", nargs="*", default=STAGES, choices=STAGES)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    path = RESULTS / "downstream.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    for st in args.stages:
        res[st] = globals()[f"stage_{st}"](args.seed)
        path.write_text(json.dumps(res, indent=1))
    (RESULTS / "downstream.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
