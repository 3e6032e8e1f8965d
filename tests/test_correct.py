"""Slice correction of the representation by mutual nearest neighbours (``spotscape.tl.mnn_correct``)."""
import anndata as ad
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

import spotscape as ss
from spotscape import SpotscapeInputError


def _slices(seed=0, n=600, dims=16, domains=4, shift=0.6, slices=2):
    """Slices of one layered tissue in an embedding: each spot = its domain's centre plus a smooth
    position inside the domain plus noise; each slice after the first has its spots moved by an
    offset of its own that differs per domain (a batch effect that is not one global shift)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(domains, dims)) * 2.0
    axis = rng.normal(size=(domains, dims))
    zs, labels = [], []
    for s in range(slices):
        offsets = rng.normal(size=(domains, dims)) * shift
        lab = rng.integers(0, domains, n)
        pos = rng.uniform(-1, 1, n)[:, None]
        z = centres[lab] + 0.5 * pos * axis[lab] + rng.normal(scale=0.15, size=(n, dims))
        if s > 0:
            z = z + offsets[lab]
        zs.append(z)
        labels.append(lab)
    return np.vstack(zs).astype(np.float32), np.concatenate(labels), np.repeat(list("abcdefgh"[:slices]), n)


def _other_slice_fraction(z, groups, k=30):
    """Mean fraction of each spot's k nearest neighbours (cosine) that lie in another slice."""
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    idx = NearestNeighbors(n_neighbors=k + 1).fit(u).kneighbors(u, return_distance=False)[:, 1:]
    return float((groups[idx] != groups[:, None]).mean())


def _ari(z, labels, k):
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    return adjusted_rand_score(labels, KMeans(k, n_init=10, random_state=0).fit_predict(u))


@pytest.mark.parametrize("shift", [0.6, 2.0])
def test_correction_mixes_the_slices_and_keeps_the_domains(shift):
    z, labels, groups = _slices(shift=shift)
    before = z.copy()
    one = ss.tl.mnn_correct(z, groups, passes=1)
    assert np.array_equal(z, before)  # the input is not changed
    # with one pass the reference slice (the first) only goes to unit length
    ref = groups == "a"
    assert np.allclose(one[ref], z[ref] / np.linalg.norm(z[ref], axis=1, keepdims=True), atol=1e-6)
    c = ss.tl.mnn_correct(z, groups)  # two passes, the default
    assert np.array_equal(z, before)
    assert c.dtype == np.float32 and c.shape == z.shape
    assert np.allclose(np.linalg.norm(c, axis=1), 1, atol=1e-5)
    assert not np.allclose(c, one, atol=1e-3)  # the second pass moved the first slice too
    mixed_before = _other_slice_fraction(z, groups)
    assert mixed_before < 0.05, mixed_before
    for out in (one, c):
        assert _other_slice_fraction(out, groups) > 0.25  # 0.5 = perfectly mixed
        assert _ari(out, labels, 4) > 0.95  # the pooled domains stay (1.0 before the correction)
    assert np.array_equal(c, ss.tl.mnn_correct(z, groups))  # deterministic


def test_second_pass_mixes_more_whichever_slice_is_first():
    """Three slices with batch effects of their own: the reverse second pass (the default) mixes
    them more than one pass, whatever the order, and keeps the domains."""
    z, labels, groups = _slices(seed=3, n=400, shift=1.0, slices=3)
    for order in (["a", "b", "c"], ["b", "a", "c"], ["c", "a", "b"]):
        one = ss.tl.mnn_correct(z, groups, order=order, passes=1)
        two = ss.tl.mnn_correct(z, groups, order=order)
        assert _other_slice_fraction(two, groups) > _other_slice_fraction(one, groups) + 0.05  # 2/3 = perfectly mixed
        assert _ari(two, labels, 4) > 0.95


def _own_neighbours_kept(before, after, groups, k=10):
    """Mean share of each spot's k nearest spots of its own slice (cosine) that are still among them after."""
    kept = []
    for g in np.unique(groups):
        idx = [NearestNeighbors(n_neighbors=k + 1).fit(u).kneighbors(u, return_distance=False)[:, 1:]
               for u in (x[groups == g] / np.linalg.norm(x[groups == g], axis=1, keepdims=True) for x in (before, after))]
        kept += [len(set(a) & set(b)) / k for a, b in zip(*idx)]
    return float(np.mean(kept))


def test_smoothed_moves_keep_each_slice_together():
    """Each spot's move averaged with its own slice's nearest spots' (the default, smooth=5): spots
    that were neighbours stay neighbours more often than with each spot's own move (smooth=1), and
    the slices still mix and keep their domains."""
    z, labels, groups = _slices(seed=2, n=500, shift=1.0, slices=3)
    own = ss.tl.mnn_correct(z, groups, smooth=1)
    smoothed = ss.tl.mnn_correct(z, groups)
    assert _own_neighbours_kept(z, smoothed, groups) > _own_neighbours_kept(z, own, groups) + 0.01  # 0.862 against 0.840
    assert _other_slice_fraction(smoothed, groups) > 0.25 and _ari(smoothed, labels, 4) > 0.95
    for bad in (0, 2.0, True):
        with pytest.raises(SpotscapeInputError, match="smooth must be a whole number >= 1"):
            ss.tl.mnn_correct(z, groups, smooth=bad)


def test_order_names_the_reference_and_anndata_helper():
    z, _, groups = _slices(seed=1, n=300)
    c = ss.tl.mnn_correct(z, groups, order=["b", "a"], passes=1)
    b = groups == "b"
    assert np.allclose(c[b], z[b] / np.linalg.norm(z[b], axis=1, keepdims=True), atol=1e-6)
    adata = ad.AnnData(np.zeros((len(z), 1), dtype=np.float32), obsm={"X_spotscape": z})
    adata.obs["slice"] = groups
    returned = ss.tl.correct_slices(adata, key_added=None)
    assert np.array_equal(returned, ss.tl.mnn_correct(z, groups)) and not adata.obsm.keys() - {"X_spotscape"} and not adata.uns
    out = ss.tl.correct_slices(adata)
    assert np.array_equal(adata.obsm["X_spotscape_mnn"], out)
    assert np.array_equal(out, ss.tl.mnn_correct(z, groups))
    info = adata.uns["spotscape"]["slice_correction"]
    assert info["order"] == ["a", "b"] and info["passes"] == 2 and info["k"] == 20 and info["use_rep"] == "X_spotscape"
    assert info["smooth"] == 5


def test_bad_input_is_refused_with_the_fix():
    z, _, groups = _slices(n=50)
    adata = ad.AnnData(np.zeros((len(z), 1), dtype=np.float32), obsm={"X_spotscape": z})
    with pytest.raises(SpotscapeInputError, match="slice_key"):
        ss.tl.correct_slices(adata)
    adata.obs["slice"] = "one"
    with pytest.raises(SpotscapeInputError, match="two or more"):
        ss.tl.correct_slices(adata)
    with pytest.raises(SpotscapeInputError, match="embed first"):
        ss.tl.correct_slices(adata, use_rep="X_other")
    with pytest.raises(SpotscapeInputError, match="one per spot"):
        ss.tl.mnn_correct(z, groups[:-1])
    with pytest.raises(SpotscapeInputError, match="passes"):
        ss.tl.mnn_correct(z, groups, passes=3)
    for order in (["a"], ["a", "b", "c"], ["a", "a", "b"]):
        with pytest.raises(SpotscapeInputError, match="every slice once"):
            ss.tl.mnn_correct(z, groups, order=order)
