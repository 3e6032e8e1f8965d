"""Side-by-side benchmark of spatial-domain tools on any folder of labelled datasets (issue #3).

    bash benchmarks/peers/setup.sh                          # once: the peers' own venv
    benchmarks/peers/.venv/bin/python benchmarks/peers/run.py \
        --data ../shared/data --manifest benchmarks/peers/manifest_shared.json \
        --out benchmarks/results/peers [--seeds 5 | --ten-seeds] [--tools ...] [--datasets ...]

The manifest (JSON) lists datasets: {"name", "files": [paths relative to --data], "label": obs
column}; several files = slices of one integration task (also scored for batch mixing). Each
run (tool x dataset x seed) is its own process (tools.py) with a time limit; a crash or a
timeout is recorded and the rest go on. Every representation is clustered by the SAME k-means
(true k = number of labels, 10 starts, seeded); a tool's own recommended clustering, where it
has one, is scored separately. Metrics on labelled spots only: ARI, NMI, clustering accuracy;
with several slices also batch ASW, iLISI and graph connectivity (scIB definitions) and the
cell-type (domain) ASW, and scIB's biology / batch / overall aggregates. Tools that correct a batch
effect after the fact (`banksy_harmony`, `spotscape_harmony`: Harmony on the representation;
`spotscape_mnn`: spotscape's own correction, ``spotscape.tl.mnn_correct``) run only on datasets of
several slices. `spotscape_run`: the representation ``spotscape run`` writes, which trains a second time
where its expression-coherence check fails (``pipeline.run``). Results accumulate in OUT.json (rerunning skips finished runs), and
OUT.md / OUT.png are rebuilt from it; a crashed run is retried on the next call, and ``--rerun
TOOL ...`` runs those tools again where finished (after a change to them).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TOOLS = ["pca", "pca_spatial", "banksy", "spagcn", "spaceflow", "stagate", "graphst", "spotscape",
         "banksy_harmony", "spotscape_harmony", "spotscape_mnn", "spotscape_run"]
MULTI_ONLY = {"banksy_harmony", "spotscape_harmony", "spotscape_mnn"}  # a batch correction: run on several slices only


# ------------------------------------------------------------------------------ metrics
def integration_scores(emb, batch, label, seed):
    """scIB: batch ASW (1 - |silhouette of batch| within each label, averaged), iLISI (median,
    scaled to [0, 1] by the number of batches), graph connectivity (per label, the largest
    connected share of a 15-NN graph), all by the package's ``spotscape.metrics.batch_mixing``
    (the same code a user's ``spotscape run`` reports), and the label ASW ((silhouette + 1) / 2)."""
    from sklearn.metrics import silhouette_score

    from spotscape.metrics import batch_mixing

    mix = batch_mixing(emb, batch, label, seed=seed)
    rng = np.random.default_rng(seed)
    sub = rng.choice(len(label), min(len(label), 10000), replace=False)
    label_asw = (silhouette_score(emb[sub], label[sub]) + 1) / 2
    return {"batch_asw": mix["batch_asw"], "ilisi": mix["ilisi"], "graph_conn": mix["graph_conn"],
            "label_asw": float(label_asw)}


def score(emb, own, truth, batch, k, seed):
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score as ari
    from sklearn.metrics import normalized_mutual_info_score as nmi

    from spotscape.metrics import clustering_accuracy as accuracy  # the package's Hungarian-matched accuracy

    m = truth != ""
    pred = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(emb)
    out = {"kmeans": {"ari": ari(truth[m], pred[m]), "nmi": nmi(truth[m], pred[m]), "acc": accuracy(truth[m], pred[m])}}
    if own is not None:
        out["own"] = {"ari": ari(truth[m], own[m]), "nmi": nmi(truth[m], own[m]), "acc": accuracy(truth[m], own[m])}
    if len(np.unique(batch)) > 1:
        out["integration"] = integration_scores(emb[m], batch[m], truth[m], seed)
    return out


# ------------------------------------------------------------------------------ runs
def load_truth(files, key):
    import anndata as ad

    truth, batch = [], []
    for i, f in enumerate(files):
        a = ad.read_h5ad(f, backed="r")
        if key not in a.obs:
            sys.exit(f"{f}: no obs column {key!r} (the manifest's label); columns: {list(a.obs.columns)}")
        t = a.obs[key].astype(object).where(a.obs[key].notna(), "").astype(str).to_numpy()
        truth.append(t)
        batch.append(np.full(len(t), i))
        a.file.close()
    return np.concatenate(truth), np.concatenate(batch)


def run_one(tool, files, k, seed, timeout):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "out.npz")
        cmd = [sys.executable, str(HERE / "tools.py"), tool, "--files", *map(str, files), "--k", str(k),
               "--seed", str(seed), "--out", str(out)]
        t0 = time.perf_counter()
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "TMPDIR": tmp})
        except subprocess.TimeoutExpired:
            return {"status": "timeout", "wall_s": timeout}
        wall = time.perf_counter() - t0
        if res.returncode != 0 or not out.exists():
            return {"status": "crash", "wall_s": wall, "error": (res.stderr or res.stdout)[-2000:]}
        z = np.load(out, allow_pickle=False)
        return {"status": "ok", "wall_s": wall, "tool_s": float(z["seconds"]), "peak_mb": float(z["peak_mb"]),
                "emb": z["emb"], "own": z["own"] if "own" in z else None,
                "own_method": str(z["own_method"]) if "own_method" in z else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="folder the manifest's file paths are relative to")
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--out", default=str(HERE.parent / "results" / "peers"), help="OUT.json / OUT.md / OUT.png")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--ten-seeds", action="store_true", help="10 seeds")
    ap.add_argument("--tools", nargs="+", default=TOOLS, choices=TOOLS)
    ap.add_argument("--datasets", nargs="+", help="names from the manifest (default: all)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per run before it is recorded as a timeout")
    ap.add_argument("--rerun", nargs="+", default=[], choices=TOOLS, metavar="TOOL",
                    help="run these tools again where finished (after a change to them): each new run replaces the old row "
                         "of its dataset and seed as it lands")
    ap.add_argument("--report-only", action="store_true", help="rebuild OUT.md / OUT.png from OUT.json")
    args = ap.parse_args()
    seeds = 10 if args.ten_seeds else args.seeds
    manifest = json.loads(Path(args.manifest).read_text())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").exists() else []
    sets = [d for d in manifest["datasets"] if not args.datasets or d["name"] in args.datasets]
    missing = [str(Path(args.data, f)) for d in sets for f in d["files"] if not Path(args.data, f).exists()]
    if missing:
        sys.exit(f"missing dataset files: {missing}")
    if not args.report_only:
        for d in sets:
            files = [Path(args.data, f) for f in d["files"]]
            truth, batch = load_truth(files, d["label"])
            k = len(np.unique(truth[truth != ""]))
            for seed in range(seeds):
                for tool in args.tools:
                    if tool in MULTI_ONLY and len(files) < 2:
                        continue
                    done = [r for r in rows if r["dataset"] == d["name"] and r["tool"] == tool and r["seed"] == seed]
                    if any(r["status"] != "crash" for r in done) and tool not in args.rerun:
                        continue  # finished or timed out before; a crash is tried again
                    rows = [r for r in rows if not any(r is x for x in done)]
                    r = run_one(tool, files, k, seed, args.timeout)
                    if r["status"] == "ok":
                        r.update(score(r.pop("emb"), r.pop("own"), truth, batch, k, seed))
                    row = {"dataset": d["name"], "tool": tool, "seed": seed, "k": k, "n_spots": int(len(truth)),
                           "n_slices": len(files), **r}
                    rows.append(row)
                    print(json.dumps({a: b for a, b in row.items() if a != "error"}), flush=True)
                    tmp = out.with_suffix(".json.part")
                    tmp.write_text(json.dumps(rows, indent=1))
                    os.replace(tmp, out.with_suffix(".json"))
    report(rows, out)


