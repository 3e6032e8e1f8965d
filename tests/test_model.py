import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from spotscape import Spotscape, tl
from spotscape._sparse import SparseMatrix
from spotscape._validate import SpotscapeInputError
from spotscape.datasets import simulate_tissue
from spotscape.metrics import cluster_scores


def _fit(adata, seed=0, epochs=15, **kw):
    return Spotscape(adata, seed=seed, device="cpu", **kw).fit(epochs=epochs, progress=False)


def test_same_seed_same_embedding_and_input_untouched(small_tissue):
    a = small_tissue.copy()
    before = a.X.copy()
    m1 = _fit(a)
    assert "X_spotscape" not in a.obsm  # fitting does not write into the user's AnnData
    assert (a.X != before).nnz == 0
    z1 = m1.embed()
    z2 = _fit(small_tissue.copy()).embed()
    assert np.array_equal(z1, z2)
    z3 = _fit(small_tissue.copy(), seed=1).embed()
    assert not np.allclose(z1, z3)
    assert a.obsm["X_spotscape"].shape == (a.n_obs, 64)
    assert a.uns["spotscape"]["epochs_run"] == 15


def test_embedding_is_unit_length_z_and_raw_z_on_request(small_tissue):
    a = small_tissue.copy()
    m = _fit(a)
    z = m.embed()
    assert np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    assert a.uns["spotscape"]["embedding"] == "unit-length z"
    raw = m.get_latent_representation(normalize=False)
    norms = np.linalg.norm(raw, axis=1)
    assert norms.std() > 0.01 * norms.mean()  # the raw z carries a length the default removes
    np.testing.assert_allclose(raw / norms[:, None], z, atol=1e-6)
    b = small_tissue.copy()
    assert np.array_equal(m.embed(b, normalize=False), raw)
    assert b.uns["spotscape"]["embedding"] == "raw z"


def test_save_load_round_trip(tmp_path, small_tissue):
    a = small_tissue.copy()
    m = _fit(a)
    z = m.embed()
    m.save(str(tmp_path / "m.pt"))
    m2 = Spotscape.load(str(tmp_path / "m.pt"), adata=small_tissue.copy())
    for k, v in m.net.state_dict().items():  # the very same weights ...
        assert torch.equal(m2.net.state_dict()[k].cpu(), v.cpu()), k
    # ... and the same embedding up to float rounding: on the 16-core CPU of an H100 machine
    # (torch 2.11, MKL) the loaded model's products came out 1e-6 apart, single-threaded too, while two
    # fits with one seed matched bit for bit there, in one process and across processes
    np.testing.assert_allclose(m2.get_latent_representation(), z, rtol=1e-5, atol=1e-5)
    assert m2.genes == m.genes
    # the file holds tensors and JSON only: it loads with weights_only=True
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    assert payload["format"] == "spotscape-model"


def test_learns_domains_on_simulated_tissue():
    a = simulate_tissue(n_spots=1200, n_genes=400, n_domains=4, seed=5)
    m = _fit(a, epochs=60)
    m.embed()
    tl.domains(a, n_domains=4)
    ari = cluster_scores(a.obs["domain"], a.obs["spotscape_domain"])["ari"]
    assert ari > 0.5


def _second_slice(a):
    """A copy of ``a`` with its own spot names, to stand for another slice."""
    b = a.copy()
    b.obs_names = [f"b{i}" for i in range(b.n_obs)]
    return b


def test_several_slices_and_slice_key(small_tissue):
    b = _second_slice(small_tissue)
    both = ad.concat([small_tissue, b], label="sample", keys=["s1", "s2"])
    both = both[np.random.default_rng(0).permutation(both.n_obs)].copy()  # slices interleaved
    m = Spotscape(both, slice_key="sample", n_domains=4, seed=0, device="cpu").fit(epochs=6, progress=False, warmup=0.5)
    assert set(m.history[-1]) >= {"re", "sc", "ss", "pcl"}
    assert "pcl" not in m.history[0]
    z = m.embed()
    assert both.obsm["X_spotscape"].shape == (both.n_obs, 64) and z.shape == (both.n_obs, 64)
    # each row is written back to its own spot: slices share no edge and eval-mode BatchNorm is
    # per spot, so embedding one slice alone must give the same rows
    for name in ["s1", "s2"]:
        mask = (both.obs["sample"] == name).to_numpy()
        alone = m.get_latent_representation(both[mask].copy())
        assert np.allclose(both.obsm["X_spotscape"][mask], alone, atol=1e-5)
    m2 = Spotscape([small_tissue.copy(), b], n_domains=4, seed=0, device="cpu").fit(epochs=6, progress=False)
    assert len(m2.slices) == 2


