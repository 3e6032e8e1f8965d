"""Readers. Each returns AnnData with raw counts in X and coordinates in obsm['spatial'].

- ``read_h5ad``: an AnnData file.
- ``read_visium``: a Space Ranger output folder (``filtered_feature_bc_matrix.h5`` or the
  ``filtered_feature_bc_matrix/`` mtx folder, ``spatial/tissue_positions*.csv``,
  ``spatial/scalefactors_json.json``); obsm['spatial'] = full-resolution pixels (col, row), as scanpy.
- ``read_csv``: a counts table (spots x genes, first column the spot names; ``transpose=True`` for
  genes x spots) and a coordinates table (spot name, x, y); comma- or tab-separated, gzip allowed.
- ``read``: any of these, chosen by the path.
"""
from __future__ import annotations

import json
import os

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._validate import SpotscapeInputError

POSITION_COLUMNS = ["barcode", "in_tissue", "array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres"]


def _need(path: str, what: str) -> None:
    if not os.path.exists(path):
        raise SpotscapeInputError(f"{what} not found: {path!r}.")


def read_h5ad(path: str) -> ad.AnnData:
    _need(path, "AnnData file")
    return ad.read_h5ad(path)


def _read_positions(spatial_dir: str) -> pd.DataFrame:
    for name, header in (("tissue_positions.csv", 0), ("tissue_positions_list.csv", None),
                         ("tissue_positions.csv.gz", 0), ("tissue_positions_list.csv.gz", None)):
        p = os.path.join(spatial_dir, name)
        if os.path.exists(p):
            df = pd.read_csv(p, header=header)
            if header is None or list(df.columns) != POSITION_COLUMNS:
                df = df.iloc[:, :6]
                df.columns = POSITION_COLUMNS
            return df.set_index("barcode")
    raise SpotscapeInputError(
        f"no spot positions in {spatial_dir!r}: expected spatial/tissue_positions.csv (Space Ranger 2+) "
        "or spatial/tissue_positions_list.csv (Space Ranger 1)."
    )


def read_visium(folder: str, count_file: str = "filtered_feature_bc_matrix.h5") -> ad.AnnData:
    """A Space Ranger output folder; in-tissue spots with positions; gene symbols made unique."""
    import scanpy as sc

    _need(folder, "Space Ranger folder")
    h5 = os.path.join(folder, count_file)
    mtx = os.path.join(folder, "filtered_feature_bc_matrix")
    if os.path.exists(h5):
        adata = sc.read_10x_h5(h5)
    elif os.path.isdir(mtx):
        adata = sc.read_10x_mtx(mtx)
    else:
        raise SpotscapeInputError(f"no counts in {folder!r}: expected {count_file} or a filtered_feature_bc_matrix/ folder.")
    adata.var_names_make_unique()
    spatial = os.path.join(folder, "spatial")
    pos = _read_positions(spatial)
    missing = ~adata.obs_names.isin(pos.index)
    if missing.all():
        raise SpotscapeInputError(f"none of the barcodes in {count_file} appear in the positions file of {folder!r}.")
    adata = adata[~missing].copy()
    pos = pos.loc[adata.obs_names]
    for c in POSITION_COLUMNS[1:]:
        adata.obs[c] = pos[c].to_numpy()
    adata = adata[adata.obs["in_tissue"].to_numpy() == 1].copy()
    adata.obsm["spatial"] = adata.obs[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(dtype=np.float64)
    sf = os.path.join(spatial, "scalefactors_json.json")
    if os.path.exists(sf):
        with open(sf) as fh:
            adata.uns["scalefactors"] = json.load(fh)
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    return adata


def _sep(path: str) -> str:
    p = path[:-3] if path.endswith(".gz") else path
    return "\t" if p.endswith((".tsv", ".txt", ".tab")) else ","


def read_csv(counts: str, coords: str, transpose: bool = False, x_col: str | None = None, y_col: str | None = None) -> ad.AnnData:
    """Counts table + coordinates table. Coordinates: the first two numeric columns, or ``x_col``/``y_col``."""
    _need(counts, "counts table")
    _need(coords, "coordinates table")
    df = pd.read_csv(counts, sep=_sep(counts), index_col=0)
    if transpose:
        df = df.T
    df.index = df.index.astype(str)
    df.columns = df.columns.astype(str)
    non_numeric = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if non_numeric:
        raise SpotscapeInputError(
            f"counts table {counts!r} has non-numeric columns (e.g. {non_numeric[:3]}); it must be spots x genes with "
            "the spot names in the first column (use transpose=True / --transpose for genes x spots)."
        )
    pos = pd.read_csv(coords, sep=_sep(coords), index_col=0)
    pos.index = pos.index.astype(str)
    if x_col and y_col:
        xy = pos[[x_col, y_col]]
    else:
        num = [c for c in pos.columns if pd.api.types.is_numeric_dtype(pos[c])]
        if len(num) < 2:
            raise SpotscapeInputError(f"coordinates table {coords!r} needs two numeric columns (x, y) after the spot names.")
        xy = pos[num[:2]]
    shared = df.index[df.index.isin(xy.index)]
    if len(shared) == 0:
        raise SpotscapeInputError(f"no spot name of {counts!r} is in {coords!r}; the first column of both must be the spot names.")
    adata = ad.AnnData(sp.csr_matrix(df.loc[shared].to_numpy(dtype=np.float32)))
    adata.obs_names = shared
    adata.var_names = df.columns
    adata.obsm["spatial"] = xy.loc[shared].to_numpy(dtype=np.float64)
    return adata


def write_h5ad(adata: ad.AnnData, path: str) -> None:
    """Write ``.h5ad`` all or nothing: a temporary file beside the target, then an atomic rename."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}.h5ad"
    try:
        adata.write_h5ad(tmp, compression="gzip")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read(path: str, **kwargs) -> ad.AnnData:
    """``.h5ad`` file, Space Ranger folder, or ``COUNTS,COORDS`` (two tables joined by a comma)."""
    if "," in path and not os.path.exists(path):
        counts, coords = path.split(",", 1)
        return read_csv(counts, coords, **kwargs)
    if os.path.isdir(path):
        return read_visium(path)
    if path.endswith(".h5ad"):
        return read_h5ad(path)
    _need(path, "input")
    raise SpotscapeInputError(
        f"cannot tell the format of {path!r}: give an .h5ad file, a Space Ranger folder, or COUNTS.csv,COORDS.csv."
    )
