"""Readers. Each returns AnnData with raw counts in X and coordinates in obsm['spatial'].

- ``read_h5ad``: an AnnData file.
- ``read_visium``: a Space Ranger output folder (``filtered_feature_bc_matrix.h5`` or the
  ``filtered_feature_bc_matrix/`` mtx folder, ``spatial/tissue_positions*.csv``,
  ``spatial/scalefactors_json.json``); obsm['spatial'] = full-resolution pixels (col, row), as scanpy.
- ``read_csv``: a counts table (spots x genes, first column the spot names; ``transpose=True`` for
  genes x spots) and a coordinates table (spot name, x, y); comma- or tab-separated, gzip allowed.
- ``read_xenium``: a 10x Xenium output folder (``cell_feature_matrix.h5`` or the mtx folder,
  ``cells.csv.gz``); gene-expression features only (control probes and codewords dropped);
  obsm['spatial'] = cell centroids in microns.
- ``read_cosmx``: NanoString CosMx flat files (``*exprMat_file.csv[.gz]``,
  ``*metadata_file.csv[.gz]``); negative probes and system controls dropped; cell 0 of each field of
  view (unassigned transcripts) dropped; obsm['spatial'] = global centroids in pixels.
- ``read_merscope``: a Vizgen MERSCOPE folder (``cell_by_gene.csv``, ``cell_metadata.csv``); blank
  codewords dropped; obsm['spatial'] = cell centres in microns.
- ``read_stereoseq``: a Stereo-seq GEM file (``geneID x y MIDCount``, tab-separated, gzip allowed),
  binned into square bins of ``bin_size`` DNBs (default 50, "bin50"); obsm['spatial'] = bin centres.
- ``read``: any of these, chosen by the path.

Wide tables (CosMx, MERSCOPE) and GEM files are read in chunks, so memory follows the sparse
counts, not the text.
"""
from __future__ import annotations

import glob
import json
import os
import warnings

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


def _read_10x_counts(folder: str, h5_name: str, mtx_name: str) -> ad.AnnData:
    """A 10x feature-barcode matrix of ``folder``: ``h5_name`` or else the mtx folder ``mtx_name``;
    gene-expression features only (scanpy's ``gex_only``), names made unique, X float32 CSR."""
    import scanpy as sc

    h5, mtx = os.path.join(folder, h5_name), os.path.join(folder, mtx_name)
    if os.path.exists(h5):
        adata = sc.read_10x_h5(h5)
    elif os.path.isdir(mtx):
        adata = sc.read_10x_mtx(mtx)
    else:
        raise SpotscapeInputError(f"no counts in {folder!r}: expected {h5_name} or a {mtx_name}/ folder.")
    adata.var_names_make_unique()
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    return adata


def read_visium(folder: str, count_file: str = "filtered_feature_bc_matrix.h5") -> ad.AnnData:
    """A Space Ranger output folder; in-tissue spots with positions; gene symbols made unique."""
    _need(folder, "Space Ranger folder")
    adata = _read_10x_counts(folder, count_file, "filtered_feature_bc_matrix")
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
    return adata


def _sep(path: str) -> str:
    p = path[:-3] if path.endswith(".gz") else path
    return "\t" if p.endswith((".tsv", ".txt", ".tab")) else ","


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _read_coords(path: str, convert: bool = True) -> pd.DataFrame:
    """A coordinates table indexed by spot name. A header-less table (its first line all numbers after the
    name) keeps its first row; a Space Ranger positions file (``tissue_positions.csv`` with its header, or the
    header-less ``tissue_positions_list.csv``) gives its in-tissue spots' full-resolution pixels (x = column);
    ``convert=False`` keeps such a file's columns as they are (for ``x_col``/``y_col``)."""
    first = pd.read_csv(path, sep=_sep(path), header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0].tolist()
    # a data row: a spot name, then numbers; a header written by pandas starts with an empty cell
    headerless = len(first) > 1 and first[0] != "" and all(_is_number(str(v)) for v in first[1:])
    pos = pd.read_csv(path, sep=_sep(path), index_col=0, header=None if headerless else "infer")
    pos.index = pos.index.astype(str)
    positions = list(pos.columns) == POSITION_COLUMNS[1:]
    if not positions and pos.shape[1] == 5 and all(pd.api.types.is_numeric_dtype(pos[c]) for c in pos.columns):
        positions = bool(pos.iloc[:, 0].isin([0, 1]).all()) and "tissue_positions" in os.path.basename(path)
        if positions:
            pos.columns = POSITION_COLUMNS[1:]
    if positions and convert:
        pos = pos[pos["in_tissue"] == 1]
        return pos[["pxl_col_in_fullres", "pxl_row_in_fullres"]].rename(columns={"pxl_col_in_fullres": "x", "pxl_row_in_fullres": "y"})
    return pos


