"""Mini-batch mode and several processes (issue #5) on simulated tissues."""
import json
import os
import shutil
import subprocess
import sys

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

import spotscape as ss
from spotscape import train
from spotscape.batching import TileBatches, k_hop, spatial_tiles
from spotscape.graph import spatial_graph
from spotscape.metrics import cluster_scores


def test_tiles_partition_each_slice():
    rng = np.random.default_rng(0)
    xy = rng.random((5000, 2)) * 100
    groups = rng.integers(0, 3, 5000)
    tiles = spatial_tiles(xy, groups, 300)
    allidx = np.concatenate(tiles)
    assert np.array_equal(np.sort(allidx), np.arange(5000))  # every spot exactly once
    assert all(len(t) <= 300 for t in tiles) and all(len(np.unique(groups[t])) == 1 for t in tiles)
    # compact: a tile's extent is far below the slice's
    assert np.median([np.ptp(xy[t], axis=0).max() for t in tiles]) < 60  # 1/8 of a 100 x 100 slice: ~35 x 50


def test_k_hop_matches_matrix_powers():
    a = spatial_graph(ss.datasets.simulate_tissue(n_spots=400, n_genes=20, seed=0).obsm["spatial"])
    seeds = np.array([5, 77, 300])
    nodes = k_hop(a, seeds, 2)
    reach = ((a + sp.identity(400)) @ (a + sp.identity(400)))[seeds].sum(0).A1 > 0
    assert list(nodes[:3]) == list(seeds)
    assert set(nodes) == set(np.flatnonzero(reach))
    batches = TileBatches(np.random.default_rng(0).random((400, 2)), None, a, batch_size=100, tile_size=50)
    seen = np.concatenate([n[:k] for n, k in batches.epoch(np.random.default_rng(1))])
    assert np.array_equal(np.sort(seen), np.arange(400)) and len(batches) == 4


@pytest.fixture(scope="module")
def tissue():
    return ss.datasets.simulate_tissue(n_spots=2000, n_genes=500, n_domains=5, seed=1)


def _ari(a, batch_size, seed=0):
    b = a.copy()
    m = ss.Spotscape(b, seed=seed)
    m.fit(progress=False, batch_size=batch_size, epochs=60)
    m.embed()
    ss.tl.domains(b, n_domains=5, seed=seed)
    return cluster_scores(b.obs["domain"], b.obs["spotscape_domain"])["ari"], m


def test_minibatch_close_to_full_batch_and_deterministic(tissue):
    full, _ = _ari(tissue, None)
    mini, m = _ari(tissue, 512)
    assert m.train_config.batch_size == 512 and len(m.history) == 60
    assert full > 0.8 and mini > full - 0.05, (mini, full)
    again, _ = _ari(tissue, 512)
    assert again == mini  # same seed, same result
    with pytest.raises(ss.SpotscapeInputError, match="batch_size"):
        ss.Spotscape(tissue.copy()).fit(epochs=1, batch_size=2, progress=False)


def test_two_processes_match_one(tissue, tmp_path):
    """torchrun, 2 CPU processes (gloo, DistributedDataParallel), against one process, same batches."""
    src = tmp_path / "tissue.h5ad"
    tissue.write_h5ad(src)
    base = [str(src), "--label-key", "domain", "--epochs", "60", "--batch-size", "256", "--quiet", "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    one = subprocess.run([sys.executable, "-m", "spotscape.cli", "run", *base, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env)
    assert one.returncode == 0, one.stderr[-2000:]
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    assert torchrun, "torchrun (installed with torch) not found"
    two = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "spotscape.cli", "run", *base,
                          "--out", str(tmp_path / "two")], capture_output=True, text=True, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert m1["processes"] == 1 and m2["processes"] == 2 and m2["training_mode"] == "mini-batch 256"
    # two processes average two half-batches' gradients per step: another optimisation path, so the
    # same quality up to seed noise (one process, seeds 0-3: ARI 0.878-0.917; here 0.917 and 0.948)
    assert abs(m1["pooled"]["ari"] - m2["pooled"]["ari"]) < 0.05, (m1["pooled"], m2["pooled"])
    assert m1["pooled"]["ari"] > 0.5


def test_default_minibatch_schedule(tissue):
    """Forced mini-batches on a small tissue: ~500 updates capped at 25 epochs (4 batches -> 25
    epochs, not 125), and still as good as full batch."""
    import spotscape.core as core

    full, _ = _ari(tissue, None)
    assert full > 0.8, full
    b = tissue.copy()
    m = ss.Spotscape(b, seed=0).fit(progress=False, batch_size=512)
    assert len(m.history) == core.MINIBATCH_EPOCHS[1] == 25
    m.embed()
    ss.tl.domains(b, n_domains=5, seed=0)
    assert cluster_scores(b.obs["domain"], b.obs["spotscape_domain"])["ari"] > full - 0.05


