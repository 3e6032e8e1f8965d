"""Trajectory, denoising/imputation, report and the task subcommands, on real DLPFC 151673.

One model is trained once (module fixture) on 151673 with 10 % of its non-zero counts hidden:
its decoder is scored at the hidden entries (imputation) and its embedding serves the trajectory.
"""
import json
import os

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import spotscape as ss
from conftest import shared_data
from spotscape.cli import main

ORDER = ["L1", "L2", "L3", "L4", "L5", "L6", "WM"]


@pytest.fixture(scope="module")
def masked_run(tmp_path_factory):
    a = ad.read_h5ad(shared_data("dlpfc_subject3_banksy/151673.h5ad"))
    masked, rows, cols = ss.tl.mask_nonzero(a, 0.1, seed=0)
    m = ss.Spotscape(masked, n_top_genes=3000, seed=0)
    m.fit(epochs=60, progress=False)
    m.embed()
    path = tmp_path_factory.mktemp("model") / "model.pt"
    m.save(str(path))
    return a, masked, rows, cols, m, path


def test_mask_nonzero_hides_the_asked_fraction(masked_run):
    a, masked, rows, cols, _, _ = masked_run
    nnz = a.X.nnz if hasattr(a.X, "nnz") else np.count_nonzero(a.X)
    assert abs(len(rows) / nnz - 0.1) < 0.005
    assert np.all(np.asarray(masked.X[rows, cols]).ravel() == 0)
    assert np.all(np.asarray(a.X[rows, cols]).ravel() > 0)  # the original is untouched
    assert masked.X.nnz == nnz - len(rows)


def test_imputation_beats_both_baselines(masked_run):
    a, masked, rows, cols, m, _ = masked_run
    d = ss.tl.denoise(m)
    assert d.shape == (a.n_obs, len(m.genes)) and list(d.var_names) == list(m.genes)
    assert "spotscape_denoised" not in masked.layers  # the model's AnnData is not changed
    x = d.layers["spotscape_input"]
    preds = {"spotscape": d.layers["spotscape_denoised"], "neighbour_mean": ss.tl.neighbour_mean(x, masked.obsm["spatial"]),
             "pca_30": ss.tl.pca_reconstruction(x, 30), "zero": np.zeros(x.shape, np.float32)}
    s = ss.tl.imputation_scores(a, masked, rows, cols, preds, m.genes)
    assert s["n_hidden"] > 50000
    for base in ("neighbour_mean", "pca_30", "zero"):
        assert s["spotscape"]["rmse"] < s[base]["rmse"], (base, s)
        assert s["spotscape"]["l1"] < s[base]["l1"], (base, s)