def read_csv(counts: str, coords: str, transpose: bool = False, x_col: str | None = None, y_col: str | None = None) -> ad.AnnData:
    """Counts table + coordinates table. Coordinates: the first two numeric columns, or ``x_col``/``y_col``;
    a Space Ranger positions file as the coordinates table gives its in-tissue spots' pixels (``_read_coords``)."""
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
    pos = _read_coords(coords, convert=not (x_col and y_col))
    if x_col and y_col:
        xy = pos[[x_col, y_col]]
    else:
        num = [c for c in pos.columns if pd.api.types.is_numeric_dtype(pos[c])]
        if len(num) < 2:
            raise SpotscapeInputError(f"coordinates table {coords!r} needs two numeric columns (x, y) after the spot names.")
        xy = pos[num[:2]]
    shared = df.index[df.index.isin(xy.index)]
    if len(shared) == 0:
        hint = (" The counts table's first column holds gene-like names: if it is genes x spots, pass transpose=True "
                "(CLI --transpose).") if not transpose and df.columns.isin(xy.index).any() else ""
        raise SpotscapeInputError(f"no spot name of {counts!r} is in {coords!r}; the first column of both must be the spot names.{hint}")
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


CHUNK_ROWS = 50_000  # rows of a wide text table per chunk
GEM_CHUNK = 5_000_000  # lines of a GEM file per chunk


def _first(folder: str, names: tuple[str, ...]) -> str | None:
    """The first of ``names`` (file names or glob patterns) present in ``folder``."""
    for name in names:
        hits = sorted(glob.glob(os.path.join(folder, name)))
        if hits:
            return hits[0]
    return None


def _wide_table(path: str, id_cols: list[str] | None, drop_prefixes: tuple[str, ...]):
    """A cells x genes text table read in chunks: (id columns DataFrame, gene names, CSR counts).
    ``id_cols``: the leading identifier columns (None: the first column is the cell name)."""
    genes, ids, blocks = None, [], []
    for chunk in pd.read_csv(path, chunksize=CHUNK_ROWS, index_col=None if id_cols else 0):
        if id_cols:
            missing = [c for c in id_cols if c not in chunk.columns]
            if missing:
                raise SpotscapeInputError(f"{path!r} lacks the column(s) {missing}; is it the right file?")
            ids.append(chunk[id_cols])
            chunk = chunk.drop(columns=id_cols)
        else:
            ids.append(pd.DataFrame({"cell": chunk.index.astype(str)}))
        if genes is None:
            genes = [c for c in chunk.columns if not str(c).startswith(drop_prefixes)]
        blocks.append(sp.csr_matrix(chunk[genes].to_numpy(dtype=np.float32)))
    if genes is None:
        raise SpotscapeInputError(f"{path!r} is empty.")
    return pd.concat(ids, ignore_index=True), [str(g) for g in genes], sp.vstack(blocks, format="csr")


def _with_coords(x: sp.csr_matrix, names, genes, meta: pd.DataFrame, xy_cols: list[str], source: str) -> ad.AnnData:
    """AnnData of the cells of ``names`` found in ``meta`` (indexed by cell name), coordinates from ``xy_cols``."""
    missing = [c for c in xy_cols if c not in meta.columns]
    if missing:
        raise SpotscapeInputError(f"the cell table of {source!r} lacks the coordinate column(s) {missing}.")
    names = pd.Index(np.asarray(names, dtype=str))
    keep = names.isin(meta.index)
    if not keep.any():
        raise SpotscapeInputError(f"no cell of the counts in {source!r} appears in its cell table.")
    if not keep.all():
        warnings.warn(f"{source!r}: {int((~keep).sum())} of {len(keep)} cells have no row in the cell table (no "
                      "coordinates) and were left out.", stacklevel=3)
    adata = ad.AnnData(sp.csr_matrix(x[np.flatnonzero(keep)]))
    adata.obs_names = names[keep]
    adata.var_names = genes
    adata.obsm["spatial"] = meta.loc[adata.obs_names, xy_cols].to_numpy(dtype=np.float64)
    return adata


