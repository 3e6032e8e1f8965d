"""One tool on one dataset, in its own process (started by run.py, inside the peers' venv).

    python tools.py TOOL --files A.h5ad [B.h5ad ...] --k K --seed S --out OUT.npz

Every tool reads the same raw counts (X) and `obsm['spatial']`, does its own documented
preprocessing, and writes
  emb   : its representation, one row per spot in input order (slices stacked), which run.py
          clusters with the SAME k-means for every tool;
  own   : (optional) labels from the tool's own recommended clustering, at k where it takes k;
  own_method, seconds, peak_mb.
Several files = the slices of one integration task: tools without a multi-slice mode get the
slices side by side (shifted in x so that no spatial edge joins two slices), the usual recipe.
Nothing here knows which dataset it runs on: graphs are kNN (6 neighbours = Visium's hexagon)
or scaled by the median nearest-neighbour distance.
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")


def _scipy_shim():
    """scanpy's neighbour search above 4,096 cells goes through pynndescent, which still calls
    `getnnz` on scipy's sparse arrays (removed in scipy 1.15+); SpaGCN's Louvain start and
    SpaceFlow's Leiden step need it. Same method under its new private name."""
    import scipy.sparse as sp

    for cls in (sp.csr_array, sp.csc_array, sp.coo_array):
        if not hasattr(cls, "getnnz") and hasattr(cls, "_getnnz"):
            cls.getnnz = cls._getnnz


_scipy_shim()


def read(files):
    import anndata as ad
    import scipy.sparse as sp

    slices = []
    for f in files:
        a = ad.read_h5ad(f)
        a.X = sp.csr_matrix(a.X, dtype=np.float32)
        a.obsm["spatial"] = np.asarray(a.obsm["spatial"], dtype=np.float64)[:, :2]
        a.var_names_make_unique()
        slices.append(a)
    return slices


def side_by_side(slices):
    """One AnnData with the slices shifted apart in x (genes: those common to all)."""
    import anndata as ad

    from spotscape.tl._align import spot_spacing  # median nearest-spot distance

    genes = slices[0].var_names
    for a in slices[1:]:
        genes = genes.intersection(a.var_names)
    parts, shift = [], 0.0
    for i, a in enumerate(slices):
        b = a[:, genes].copy()
        xy = b.obsm["spatial"].copy()
        xy[:, 0] += shift - xy[:, 0].min()
        shift = xy[:, 0].max() + 10 * spot_spacing(xy) + 1.0
        b.obsm["spatial"] = xy
        b.obs["batch"] = str(i)
        b.obs_names = [f"{i}_{n}" for n in b.obs_names]
        parts.append(b)
    out = ad.concat(parts, join="inner") if len(parts) > 1 else parts[0]
    out.obsm["spatial"] = np.concatenate([p.obsm["spatial"] for p in parts])
    return out


def log_hvg(a, n_top, scale=False):
    import scanpy as sc

    a = a.copy()
    sc.pp.highly_variable_genes(a, flavor="seurat_v3", n_top_genes=min(n_top, a.n_vars - 1))
    a = a[:, a.var["highly_variable"]].copy()
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    if scale:
        sc.pp.scale(a, max_value=10)
    return a


def pca(x, n, seed):
    from sklearn.decomposition import PCA

    x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    return PCA(n_components=min(n, x.shape[1] - 1), random_state=seed).fit_transform(x)


def mclust(emb, k, seed):
    """R's mclust (model EEE), as GraphST/STAGATE/BANKSY recommend; None when R is absent."""
    try:
        import rpy2.robjects as ro
        import rpy2.robjects.numpy2ri as n2r
    except Exception:
        return None
    ro.r.library("mclust")
    ro.r["set.seed"](seed)
    with (ro.default_converter + n2r.converter).context():
        res = ro.r["Mclust"](np.asarray(emb, dtype=np.float64), k, "EEE")
        try:
            return np.asarray(res["classification"]).astype(int)
        except Exception:  # Mclust returns NULL when no model fits
            print(f"mclust EEE found no fit with {k} clusters", file=sys.stderr)
            return None


# ------------------------------------------------------------------------------ tools
def t_pca(slices, k, seed):
    a = log_hvg(side_by_side(slices), 3000, scale=True)
    return {"emb": pca(a.X, 30, seed)}


def t_pca_spatial(slices, k, seed):
    """The naive spatial floor: PCA, averaged over each spot and its 6 nearest spots (per slice)."""
    from sklearn.neighbors import NearestNeighbors

    a = log_hvg(side_by_side(slices), 3000, scale=True)
    z = pca(a.X, 30, seed)
    _, idx = NearestNeighbors(n_neighbors=7).fit(a.obsm["spatial"]).kneighbors(a.obsm["spatial"])
    return {"emb": z[idx].mean(axis=1)}


def t_spotscape(slices, k, seed):
    import spotscape

    model = spotscape.Spotscape(slices if len(slices) > 1 else slices[0], n_domains=k, seed=seed, device="cpu")
    model.fit(progress=False)
    return {"emb": model.get_latent_representation()}


