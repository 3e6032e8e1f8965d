"""Corrections of the four-slice DLPFC embedding after training, scored as the peers benchmark
scores (``peers/run.py``: the same k-means, scIB batch mixing): Harmony at several diversity
penalties (when harmonypy is installed: the peers venv has it), a fastMNN-like correction with a
fixed kernel bandwidth (every pair's vector, kernel over all pairs), and the package's
``spotscape.tl.mnn_correct`` (bandwidth from the embedding) at several settings. How the package's
correction and its defaults were chosen (README, "Side by side"; lines in
``benchmarks/results/integration_variants.log``).

    benchmarks/peers/.venv/bin/python benchmarks/slice_correction.py --seed 0 --data ../shared/data
    benchmarks/peers/.venv/bin/python benchmarks/slice_correction.py --seed 0 --orders   # merge orders, twice
    benchmarks/peers/.venv/bin/python benchmarks/slice_correction.py --seed 0 --asw      # where batch ASW is lost
    benchmarks/peers/.venv/bin/python benchmarks/slice_correction.py --seed 0 --asw --peers spagcn banksy
    benchmarks/peers/.venv/bin/python benchmarks/slice_correction.py --seed 0 --auto     # two passes; merge order from the data
    benchmarks/peers/.venv/bin/python benchmarks/slice_correction.py --seed 0 --smooth   # each spot's move averaged over its own slice's nearest spots
    benchmarks/peers/.venv/bin/python benchmarks/slice_correction.py --seed 0 --oracle   # what batch ASW asks for

The embedding is trained once per seed (the peers runner's ``t_spotscape``) and kept in
``--cache`` (default: the system's temporary folder).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers"))
SLICES = ("151673", "151674", "151675", "151676")


def fixed_bandwidth_mnn(z, groups, k, sigma):
    """Slices merged in order onto the first; each spot moves by the kernel-weighted mean of every
    mutual-nearest-neighbour pair's vector, weights exp(-(d^2 - min d^2) / sigma) over the squared
    distance to the pair's spot in its own slice (the exploratory form of tl.mnn_correct)."""
    from spotscape.tl import mutual_nearest_neighbors
    from spotscape.tl._align import _unit

    z = _unit(np.asarray(z, dtype=np.float64))
    merged = groups == groups[0]
    for s in list(dict.fromkeys(groups.tolist()))[1:]:
        cur = groups == s
        a, b = z[merged], z[cur]
        i, j = mutual_nearest_neighbors(a, b, k).T
        d2 = 2.0 - 2.0 * (b @ b[j].T)
        w = np.exp(-(d2 - d2.min(1, keepdims=True)) / sigma)
        w /= w.sum(1, keepdims=True)
        z[cur] = _unit(b + w @ (a[i] - b[j]))
        merged |= cur
    return z


