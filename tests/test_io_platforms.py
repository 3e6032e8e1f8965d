"""Readers of imaging and sub-cellular platforms: each writes that platform's files in a temporary
folder, from a simulated tissue, and reads them back (counts, names, coordinates, controls dropped)."""
import gzip

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from spotscape import SpotscapeInputError, io
from spotscape.datasets import simulate_tissue


@pytest.fixture(scope="module")
def cells():
    a = simulate_tissue(n_spots=150, n_genes=25, seed=4)
    a.obs_names = [f"cell{i}" for i in range(a.n_obs)]
    a.var_names = [f"G{i}" for i in range(a.n_vars)]
    return a


def _dense(a):
    return a.X.toarray()


def write_xenium(folder, a, n_controls=3):
    folder.mkdir()
    x = sp.csc_matrix(np.hstack([_dense(a), np.ones((a.n_obs, n_controls))]).T.astype(np.int32))
    names = list(a.var_names) + [f"NegControlProbe_{i}" for i in range(n_controls)]
    types = ["Gene Expression"] * a.n_vars + ["Negative Control Probe"] * n_controls
    with h5py.File(folder / "cell_feature_matrix.h5", "w") as f:
        m = f.create_group("matrix")
        m["barcodes"] = np.array(a.obs_names, dtype="S")
        m["data"], m["indices"], m["indptr"], m["shape"] = x.data, x.indices, x.indptr, np.array(x.shape)
        feat = m.create_group("features")
        feat["id"], feat["name"] = np.array(names, dtype="S"), np.array(names, dtype="S")
        feat["feature_type"] = np.array(types, dtype="S")
        feat["genome"] = np.array(["Unknown"] * len(names), dtype="S")
        feat["_all_tag_keys"] = np.array([b"genome"])
    xy = a.obsm["spatial"] / 10  # microns
    pd.DataFrame({"cell_id": a.obs_names, "x_centroid": xy[:, 0], "y_centroid": xy[:, 1],
                  "transcript_counts": _dense(a).sum(1)}).to_csv(folder / "cells.csv.gz", index=False)


def test_read_xenium(tmp_path, cells):
    write_xenium(tmp_path / "xe", cells)
    b = io.read(str(tmp_path / "xe"))
    assert list(b.var_names) == list(cells.var_names)  # control probes dropped
    assert list(b.obs_names) == list(cells.obs_names)
    assert np.array_equal(b.X.toarray(), _dense(cells))
    assert np.allclose(b.obsm["spatial"], cells.obsm["spatial"] / 10)


