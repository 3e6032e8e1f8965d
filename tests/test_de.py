"""Differential expression between conditions within domains (spotscape.tl.condition_de) on real DLPFC counts."""
import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from conftest import shared_data
from spotscape import SpotscapeInputError
from spotscape.pl._de import de_dotplot
from spotscape.tl._de import COLUMNS, condition_de

SLICE = "dlpfc_subject3_banksy/{}.h5ad"
PLANT_DOMAIN = "L5"


def _read(name):
    a = ad.read_h5ad(shared_data(SLICE.format(name)))
    return a[a.obs["layer_guess"].notna()].copy()  # annotated layers only (28 unannotated spots)


def _top_genes(a, n):
    return a.var_names[np.argsort(-np.asarray(a.X.mean(axis=0)).ravel(), kind="stable")[:n]]


@pytest.fixture(scope="module")
def split_slice():
    """151673 (raw counts, 2,000 highest-mean genes), spots split at random (seeded) into conditions A and B."""
    a = _read("151673")
    a = a[:, _top_genes(a, 2000)].copy()
    a.obs["condition"] = np.where(np.random.default_rng(0).random(a.n_obs) < 0.5, "A", "B")
    return a


@pytest.fixture(scope="module")
def two_slices():
    """151673 and 151674 as two conditions: 1,000 highest-mean genes of the genes both slices hold."""
    s = {k: _read(k) for k in ("151673", "151674")}
    common = s["151673"].var_names.intersection(s["151674"].var_names)
    genes = _top_genes(s["151673"][:, common], 1000)
    return ad.concat([x[:, genes] for x in s.values()], label="condition", keys=list(s), index_unique="-")


def test_planted_effect_found_and_null_stays_quiet(split_slice, tmp_path):
    a = split_slice.copy()
    dom = (a.obs["layer_guess"] == PLANT_DOMAIN).to_numpy()
    order = np.argsort(-np.asarray(a[dom].X.mean(axis=0)).ravel(), kind="stable")
    planted = a.var_names[order[[50, 80, 110, 140, 170]]]  # moderately expressed in L5: ~2-5 counts per spot
    x = a.X.toarray()
    rows = np.where(dom & (a.obs["condition"] == "B").to_numpy())[0]
    x[np.ix_(rows, a.var_names.get_indexer(planted))] *= 3  # still integer counts
    a.X = sp.csr_matrix(x)
    before = a.X.copy()

    tab = condition_de(a, "condition", "layer_guess")
    assert (a.X != before).nnz == 0  # the user's counts are untouched
    assert list(tab.columns) == COLUMNS
    assert set(tab["condition"]) == {"B"} and set(tab["reference"]) == {"A"}
    hit = tab[(tab["domain"] == PLANT_DOMAIN) & tab["gene"].isin(planted)]
    assert len(hit) == 5
    assert (hit["qval"] < 0.05).all(), hit  # measured: q <= 1e-23 for all five
    assert (hit["logfoldchange"] > 0.5).all(), hit  # measured: 1.0 to 1.5 (log2 3 = 1.58)
    elsewhere = tab[(tab["domain"] != PLANT_DOMAIN) & tab["gene"].isin(planted)]
    assert (elsewhere["qval"] >= 0.05).all(), elsewhere
    null = tab[~tab["gene"].isin(planted)]
    assert len(null) == 7 * (2000 - 5)
    assert (null["qval"] < 0.05).mean() < 0.01  # measured: 0 of 13,965 on this random split
    # sorted by domain (category order) then q; the planted genes lead their domain
    assert list(dict.fromkeys(tab["domain"])) == ["L1", "L2", "L3", "L4", "L5", "L6", "WM"]
    assert set(tab[tab["domain"] == PLANT_DOMAIN]["gene"].iloc[:5]) == set(planted)
    # h5ad-writable record in uns, which rebuilds the table
    a.write_h5ad(tmp_path / "de.h5ad")
    back = ad.read_h5ad(tmp_path / "de.h5ad").uns["spotscape_de"]
    pd.testing.assert_frame_equal(pd.DataFrame(back["table"])[COLUMNS], tab, check_dtype=False)

    png = tmp_path / "de.png"
    de_dotplot(tab, n_genes=5, path=png, gene_labels=a.var["gene_symbol"])
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_two_real_slices_as_conditions(two_slices, split_slice):
    j = two_slices
    tab = condition_de(j, "condition", "layer_guess", inplace=False)
    assert "spotscape_de" not in j.uns
    assert list(tab.columns) == COLUMNS
    assert set(tab["domain"]) == set(j.obs["layer_guess"].dropna().astype(str))  # all 7 layers have >= 10 spots per slice
    assert (tab.groupby("domain").size() == 1000).all()
    assert tab["qval"].between(0, 1).all() and (tab["qval"] >= tab["pval"] - 1e-12).all()
    assert set(tab["reference"]) == {"151673"}
    n = j.obs.groupby(["layer_guess", "condition"], observed=True).size()
    row = tab.drop_duplicates("domain").set_index("domain")
    assert row.loc["WM", "n_condition"] == n[("WM", "151674")] and row.loc["WM", "n_reference"] == n[("WM", "151673")]
    assert tab[["pct_condition", "pct_reference"]].stack().between(0, 1).all()
    # real meaning: two slices (a batch / section difference) differ far more than two random halves of one slice
    # (measured: 27% of gene-domain tests significant between slices, 0.01% between random halves)
    a = split_slice[:, j.var_names].copy()
    null = condition_de(a, "condition", "layer_guess", inplace=False)
    frac_slices, frac_null = (tab["qval"] < 0.05).mean(), (null["qval"] < 0.05).mean()
    assert frac_slices > 0.1 and frac_null < 0.01
    # reference flips the sign of the fold changes
    flip = condition_de(j, "condition", "layer_guess", reference="151674", genes=list(j.var_names[:50]), inplace=False)
    m = tab.merge(flip, on=["domain", "gene"], suffixes=("", "_f"))
    assert len(m) == 7 * 50 and np.allclose(m["logfoldchange"], -m["logfoldchange_f"], atol=1e-4)
    assert np.allclose(m["pval"], m["pval_f"])


