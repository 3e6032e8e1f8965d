"""Differential expression between conditions, within each spatial domain (Wilcoxon, Benjamini-Hochberg)."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._validate import SpotscapeInputError

COLUMNS = ["domain", "condition", "reference", "gene", "logfoldchange", "score", "pval", "qval",
           "pct_condition", "pct_reference", "n_condition", "n_reference"]


def _labels(adata, key: str, what: str) -> pd.Series:
    if key not in adata.obs:
        raise SpotscapeInputError(f"obs has no column {key!r} ({what}); add it, e.g. adata.obs[{key!r}] = labels, "
                                  f"or pass the right key (obs columns: {list(adata.obs.columns)[:12]}).")
    s = adata.obs[key]
    return s.astype(str).where(s.notna(), None)


def _log_normalised(adata, layer, counts, genes) -> sp.csr_matrix:
    """Validate the matrix; return a log1p(1e4-normalised) copy (or the layer as given), restricted to ``genes``."""
    if layer is not None and layer not in adata.layers:
        raise SpotscapeInputError(f"layer {layer!r} not found (layers: {list(adata.layers)}); pass layer=None to use .X.")
    if not adata.var_names.is_unique:
        dup = adata.var_names[adata.var_names.duplicated()][0]
        raise SpotscapeInputError(f"duplicate gene names (e.g. {dup!r}); call adata.var_names_make_unique() first.")
    x = adata.X if layer is None else adata.layers[layer]
    x = sp.csr_matrix(x, dtype=np.float64, copy=True)  # never touches the user's matrix
    if x.data.size and not np.isfinite(x.data).all():
        raise SpotscapeInputError("the expression matrix has NaN or infinite values; fix or drop those entries.")
    if x.data.size and x.data.min() < 0:
        raise SpotscapeInputError(f"the expression matrix has negative values (min {x.data.min():.3g}); condition_de needs "
                                  "raw counts in .X, or log-normalised (non-negative, not scaled) values via layer=.")
    if counts is None:  # raw counts in .X is the package convention; a layer is taken as already log-normalised
        sample = x.data[:1_000_000]
        counts = layer is None and bool(np.allclose(sample, np.round(sample)))
    if not counts and x.data.size and x.data.max() > 50:  # log1p of 1e4-normalised counts stays below ~10
        what = f"the {'layer' if layer is not None else '.X'} values reach {x.data.max():.3g}"
        if np.allclose(x.data[:1_000_000], np.round(x.data[:1_000_000])):
            raise SpotscapeInputError(f"{what} in whole numbers: they look like raw counts; pass counts=True.")
        raise SpotscapeInputError(f"{what}: they look normalised but not log-transformed (e.g. CPM). Give raw counts "
                                  "(counts=True) or log1p-transformed values.")
    if counts:
        lib = np.asarray(x.sum(axis=1)).ravel()  # library size over all genes, before any gene selection
        x = sp.diags(1e4 / np.where(lib > 0, lib, 1.0)) @ x
        x.data = np.log1p(x.data)
    if genes is not None:
        missing = [g for g in genes if g not in adata.var_names]
        if missing:
            raise SpotscapeInputError(f"{len(missing)} of genes= are not in var_names (e.g. {missing[:3]}); pass var_names.")
        x = x[:, adata.var_names.get_indexer(list(genes))]
    return sp.csr_matrix(x)


def condition_de(adata, condition_key: str, domain_key: str = "spotscape_domain", reference=None, layer: str | None = None,
                 counts: bool | None = None, min_spots: int = 10, genes=None, key_added: str = "spotscape_de",
                 inplace: bool = True) -> pd.DataFrame:
    """Wilcoxon test between conditions within each domain (scanpy), Benjamini-Hochberg corrected per domain.

    Parameters
    ----------
    adata
        Slices integrated together (spots x genes); ``obs`` holds the condition and the domain of each spot.
    condition_key, domain_key
        ``obs`` columns. Spots with a missing condition or domain are left out.
    reference
        The control condition (default: the first in sorted order). Every other condition is compared with it.
    layer, counts
        ``.X`` holds raw counts by default (detected: integer-valued; or set ``counts``): they are normalised to 1e4
        per spot and log1p-transformed on a copy. ``layer=`` is used as already log-normalised (unless ``counts=True``).
    min_spots
        A domain is tested only with at least this many spots in both conditions; others are listed as skipped.
    genes
        Genes to test (default: all). Library sizes always use all genes.
    key_added, inplace
        With ``inplace`` (default), the only write to ``adata`` is ``adata.uns[key_added]`` = ``{"table": {column: array},
        "skipped": {"domain", "condition", "n_condition", "n_reference"}, "params": {...}}`` (h5ad-writable);
        ``pd.DataFrame(adata.uns[key_added]["table"])`` rebuilds the table.

    Returns
    -------
    pandas.DataFrame
        One row per (domain, condition, gene): domain, condition, reference, gene, logfoldchange (log2, as scanpy),
        score, pval, qval (BH within the domain), pct_condition, pct_reference, n_condition, n_reference; sorted by
        domain then qval. ``attrs["skipped"]`` lists the domains with too few spots.
    """
    import anndata as ad
    import scanpy as sc

    cond, dom = _labels(adata, condition_key, "condition"), _labels(adata, domain_key, "domain")
    levels = sorted(cond.dropna().unique())
    if len(levels) < 2:
        raise SpotscapeInputError(f"obs[{condition_key!r}] has {len(levels)} condition(s) ({levels}); at least 2 are needed: "
                                  "concatenate the control and the other slices and label each spot's condition.")
    reference = levels[0] if reference is None else str(reference)
    if reference not in levels:
        raise SpotscapeInputError(f"reference {reference!r} is not a condition in obs[{condition_key!r}] ({levels}); pick one of them.")
    if min_spots < 2:
        raise SpotscapeInputError(f"min_spots={min_spots}; the Wilcoxon test needs at least 2 spots per condition.")
    others = [c for c in levels if c != reference]
    domains = list(adata.obs[domain_key].cat.categories.astype(str)) if isinstance(adata.obs[domain_key].dtype, pd.CategoricalDtype) \
        else sorted(dom.dropna().unique())
    runs, skipped = [], []
    for d in domains:
        for o in others:
            n_o, n_r = int(((dom == d) & (cond == o)).sum()), int(((dom == d) & (cond == reference)).sum())
            (runs if min(n_o, n_r) >= min_spots else skipped).append((d, o, n_o, n_r))
    if not runs:
        raise SpotscapeInputError(f"no domain of obs[{domain_key!r}] has >= {min_spots} spots in both conditions; lower "
                                  "min_spots, or check that the domains were found on the slices integrated together.")
    x = _log_normalised(adata, layer, counts, genes)
    names = np.asarray(adata.var_names if genes is None else list(genes), dtype=object)
    parts = []
    for d, o, n_o, n_r in runs:
        m = np.asarray((dom == d) & cond.isin([o, reference]))
        sub = ad.AnnData(x[m], obs=pd.DataFrame({"c": pd.Categorical(cond[m], categories=[o, reference])},
                                                index=adata.obs_names[m]), var=pd.DataFrame(index=names))
        sub.uns["log1p"] = {"base": None}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sc.tl.rank_genes_groups(sub, groupby="c", groups=[o], reference=reference, method="wilcoxon",
                                    corr_method="benjamini-hochberg", tie_correct=True, pts=True, n_genes=sub.n_vars)
        r = sub.uns["rank_genes_groups"]
        g = np.asarray(r["names"][o], dtype=object)
        pts = r["pts"].reindex(g)
        parts.append(pd.DataFrame({
            "domain": d, "condition": o, "reference": reference, "gene": g,
            "logfoldchange": np.asarray(r["logfoldchanges"][o], float), "score": np.asarray(r["scores"][o], float),
            "pval": np.asarray(r["pvals"][o], float), "qval": np.asarray(r["pvals_adj"][o], float),
            "pct_condition": pts[o].to_numpy(float), "pct_reference": pts[reference].to_numpy(float),
            "n_condition": n_o, "n_reference": n_r}))
    table = pd.concat(parts, ignore_index=True)
    table["_d"] = table["domain"].map({d: i for i, d in enumerate(domains)})
    table = table.sort_values(["_d", "condition", "qval", "pval", "gene"], kind="stable").drop(columns="_d").reset_index(drop=True)
    skip = pd.DataFrame(skipped, columns=["domain", "condition", "n_condition", "n_reference"])
    if len(skip):
        warnings.warn(f"condition_de: {len(skip)} domain/condition pair(s) skipped, fewer than {min_spots} spots in a "
                      f"condition: {skip['domain'].tolist()}", UserWarning, stacklevel=2)
    table.attrs["skipped"] = skip.to_dict("records")
    if inplace:
        adata.uns[key_added] = {
            "table": {c: (table[c].to_numpy(dtype=str) if table[c].dtype == object else table[c].to_numpy()) for c in COLUMNS},
            "skipped": {c: (skip[c].to_numpy(dtype=str) if c in ("domain", "condition") else skip[c].to_numpy(dtype=np.int64))
                        for c in skip.columns},
            "params": {"condition_key": condition_key, "domain_key": domain_key, "reference": reference,
                       "min_spots": int(min_spots), "method": "wilcoxon", "corr_method": "benjamini-hochberg"}}
    return table