def batch_asw_by_domain(z, truth, batch, show, peers, files, seed):
    """scIB's batch ASW is the mean over domains of mean(1 - |s|), s the silhouette of a spot's slice
    among the spots of its domain. Printed per domain: that score, each slice's mean s (> 0: the
    slice's spots sit apart from the others'), RMS distance to its own centroid (spread) and share
    of its spots nearer another domain's centroid (all slices' spots of that domain pooled); then
    corrections that move more than the local one: a broad fixed-bandwidth MNN first, and a
    location-and-scale match per k-means cluster and slice (ComBat's idea) after it. Last, each
    slice trained alone (same seed): its domains' spread, to tell the slices' own from the joint
    training's."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_samples

    from spotscape.tl import mnn_correct

    def per_domain(name, emb):
        print(f"{name}: domain, batch ASW, then per slice: mean silhouette / spread / share of the spots nearer "
              "another domain's centroid (slices pooled)", flush=True)
        domains = np.unique(truth[truth != ""])
        centroids = np.stack([emb[truth == d].mean(0) for d in domains])
        nearest = domains[np.argmin(((emb[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)]
        for lab in domains:
            m = truth == lab
            s = silhouette_samples(emb[m], batch[m])
            cols = []
            for b in np.unique(batch):
                mb = m & (batch == b)
                x = emb[mb]
                cols.append(f"{s[batch[m] == b].mean():+.3f} / {np.sqrt(((x - x.mean(0)) ** 2).sum(1).mean()):.3f} / "
                            f"{np.mean(nearest[mb] != lab):.3f}")
            print(f"  {lab:4} {np.mean(1 - np.abs(s)):.3f}  " + "  ".join(cols), flush=True)

    corrected = mnn_correct(z, batch, passes=1, smooth=1)  # as run in the fourteenth session, before two passes were the default
    for name, emb in peers.items():
        show(name, emb)
        per_domain(name, emb)
    per_domain("plain", z)
    per_domain("tl.mnn_correct", corrected)
    two = mnn_correct(z, batch, smooth=1)  # as run before smooth=5 became the default
    show("tl.mnn_correct two passes (the default since the fifteenth session)", two)
    per_domain("tl.mnn_correct two passes", two)
    for sigma in (0.1, 1.0):
        show(f"mnn k20 sigma{sigma:g} then tl.mnn_correct", mnn_correct(fixed_bandwidth_mnn(z, batch, 20, sigma), batch, passes=1, smooth=1))
    for k in (7, 15):
        cluster = KMeans(k, n_init=4, random_state=0).fit_predict(corrected)
        show(f"tl.mnn_correct then location and scale per k-means cluster (k={k}) and slice", match_moments(corrected, cluster, batch))
    import anndata as ad

    from spotscape import Spotscape

    for f in files:
        a = ad.read_h5ad(f)
        emb = Spotscape(a, seed=seed, device="cpu").fit(progress=False).embed()
        lab = a.obs["layer_guess"].astype(str).to_numpy()
        spread = {d: np.sqrt(((emb[lab == d] - emb[lab == d].mean(0)) ** 2).sum(1).mean()) for d in np.unique(lab[lab != "nan"])}
        print(f"{f.stem} trained alone, spread by domain: " + " ".join(f"{d} {v:.3f}" for d, v in spread.items()), flush=True)


def match_moments(emb, groups, batch, loc=True, scale=True):
    """Within each group, move each slice's spots so that their centroid (``loc``) and RMS spread
    (``scale``) equal those of the group's spots of all slices pooled (ComBat's idea), then back to
    unit length."""
    from spotscape.tl._align import _unit

    out = np.asarray(emb, dtype=np.float64).copy()
    for g in np.unique(groups):
        m = groups == g
        centre = emb[m].mean(0)
        spread = np.sqrt(((emb[m] - centre) ** 2).sum(1).mean())
        for b in np.unique(batch):
            mb = m & (batch == b)
            if mb.sum() < 5:
                continue
            x = emb[mb]
            own = x.mean(0)
            out[mb] = (centre if loc else own) + (x - own) * (spread / np.sqrt(((x - own) ** 2).sum(1).mean()) if scale else 1.0)
    return _unit(out)


def oracle(z, truth, batch, show):
    """What batch ASW asks for: each slice's centroid and spread matched within each ANNOTATED
    domain (a diagnostic that reads the answer, never a method), against the same matching within
    the clusters of k-means on the embedding, which a method could use."""
    from sklearn.cluster import KMeans

    from spotscape.tl import mnn_correct

    two = mnn_correct(z, batch, smooth=1)  # as run before smooth=5 became the default
    show("tl.mnn_correct two passes", two)
    for name, emb in (("plain", z), ("two passes", two)):
        for what, loc, scale in (("centroid and spread", True, True), ("centroid", True, False), ("spread", False, True)):
            show(f"ORACLE {name}, {what} matched by annotated domain", match_moments(emb, truth, batch, loc, scale))
    for k in (7, 10, 15, 30):
        cluster = KMeans(k, n_init=4, random_state=0).fit_predict(two)
        show(f"two passes, spread matched by k-means cluster (k={k})", match_moments(two, cluster, batch, loc=False))
        show(f"two passes, centroid and spread matched by k-means cluster (k={k})", match_moments(two, cluster, batch))


def connectivity_by_domain(embeddings, truth, batch):
    """scIB's graph connectivity per annotated domain (largest connected share of the domain's
    15-nearest-neighbour graph, as ``run.py`` scores it) of each named embedding, with the spots
    outside the largest component counted by slice."""
    from scipy.sparse.csgraph import connected_components
    from sklearn.neighbors import kneighbors_graph

    from spotscape.tl._align import _unit

    keep = truth != ""
    splits = {}
    for name, emb in embeddings.items():
        e, lab, b = emb[keep], truth[keep], batch[keep]
        g = kneighbors_graph(e, 15, include_self=False)
        out = []
        for d in np.unique(lab):
            m = np.flatnonzero(lab == d)
            _, comp = connected_components(g[m][:, m], directed=False)
            sizes = np.bincount(comp)
            outside = np.bincount(b[m][comp != sizes.argmax()], minlength=len(SLICES))
            out.append(f"{d} {sizes.max() / len(m):.3f} (outside by slice {'/'.join(map(str, outside))})")
            if sizes.max() / len(m) < 0.9:  # split: its two largest parts, to follow through the other embeddings
                first, second = np.argsort(sizes)[::-1][:2]
                splits[(name, d)] = (m[comp == first], m[comp == second])
        print(f"graph connectivity by domain, {name}: " + "; ".join(out), flush=True)
    for (where, d), parts in splits.items():  # were the parts apart before? centroid distance and RMS spread of each
        cols = []
        for name, emb in embeddings.items():
            e = _unit(emb[keep])
            a, c = e[parts[0]], e[parts[1]]
            spread = [np.sqrt(((x - x.mean(0)) ** 2).sum(1).mean()) for x in (a, c)]
            cols.append(f"{name} {np.linalg.norm(a.mean(0) - c.mean(0)):.3f} (spreads {spread[0]:.3f} / {spread[1]:.3f})")
        print(f"{d} split in {where} into {len(parts[0])} + {len(parts[1])} spots; the parts' centroid distance in: "
              + "; ".join(cols), flush=True)


def auto_order(z, groups, k=20):
    """A merge order from the data (batchelor's ``auto.merge``): first the two slices with the most
    mutual-nearest-neighbour pairs, then, one at a time, the slice with the most pairs to those
    merged so far. Returns the order and the pair counts of every two slices. Tried (``--auto``)
    and not taken into the package: it mixed less than the manifest's order on all five seeds."""
    from spotscape.tl import mutual_nearest_neighbors

    names = list(dict.fromkeys(groups.tolist()))
    rows = {n: np.flatnonzero(groups == n) for n in names}
    pairs = {(a, b): len(mutual_nearest_neighbors(z[rows[a]], z[rows[b]], k)) for i, a in enumerate(names) for b in names[i + 1:]}
    order = list(max(pairs, key=pairs.get))
    while len(order) < len(names):
        merged = np.concatenate([rows[n] for n in order])
        rest = [n for n in names if n not in order]
        order.append(rest[int(np.argmax([len(mutual_nearest_neighbors(z[merged], z[rows[n]], k)) for n in rest]))])
    return order, pairs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=tempfile.gettempdir())
    ap.add_argument("--orders", action="store_true", help="instead: tl.mnn_correct's defaults with other merge orders "
                    "(reference first), and applied twice")
    ap.add_argument("--auto", action="store_true", help="instead: the merge order chosen by mutual-neighbour counts "
                    "(batchelor's auto.merge), against each slice as the reference, once and with a second pass in reverse")
    ap.add_argument("--asw", action="store_true", help="instead: batch ASW by domain and slice (silhouettes, spread) "
                    "before and after tl.mnn_correct, and corrections aimed at it")
    ap.add_argument("--oracle", action="store_true", help="instead: batch ASW when each slice's centroid and spread "
                    "are matched within each annotated domain (reads the truth: a diagnostic), against the same within k-means clusters")
    ap.add_argument("--smooth", action="store_true", help="instead: two passes with each spot's move averaged over "
                    "itself and its nearest spots of its own slice (smooth = 1, 3, 5, 10; 5 the default since the twentieth "
                    "session), with graph connectivity by domain")
    ap.add_argument("--peers", nargs="*", default=[], help="with --asw: the same by domain for these tools of "
                    "peers/tools.py (their representation, trained once per seed and cached like spotscape's)")
    args = ap.parse_args()
    import tools
    from run import load_truth, score
    from spotscape.tl import mnn_correct

    files = [Path(args.data, "dlpfc_subject3_banksy", f"{s}.h5ad") for s in SLICES]
    truth, batch = load_truth(files, "layer_guess")
    cached = Path(args.cache, f"spotscape_dlpfc4_seed{args.seed}.npy")
    slices = tools.read(files)
    if not cached.exists():
        np.save(cached, tools.t_spotscape(slices, 7, args.seed)["emb"])
    z = np.load(cached)

    def show(name, emb, extra=""):
        s = score(emb, None, truth, batch, 7, args.seed)
        print(f"{name} seed {args.seed}: ARI {s['kmeans']['ari']:.3f} | "
              + " ".join(f"{k} {v:.3f}" for k, v in s["integration"].items()) + extra, flush=True)

    show("plain", z)
    if args.asw:
        peers = {}
        for name in args.peers:
            path = Path(args.cache, f"{name}_dlpfc4_seed{args.seed}.npy")
            if not path.exists():
                np.save(path, getattr(tools, f"t_{name}")(slices, 7, args.seed)["emb"])
            peers[name] = np.load(path)
        return batch_asw_by_domain(z, truth, batch, show, peers, files, args.seed)
    if args.oracle:
        return oracle(z, truth, batch, show)
    if args.smooth:
        manifest = {}
        for smooth in (1, 3, 5, 10):
            manifest[f"smooth {smooth}"] = mnn_correct(z, batch, smooth=smooth)
            show(f"tl.mnn_correct two passes, smooth {smooth}", manifest[f"smooth {smooth}"])
        connectivity_by_domain(manifest, truth, batch)
        return
    if args.auto:
        order, pairs = auto_order(z, batch)
        for (i, j), n in pairs.items():
            print(f"mnn pairs {SLICES[i]}-{SLICES[j]}: {n}", flush=True)
        show(f"tl.mnn_correct auto order {'-'.join(SLICES[i] for i in order)}", mnn_correct(z, batch, order=order, passes=1, smooth=1))
        manifest = {"plain": z}
        for ref in range(4):
            o = [ref] + [i for i in range(4) if i != ref]
            once, twice = mnn_correct(z, batch, order=o, passes=1, smooth=1), mnn_correct(z, batch, order=o, passes=2, smooth=1)
            name = '-'.join(SLICES[i] for i in o)
            show(f"tl.mnn_correct order {name}", once)
            show(f"tl.mnn_correct order {name} then reverse", twice)
            if ref == 0:
                manifest.update({"one pass": once, "two passes": twice})
        connectivity_by_domain(manifest, truth, batch)
        return
    if args.orders:
        for order in ([0, 1, 2, 3], [1, 0, 2, 3], [2, 0, 1, 3], [3, 0, 1, 2], [0, 2, 3, 1]):
            show(f"tl.mnn_correct order {'-'.join(SLICES[i] for i in order)}", mnn_correct(z, batch, order=order, passes=1, smooth=1))
        once = mnn_correct(z, batch, passes=1, smooth=1)
        show("tl.mnn_correct twice", mnn_correct(once, batch, passes=1, smooth=1))
        show("tl.mnn_correct twice, the second in reverse order", mnn_correct(once, batch, order=[3, 2, 1, 0], passes=1, smooth=1))
        return
    try:
        import harmonypy
        import pandas as pd
    except ImportError:
        print("harmonypy not installed: Harmony skipped", flush=True)
    else:
        b = np.repeat([str(i) for i in range(len(slices))], [a.n_obs for a in slices])
        for theta in (2.0, 4.0, 8.0):
            out = harmonypy.run_harmony(np.asarray(z, dtype=np.float64), pd.DataFrame({"slice": b}), ["slice"], theta=theta,
                                        random_state=args.seed, verbose=False)
            h = np.asarray(out.Z_corr)
            show(f"harmony theta{theta:g}", h if h.shape[0] == len(b) else h.T)
    for k, sigma in ((20, 0.1), (20, 0.02), (50, 0.1), (20, 0.005), (10, 0.01), (20, 0.01), (50, 0.01), (50, 0.005)):
        show(f"mnn k{k} sigma{sigma:g}", fixed_bandwidth_mnn(z, batch, k, sigma))
    for k, anchors in ((20, 50), (10, 50), (30, 50), (20, 20)):
        t0 = time.perf_counter()
        c = mnn_correct(z, batch, k=k, n_anchors=anchors, passes=1, smooth=1)
        show(f"tl.mnn_correct k{k} anchors{anchors}", c, f" ({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
