"""Does the expression-coherence check (``spotscape.metrics.expression_coherence``, written by
``spotscape run`` into metrics.json, with a warning below ``COHERENCE_WARN``) tell a failed run from
a good one, without labels? For every labelled dataset in ../shared/data: spotscape's runs
(``pipeline.run``, the code behind ``spotscape run``) with their ARI and coherence, and the
coherence of the annotation itself; on the olfactory bulb, where spotscape fails (README, "Held
out") and ``spotscape run`` therefore trains a second time with ``edge_drop=0`` (recorded: the first
training and the run kept), also with ``edge_drop=0`` given; the simulated demo tissue, whose spots are very noisy; and the
four DLPFC slices integrated (one coherence per slice); and, without labels, the four Stahl
breast-cancer sections integrated (Spatial Transcriptomics like the bulb, about 258 spots each).

    python benchmarks/coherence.py            # 7 minutes on this 2-core machine
    python benchmarks/coherence.py --scale 100000   # only: the check's time on a simulated tissue
    python benchmarks/coherence.py --forms          # only: other forms of the check (seed 0), how it was chosen

Writes benchmarks/results/coherence{,_scale,_forms}.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import anndata as ad
import numpy as np

from spotscape import pipeline, pp
from spotscape.datasets import simulate_tissue
from spotscape.metrics import COHERENCE_WARN, expression_coherence

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
DLPFC = [(s, f"dlpfc_subject3_banksy/{s}.h5ad", "layer_guess") for s in ("151673", "151674", "151675", "151676")]
BREAST = "stahl2016_mob_and_bc_layers/breast_cancer_layers1-4_aligned.h5ad"
SINGLE = [("olfactory bulb", "stahl2016_mob_and_bc_layers/mouse_olfactory_bulb_mOB_262spots.h5ad", "layer"), *DLPFC,
          ("STARmap", "starmap_visp_BY3_1k/starmap_BY3_1k_1207cells_labeled.h5ad", "domain_banksy_smoothed_manual"),
          ("151510 (500 genes)", "dlpfc_151510_drsc500/151510_500genes.h5ad", "layer_guess")]


def truth_coherence(a: ad.AnnData, key: str, genes: list[str], seed: int) -> float:
    lab = a.obs[key].astype(str).to_numpy()
    keep = np.flatnonzero(lab != "nan")
    return expression_coherence(pp.normalize(a, genes)[keep], lab[keep], np.asarray(a.obsm["spatial"])[keep, :2], seed=seed)


def one_run(slices, names, key, seed, **options) -> dict:
    """``spotscape run`` on ``slices`` (``pipeline.run``): ARI and coherence per slice, whether it warned,
    the domains, and the model's genes."""
    with tempfile.TemporaryDirectory() as tmp:
        m = pipeline.run(slices, names, f"{tmp}/out", label_key=key, seed=seed, progress=False, **options)
        domains = ad.read_h5ad(f"{tmp}/out/result.h5ad").obs["spotscape_domain"].to_numpy()
    first = m.get("retried", {}).get("first", {})  # the first training, where the run was trained twice
    return {"ari": {n: m["slices"][n]["ari"] if key else None for n in names}, "coherence": m["expression_coherence"],
            "warned": bool(m.get("warnings")), "domains": domains, "genes": pp.highly_variable_genes(slices, 5000),
            "first_ari": first.get("ari", {}), "first_coherence": first.get("expression_coherence", {})}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--seeds", type=int, default=2, help="seeds per dataset (the bulb: --bulb-seeds)")
    ap.add_argument("--bulb-seeds", type=int, default=5)
    ap.add_argument("--out", default=str(HERE / "results" / "coherence"))
    ap.add_argument("--scale", type=int, default=None, help="only time the check on a simulated tissue of this many spots")
    ap.add_argument("--forms", action="store_true", help="only other forms of the check: without the spatial averaging, "
                    "with 19 neighbours (seed 0 on every dataset)")
    args = ap.parse_args()
    if args.scale:
        scale(args.scale, Path(args.out + "_scale"))
    elif args.forms:
        forms(args.data, Path(args.out + "_forms"))
    else:
        everything(args)