def _eta2(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per column: the fraction of variance explained by the groups."""
    total = values.var(0) * len(values)
    between = sum((groups == g).sum() * (values[groups == g].mean(0) - values.mean(0)) ** 2 for g in np.unique(groups))
    return between / np.maximum(total, 1e-12)


def test_denoising_sharpens_layer_structure(masked_run):
    """The denoised values of the most expressed genes follow the annotated layers more closely than
    the input does (variance explained by layer, per gene), while keeping each gene's pattern."""
    _, masked, _, _, m, _ = masked_run
    d = ss.tl.denoise(m)
    x = np.asarray(d.layers["spotscape_input"].todense())
    y = d.layers["spotscape_denoised"]
    ok = masked.obs["layer_guess"].notna().to_numpy()
    layers = masked.obs["layer_guess"].astype(str).to_numpy()[ok]
    top = np.argsort(-x.mean(0))[:200]
    ex, ey = _eta2(x[ok][:, top], layers), _eta2(y[ok][:, top], layers)
    assert np.median(ey) > 1.5 * np.median(ex), (np.median(ey), np.median(ex))
    assert (ey > ex).mean() > 0.8
    r = [np.corrcoef(x[:, g], y[:, g])[0, 1] for g in top]
    assert np.median(r) > 0.25, np.median(r)


def test_trajectory_recovers_layer_order(masked_run):
    _, masked, _, _, _, _ = masked_run
    a = masked.copy()
    r = ss.tl.trajectory(a, groups="layer_guess", root="L1", order=ORDER)
    assert r["spearman"] > 0.85, r["spearman"]
    med = r["group_median_pseudotime"]
    assert med[0] == min(med) and med[-1] == max(med)  # L1 first, white matter last
    conn = r["connectivities"].to_numpy()
    # PAGA links consecutive layers more strongly than layers two or more apart
    chain = np.mean([conn[i, i + 1] for i in range(6)])
    far = np.mean([conn[i, j] for i in range(7) for j in range(i + 2, 7)])
    assert chain > 3 * far, (chain, far)
    assert np.isnan(a.obs["spotscape_pseudotime"][a.obs["layer_guess"].isna()]).all()
    with pytest.raises(ss.SpotscapeInputError, match="root"):
        ss.tl.trajectory(a, groups="layer_guess", root="L9")
    with pytest.raises(ss.SpotscapeInputError, match="not a column"):
        ss.tl.trajectory(a, groups="nope")
    b = masked.copy()
    for order, match in [(ORDER + ["L9"], r"not groups \['L9'\]"), (ORDER[:-1] + ["L1"], r"missing \['WM'\]; repeated \['L1'\]")]:
        with pytest.raises(ss.SpotscapeInputError, match=match):
            ss.tl.trajectory(b, groups="layer_guess", root="L1", order=order)
        assert "spotscape_pseudotime" not in b.obs and "spotscape_paga" not in b.uns


def test_cli_tasks_end_to_end(masked_run, tmp_path):
    """domains -> trajectory -> impute (with the saved model) on files, then report on a run folder."""
    _, masked, _, _, _, model_path = masked_run
    src = tmp_path / "in.h5ad"
    masked.write_h5ad(src)
    dom = tmp_path / "dom.h5ad"
    assert main(["domains", str(src), "--out", str(dom), "--n-domains", "7", "--refine", "--label-key", "layer_guess"]) == 0
    b = ad.read_h5ad(dom)
    assert b.obs["spotscape_domain"].nunique() == 7 and "spotscape_domain_refined" in b.obs
    traj = tmp_path / "traj.h5ad"
    png = tmp_path / "paga.png"
    assert main(["trajectory", str(dom), "--out", str(traj), "--groups", "layer_guess", "--root", "L1", "--order", *ORDER,
                 "--plot", str(png)]) == 0
    assert ad.read_h5ad(traj).uns["spotscape_paga"]["spearman"] > 0.85
    assert png.stat().st_size > 10000
    imp = tmp_path / "imp.h5ad"
    assert main(["impute", str(src), "--model", str(model_path), "--out", str(imp)]) == 0
    c = ad.read_h5ad(imp)
    assert "spotscape_denoised" in c.layers and c.n_obs == masked.n_obs
    want = ss.tl.denoise(masked_run[4]).layers["spotscape_denoised"]  # the saved model's own decoder output
    np.testing.assert_allclose(np.asarray(c.layers["spotscape_denoised"]), np.asarray(want), rtol=1e-5, atol=1e-5)
    # bad inputs: a clear error (exit 2) and no output file
    bad = tmp_path / "bad.h5ad"
    assert main(["trajectory", str(dom), "--out", str(bad), "--groups", "nope"]) == 2
    assert main(["domains", str(src), "--out", str(bad), "--n-domains", "1"]) == 2
    assert main(["domains", str(src), "--out", str(tmp_path / "x.txt")]) == 2
    assert main(["impute", str(src), "--model", str(model_path), "--holdout", "0.1", "--out", str(bad)]) == 2
    assert not bad.exists()


def test_cli_impute_holdout_scores(tmp_path):
    """`spotscape impute --holdout`: trains on the masked counts and scores the hidden entries; the
    decoder must beat predicting zero there, on the entries the test hides again with the same seed."""
    a = ss.datasets.simulate_tissue(n_spots=600, n_genes=200, n_domains=4, seed=3)
    src, out = tmp_path / "sim.h5ad", tmp_path / "imp.h5ad"
    a.write_h5ad(src)
    assert main(["impute", str(src), "--holdout", "0.1", "--epochs", "20", "--seed", "0", "--quiet", "--out", str(out)]) == 0
    c = ad.read_h5ad(out)
    scores = c.uns["spotscape"]["imputation"]
    masked, rows, cols = ss.tl.mask_nonzero(a, 0.1, seed=0)
    zero = ss.tl.imputation_scores(a, masked, rows, cols, {"zero": np.zeros((a.n_obs, c.n_vars))}, list(c.var_names))
    assert scores["n_hidden"] == zero["n_hidden"] > 0.05 * len(rows)
    assert scores["spotscape"]["rmse"] < 0.8 * zero["zero"]["rmse"]
    assert {"neighbour_mean", "pca_30"} <= set(scores)


def test_report_from_demo_run(tmp_path):
    out = tmp_path / "run"
    assert main(["demo", "--out", str(out), "--n-spots", "800", "--epochs", "20", "--quiet"]) == 0
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert page.count("<img") >= 2 and "data:image/png;base64," in page  # domains + UMAP, inlined
    m = json.loads((out / "metrics.json").read_text())
    assert f"{m['pooled']['ari']:.3f}" in page
    assert os.path.getsize(out / "umap.png") > 10000
    assert main(["report", str(tmp_path / "nothing_here")]) == 2


def test_denoise_keeps_the_spot_order_of_a_split_anndata(small_tissue):
    """One AnnData split by slice_key with interleaved slices: denoise returns its spots in their own
    order, each row the model's input for that spot."""
    a = small_tissue.copy()
    a.obs["s"] = np.where(np.arange(a.n_obs) % 3 == 0, "b", "a")  # slices interleaved in the rows
    m = ss.Spotscape(a, slice_key="s", seed=0)
    m.fit(epochs=2, progress=False)
    d = ss.tl.denoise(m)
    assert list(d.obs_names) == list(a.obs_names) and list(d.obs["s"]) == list(a.obs["s"])
    np.testing.assert_allclose(d.obsm["spatial"], a.obsm["spatial"])
    from spotscape.pp import normalize

    np.testing.assert_allclose(d.X.toarray(), normalize(a, m.genes).toarray(), rtol=1e-5)


def test_trajectory_warns_on_spots_it_cannot_reach():
    """A group far from the rest in the representation: its spots get inf pseudotime, and the call says so."""
    import anndata as ad

    rng = np.random.default_rng(0)
    z = np.vstack([rng.normal(0, 0.3, (60, 5)), rng.normal(0, 0.3, (60, 5)) + [1, 0, 0, 0, 0], rng.normal(0, 0.3, (60, 5)) + 100])
    a = ad.AnnData(np.zeros((180, 1), dtype=np.float32))
    a.obsm["X_spotscape"] = z
    a.obs["g"] = pd.Categorical(np.repeat(["A", "B", "C"], 60))
    with pytest.warns(UserWarning, match="60 spots are not connected to the root"):
        ss.tl.trajectory(a, groups="g", root="A", n_neighbors=10)
    assert np.isinf(a.obs["spotscape_pseudotime"][120:]).all() and np.isfinite(a.obs["spotscape_pseudotime"][:120]).all()