def read_xenium(folder: str) -> ad.AnnData:
    """A 10x Xenium output folder: cells with their centroids (microns), gene-expression features only
    (control probes and codewords are other feature types)."""
    _need(folder, "Xenium folder")
    counts = _read_10x_counts(folder, "cell_feature_matrix.h5", "cell_feature_matrix")
    cells = _first(folder, ("cells.csv.gz", "cells.csv", "cells.parquet"))
    if cells is None:
        raise SpotscapeInputError(f"no cell table in {folder!r}: expected cells.csv.gz (or cells.parquet).")
    if cells.endswith(".parquet"):
        try:
            meta = pd.read_parquet(cells)
        except ImportError:
            raise SpotscapeInputError(f"{cells!r} needs pyarrow to read (pip install pyarrow), or give cells.csv.gz.") from None
    else:
        meta = pd.read_csv(cells)
    if "cell_id" not in meta.columns:
        raise SpotscapeInputError(f"{cells!r} has no cell_id column; is it a Xenium cells table?")
    meta.index = meta["cell_id"].astype(str)
    return _with_coords(counts.X, counts.obs_names, list(counts.var_names), meta, ["x_centroid", "y_centroid"], folder)


def read_cosmx(folder: str) -> ad.AnnData:
    """NanoString CosMx flat files: cells named FOV_CELLID, global centroids in pixels, ``obs['fov']``."""
    _need(folder, "CosMx folder")
    expr = _first(folder, ("*exprMat_file.csv.gz", "*exprMat_file.csv"))
    meta_path = _first(folder, ("*metadata_file.csv.gz", "*metadata_file.csv"))
    if expr is None or meta_path is None:
        raise SpotscapeInputError(f"{folder!r} needs a *_exprMat_file.csv(.gz) and a *_metadata_file.csv(.gz) (CosMx flat files).")
    ids, genes, x = _wide_table(expr, ["fov", "cell_ID"], ("NegPrb", "Negative", "SystemControl", "FalseCode"))
    cell = ids["cell_ID"].to_numpy() != 0  # cell 0: transcripts outside any cell
    names = ids["fov"].astype(str) + "_" + ids["cell_ID"].astype(str)
    meta = pd.read_csv(meta_path)
    if not {"fov", "cell_ID"} <= set(meta.columns):
        raise SpotscapeInputError(f"{meta_path!r} lacks the fov / cell_ID columns of a CosMx metadata file.")
    meta.index = meta["fov"].astype(str) + "_" + meta["cell_ID"].astype(str)
    adata = _with_coords(x[np.flatnonzero(cell)], names[cell], genes, meta, ["CenterX_global_px", "CenterY_global_px"], folder)
    adata.obs["fov"] = meta.loc[adata.obs_names, "fov"].astype(str).to_numpy()
    return adata


def read_merscope(folder: str) -> ad.AnnData:
    """A Vizgen MERSCOPE folder: cells with their centres (microns), blank codewords dropped."""
    _need(folder, "MERSCOPE folder")
    counts, meta_path = _first(folder, ("cell_by_gene.csv", "*cell_by_gene*.csv*")), _first(folder, ("cell_metadata.csv", "*cell_metadata*.csv*"))
    if counts is None or meta_path is None:
        raise SpotscapeInputError(f"{folder!r} needs cell_by_gene.csv and cell_metadata.csv (MERSCOPE output).")
    ids, genes, x = _wide_table(counts, None, ("Blank-",))
    meta = pd.read_csv(meta_path, index_col=0)
    meta.index = meta.index.astype(str)
    return _with_coords(x, ids["cell"], genes, meta, ["center_x", "center_y"], folder)


