"""Alignment side by side: spotscape's `tl.align` against PASTE (issue #3), inside the peers' venv.

    benchmarks/peers/.venv/bin/python benchmarks/peers/align.py \
        --file ../shared/data/stahl2016_mob_and_bc_layers/breast_cancer_layers1-4_aligned.h5ad \
        --slice-key slice --seeds 5 --out benchmarks/results/peers_align
    benchmarks/peers/.venv/bin/python benchmarks/peers/align.py --file ../shared/data/dlpfc_subject3_banksy/151673.h5ad \
        --split-rows array_row --slice-key section --seeds 5 --out benchmarks/results/peers_align_split   # held out

Input: several slices whose coordinates are already in one frame (the truth). Each seed moves
every slice but the first by a random rotation (0-360 degrees) and shift (up to 8 spot
spacings); each tool then aligns the moved slices. Both outputs are put in the truth's frame by
the one rigid map that brings the first slice back onto itself (PASTE re-centres everything),
and scored by the median distance of every other slice's spots to their true place, in spot
spacings. PASTE: consecutive pairwise alignment (alpha 0.1, norm=True: without it PASTE's
alignment collapses on coordinates in pixels), then `stack_slices_pairwise`. Each tool run is
timed in this process (the data are small). spotscape's three rows come from one training:
`tl.align` as by default (the first fit alone: matches in the representation and RANSAC, or the
field search), refined onto the neighbouring section (`refine="neighbour"`), and refined onto the
first section (`refine="reference"`).
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

from spotscape.tl._align import spot_spacing as spacing  # median nearest-spot distance

warnings.filterwarnings("ignore")


def rot(deg):
    th = np.deg2rad(deg)
    return np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])


def rigid(src, dst):
    """Least-squares rotation + translation taking src onto dst (rows correspond)."""
    cs, cd = src.mean(0), dst.mean(0)
    u, _, vt = np.linalg.svd((src - cs).T @ (dst - cd))
    r = (u @ vt).T
    if np.linalg.det(r) < 0:
        u[:, -1] *= -1
        r = (u @ vt).T
    return lambda x: (x - cs) @ r.T + cd


def errors(aligned, truth, sl, slices, unit):
    """Median error per moved slice (spacings), after mapping the first slice back onto its truth."""
    first = sl == slices[0]
    fix = rigid(aligned[first], truth[first])
    out = fix(aligned)
    return [float(np.median(np.linalg.norm(out[sl == s] - truth[sl == s], axis=1)) / unit) for s in slices[1:]]


def run_spotscape(a, key, seed):
    """The three spotscape rows from one training: {tool: (aligned coordinates, seconds incl. the training)}."""
    import spotscape

    t0 = time.perf_counter()
    m = spotscape.Spotscape(a, slice_key=key, seed=seed, device="cpu")
    m.fit(progress=False)
    m.embed()
    trained, out = time.perf_counter() - t0, {}
    for tool, refine in (("spotscape", None), ("spotscape_refined", "neighbour"), ("spotscape_refined_onto_first", "reference")):
        t1 = time.perf_counter()
        spotscape.tl.align(a, slice_key=key, refine=refine)
        out[tool] = (np.asarray(a.obsm["spatial_aligned"]).copy(), trained + time.perf_counter() - t1)
    return out


def run_paste(a, key, slices):
    import paste

    parts = [a[a.obs[key] == s].copy() for s in slices]
    pis = [paste.pairwise_align(parts[i], parts[i + 1], alpha=0.1, norm=True) for i in range(len(parts) - 1)]
    pis = [p[0] if isinstance(p, tuple) else p for p in pis]
    new = paste.stack_slices_pairwise(parts, pis)
    new = new[0] if isinstance(new, tuple) else new
    out = np.zeros((a.n_obs, 2))
    for s, b in zip(slices, new):
        out[(a.obs[key] == s).to_numpy()] = b.obsm["spatial"]
    return out


def main():
    import anndata as ad

    ap = argparse.ArgumentParser()
    ap.add_argument("--file", required=True)
    ap.add_argument("--slice-key", required=True)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results" / "peers_align"))
    ap.add_argument("--split-rows", metavar="COLUMN",
                    help="one slice made into two interleaved sections, its spots on even and on odd values of obs[COLUMN] "
                         "(e.g. array_row): a registration whose truth is exact; --slice-key names the new column")
    args = ap.parse_args()
    base = ad.read_h5ad(args.file)
    if args.split_rows:
        base.obs[args.slice_key] = np.where(base.obs[args.split_rows].to_numpy() % 2 == 0, "even", "odd")
    base.obs[args.slice_key] = base.obs[args.slice_key].astype(str)
    slices = list(dict.fromkeys(base.obs[args.slice_key]))
    sl = base.obs[args.slice_key].to_numpy()
    truth = np.asarray(base.obsm["spatial"], dtype=float)[:, :2]
    unit = spacing(truth[sl == slices[0]])
    rows = []
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        moved = truth.copy()
        for s in slices[1:]:
            q = sl == s
            moved[q] = truth[q] @ rot(rng.uniform(0, 360)).T + rng.uniform(-8, 8, 2) * unit
        for tool in ("spotscape", "paste"):
            a = base.copy()
            a.obsm["spatial"] = moved.copy()
            t0 = time.perf_counter()
            try:
                if tool == "spotscape":
                    outs = run_spotscape(a, args.slice_key, seed)
                else:
                    outs = {"paste": (run_paste(a, args.slice_key, slices), None)}
                new = [{"tool": name, "seed": seed, "seconds": time.perf_counter() - t0 if sec is None else sec,
                        "median_error_spacings": errors(out, truth, sl, slices, unit)} for name, (out, sec) in outs.items()]
            except Exception as e:  # recorded, the rest go on
                new = [{"tool": tool, "seed": seed, "error": repr(e)[-500:]}]
            for row in new:
                rows.append(row)
                print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"file": args.file, "slices": slices, "runs": rows}, indent=1))
    split = f" (split into two sections by the parity of {args.split_rows})" if args.split_rows else ""
    lines = [f"Alignment of {Path(args.file).name}{split}: slices {', '.join(slices[1:])} moved at random (rotation 0-360 deg, "
             f"shift up to 8 spacings), {args.seeds} seeds; median error of each moved slice's spots, in spot spacings "
             "(mean over seeds; in brackets: seeds with error < 1 spacing).", "",
             "| tool | " + " | ".join(f"slice {s}" for s in slices[1:]) + " | seconds (median) |",
             "|---|" + "---|" * len(slices)]
    for tool in ("spotscape", "spotscape_refined", "spotscape_refined_onto_first", "paste"):
        ok = [r for r in rows if r["tool"] == tool and "error" not in r]
        if not ok:
            lines.append(f"| {tool} | " + " | ".join("failed" for _ in slices[1:]) + " | – |")
            continue
        e = np.array([r["median_error_spacings"] for r in ok])
        cells = [f"{e[:, j].mean():.2f} ({(e[:, j] < 1).sum()}/{len(ok)})" for j in range(e.shape[1])]
        lines.append(f"| {tool} | " + " | ".join(cells) + f" | {np.median([r['seconds'] for r in ok]):.1f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
