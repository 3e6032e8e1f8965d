"""Denoising and imputation with the decoder (METHOD.md, "Denoising and imputation").

``denoise`` returns the decoder's output on the model's genes, on the scale the model reads:
library size normalised to 1e4 and log1p (the same values as ``layers['spotscape_input']``).
The imputation benchmark hides observed non-zero counts, trains on the rest and scores the
reconstruction at the hidden positions, against two baselines that need no training.
"""
from __future__ import annotations

import anndata as ad
import numpy as np
import scipy.sparse as sp

from .._validate import SpotscapeInputError
from ..graph import grouped_spatial_graph


def denoise(model, adata=None, layer_key: str = "spotscape_denoised") -> ad.AnnData:
    """Decoder output for the model's data (or ``adata``), as a new AnnData on the model's genes.

    The returned AnnData has the spots of the input and the ``model.genes`` columns, with
    ``X`` = ``layers['spotscape_input']`` (the log-normalised values the model was given) and
    ``layers[layer_key]`` the denoised values (same scale). ``obs`` and ``obsm`` are copied; the
    user's AnnData is not changed. Several slices: the spots of all slices, stacked in order.
    """
    x, x_hat = model.get_reconstruction(adata)
    if adata is None and model._positions is not None:  # one AnnData split by slice_key: back to its order
        order = np.argsort(np.concatenate(model._positions))
        x, x_hat = x[order], x_hat[order]
        src = [model._input]
    else:
        src = model.slices if adata is None else ([adata] if isinstance(adata, ad.AnnData) else list(adata))
    if len(src) == 1:
        obs, obsm = src[0].obs.copy(), {k: np.asarray(v) for k, v in src[0].obsm.items()}
    else:
        joint = ad.concat([a[:, :0] for a in src], label="spotscape_slice", keys=model.slice_names, index_unique="-")
        obs, obsm = joint.obs, {k: np.asarray(v) for k, v in joint.obsm.items()}
    out = ad.AnnData(X=x.copy(), obs=obs, obsm=obsm)
    out.var_names = list(model.genes)
    out.layers["spotscape_input"] = x
    out.layers[layer_key] = x_hat
    out.uns["spotscape"] = {"denoised": {"layer": layer_key, "scale": "log1p(counts / library size * 1e4)",
                                         "genes": len(model.genes)}}
    return out


def mask_nonzero(adata: ad.AnnData, fraction: float = 0.1, seed: int = 0) -> tuple[ad.AnnData, np.ndarray, np.ndarray]:
    """A copy of ``adata`` with ``fraction`` of its observed non-zero counts set to zero (seeded).

    Returns (masked copy, rows, cols) of the hidden entries. ``X`` must hold counts.
    """
    if not 0 < fraction < 1:
        raise SpotscapeInputError(f"fraction must be in (0, 1), got {fraction}.")
    x = sp.csr_matrix(adata.X, dtype=np.float32, copy=True)
    x.eliminate_zeros()
    rng = np.random.default_rng(seed)
    hide = rng.random(x.nnz) < fraction
    coo = x.tocoo()
    rows, cols = coo.row[hide], coo.col[hide]
    x.data[hide] = 0.0  # CSR data and COO order agree (row-major)
    x.eliminate_zeros()
    out = adata.copy()
    out.X = x
    return out, rows, cols


def _log_norm_at(counts: sp.csr_matrix, lib: np.ndarray, rows, cols) -> np.ndarray:
    vals = np.asarray(counts[rows, cols]).ravel()
    return np.log1p(vals / np.maximum(lib[rows], 1e-12) * 1e4)


def imputation_scores(original: ad.AnnData, masked: ad.AnnData, rows, cols, predictions: dict[str, np.ndarray],
                      genes: list[str]) -> dict:
    """RMSE and L1 at the hidden entries that fall on ``genes``, per method.

    The truth is the hidden count normalised as the model sees the masked data (the masked
    library size, 1e4, log1p). ``predictions[name]``: spots x ``genes`` on that scale.
    """
    gidx = original.var_names.get_indexer(genes)
    pos = np.full(original.n_vars, -1)
    pos[gidx] = np.arange(len(genes))
    keep = pos[cols] >= 0
    r, c = rows[keep], cols[keep]
    lib = np.asarray(sp.csr_matrix(masked.X).sum(axis=1)).ravel()
    truth = _log_norm_at(sp.csr_matrix(original.X), lib, r, c)
    out = {"n_hidden": int(len(r))}
    for name, pred in predictions.items():
        err = np.asarray(pred)[r, pos[c]] - truth
        out[name] = {"rmse": float(np.sqrt(np.mean(err**2))), "l1": float(np.mean(np.abs(err)))}
    return out


def neighbour_mean(x: sp.csr_matrix, coords: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """Baseline: each spot's values replaced by the mean of its spatial neighbours (itself excluded)."""
    g = grouped_spatial_graph(coords, groups)  # no self-loops
    deg = np.asarray(g.sum(axis=1)).ravel()
    return np.asarray((sp.diags(1.0 / np.maximum(deg, 1)) @ g @ x).todense(), dtype=np.float32)


def pca_reconstruction(x: sp.csr_matrix, n_components: int = 30, seed: int = 0) -> np.ndarray:
    """Baseline: low-rank reconstruction (PCA on the centred log values, ``n_components``)."""
    from sklearn.decomposition import PCA

    dense = np.asarray(x.todense(), dtype=np.float32)
    pca = PCA(n_components=min(n_components, min(dense.shape) - 1), random_state=seed, svd_solver="randomized")
    return pca.inverse_transform(pca.fit_transform(dense)).astype(np.float32)


__all__ = ["denoise", "mask_nonzero", "imputation_scores", "neighbour_mean", "pca_reconstruction"]