def test_slice_batchnorm_by_hand():
    """Each slice's rows standardised with that slice's own (biased) moments, then one shared scale
    and shift; without codes it is BatchNorm over all rows; given stats replace the moments."""
    from spotscape.model import SliceBatchNorm

    g = torch.Generator().manual_seed(0)
    h = torch.randn(7, 3, generator=g) * torch.tensor([1.0, 5.0, 0.2]) + torch.tensor([0.0, 3.0, -2.0])
    codes = torch.tensor([1, 0, 1, 1, 0, 0, 1])
    norm = SliceBatchNorm(3)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        norm.bias.copy_(torch.tensor([0.0, -1.0, 1.0]))
    out = norm(h, codes)
    hn, on = h.numpy().astype(np.float64), out.detach().numpy()
    for s in (0, 1):
        rows = hn[codes.numpy() == s]
        want = (rows - rows.mean(0)) / np.sqrt(rows.var(0) + 1e-5) * [1.0, 2.0, 0.5] + [0.0, -1.0, 1.0]
        np.testing.assert_allclose(on[codes.numpy() == s], want, rtol=1e-5, atol=1e-5)
    order = torch.argsort(codes, stable=True)  # each slice's rows consecutive, as in a full batch
    torch.testing.assert_close(norm(h[order], codes[order]), out[order])
    bn = torch.nn.BatchNorm1d(3).train()
    bn.load_state_dict({**bn.state_dict(), "weight": norm.weight.data, "bias": norm.bias.data})
    torch.testing.assert_close(norm(h), bn(h))
    stats = (torch.tensor([[0.0, 3.0, -2.0], [1.0, 1.0, 1.0]]), torch.tensor([[1.0, 25.0, 0.04], [4.0, 4.0, 4.0]]))
    want = (h - stats[0][codes]) / torch.sqrt(stats[1][codes] + 1e-5) * norm.weight + norm.bias
    torch.testing.assert_close(norm(h, codes, stats), want)


def test_slice_norm_several_slices(tmp_path, small_tissue):
    """Per-slice BatchNorm: on by default for several slices only; deterministic; saved with the model;
    a slice's z does not depend on the slices embedded beside it."""
    b = _second_slice(small_tissue)
    assert not Spotscape(small_tissue.copy(), device="cpu").params["slice_norm"]
    assert not Spotscape([small_tissue.copy(), b], slice_norm=False, device="cpu").net.encoder.slice_norm
    fit = lambda: Spotscape([small_tissue.copy(), b.copy()], n_domains=4, seed=0, device="cpu").fit(epochs=6, progress=False, warmup=0.5)  # noqa: E731
    m = fit()
    assert m.params["slice_norm"] and m.net.encoder.slice_norm
    assert m.train_config.w_pcl == 0.02  # the fast schedule's weight for several slices
    z = m.get_latent_representation()
    assert np.array_equal(z, fit().get_latent_representation())
    n = small_tissue.n_obs
    # the second slice alone, and beside a different first slice, embeds to the same rows
    np.testing.assert_allclose(m.get_latent_representation(b.copy()), z[n:], atol=1e-5)
    other = small_tissue[::2].copy()
    np.testing.assert_allclose(m.get_latent_representation([other, b.copy()])[other.n_obs:], z[n:], atol=1e-5)
    m.save(str(tmp_path / "m.pt"))
    m2 = Spotscape.load(str(tmp_path / "m.pt"), adata=[small_tissue.copy(), b.copy()])
    assert m2.net.encoder.slice_norm
    np.testing.assert_allclose(m2.get_latent_representation(), z, rtol=1e-5, atol=1e-5)
    with pytest.raises(SpotscapeInputError, match="slice_norm"):
        Spotscape(small_tissue.copy(), slice_norm="yes")


def test_losses_can_be_switched_off(small_tissue):
    m = Spotscape(small_tissue.copy(), seed=0, device="cpu")
    before = [p.detach().clone() for p in m.net.decoder.parameters()]
    m.fit(epochs=3, progress=False, w_re=0)
    assert "re" not in m.history[0] and "sc" in m.history[0]
    assert all(abs(h["loss"] - m.train_config.w_sc * h["sc"]) < 1e-6 for h in m.history)  # the telescope alone
    assert all(torch.equal(p, q) for p, q in zip(before, m.net.decoder.parameters()))  # the decoder never trained
    with pytest.raises(TypeError, match="unknown training option"):
        m.fit(epochs=1, progress=False, w_typo=1)


def test_cosine_learning_rate_schedule(small_tissue):
    const = Spotscape(small_tissue.copy(), seed=0, device="cpu").fit(epochs=4, lr=1e-3, progress=False)
    assert [r["lr"] for r in const.history] == [1e-3] * 4
    cos = Spotscape(small_tissue.copy(), seed=0, device="cpu").fit(epochs=4, lr=1e-3, progress=False, lr_schedule="cosine")
    assert np.allclose([r["lr"] for r in cos.history], [1e-3 * (1 + np.cos(np.pi * e / 4)) / 2 for e in range(4)])
    assert cos.history[0]["loss"] == const.history[0]["loss"]  # the first epoch trains at the full rate
    assert cos.history[-1]["loss"] != const.history[-1]["loss"]


