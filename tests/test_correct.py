"""Slice correction of the representation by mutual nearest neighbours (``spotscape.tl.mnn_correct``)."""
import anndata as ad
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

import spotscape as ss
from spotscape import SpotscapeInputError


def _slices(seed=0, n=600, dims=16, domains=4, shift=0.6):
    """Two slices of one layered tissue in an embedding: each spot = its domain's centre plus a
    smooth position inside the domain plus noise; the second slice's spots are moved by an offset
    that differs per domain (a batch effect that is not one global shift)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(domains, dims)) * 2.0
    axis = rng.normal(size=(domains, dims))
    offsets = rng.normal(size=(domains, dims)) * shift
    zs, labels = [], []
    for s in range(2):
        lab = rng.integers(0, domains, n)
        pos = rng.uniform(-1, 1, n)[:, None]
        z = centres[lab] + 0.5 * pos * axis[lab] + rng.normal(scale=0.15, size=(n, dims))
        if s == 1:
            z = z + offsets[lab]
        zs.append(z)
        labels.append(lab)
    return np.vstack(zs).astype(np.float32), np.concatenate(labels), np.repeat(["a", "b"], n)


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
    c = ss.tl.mnn_correct(z, groups)
    assert np.array_equal(z, before)  # the input is not changed
    assert c.dtype == np.float32 and c.shape == z.shape
    assert np.allclose(np.linalg.norm(c, axis=1), 1, atol=1e-5)
    # the reference slice (the first) only goes to unit length
    ref = groups == "a"
    assert np.allclose(c[ref], z[ref] / np.linalg.norm(z[ref], axis=1, keepdims=True), atol=1e-6)
    mixed_before, mixed_after = _other_slice_fraction(z, groups), _other_slice_fraction(c, groups)
    assert mixed_before < 0.05 and mixed_after > 0.25, (mixed_before, mixed_after)  # 0.5 = perfectly mixed
    assert _ari(c, labels, 4) > 0.95  # the pooled domains stay (1.0 before the correction)
    assert np.array_equal(c, ss.tl.mnn_correct(z, groups))  # deterministic


def test_order_names_the_reference_and_anndata_helper():
    z, _, groups = _slices(seed=1, n=300)
    c = ss.tl.mnn_correct(z, groups, order=["b", "a"])
    b = groups == "b"
    assert np.allclose(c[b], z[b] / np.linalg.norm(z[b], axis=1, keepdims=True), atol=1e-6)
    adata = ad.AnnData(np.zeros((len(z), 1), dtype=np.float32), obsm={"X_spotscape": z})
    adata.obs["slice"] = groups
    out = ss.tl.correct_slices(adata)
    assert np.array_equal(adata.obsm["X_spotscape_mnn"], out)
    assert np.array_equal(out, ss.tl.mnn_correct(z, groups))


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
    for order in (["a"], ["a", "b", "c"], ["a", "a", "b"]):
        with pytest.raises(SpotscapeInputError, match="every slice once"):
            ss.tl.mnn_correct(z, groups, order=order)
