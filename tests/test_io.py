import json

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from spotscape import SpotscapeInputError, io
from spotscape.datasets import simulate_tissue


def write_spaceranger(folder, adata, v1_positions=False, extra_offtissue=3):
    """A Space Ranger-like output folder: filtered_feature_bc_matrix.h5 (10x v3 layout) and spatial/."""
    folder.mkdir()
    (folder / "spatial").mkdir()
    x = sp.csc_matrix(adata.X.T.astype(np.int32))  # genes x barcodes, as 10x stores it
    with h5py.File(folder / "filtered_feature_bc_matrix.h5", "w") as f:
        m = f.create_group("matrix")
        m["barcodes"] = np.array(adata.obs_names, dtype="S")
        m["data"], m["indices"], m["indptr"], m["shape"] = x.data, x.indices, x.indptr, np.array(x.shape)
        feat = m.create_group("features")
        feat["id"] = np.array([f"ENSG{i:05d}" for i in range(adata.n_vars)], dtype="S")
        feat["name"] = np.array(adata.var_names, dtype="S")
        feat["feature_type"] = np.array(["Gene Expression"] * adata.n_vars, dtype="S")
        feat["genome"] = np.array(["GRCh38"] * adata.n_vars, dtype="S")
        feat["_all_tag_keys"] = np.array([b"genome"])
    xy = adata.obsm["spatial"]
    pos = pd.DataFrame({
        "barcode": list(adata.obs_names) + [f"OFF{i}" for i in range(extra_offtissue)],
        "in_tissue": [1] * adata.n_obs + [0] * extra_offtissue,
        "array_row": list(adata.obs["array_row"]) + [0] * extra_offtissue,
        "array_col": list(adata.obs["array_col"]) + [0] * extra_offtissue,
        "pxl_row_in_fullres": list(xy[:, 1]) + [0.0] * extra_offtissue,
        "pxl_col_in_fullres": list(xy[:, 0]) + [0.0] * extra_offtissue,
    })
    if v1_positions:
        pos.to_csv(folder / "spatial" / "tissue_positions_list.csv", header=False, index=False)
    else:
        pos.to_csv(folder / "spatial" / "tissue_positions.csv", index=False)
    (folder / "spatial" / "scalefactors_json.json").write_text(json.dumps({"tissue_hires_scalef": 0.15, "spot_diameter_fullres": 90.0}))


@pytest.mark.parametrize("v1", [False, True])
def test_read_spaceranger_folder(tmp_path, v1):
    a = simulate_tissue(n_spots=200, n_genes=40, seed=1)
    write_spaceranger(tmp_path / "sr", a, v1_positions=v1)
    b = io.read(str(tmp_path / "sr"))
    assert b.shape == a.shape
    assert list(b.obs_names) == list(a.obs_names) and list(b.var_names) == list(a.var_names)
    assert np.array_equal(b.X.toarray(), a.X.toarray())
    assert np.allclose(b.obsm["spatial"], a.obsm["spatial"])
    assert b.uns["scalefactors"]["tissue_hires_scalef"] == 0.15


def test_read_spaceranger_without_positions_fails_clearly(tmp_path):
    a = simulate_tissue(n_spots=50, n_genes=20, seed=1)
    write_spaceranger(tmp_path / "sr", a)
    (tmp_path / "sr" / "spatial" / "tissue_positions.csv").unlink()
    with pytest.raises(SpotscapeInputError, match="tissue_positions"):
        io.read(str(tmp_path / "sr"))


@pytest.mark.parametrize("sep,ext", [(",", "csv"), ("\t", "tsv")])
def test_read_csv_pair(tmp_path, sep, ext):
    a = simulate_tissue(n_spots=100, n_genes=30, seed=2)
    pd.DataFrame(a.X.toarray(), index=a.obs_names, columns=a.var_names).to_csv(tmp_path / f"c.{ext}", sep=sep)
    pd.DataFrame(a.obsm["spatial"], index=a.obs_names, columns=["x", "y"]).to_csv(tmp_path / f"xy.{ext}", sep=sep)
    b = io.read(f"{tmp_path}/c.{ext},{tmp_path}/xy.{ext}")
    assert list(b.obs_names) == list(a.obs_names) and list(b.var_names) == list(a.var_names)
    assert np.array_equal(b.X.toarray(), a.X.toarray())
    assert np.allclose(b.obsm["spatial"], a.obsm["spatial"])
    # genes x spots with transpose
    pd.DataFrame(a.X.toarray().T, index=a.var_names, columns=a.obs_names).to_csv(tmp_path / "t.csv")
    c = io.read_csv(str(tmp_path / "t.csv"), str(tmp_path / f"xy.{ext}") if ext == "csv" else str(tmp_path / "xy.tsv"), transpose=True)
    assert np.array_equal(c.X.toarray(), a.X.toarray())
    assert list(c.obs_names) == list(a.obs_names) and list(c.var_names) == list(a.var_names)


@pytest.mark.parametrize("name,header", [("tissue_positions.csv", True), ("tissue_positions_list.csv", False)])
def test_read_csv_with_spaceranger_positions(tmp_path, name, header):
    """A Space Ranger positions file as the coordinates table: in-tissue spots, full-resolution pixels (x = column);
    it once gave (in_tissue, array_row) and, without a header, lost its first spot."""
    a = simulate_tissue(n_spots=50, n_genes=20, seed=1)
    pd.DataFrame(a.X.toarray(), index=a.obs_names, columns=a.var_names).to_csv(tmp_path / "c.csv")
    inside = np.arange(a.n_obs) % 7 != 3
    pos = pd.DataFrame({"in_tissue": inside.astype(int), "array_row": np.arange(a.n_obs), "array_col": np.arange(a.n_obs),
                        "pxl_row_in_fullres": a.obsm["spatial"][:, 1], "pxl_col_in_fullres": a.obsm["spatial"][:, 0]},
                       index=pd.Index(a.obs_names, name="barcode"))
    pos.to_csv(tmp_path / name, header=header)
    b = io.read_csv(str(tmp_path / "c.csv"), str(tmp_path / name))
    assert list(b.obs_names) == list(a.obs_names[inside])
    assert np.allclose(b.obsm["spatial"], a.obsm["spatial"][inside])
    if header:  # the positions file's own columns, named: taken as they are (every spot)
        d = io.read_csv(str(tmp_path / "c.csv"), str(tmp_path / name), x_col="pxl_col_in_fullres", y_col="pxl_row_in_fullres")
        assert d.n_obs == a.n_obs and np.allclose(d.obsm["spatial"], a.obsm["spatial"])
    # a plain x, y table without a header keeps its first spot; pandas' own header (",0,1") stays a header
    for hdr in (False, True):
        pd.DataFrame(a.obsm["spatial"], index=a.obs_names).to_csv(tmp_path / "xy.csv", header=hdr)
        c = io.read_csv(str(tmp_path / "c.csv"), str(tmp_path / "xy.csv"))
        assert c.n_obs == a.n_obs and np.allclose(c.obsm["spatial"], a.obsm["spatial"]) and list(c.obs_names) == list(a.obs_names)


def test_read_unknown_format(tmp_path):
    p = tmp_path / "x.loom"
    p.write_text("")
    with pytest.raises(SpotscapeInputError, match="cannot tell the format"):
        io.read(str(p))
    with pytest.raises(SpotscapeInputError, match="not found"):
        io.read(str(tmp_path / "missing.h5ad"))