def t_spotscape_run(slices, k, seed):
    """The representation ``spotscape run`` writes (``pipeline.run``, given k, no labels): as ``spotscape``,
    but trained a second time with edge_drop 0, keeping the more coherent run, where its domains do
    not follow the expression (README, "Held out")."""
    import tempfile

    import anndata as ad

    from spotscape import pipeline

    with tempfile.TemporaryDirectory() as tmp:
        pipeline.run(slices, [f"slice{i}" for i in range(len(slices))], f"{tmp}/out", n_domains=k, seed=seed, progress=False)
        return {"emb": ad.read_h5ad(f"{tmp}/out/result.h5ad").obsm["X_spotscape"]}


def t_banksy(slices, k, seed, correct=None):
    """BANKSY's domain-segmentation recipe: 2,000 HVGs, k_geom 18, scaled-Gaussian weights, AGF
    max_m 1, lambda 0.8, 20 PCs; its own clustering for domains is mclust. ``correct(emb)``: a batch
    correction of the PCs before clustering (its recipe for several samples: Harmony)."""
    from banksy.embed_banksy import generate_banksy_matrix
    from banksy.initialize_banksy import initialize_banksy

    a = log_hvg(side_by_side(slices), 2000)
    a.obs["x"], a.obs["y"] = a.obsm["spatial"][:, 0], a.obsm["spatial"][:, 1]
    d = initialize_banksy(a, ("x", "y", "spatial"), num_neighbours=18, nbr_weight_decay="scaled_gaussian",
                          max_m=1, plt_edge_hist=False, plt_nbr_weights=False, plt_agf_angles=False, plt_theta=False)
    d, _ = generate_banksy_matrix(a, d, [0.8], 1, verbose=False)
    emb = pca(d["scaled_gaussian"][0.8]["adata"].X, 20, seed)
    if correct is not None:
        emb = correct(emb)
    own = mclust(emb, k, seed)
    return {"emb": emb, **({"own": own, "own_method": "mclust EEE"} if own is not None else {})}


def t_spagcn(slices, k, seed):
    """SpaGCN's ez-mode recipe without histology (p 0.5, l and resolution searched for k)."""
    import scanpy as sc
    import torch
    import SpaGCN as spg

    a = side_by_side(slices)
    x, y = a.obsm["spatial"][:, 0], a.obsm["spatial"][:, 1]
    adj = spg.calculate_adj_matrix(x=x, y=y, histology=False)
    spg.prefilter_genes(a, min_cells=3)
    spg.prefilter_specialgenes(a)
    sc.pp.normalize_per_cell(a, min_counts=0)
    sc.pp.log1p(a)
    l = spg.search_l(0.5, adj, start=0.01, end=1000, tol=0.01, max_run=100)
    res = spg.search_res(a, adj, l, k, start=0.7, step=0.1, tol=5e-3, lr=0.05, max_epochs=20,
                         r_seed=seed, t_seed=seed, n_seed=seed)
    clf = spg.SpaGCN()
    clf.set_l(l)
    random.seed(seed), torch.manual_seed(seed), np.random.seed(seed)
    clf.train(a, adj, init_spa=True, res=res, tol=5e-3, lr=0.05, max_epochs=200)
    own, _ = clf.predict()
    z, _ = clf.model.predict(clf.embed, clf.adj_exp)
    return {"emb": z.detach().cpu().numpy(), "own": np.asarray(own), "own_method": "SpaGCN DEC (resolution searched for k)"}


def t_graphst(slices, k, seed):
    """GraphST's tutorial: its own preprocessing (3,000 HVGs), 600 epochs; representation = PCA-20
    of its output (as its `clustering`); own clustering mclust + refinement (radius 50)."""
    import torch
    from GraphST import GraphST
    from GraphST.utils import refine_label

    a = side_by_side(slices)
    model = GraphST.GraphST(a, device=torch.device("cpu"), random_seed=seed)
    out = model.train()
    emb = pca(out.obsm["emb"], 20, 42)
    own = mclust(emb, k, seed)
    res = {"emb": emb}
    if own is not None:
        out.obs["domain"] = own.astype(str)
        res.update(own=np.asarray(refine_label(out, 50, key="domain")).astype(int), own_method="mclust EEE + refinement")
    return res


def t_stagate(slices, k, seed):
    """STAGATE's tutorial: 3,000 HVGs, 6-NN spatial net, 1,000 epochs, [512, 30]; own: mclust."""
    import STAGATE_pyG

    a = log_hvg(side_by_side(slices), 3000)
    STAGATE_pyG.Cal_Spatial_Net(a, k_cutoff=6, model="KNN", verbose=False)
    a = STAGATE_pyG.train_STAGATE(a, device="cpu", random_seed=seed, verbose=False)
    emb = np.asarray(a.obsm["STAGATE"])
    own = mclust(emb, k, seed)
    return {"emb": emb, **({"own": own, "own_method": "mclust EEE"} if own is not None else {})}