def write_cosmx(folder, a):
    folder.mkdir()
    fov = np.repeat([1, 2], [a.n_obs // 2, a.n_obs - a.n_obs // 2])
    cid = np.concatenate([np.arange(1, a.n_obs // 2 + 1), np.arange(1, a.n_obs - a.n_obs // 2 + 1)])
    expr = pd.DataFrame(_dense(a).astype(int), columns=a.var_names)
    expr.insert(0, "cell_ID", cid)
    expr.insert(0, "fov", fov)
    expr["NegPrb1"] = 1
    expr["SystemControl3"] = 2
    background = pd.DataFrame([[1, 0] + [9] * (expr.shape[1] - 2)], columns=expr.columns)  # cell 0 of fov 1
    pd.concat([background, expr]).to_csv(folder / "Run5_exprMat_file.csv.gz", index=False)
    meta = pd.DataFrame({"fov": fov, "cell_ID": cid, "CenterX_global_px": a.obsm["spatial"][:, 0],
                         "CenterY_global_px": a.obsm["spatial"][:, 1], "Area": 100})
    meta.sample(frac=1.0, random_state=0).to_csv(folder / "Run5_metadata_file.csv.gz", index=False)  # another order
    return [f"{f}_{c}" for f, c in zip(fov, cid)]


def test_read_cosmx(tmp_path, cells):
    names = write_cosmx(tmp_path / "cx", cells)
    b = io.read(str(tmp_path / "cx"))
    assert list(b.var_names) == list(cells.var_names)  # negative probes, system controls dropped
    assert list(b.obs_names) == names  # background cell 0 dropped
    assert np.array_equal(b.X.toarray(), _dense(cells))
    assert np.allclose(b.obsm["spatial"], cells.obsm["spatial"])
    assert set(b.obs["fov"]) == {"1", "2"}


def test_read_cosmx_chunked(tmp_path, cells, monkeypatch):
    monkeypatch.setattr(io, "CHUNK_ROWS", 16)  # many chunks: the same matrix
    write_cosmx(tmp_path / "cx", cells)
    assert np.array_equal(io.read_cosmx(str(tmp_path / "cx")).X.toarray(), _dense(cells))


def test_read_merscope(tmp_path, cells):
    folder = tmp_path / "mer"
    folder.mkdir()
    counts = pd.DataFrame(_dense(cells).astype(int), index=pd.Index(cells.obs_names, name="cell"), columns=cells.var_names)
    counts["Blank-1"] = 3
    counts.to_csv(folder / "cell_by_gene.csv")
    meta = pd.DataFrame({"fov": 0, "volume": 1.0, "center_x": cells.obsm["spatial"][:, 0], "center_y": cells.obsm["spatial"][:, 1]},
                        index=pd.Index(cells.obs_names, name="EntityID"))
    meta.iloc[::-1].to_csv(folder / "cell_metadata.csv")
    b = io.read(str(folder))
    assert list(b.var_names) == list(cells.var_names)
    assert np.array_equal(b.X.toarray(), _dense(cells))
    assert np.allclose(b.obsm["spatial"], cells.obsm["spatial"])
    # a cell without a row in the metadata is left out, with a warning that says how many
    meta.iloc[1:].to_csv(folder / "cell_metadata.csv")
    with pytest.warns(UserWarning, match="1 of 150 cells"):
        c = io.read(str(folder))
    assert list(c.obs_names) == list(cells.obs_names[1:])


def test_read_stereoseq_bins(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    n = 4000
    df = pd.DataFrame({"geneID": rng.choice(["Gad1", "Snap25", "Mbp", "Plp1"], n), "x": rng.integers(1000, 1300, n),
                       "y": rng.integers(2000, 2200, n), "MIDCount": rng.integers(1, 4, n), "ExonCount": 1})
    path = tmp_path / "s.gem.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("#FileFormat=GEMv0.1\n#BinSize=1\n")
        df.to_csv(fh, sep="\t", index=False)
    monkeypatch.setattr(io, "GEM_CHUNK", 700)  # several chunks, summed across them
    b = io.read(str(path), bin_size=50)
    assert b.uns["stereoseq"]["bin_size"] == 50
    assert b.n_obs == 6 * 4 and b.X.sum() == df["MIDCount"].sum()
    # one bin by hand: x in [1050, 1100), y in [2100, 2150), gene Mbp
    sel = df[(df.x // 50 == 21) & (df.y // 50 == 42) & (df.geneID == "Mbp")]
    assert b["21_42", "Mbp"].X.toarray()[0, 0] == sel["MIDCount"].sum()
    assert np.allclose(b["21_42"].obsm["spatial"], [[1075.0, 2125.0]])
    # bins form a square grid: the default graph gives each inner bin its 4 neighbours
    from spotscape.graph import spatial_graph

    deg = np.asarray(spatial_graph(b.obsm["spatial"]).sum(1)).ravel()
    assert deg.max() == 4 and deg.min() == 2


def test_platform_folders_fail_clearly(tmp_path, cells):
    write_xenium(tmp_path / "xe", cells)
    (tmp_path / "xe" / "cells.csv.gz").unlink()
    with pytest.raises(SpotscapeInputError, match="cells.csv.gz"):
        io.read(str(tmp_path / "xe"))
    write_cosmx(tmp_path / "cx", cells)
    next((tmp_path / "cx").glob("*metadata_file*")).unlink()
    with pytest.raises(SpotscapeInputError, match="metadata_file"):
        io.read(str(tmp_path / "cx"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpotscapeInputError, match="cannot tell the format of the folder"):
        io.read(str(tmp_path / "empty"))
    (tmp_path / "bad.gem").write_text("a\tb\n1\t2\n")
    with pytest.raises(SpotscapeInputError, match="not a GEM file"):
        io.read(str(tmp_path / "bad.gem"))
    with pytest.raises(SpotscapeInputError, match="bin_size"):
        io.read_stereoseq(str(tmp_path / "bad.gem"), bin_size=0)


def test_cli_runs_on_a_xenium_folder(tmp_path, cells):
    import json
    import subprocess
    import sys

    write_xenium(tmp_path / "xe", cells)
    res = subprocess.run([sys.executable, "-m", "spotscape.cli", "run", str(tmp_path / "xe"), "--out", str(tmp_path / "out"),
                          "--epochs", "5", "--n-domains", "3", "--quiet", "--device", "cpu"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["spots"] == cells.n_obs and m["n_domains"] == 3
