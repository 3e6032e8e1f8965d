import numpy as np
import pytest

from spotscape import SpotscapeInputError, tl
from spotscape.datasets import simulate_tissue
from spotscape.metrics import cluster_scores
from spotscape.tl._domains import refine_labels


@pytest.fixture(scope="module")
def embedded():
    """A simulated tissue whose 'embedding' is a noisy one-hot of the truth (4 domains)."""
    a = simulate_tissue(n_spots=900, n_genes=50, n_domains=4, seed=2)
    rng = np.random.default_rng(0)
    truth = a.obs["domain"].cat.codes.to_numpy()
    a.obsm["X_spotscape"] = np.eye(4)[truth] * 3 + rng.normal(0, 0.6, (a.n_obs, 4))
    return a


@pytest.mark.parametrize("method", ["kmeans", "gmm", "leiden"])
def test_methods_recover_planted_domains(embedded, method):
    a = embedded.copy()
    tl.domains(a, n_domains=4, method=method)
    assert a.obs["spotscape_domain"].nunique() == 4
    assert cluster_scores(a.obs["domain"], a.obs["spotscape_domain"])["ari"] > 0.8
    assert a.uns["spotscape"]["domain_method"] == method


def test_k_estimated_when_not_given(embedded):
    a = embedded.copy()
    tl.domains(a)
    assert a.uns["spotscape"]["n_domains_estimated"] == 4


def test_refinement_fixes_isolated_spots(embedded):
    a = embedded.copy()
    truth = a.obs["domain"].cat.codes.to_numpy()
    noisy = truth.copy()
    rng = np.random.default_rng(1)
    flip = rng.choice(len(noisy), 60, replace=False)
    noisy[flip] = (noisy[flip] + 1) % 4
    fixed = refine_labels(noisy, a.obsm["spatial"])
    assert (fixed == truth).mean() > (noisy == truth).mean() + 0.04
    tl.domains(a, n_domains=4, refine=True)
    labels = a.obs["spotscape_domain"].astype(int).to_numpy()
    assert np.array_equal(a.obs["spotscape_domain_refined"].astype(int).to_numpy(), refine_labels(labels, a.obsm["spatial"]))


def test_bad_method_and_missing_rep(embedded):
    with pytest.raises(SpotscapeInputError, match="unknown domain method"):
        tl.domains(embedded.copy(), n_domains=4, method="mclust")
    b = embedded.copy()
    del b.obsm["X_spotscape"]
    with pytest.raises(SpotscapeInputError, match="missing"):
        tl.domains(b, n_domains=3)


def test_refine_arguments_checked_before_anything_is_written(embedded):
    for kwargs, match in [(dict(slice_key="nope"), "slice_key 'nope' is not a column"),
                          (dict(spatial_key="xy"), r"obsm\['xy'\]")]:
        a = embedded.copy()
        with pytest.raises(SpotscapeInputError, match=match):
            tl.domains(a, n_domains=3, refine=True, **kwargs)
        assert "spotscape_domain" not in a.obs and "spotscape" not in a.uns
    a = embedded.copy()
    a.obsm["X_spotscape"][3] = np.nan
    with pytest.raises(SpotscapeInputError, match="NaN or infinite"):
        tl.domains(a, n_domains=3)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fewer_domains_than_asked_warns(embedded):
    a = embedded.copy()
    a.obsm["X_spotscape"] = np.ones((a.n_obs, 4))
    with pytest.warns(UserWarning, match=r"1 domain\(s\) came out where 3 were asked"):
        tl.domains(a, n_domains=3)
    assert a.uns["spotscape"]["n_domains"] == 1


def test_refinement_never_votes_across_slices(embedded):
    # two copies of one slice on the same coordinates: with groups, each copy is refined alone
    xy = np.vstack([embedded.obsm["spatial"]] * 2)
    truth = embedded.obs["domain"].cat.codes.to_numpy()
    a = truth.copy()
    flip = np.random.default_rng(1).choice(len(a), 60, replace=False)
    a[flip] = (a[flip] + 1) % 4  # isolated wrong spots, for the vote to fix
    b = (a + 1) % 4  # the second slice labelled differently everywhere
    both, groups = np.concatenate([a, b]), np.repeat([0, 1], len(a))
    within = refine_labels(both, xy, groups=groups)
    assert (refine_labels(a, xy[: len(a)]) != a).any()  # the vote does change labels here
    assert np.array_equal(within, refine_labels(a, xy[: len(a)]).tolist() + refine_labels(b, xy[: len(b)]).tolist())
    assert not np.array_equal(within, refine_labels(both, xy))  # voting across the two copies would differ


def test_refine_of_several_slices_uses_their_column(embedded, tmp_path):
    """Slices on overlapping coordinates: tl.domains warns when refine would vote across obs['slice'];
    the CLI's `domains --refine` votes within obs['slice'] by default, as `spotscape run` writes it."""
    import anndata as ad

    from spotscape.cli import main

    b = embedded.copy()
    b.obsm["X_spotscape"] = b.obsm["X_spotscape"][:, [1, 2, 3, 0]]  # the same tissue, its domains in other clusters
    both = ad.concat([embedded, b], label="slice", keys=["a", "b"], index_unique="-")
    across = both.copy()
    with pytest.warns(UserWarning, match="pass slice_key='slice'"):
        tl.domains(across, n_domains=4, refine=True)
    within = both.copy()
    tl.domains(within, n_domains=4, refine=True, slice_key="slice")
    assert not across.obs["spotscape_domain_refined"].equals(within.obs["spotscape_domain_refined"])
    both.write_h5ad(tmp_path / "both.h5ad")
    assert main(["domains", str(tmp_path / "both.h5ad"), "--out", str(tmp_path / "d.h5ad"), "--n-domains", "4", "--refine"]) == 0
    cli = ad.read_h5ad(tmp_path / "d.h5ad")
    assert cli.obs["spotscape_domain_refined"].astype(str).equals(within.obs["spotscape_domain_refined"].astype(str))


def test_simulated_tissue_geometries():
    """The demo tissue's layers: straight bands along y (default) or concentric rings (the bulb's shape,
    benchmarks/thin_domains.py --simulated): the domain index rises with y, or with the distance
    from the centre."""
    from scipy.stats import spearmanr

    bands = simulate_tissue(n_spots=900, n_genes=50, n_domains=5, seed=1)
    rings = simulate_tissue(n_spots=900, n_genes=50, n_domains=5, seed=1, geometry="rings")
    for a, axis in ((bands, bands.obsm["spatial"][:, 1]),
                    (rings, np.linalg.norm(rings.obsm["spatial"] - rings.obsm["spatial"].mean(0), axis=1))):
        assert a.obs["domain"].nunique() == 5
        assert spearmanr(a.obs["domain"].cat.codes, axis)[0] > 0.9
    assert spearmanr(rings.obs["domain"].cat.codes, rings.obsm["spatial"][:, 1])[0] < 0.5  # rings do not follow y
    with pytest.raises(ValueError, match="geometry"):
        simulate_tissue(n_spots=100, geometry="spiral")
    with pytest.raises(ValueError, match="n_spots >= max"):
        simulate_tissue(n_spots=2)
    with pytest.raises(ValueError, match="hold only 3 of the 5 domains"):
        simulate_tissue(n_spots=10, n_genes=20)
