"""Preprocessing as METHOD.md: highly variable genes on raw counts (seurat_v3), library-size
normalisation to 1e4, log1p; no scaling, no PCA. Several slices: only genes common to all."""
from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._threads import start_numba_threads
from ._validate import SpotscapeInputError, _name

start_numba_threads()  # before any scanpy kernel can reset torch's thread count (_threads.py)


def common_genes(adatas: list[ad.AnnData]) -> pd.Index:
    """Genes measured in every slice, in the first slice's order. A missing gene is never zero-filled."""
    genes = adatas[0].var_names
    for a in adatas[1:]:
        genes = genes[genes.isin(a.var_names)]
    if len(genes) == 0:
        raise SpotscapeInputError(
            "the slices have no gene in common; check that they use the same gene identifiers "
            "(e.g. all Ensembl IDs or all symbols: set var_names accordingly)."
        )
    return genes


def highly_variable_genes(adatas: list[ad.AnnData], n_top_genes: int = 5000, counts: bool = True, names=None) -> list[str]:
    """Top ``n_top_genes`` genes among those common to all slices.

    On raw counts: scanpy's seurat_v3 flavour, ranked within each slice and combined across slices
    (``batch_key``), as scanpy does for several batches. On normalised data (counts=False): the
    seurat flavour on log values. Fewer genes than asked: all of them. ``names``: how errors name the slices.
    """
    genes = common_genes(adatas)
    if len(genes) < 20:
        warnings.warn(f"only {len(genes)} genes are {'common to the slices' if len(adatas) > 1 else 'in the input'}: "
                      "too few for a representation of the expression; check the gene identifiers.", stacklevel=3)
    if len(genes) <= n_top_genes:
        return list(genes)
    if counts:
        _check_loess_input(adatas, genes, n_top_genes, names)
    joint = ad.concat([a[:, genes] for a in adatas], label="_slice", index_unique="-")
    joint.var_names = genes
    batch = "_slice" if len(adatas) > 1 else None
    import scanpy as sc  # here, not at the top: 2.5 s of import that a panel of <= 5,000 genes never needs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if counts:
            df = sc.pp.highly_variable_genes(joint, n_top_genes=n_top_genes, flavor="seurat_v3", batch_key=batch, inplace=False)
        else:
            df = sc.pp.highly_variable_genes(joint, n_top_genes=n_top_genes, flavor="seurat", batch_key=batch, inplace=False)
    df.index = genes
    return list(genes[df["highly_variable"].to_numpy()])


def _check_loess_input(adatas, genes, n_top_genes: int, names=None, min_genes: int = 20) -> None:
    """seurat_v3 fits a loess of each slice's gene variances on their means; on a slice of fewer than 3
    spots, or with few genes that vary (10 failed, 20 worked), that fit fails or crashes the process (skmisc),
    so such a slice is refused here, with the way out."""
    if names is None:
        names = list(range(len(adatas))) if len(adatas) > 1 else [None]
    for a, name in zip(adatas, names):
        where = _name(a, name) or "the input "
        x = a[:, genes].X
        x = sp.csr_matrix(x) if sp.issparse(x) else sp.csr_matrix(np.asarray(x))
        mean = np.asarray(x.mean(axis=0)).ravel()
        varying = int((np.asarray(x.multiply(x).mean(axis=0)).ravel() - mean**2 > 1e-12).sum())
        if a.n_obs < 3 or varying < min_genes:
            raise SpotscapeInputError(
                f"{where}has {a.n_obs} spots and {varying} of its {len(genes)} genes vary across them: too few for the "
                f"seurat_v3 selection of {n_top_genes} genes. {'Drop that slice' if len(adatas) > 1 else 'Check the input'} (too "
                f"few spots or varying genes to train on), or keep all genes with n_top_genes >= {len(genes)} (CLI --n-top-genes)."
            )


def normalize(adata: ad.AnnData, genes: list[str], counts: bool = True, target_sum: float = 1e4) -> sp.csr_matrix:
    """Log-normalised expression of ``genes`` as float32 CSR (library size over all genes of the slice)."""
    x = adata.X
    x = sp.csr_matrix(x, dtype=np.float32) if sp.issparse(x) else sp.csr_matrix(np.asarray(x, dtype=np.float32))
    idx = adata.var_names.get_indexer(genes)
    if (idx < 0).any():
        missing = [g for g, i in zip(genes, idx) if i < 0][:5]
        raise SpotscapeInputError(f"genes the model needs are missing from this AnnData (e.g. {missing}); it cannot be embedded.")
    if counts:
        lib = np.asarray(x.sum(axis=1)).ravel()
        scale = np.where(lib > 0, target_sum / np.maximum(lib, 1e-12), 0.0).astype(np.float32)
        x = sp.csr_matrix(sp.diags(scale) @ x)
        x.data = np.log1p(x.data)
    x = sp.csr_matrix(x[:, idx], dtype=np.float32)
    x.eliminate_zeros()
    return x