def test_domains_without_k_estimates_it(small_tissue):
    a = small_tissue.copy()
    _fit(a).embed()
    tl.domains(a)
    k = a.uns["spotscape"]["n_domains_estimated"]
    assert a.obs["spotscape_domain"].nunique() == k
    ev = a.uns["spotscape"]["n_domains_evidence"]
    assert ev["criterion"] == "leiden" and sum(f >= ev["min_fraction"] for f in ev["community_fractions"]) == k
    k2, ev2 = tl.estimate_n_domains(a.obsm["X_spotscape"], method="silhouette")
    assert set(ev2["scores"]) >= {"3", "4", "5"} and ev2["scores"][str(k2)] == max(ev2["scores"].values())


@pytest.mark.parametrize("density", [0.05, 0.5])
def test_masked_views_from_one_shared_product(density):
    """X diag(m) W for two gene masks, computed as X W - X[:, dropped] W[dropped], equals the
    literal masked product in value and in the gradient w.r.t. W (sparse and dense storage)."""
    rng = np.random.default_rng(3)
    x_np = sp.random(80, 50, density=density, format="csr", dtype=np.float32, random_state=rng)
    x = SparseMatrix(x_np)
    xd = torch.from_numpy(x_np.toarray())
    w = torch.randn(50, 12, requires_grad=True)
    masks = [torch.from_numpy((rng.random(50) >= 0.2).astype(np.float32)) for _ in range(2)]
    masks.append(torch.ones(50))  # nothing dropped
    got = x.mm_masked(w, masks)
    want = [xd @ (w * m[:, None]) for m in masks]
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-5)
    g = [torch.randn(80, 12) for _ in masks]
    ga = torch.autograd.grad(sum((a * gi).sum() for a, gi in zip(got, g)), w)[0]
    gb = torch.autograd.grad(sum((b * gi).sum() for b, gi in zip(want, g)), w)[0]
    assert torch.allclose(ga, gb, atol=1e-4)


@pytest.mark.parametrize("warm", [True, False])
def test_pcl_prototypes_warm_start_or_afresh(small_tissue, monkeypatch, warm):
    """pcl_warm_start=True (default): the prototypes' k-means starts from the previous step's
    centroids; False: afresh at every step, as the published code does."""
    import spotscape.train as train

    inits = []
    train_kmeans = train.kmeans

    def recording_kmeans(x, k, **kw):
        inits.append(kw.get("init") is not None)
        return train_kmeans(x, k, **kw)

    monkeypatch.setattr(train, "kmeans", recording_kmeans)
    m = Spotscape([small_tissue.copy(), _second_slice(small_tissue)], n_domains=3, seed=0, device="cpu")
    m.fit(epochs=4, progress=False, warmup=0.5, pcl_warm_start=warm)
    assert len(inits) == 2 * 3  # 2 PCL steps x 3 granularities
    assert inits[:3] == [False] * 3  # the first step has no earlier centroids
    assert inits[3:] == [warm] * 3


def test_torch_thread_count_survives_preprocessing():
    """scanpy's first parallel numba kernel (seurat_v3 HVGs here) starts numba's OpenMP layer, which
    set the thread count torch shares to NUMBA_NUM_THREADS over the user's OMP_NUM_THREADS=1. In a
    fresh process: numba starts its threads once per process."""
    import os
    import subprocess
    import sys

    script = (
        "import torch\n"
        "assert torch.get_num_threads() == 1\n"
        "from spotscape import Spotscape\n"
        "from spotscape.datasets import simulate_tissue\n"
        "m = Spotscape(simulate_tissue(n_spots=300, n_genes=300, n_domains=3, seed=0), n_top_genes=100)\n"
        "assert len(m.genes) == 100\n"
        "print('threads', torch.get_num_threads())\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "2"}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "threads 1" in res.stdout, res.stdout


def test_adam_matches_torch_bit_for_bit():
    """spotscape's Adam (which spares the import of torch._dynamo) updates parameters exactly as
    torch.optim.Adam with L2 weight decay, including a parameter that gets no gradient at first."""
    from spotscape.optim import Adam

    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.BatchNorm1d(5), torch.nn.Linear(5, 3)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    late = [torch.nn.Parameter(torch.ones(3)) for _ in range(2)]  # in the loss from the third step on
    start = [p.detach().clone() for p in nets[0].parameters()]
    ours = Adam([*nets[0].parameters(), late[0]], lr=1e-2, weight_decay=1e-4)
    ref = torch.optim.Adam([*nets[1].parameters(), late[1]], lr=1e-2, weight_decay=1e-4)
    x = torch.randn(20, 6)
    for step in range(6):
        for net, e, opt in ((nets[0], late[0], ours), (nets[1], late[1], ref)):
            opt.zero_grad()
            out = net(x)
            loss = (out**2).sum() + ((out * e).sum() if step >= 2 else 0)
            loss.backward()
            opt.step()
        assert all(torch.equal(a, b) for a, b in zip(nets[0].parameters(), nets[1].parameters()))
        assert torch.equal(late[0], late[1]) and torch.equal(late[0], torch.ones(3)) == (step < 2)
    assert not any(torch.equal(a, b) for a, b in zip(nets[0].parameters(), start))