def write(out: Path, rows: list, lines: list) -> None:
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(rows, indent=1))
    tmp.replace(out.with_suffix(".json"))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def scale(n: int, out: Path) -> None:
    import time

    a = simulate_tissue(n_spots=n, seed=0)
    x = pp.normalize(a, list(a.var_names))
    seconds = []
    for _ in range(3):  # this machine is noisy: the median of 3
        t0 = time.perf_counter()
        c = expression_coherence(x, a.obs["domain"].to_numpy(), a.obsm["spatial"])
        seconds.append(time.perf_counter() - t0)
    row = {"spots": a.n_obs, "genes": a.n_vars, "nonzero": int(x.nnz), "coherence_of_truth": c, "seconds": seconds}
    write(out, [row], [f"{row['spots']} simulated spots x {row['genes']} genes ({row['nonzero']} non-zero values): "
                       f"coherence of the true domains {c:.3f} in {np.median(seconds):.1f} s (median of 3: "
                       + ", ".join(f"{t:.1f}" for t in seconds) + ")"])


def forms(data: str, out: Path) -> None:
    """Seed 0 on every dataset: the check with each spot's own PCs (no averaging), with the 7
    neighbours it uses, and with 19; for spotscape's domains and for the annotation."""
    rows = []
    cases = [(d, p, k, {}) for d, p, k in SINGLE] + [("olfactory bulb", SINGLE[0][1], SINGLE[0][2], {"edge_drop": 0.0})]
    for dataset, path, key, options in cases:
        a = ad.read_h5ad(Path(data, path))
        r = one_run([a], [dataset], key, 0, retry=False, **options)  # one training: the bulb's failed domains scored
        rows.append(form_row(a, dataset, "edge_drop 0" if options else "default, one training", key, r))
    for seed in range(2):
        a = simulate_tissue(n_spots=3000, seed=seed)
        rows.append(form_row(a, f"simulated demo (seed {seed})", "default", "domain", one_run([a], ["demo"], "domain", seed)))
    lines = ["The check in other forms (seed 0; spotscape's domains / the annotation): each spot's own PCs, the 7 "
             "nearest spots' mean (the check as shipped), the 19 nearest spots' mean.", "",
             "| data | setting | own PCs | 7 neighbours (shipped) | 19 neighbours |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['setting']} | " + " | ".join(
            f"{r['domains'][str(nn)]:.2f} / {r['annotation'][str(nn)]:.2f}" for nn in (1, 7, 19)) + " |")
    write(out, rows, lines)


def form_row(a, dataset, setting, key, run) -> dict:
    x, xy, dom = pp.normalize(a, run["genes"]), np.asarray(a.obsm["spatial"]), run["domains"]
    lab = a.obs[key].astype(str).to_numpy()
    keep = np.flatnonzero(lab != "nan")
    row = {"dataset": dataset, "setting": setting, "domains": {}, "annotation": {}}
    for nn in (1, 7, 19):
        row["domains"][str(nn)] = expression_coherence(x, dom, xy, n_neighbors=nn)
        row["annotation"][str(nn)] = expression_coherence(x[keep], lab[keep], xy[keep], n_neighbors=nn)
    print(json.dumps(row), flush=True)
    return row


def span(values) -> str:
    """min-max of the values given (to 2 decimals; one figure when they agree), '–' for none."""
    v = [x for x in values if x is not None]
    if not v:
        return "–"
    lo, hi = f"{min(v):.2f}", f"{max(v):.2f}"
    return lo if lo == hi else f"{lo}-{hi}"