def test_small_domains_are_reported_not_dropped(split_slice):
    a = split_slice[:, :100].copy()
    with pytest.warns(UserWarning, match="skipped"):
        tab = condition_de(a, "condition", "layer_guess", min_spots=200)
    # at min_spots=200 per half, only L3 (989 spots), L5 (673), L6 (692) and WM (513) are tested
    assert set(tab["domain"]) == {"L3", "L5", "L6", "WM"}
    assert [s["domain"] for s in tab.attrs["skipped"]] == ["L1", "L2", "L4"]
    assert list(a.uns["spotscape_de"]["skipped"]["domain"]) == ["L1", "L2", "L4"]


def test_bad_inputs_raise_before_work(split_slice):
    a = split_slice[:, :20].copy()
    with pytest.raises(SpotscapeInputError, match="no column 'cond'"):
        condition_de(a, "cond", "layer_guess")
    with pytest.raises(SpotscapeInputError, match="no column 'spotscape_domain'"):
        condition_de(a, "condition")
    one = a.copy()
    one.obs["condition"] = "A"
    with pytest.raises(SpotscapeInputError, match="at least 2"):
        condition_de(one, "condition", "layer_guess")
    with pytest.raises(SpotscapeInputError, match="reference 'C' is not a condition"):
        condition_de(a, "condition", "layer_guess", reference="C")
    with pytest.raises(SpotscapeInputError, match="no domain"):
        condition_de(a, "condition", "layer_guess", min_spots=5000)
    neg = a.copy()
    neg.X = neg.X.toarray() - 1.0
    with pytest.raises(SpotscapeInputError, match="negative"):
        condition_de(neg, "condition", "layer_guess")
    cpm = a.copy()  # normalised, not logged: once read as log values (log fold changes up to 100)
    lib = np.asarray(split_slice.X.sum(axis=1)).ravel()
    cpm.X = sp.csr_matrix(sp.diags(1e6 / lib) @ sp.csr_matrix(a.X, dtype=np.float64))
    with pytest.raises(SpotscapeInputError, match="normalised but not log-transformed"):
        condition_de(cpm, "condition", "layer_guess")
    dup = a.copy()
    dup.var_names = [dup.var_names[0]] + list(dup.var_names[1:-1]) + [dup.var_names[0]]
    with pytest.raises(SpotscapeInputError, match="duplicate gene names"):
        condition_de(dup, "condition", "layer_guess")
    assert "spotscape_de" not in a.uns


def test_cli_de(split_slice, tmp_path):
    """`spotscape de` writes the table as CSV; a bad key fails with exit 2 and no file."""
    from spotscape.cli import main

    a = split_slice[:, :300].copy()
    src, out, png = tmp_path / "in.h5ad", tmp_path / "de.csv", tmp_path / "de.png"
    a.write_h5ad(src)
    assert main(["de", str(src), "--out", str(out), "--condition-key", "condition", "--domain-key", "layer_guess",
                 "--plot", str(png)]) == 0
    tab = pd.read_csv(out)
    assert list(tab.columns) == COLUMNS and len(tab) == 7 * 300 and png.stat().st_size > 1000
    assert tab["qval"].between(0, 1).all()
    bad = tmp_path / "bad.csv"
    assert main(["de", str(src), "--out", str(bad), "--condition-key", "nope", "--domain-key", "layer_guess"]) == 2
    assert main(["de", str(src), "--out", str(tmp_path / "x.h5ad"), "--condition-key", "condition"]) == 2
    assert not bad.exists()