def read_stereoseq(path: str, bin_size: int = 50) -> ad.AnnData:
    """A Stereo-seq GEM file binned into squares of ``bin_size`` x ``bin_size`` DNBs (obs ``BINX_BINY``)."""
    _need(path, "GEM file")
    if int(bin_size) < 1:
        raise SpotscapeInputError(f"bin_size must be a positive number of DNBs, got {bin_size!r}.")
    bin_size = int(bin_size)
    parts, count_col = [], None
    for chunk in pd.read_csv(path, sep="\t", comment="#", chunksize=GEM_CHUNK):
        if count_col is None:
            found = [c for c in ("MIDCount", "MIDCounts", "UMICount", "UMICounts", "count") if c in chunk.columns]
            if not {"geneID", "x", "y"} <= set(chunk.columns) or not found:
                raise SpotscapeInputError(f"{path!r} is not a GEM file: expected tab-separated columns geneID, x, y, MIDCount.")
            count_col = found[0]
        chunk = pd.DataFrame({"gene": chunk["geneID"].astype(str), "bx": chunk["x"].to_numpy() // bin_size,
                              "by": chunk["y"].to_numpy() // bin_size, "n": chunk[count_col].to_numpy()})
        parts.append(chunk.groupby(["bx", "by", "gene"], sort=False)["n"].sum().reset_index())
    if not parts:
        raise SpotscapeInputError(f"{path!r} holds no counts.")
    df = pd.concat(parts, ignore_index=True).groupby(["bx", "by", "gene"], sort=True)["n"].sum().reset_index()
    bx, by = df["bx"].to_numpy(np.int64), df["by"].to_numpy(np.int64)
    b_uniq, first, b_codes = np.unique(bx * (by.max() + 1) + by, return_index=True, return_inverse=True)
    g_codes, g_uniq = pd.factorize(df["gene"], sort=True)
    x = sp.csr_matrix((df["n"].to_numpy(dtype=np.float32), (b_codes, g_codes)), shape=(len(b_uniq), len(g_uniq)))
    bx, by = bx[first], by[first]
    adata = ad.AnnData(x)
    adata.obs_names = [f"{a}_{b}" for a, b in zip(bx, by)]
    adata.var_names = [str(g) for g in g_uniq]
    adata.obsm["spatial"] = (np.column_stack([bx, by]).astype(np.float64) + 0.5) * bin_size
    adata.uns["stereoseq"] = {"bin_size": bin_size}
    return adata


FORMATS = (".h5ad file, Space Ranger folder (spatial/), Xenium folder (cell_feature_matrix.h5 + cells.csv.gz), CosMx "
           "folder (*exprMat_file.csv + *metadata_file.csv), MERSCOPE folder (cell_by_gene.csv + cell_metadata.csv), "
           "Stereo-seq .gem/.gem.gz file, or COUNTS.csv,COORDS.csv")


def detect_format(path: str) -> str:
    """"h5ad", "visium", "xenium", "cosmx", "merscope", "stereoseq" or "csv", from the path alone."""
    if "," in path and not os.path.exists(path):
        return "csv"
    if os.path.isdir(path):
        if _first(path, ("cell_feature_matrix.h5", "cell_feature_matrix")):
            return "xenium"
        if _first(path, ("*exprMat_file.csv*",)):
            return "cosmx"
        if _first(path, ("cell_by_gene.csv", "*cell_by_gene*.csv*")):
            return "merscope"
        if _first(path, ("spatial", "filtered_feature_bc_matrix.h5", "filtered_feature_bc_matrix")):
            return "visium"
        raise SpotscapeInputError(f"cannot tell the format of the folder {path!r}; expected one of: {FORMATS}.")
    if path.endswith(".h5ad"):
        return "h5ad"
    if path.endswith((".gem", ".gem.gz")):
        return "stereoseq"
    _need(path, "input")
    raise SpotscapeInputError(f"cannot tell the format of {path!r}; expected one of: {FORMATS}.")


def read(path: str, transpose: bool = False, bin_size: int = 50) -> ad.AnnData:
    """Any supported input, chosen by the path (``detect_format``). ``transpose`` applies to
    ``COUNTS,COORDS`` tables, ``bin_size`` to Stereo-seq GEM files."""
    fmt = detect_format(path)
    if fmt == "csv":
        counts, coords = path.split(",", 1)
        return read_csv(counts, coords, transpose=transpose)
    if fmt == "stereoseq":
        return read_stereoseq(path, bin_size)
    return {"h5ad": read_h5ad, "visium": read_visium, "xenium": read_xenium, "cosmx": read_cosmx,
            "merscope": read_merscope}[fmt](path)