@pytest.mark.parametrize("slices", ["one", "two"])
def test_tiled_embedding_equals_full_graph(tissue, monkeypatch, slices):
    """Above the mini-batch threshold the embedding is computed tile by tile; it must equal the full-graph
    one. Two slices: per-slice BatchNorm, whose per-slice moments are first gathered over the tiles."""
    import spotscape.core as core

    m = ss.Spotscape(tissue.copy() if slices == "one" else _two_slices(tissue), seed=0)
    assert m.net.encoder.slice_norm == (slices == "two")
    m.fit(epochs=5, progress=False, batch_size=None)
    full = m.get_latent_representation()
    monkeypatch.setattr(core, "MINIBATCH_ABOVE", 100)
    monkeypatch.setattr(core, "EMBED_BATCH", 256)
    tiled = m.get_latent_representation()
    assert np.abs(tiled - full).max() < 1e-4


def _two_slices(tissue):
    """The tissue cut into left and right halves, both holding every layer."""
    x = tissue.obsm["spatial"][:, 0]
    return [tissue[x < np.median(x)].copy(), tissue[x >= np.median(x)].copy()]


def test_minibatch_integration_of_two_slices(tissue):
    """Several slices in mini-batches: similarity scaling off by default there (on in full batch,
    and when asked for), and two slices integrate as well as in full batch."""
    import spotscape.core as core

    def pooled(batch_size, **kw):
        slices = _two_slices(tissue)
        m = ss.Spotscape(slices, n_domains=5, seed=0).fit(progress=False, batch_size=batch_size, epochs=40, **kw)
        truth = np.concatenate([a.obs["domain"].astype(str) for a in slices])
        pred = ss.tl.domains(ad.AnnData(obsm={"z": m.get_latent_representation()}), n_domains=5, seed=0, use_rep="z")
        return cluster_scores(truth, pred)["ari"], m.train_config

    full, cfg_full = pooled(None)
    mini, cfg_mini = pooled(512)
    assert cfg_full.w_ss == 1.0 and cfg_mini.w_ss == core.MINIBATCH_W_SS == 0.0
    assert full > 0.8 and mini > full - 0.05, (mini, full)
    slices = _two_slices(tissue)
    assert ss.Spotscape(slices, seed=0).fit(progress=False, batch_size=512, epochs=1, w_ss=1.0).train_config.w_ss == 1.0


@pytest.mark.parametrize("batch_size", [None, 256])
def test_training_normalises_each_slice_by_its_own_rows(tissue, monkeypatch, batch_size):
    """In training every per-slice BatchNorm call gets the slice of each of its rows: full batch, all
    spots in slice order; mini-batches, the batch's spots (tile spots and halo) by their own slice."""
    from spotscape.model import SliceBatchNorm

    slices = _two_slices(tissue)
    m = ss.Spotscape(slices, n_domains=5, seed=0)
    seen = []
    forward = SliceBatchNorm.forward

    def record(self, h, codes=None, stats=None):
        if self.training:
            seen.append((h.shape[0], None if codes is None else codes.clone()))
        return forward(self, h, codes, stats)

    monkeypatch.setattr(SliceBatchNorm, "forward", record)
    batches = []
    make_batch = train.batch_data

    def record_batch(x, adj, codes, nodes, n_seeds, device):
        batches.append(nodes.copy())
        return make_batch(x, adj, codes, nodes, n_seeds, device)

    monkeypatch.setattr(train, "batch_data", record_batch)
    m.fit(epochs=2, progress=False, batch_size=batch_size)
    truth = np.concatenate([np.full(a.n_obs, i) for i, a in enumerate(slices)])
    # one step = 2 views x 2 encoder layers; full batch: every step sees all spots in slice order
    expected = [truth] * len(seen) if batch_size is None else [truth[nodes] for nodes in batches for _ in range(4)]
    assert len(seen) == len(expected) > 0
    for (n, codes), want in zip(seen, expected):
        assert n == len(want)
        got = np.zeros(n, dtype=int) + want[0] if codes is None else codes.numpy()  # None: one slice only
        assert np.array_equal(got, want)
    if batch_size is not None:
        assert any(len(set(w.tolist())) == 2 and len(w) < len(truth) for w in expected)


def test_auto_batch_size_rule(tissue, monkeypatch):
    """"auto": on a CPU full batch up to MINIBATCH_ABOVE spots, mini-batches above; on a GPU full batch
    while the measured memory bound (40 B per stored value + 40 KB per spot) fits in half the free memory."""
    import spotscape.core as core
    import torch

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert core.full_batch_fits(50_000, 10**9, cpu) and not core.full_batch_fits(50_001, 1, cpu)
    # 100,000 simulated spots (79.5M stored values) ran full batch on an H100 in 2.4 GB: the bound says 7.2 GB
    assert core.full_batch_fits(100_000, 79_500_000, gpu, free_bytes=80 * 2**30)
    assert not core.full_batch_fits(100_000, 79_500_000, gpu, free_bytes=8 * 2**30)
    assert core.full_batch_fits(300_000, 240_000_000, gpu, free_bytes=80 * 2**30)
    monkeypatch.setattr(core, "MINIBATCH_ABOVE", tissue.n_obs - 1)
    m = ss.Spotscape(tissue.copy(), seed=0, device="cpu").fit(epochs=1, progress=False)
    assert m.train_config.batch_size == core.MINIBATCH_SIZE
    monkeypatch.setattr(core, "MINIBATCH_ABOVE", tissue.n_obs)
    m = ss.Spotscape(tissue.copy(), seed=0, device="cpu").fit(epochs=1, progress=False)
    assert m.train_config.batch_size is None