def t_spaceflow(slices, k, seed):
    """SpaceFlow's tutorial: 3,000 HVGs, 10-NN alpha-complex graph, z 50, up to 1,000 epochs with
    early stopping; own: its Leiden segmentation (resolution 1, which does not take k)."""
    import networkx as nx
    import scipy.sparse as sp

    if not hasattr(nx, "to_scipy_sparse_matrix"):  # removed in networkx 3; SpaceFlow still calls it
        nx.to_scipy_sparse_matrix = lambda g, format="csr", **kw: sp.csr_matrix(nx.to_scipy_sparse_array(g, format=format, **kw))
    from SpaceFlow import SpaceFlow

    a = side_by_side(slices)
    sf = SpaceFlow.SpaceFlow(adata=a)
    sf.preprocessing_data(n_top_genes=3000)
    tmp = os.environ.get("TMPDIR", "/tmp")
    emb = sf.train(embedding_save_filepath=os.path.join(tmp, f"sf_emb_{os.getpid()}.tsv"), random_seed=seed, gpu=-1)
    try:
        sf.segmentation(domain_label_save_filepath=os.path.join(tmp, f"sf_dom_{os.getpid()}.tsv"))
    except Exception as e:  # its Leiden step goes through scanpy's neighbours; report, keep the embedding
        print(f"SpaceFlow segmentation failed: {e!r}", file=sys.stderr)
    own = getattr(sf, "domains", None)
    res = {"emb": np.asarray(emb)}
    if own is not None:
        res.update(own=np.asarray(own).astype(int), own_method="Leiden (resolution 1)")
    return res


def harmony(emb, slices, seed):
    """Harmony (harmonypy's defaults: theta 2, sigma 0.1) on a representation, one batch per slice:
    BANKSY's recipe for several samples, and the usual post-hoc correction for any embedding.
    harmonypy 2.x returns Z_corr as spots x dims, 0.x as dims x spots (scanpy's wrapper assumes the
    latter and fails on 2.x), so the orientation is read from the shape."""
    import harmonypy
    import pandas as pd

    batch = np.repeat([str(i) for i in range(len(slices))], [a.n_obs for a in slices])
    out = harmonypy.run_harmony(np.asarray(emb, dtype=np.float64), pd.DataFrame({"slice": batch}), ["slice"],
                                random_state=seed, verbose=False)
    z = np.asarray(out.Z_corr)
    return z if z.shape[0] == len(batch) else z.T


def t_spotscape_harmony(slices, k, seed):
    import harmonypy  # noqa: F401  (fail before training when it is missing)

    return {"emb": harmony(t_spotscape(slices, k, seed)["emb"], slices, seed)}


def t_spotscape_mnn(slices, k, seed):
    """spotscape's embedding with its own slice correction (``spotscape.tl.mnn_correct``: mutual
    nearest neighbours, slices merged in the manifest's order and then in the reverse), as
    ``spotscape run`` writes it to ``obsm['X_spotscape_mnn']`` for several slices."""
    from spotscape.tl import mnn_correct

    groups = np.repeat(np.arange(len(slices)), [a.n_obs for a in slices])
    return {"emb": mnn_correct(t_spotscape(slices, k, seed)["emb"], groups)}


def t_banksy_harmony(slices, k, seed):
    """BANKSY's multi-sample recipe: its matrix and PCs as for one sample, then Harmony on the PCs."""
    import harmonypy  # noqa: F401  (fail before BANKSY runs when it is missing)

    return t_banksy(slices, k, seed, correct=lambda emb: harmony(emb, slices, seed))


TOOLS = {"pca": t_pca, "pca_spatial": t_pca_spatial, "spotscape": t_spotscape, "banksy": t_banksy,
         "spagcn": t_spagcn, "graphst": t_graphst, "stagate": t_stagate, "spaceflow": t_spaceflow,
         "banksy_harmony": t_banksy_harmony, "spotscape_harmony": t_spotscape_harmony,
         "spotscape_mnn": t_spotscape_mnn, "spotscape_run": t_spotscape_run}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tool", choices=sorted(TOOLS))
    ap.add_argument("--files", nargs="+", required=True)
    ap.add_argument("--k", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    random.seed(args.seed)
    np.random.seed(args.seed)
    slices = read(args.files)
    t0 = time.perf_counter()
    res = TOOLS[args.tool](slices, args.k, args.seed)
    seconds = time.perf_counter() - t0
    emb = np.asarray(res["emb"], dtype=np.float32)
    n = sum(a.n_obs for a in slices)
    if emb.shape[0] != n:
        sys.exit(f"{args.tool} returned {emb.shape[0]} rows for {n} spots")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tmp = args.out + ".part.npz"
    np.savez(tmp, emb=emb, seconds=seconds, peak_mb=peak_mb,
             **({"own": np.asarray(res["own"]), "own_method": res["own_method"]} if "own" in res else {}))
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
