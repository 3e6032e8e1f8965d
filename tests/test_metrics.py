"""The scIB slice-mixing metrics that `spotscape run` reports for several slices (and the peers
benchmark scores every tool with): mixed slices score near 1, separated ones near 0."""
import numpy as np
import pytest

from spotscape import SpotscapeInputError
from spotscape.metrics import batch_mixing, lisi


def _reference_lisi(x, batch, perplexity=30):
    """One spot at a time, as Harmony and scIB write it: the vectorised form must agree (to rounding)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(3 * perplexity, x.shape[0] - 1)
    d, idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    d, idx = d[:, 1:] ** 2, idx[:, 1:]
    codes = np.unique(batch, return_inverse=True)[1]
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        lo, hi, beta = 0.0, np.inf, 1.0
        for _ in range(50):
            p = np.exp(-(d[i] - d[i].min()) * beta)
            s = p.sum()
            h = np.log(s) + beta * np.sum((d[i] - d[i].min()) * p) / s
            if abs(h - np.log(perplexity)) < 1e-5:
                break
            if h > np.log(perplexity):
                lo, beta = beta, beta * 2 if hi == np.inf else (beta + hi) / 2
            else:
                hi, beta = beta, (beta + lo) / 2
        w = np.bincount(codes[idx[i]], weights=p / p.sum(), minlength=codes.max() + 1)
        out[i] = 1.0 / np.sum(w ** 2)
    return out


def _slices(shift, n=400, seed=0):
    """Three labels (well-separated blobs) in two slices; the second slice moved by ``shift``."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0, 0, 0], [8, 0, 0, 0], [0, 8, 0, 0]])
    labels = rng.integers(0, 3, 2 * n)
    batch = np.repeat(["s1", "s2"], n)
    x = centres[labels] + rng.normal(size=(2 * n, 4))
    x[n:, 2] += shift
    return x, batch, labels.astype(str)


def test_lisi_matches_the_spot_by_spot_form():
    x, batch, _ = _slices(shift=1.5, n=150)
    np.testing.assert_allclose(lisi(x, batch), _reference_lisi(x, batch), rtol=1e-12)  # equal here; rounding may differ elsewhere


def test_mixed_slices_score_high_and_separated_low():
    mixed = batch_mixing(*_slices(shift=0.0))
    apart = batch_mixing(*_slices(shift=30.0))
    assert mixed["ilisi"] > 0.85 and mixed["batch_asw"] > 0.9 and mixed["graph_conn"] > 0.95, mixed
    assert apart["ilisi"] < 0.02 and apart["batch_asw"] < 0.2, apart
    assert 0.45 < apart["graph_conn"] < 0.6, apart  # each label splits into its two slices' halves
    assert mixed["n_batches"] == 2 and mixed["spots_scored"] == 800


def test_without_labels_only_ilisi_and_unlabelled_spots_are_dropped():
    x, batch, labels = _slices(shift=0.0)
    assert set(batch_mixing(x, batch)) == {"spots_scored", "n_batches", "ilisi"}
    labels = labels.astype(object)
    labels[:100] = np.nan
    labels[100:150] = ""
    out = batch_mixing(x, batch, labels)
    assert out["spots_scored"] == 650 and {"batch_asw", "graph_conn"} <= set(out)


def test_large_inputs_are_subsampled_and_one_slice_is_not_scored():
    x, batch, labels = _slices(shift=0.0)
    out = batch_mixing(x, batch, labels, max_spots=300, seed=1)
    assert out["spots_scored"] == 300 and out == batch_mixing(x, batch, labels, max_spots=300, seed=1)
    one = batch_mixing(x[:400], batch[:400], labels[:400])
    assert one == {"spots_scored": 400, "n_batches": 1}
    with pytest.raises(SpotscapeInputError, match="one slice label per spot"):
        batch_mixing(x, batch[:10])
    with pytest.raises(SpotscapeInputError, match="give one per spot"):
        batch_mixing(x, batch, labels[:10])


def test_expression_coherence_tells_expression_domains_from_position_patches():
    """On the real olfactory bulb: its annotated layers follow the expression, patches of the tissue
    (k-means on the coordinates: what spotscape's domains look like where it fails) and random
    labels do not."""
    import anndata as ad
    from sklearn.cluster import KMeans

    from conftest import shared_data
    from spotscape import pp
    from spotscape.metrics import COHERENCE_WARN, expression_coherence

    a = ad.read_h5ad(shared_data("stahl2016_mob_and_bc_layers/mouse_olfactory_bulb_mOB_262spots.h5ad"))
    x = pp.normalize(a, pp.highly_variable_genes([a], 5000))
    xy = np.asarray(a.obsm["spatial"])
    lab = a.obs["layer"].astype(str).to_numpy()
    keep = np.flatnonzero(lab != "nan")
    truth = expression_coherence(x[keep], lab[keep], xy[keep])
    patches = [expression_coherence(x, KMeans(5, n_init=1, random_state=s).fit_predict(xy), xy) for s in range(3)]
    noise = expression_coherence(x, np.random.default_rng(0).integers(0, 5, a.n_obs), xy)
    assert truth > 0.7, truth
    assert max(patches) < COHERENCE_WARN < truth, patches
    assert abs(noise) < 0.1, noise
    assert expression_coherence(x[keep], lab[keep], xy[keep]) == truth  # same seed, same value
    # large slices: PCA and k-means fitted on a seeded subsample, applied to every spot
    assert expression_coherence(x[keep], lab[keep], xy[keep], max_spots=150) > COHERENCE_WARN
    assert np.isnan(expression_coherence(x, np.zeros(a.n_obs), xy))  # one domain: nothing to score
    # dense input gives the same; spots without a domain (NaN) are left out
    assert np.isclose(expression_coherence(x[keep].toarray(), lab[keep], xy[keep]), truth, atol=1e-6)
    with_missing = np.where(lab == "nan", None, lab).astype(object)
    assert np.isclose(expression_coherence(x, with_missing, xy), truth, atol=1e-6)
    # nothing to score: constant genes, or too few spots for the averaging to leave any variance
    assert np.isnan(expression_coherence(np.ones((50, 20)), np.arange(50) % 3, xy[:50]))
    assert np.isnan(expression_coherence(x[:6], ["a", "b"] * 3, xy[:6]))
    with pytest.raises(SpotscapeInputError, match="one row per spot"):
        expression_coherence(x, lab, xy[keep])