# ------------------------------------------------------------------------------ report
def ms(v):
    return f"{np.mean(v):.3f} ± {np.std(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"


def scib_aggregates(r):
    """(biology, batch, overall) as the scIB benchmark aggregates them (Luecken et al. 2022), from one
    run's metrics without the min-max scaling across methods, so a row does not depend on the others."""
    i, k = r["integration"], r["kmeans"]
    bio = float(np.mean([k["ari"], k["nmi"], i["label_asw"]]))
    batch = float(np.mean([i["batch_asw"], i["ilisi"], i["graph_conn"]]))
    return bio, batch, 0.6 * bio + 0.4 * batch


def report(rows, out):
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    tools = [t for t in TOOLS if any(r["tool"] == t for r in rows)]
    single = {d: all(r["n_slices"] == 1 for r in rows if r["dataset"] == d) for d in datasets}
    singles = [d for d in datasets if single[d]]
    # mean ARI of every (dataset, tool) with finished runs: the best per dataset is bold; with several
    # single-slice datasets one more column holds each tool's mean of them (tools run on all of them)
    mean_ari = {}
    for r in rows:
        if r["status"] == "ok":
            mean_ari.setdefault((r["dataset"], r["tool"]), []).append(r["kmeans"]["ari"])
    mean_ari = {key: float(np.mean(v)) for key, v in mean_ari.items()}
    best = {d: max((v for (d2, _), v in mean_ari.items() if d2 == d), default=None) for d in datasets}
    overall = {t: float(np.mean([mean_ari[(d, t)] for d in singles])) for t in tools
               if len(singles) > 1 and all((d, t) in mean_ari for d in singles)}
    extra = f" mean of the {len(singles)} single-slice datasets |" if len(singles) > 1 else ""
    lines = ["Same clustering for every tool: k-means on its representation, true k, 10 starts. "
             "Mean ± sd over seeds (n = runs that finished); best mean per dataset in bold.", "",
             "| tool | " + " | ".join(datasets) + " |" + extra, "|---|" + "---|" * len(datasets) + ("---|" if extra else "")]

    def cell(d, t, metric="ari", which="kmeans"):
        rs = [r for r in rows if r["dataset"] == d and r["tool"] == t]
        if not rs:
            return "– (one slice)" if t in MULTI_ONLY and single[d] else "not run"
        ok = [r for r in rs if r["status"] == "ok" and which in r]
        bad = [r["status"] for r in rs if r["status"] != "ok"]
        if not ok:
            return ", ".join(sorted(set(bad))) if bad else "—"
        v = [r[which][metric] for r in ok]
        s = ms(v) + f" (n={len(v)})"
        if which == "kmeans" and metric == "ari" and best[d] is not None and np.isclose(np.mean(v), best[d]):
            s = f"**{s}**"
        return s + (f", {len(bad)} {'/'.join(sorted(set(bad)))}" if bad else "")

    for t in tools:
        row = f"| {t} | " + " | ".join(cell(d, t) for d in datasets) + " |"
        if extra:
            v = f"{overall[t]:.3f}" if t in overall else "–"
            row += f" **{v}** |" if t in overall and np.isclose(overall[t], max(overall.values())) else f" {v} |"
        lines.append(row)
    for title, metric in (("NMI", "nmi"), ("clustering accuracy", "acc")):
        lines += ["", f"{title} (same k-means):", "", "| tool | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
        lines += [f"| {t} | " + " | ".join(cell(d, t, metric) for d in datasets) + " |" for t in tools]
    lines += ["", "Each tool's own recommended clustering (ARI), where it has one:", "",
              "| tool | method | " + " | ".join(datasets) + " |", "|---|---|" + "---|" * len(datasets)]
    for t in tools:
        meth = next((r["own_method"] for r in rows if r["tool"] == t and r.get("own_method")), None)
        if meth:
            lines.append(f"| {t} | {meth} | " + " | ".join(cell(d, t, "ari", "own") for d in datasets) + " |")
    lines += ["", "Wall time per run (s, median; whole process incl. reading and imports) and peak memory (MB, median):", "",
              "| tool | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
    for t in tools:
        cells = []
        for d in datasets:
            ok = [r for r in rows if r["dataset"] == d and r["tool"] == t and r["status"] == "ok"]
            cells.append(f"{np.median([r['wall_s'] for r in ok]):.0f} s / {np.median([r['peak_mb'] for r in ok]):.0f} MB" if ok else "—")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    integ = [d for d in datasets if any("integration" in r for r in rows if r["dataset"] == d)]
    for d in integ:
        lines += ["", f"Integration of {d} (same k-means; batch mixing: higher = better mixed; scIB aggregates, "
                  "unscaled: biology = mean of ARI, NMI and domain ASW, batch = mean of batch ASW, iLISI and graph "
                  "connectivity, overall = 0.6 biology + 0.4 batch):", "",
                  "| tool | ARI | batch ASW | iLISI | graph connectivity | domain ASW | biology | batch | overall |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for t in tools:
            ok = [r for r in rows if r["dataset"] == d and r["tool"] == t and "integration" in r]
            if ok:
                agg = [scib_aggregates(r) for r in ok]
                lines.append(f"| {t} | {ms([r['kmeans']['ari'] for r in ok])} | " + " | ".join(
                    ms([r["integration"][m] for r in ok]) for m in ("batch_asw", "ilisi", "graph_conn", "label_asw"))
                    + " | " + " | ".join(ms([a[i] for a in agg]) for i in range(3)) + " |")
    fails = [r for r in rows if r["status"] != "ok"]
    if fails:
        lines += ["", "Runs that did not finish:", ""]
        lines += [f"- {r['tool']} on {r['dataset']} seed {r['seed']}: {r['status']}"
                  + (f" ({r['error'].strip().splitlines()[-1][:200]})" if r.get("error") else "") for r in fails]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    chart(rows, datasets, tools, out.with_suffix(".png"))


def chart(rows, datasets, tools, path):
    """ARI under the same k-means per dataset and tool (bars, sd as whiskers; a run that never
    finished is marked with its status where its bar would be) and, for each dataset of several
    slices, batch ASW against iLISI per tool (up and right: better mixed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def style(j):  # ten colours, then the same ten hatched: every tool told apart
        return {"color": plt.cm.tab10(j % 10), "hatch": ("", "//", "..", "xx")[j // 10 % 4], "edgecolor": "white"}

    integ = [d for d in datasets if any("integration" in r for r in rows if r["dataset"] == d)]
    fig, axes = plt.subplots(1, 1 + len(integ), figsize=(1.2 + 1.3 * len(datasets) + 4.2 * len(integ), 3.6), squeeze=False,
                             gridspec_kw={"width_ratios": [1.2 + 1.3 * len(datasets)] + [4.2] * len(integ)})
    ax = axes[0, 0]
    w = 0.8 / max(1, len(tools))
    for j, t in enumerate(tools):
        for i, d in enumerate(datasets):
            rs = [r for r in rows if r["dataset"] == d and r["tool"] == t]
            v = [r["kmeans"]["ari"] for r in rs if r["status"] == "ok"]
            if v:
                ax.bar(i + j * w, np.mean(v), w, yerr=np.std(v) if len(v) > 1 else None, **style(j),
                       label=t if t not in ax.get_legend_handles_labels()[1] else None)
            elif rs:  # ran, never finished: say so where the bar would be
                ax.text(i + j * w, 0.01, "x " + "/".join(sorted({r["status"] for r in rs})), rotation=90, ha="center",
                        va="bottom", fontsize=6, color=style(j)["color"])
    ax.set_xticks(np.arange(len(datasets)) + 0.4 - w / 2, datasets)
    ax.set_ylabel("ARI (same k-means)")
    ax.set_ylim(0, 1.4 * max([b.get_height() for b in ax.patches] + [0.1]))  # room for the legend above the bars
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), fontsize=7, ncol=max(2, min(4, len(datasets))), frameon=False, loc="upper left")
    for ax, d in zip(axes[0, 1:], integ):
        for j, t in enumerate(tools):
            ok = [r["integration"] for r in rows if r["dataset"] == d and r["tool"] == t and "integration" in r]
            if ok:
                x, y = [np.array([m[key] for m in ok]) for key in ("ilisi", "batch_asw")]
                gc = np.mean([m["graph_conn"] for m in ok])
                ax.errorbar(x.mean(), y.mean(), xerr=x.std() if len(ok) > 1 else None, yerr=y.std() if len(ok) > 1 else None,
                            fmt="osD^"[j // 10 % 4], color=style(j)["color"], ms=5, capsize=2)
                ax.annotate(f"{t} ({gc:.3f})", (x.mean(), y.mean()), textcoords="offset points", xytext=(4, 3), fontsize=6)
        ax.margins(x=0.25, y=0.1)
        ax.set_xlabel("iLISI (higher: slices mixed)")
        ax.set_ylabel("batch ASW")
        ax.set_title(f"{d}: batch mixing (graph connectivity in brackets)", fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".part.png")
    fig.savefig(tmp, dpi=130)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