def everything(args) -> None:
    rows = []

    def record(dataset, setting, seed, r, truth):
        for name in r["coherence"]:
            row = {"dataset": dataset, "slice": name, "setting": setting, "seed": seed, "ari": r["ari"][name],
                   "coherence": r["coherence"][name], "warned": r["warned"], "truth_coherence": truth.get(name),
                   "retried": bool(r["first_coherence"]), "first_ari": r["first_ari"].get(name),
                   "first_coherence": r["first_coherence"].get(name)}
            rows.append(row)
            print(json.dumps(row), flush=True)

    for dataset, path, key in SINGLE:
        f = Path(args.data, path)
        if not f.exists():
            raise SystemExit(f"{f} is missing: this benchmark reads ../shared/data (see its SOURCE.md files).")
        a = ad.read_h5ad(f)
        settings = [("default", {})] + ([("edge_drop 0", {"edge_drop": 0.0})] if dataset == "olfactory bulb" else [])
        for setting, options in settings:
            for seed in range(args.bulb_seeds if dataset == "olfactory bulb" else args.seeds):
                r = one_run([a], [dataset], key, seed, **options)
                record(dataset, setting, seed, r, {dataset: truth_coherence(a, key, r["genes"], seed)})
    for seed in range(args.seeds):
        a = simulate_tissue(n_spots=3000, seed=seed)
        r = one_run([a], ["demo"], "domain", seed)
        record("simulated demo", "default", seed, r, {"demo": truth_coherence(a, "domain", r["genes"], seed)})
    slices = [ad.read_h5ad(Path(args.data, p)) for _, p, _ in DLPFC]
    names = [n for n, _, _ in DLPFC]
    r = one_run(slices, names, "layer_guess", 0)
    record("4 DLPFC slices integrated", "default", 0, r,
           {n: truth_coherence(s, "layer_guess", r["genes"], 0) for n, s in zip(names, slices)})
    # no labels: the Stahl breast-cancer sections (Spatial Transcriptomics, about 258 spots each, like the bulb)
    bc = ad.read_h5ad(Path(args.data, BREAST))
    names = sorted(bc.obs["slice"].astype(str).unique())
    r = one_run([bc[bc.obs["slice"].astype(str) == n].copy() for n in names], names, None, 0)
    record("Stahl breast cancer, 4 sections integrated (no labels)", "default", 0, r, {})

    lines = [f"Expression coherence (`spotscape.metrics.expression_coherence`; below {COHERENCE_WARN} `spotscape run` trains "
             "again with edge_drop 0, keeps the more coherent run, and warns if it is still below) of spotscape's domains "
             "and of the annotation, with spotscape's ARI; min-max over seeds (and slices). Where runs were trained "
             "twice, the first training (edge_drop 0.2, what `--no-retry` keeps) has a row of its own.", "",
             f"| data | setting | runs | ARI | coherence of the domains | coherence of the annotation | runs below {COHERENCE_WARN} "
             "| runs trained twice | runs warned |", "|---|---|---|---|---|---|---|---|---|"]
    groups = dict.fromkeys((r["dataset"], r["setting"]) for r in rows)
    for dataset, setting in groups:
        rs = [r for r in rows if r["dataset"] == dataset and r["setting"] == setting]
        runs, twice = len({r["seed"] for r in rs}), len({r["seed"] for r in rs if r["retried"]})
        firsts = [r for r in rs if r["retried"]]
        if firsts:
            lines.append(f"| {dataset} | {setting}: first training | {twice} | {span([r['first_ari'] for r in firsts])} | "
                         f"{span([r['first_coherence'] for r in firsts])} | {span([r['truth_coherence'] for r in firsts])} | "
                         f"{len({r['seed'] for r in firsts if (r['first_coherence'] or 0) < COHERENCE_WARN})} of {twice} | – | – |")
        below = len({r["seed"] for r in rs if r["coherence"] is not None and r["coherence"] < COHERENCE_WARN})
        lines.append(f"| {dataset} | {setting}{': run kept' if firsts else ''} | {runs} | {span([r['ari'] for r in rs])} | "
                     f"{span([r['coherence'] for r in rs])} | {span([r['truth_coherence'] for r in rs])} | {below} of {runs} | "
                     f"{twice} of {runs} | {len({r['seed'] for r in rs if r['warned']})} of {runs} |")
    write(Path(args.out), rows, lines)


if __name__ == "__main__":
    main()
