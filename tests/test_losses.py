"""Each loss against a value computed by hand, and the linear-memory forms against the literal ones."""
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from spotscape import losses
from spotscape._sparse import SparseMatrix


def test_similarity_telescope_by_hand():
    # S = Z1 Z2^T = [[1, 1], [0, 0]]; S - S^T = [[0, 1], [-1, 0]]; MSE = 2 / 4
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert losses.similarity_telescope(z1, z2).item() == pytest.approx(0.5, abs=1e-7)
    assert losses.similarity_telescope_dense(z1, z2).item() == pytest.approx(0.5, abs=1e-7)
    # normalisation: scaling rows changes nothing; a symmetric S gives 0
    assert losses.similarity_telescope(3 * z1, 0.5 * z2).item() == pytest.approx(0.5, abs=1e-6)
    assert losses.similarity_telescope(z1, z1).item() == pytest.approx(0.0, abs=1e-7)


def test_similarity_telescope_matches_dense_value_and_gradient():
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(70, 8, generator=g, requires_grad=True)
    z2 = torch.randn(70, 8, generator=g, requires_grad=True)
    a, b = losses.similarity_telescope(z1, z2), losses.similarity_telescope_dense(z1, z2)
    assert a.item() == pytest.approx(b.item(), rel=1e-5)
    ga = torch.autograd.grad(a, [z1, z2])
    gb = torch.autograd.grad(b, [z1, z2])
    for x, y in zip(ga, gb):
        assert torch.allclose(x, y, atol=1e-7, rtol=1e-4)


def test_reconstruction_by_hand():
    # X = [[1, 0], [0, 2]]; view 1 predicts 0 (MSE 5/4), view 2 predicts X (MSE 0): mean 0.625
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    xs = SparseMatrix(sp.csr_matrix(x.numpy()))
    w, b = torch.eye(2), torch.zeros(2)
    val = losses.reconstruction(xs, [torch.zeros(2, 2), x], w, b)
    assert val.item() == pytest.approx(0.625, abs=1e-6)
    assert losses.reconstruction_dense(x, [torch.zeros(2, 2), x]).item() == pytest.approx(0.625)


@pytest.mark.parametrize("density", [0.05, 0.5])
def test_reconstruction_matches_dense_value_and_gradient(density):
    rng = np.random.default_rng(1)
    xs_np = sp.random(60, 40, density=density, format="csr", dtype=np.float32, random_state=rng)
    xs = SparseMatrix(xs_np)
    assert xs.dense == (density > 0.15)
    h1, h2 = (torch.randn(60, 16, requires_grad=True) for _ in range(2))
    w = torch.randn(40, 16, requires_grad=True)
    b = torch.randn(40, requires_grad=True)
    a = losses.reconstruction(xs, [h1, h2], w, b)
    d = losses.reconstruction_dense(torch.from_numpy(xs_np.toarray()), [h1 @ w.T + b, h2 @ w.T + b])
    assert a.item() == pytest.approx(d.item(), rel=1e-5)
    for x, y in zip(torch.autograd.grad(a, [h1, w, b]), torch.autograd.grad(d, [h1, w, b])):
        assert torch.allclose(x, y, atol=1e-6, rtol=1e-4)


def test_similarity_scaling_by_hand():
    # slices A = {0, 1}, B = {2, 3}; k = 1; z1 = z2 = Z
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.0, 1.0]])
    slices = [torch.tensor([0, 1]), torch.tensor([2, 3])]
    # A: row0 own 1, other 0.6 -> 0.16; row1 own 1, other 1 -> 0; mean 0.08
    # B: row2 own 1, other 0.8 -> 0.04; row3 own 1, other 1 -> 0; mean 0.02; mean over pairs 0.05
    assert losses.similarity_scaling(z, z, slices, k=1).item() == pytest.approx(0.05, abs=1e-6)
    assert losses.similarity_scaling_dense(z, z, slices, k=1).item() == pytest.approx(0.05, abs=1e-6)
    assert losses.similarity_scaling(z, z, [torch.arange(4)], k=1).item() == 0.0


def test_similarity_scaling_chunked_matches_dense():
    g = torch.Generator().manual_seed(2)
    # non-negative as z after its ReLU, but without exact zeros: with ReLU's zeros many similarities
    # tie at 0, where any choice among them is a top-k and the gradient depends on which one is taken
    # (spotscape's search keeps the first; torch's topk another)
    z1 = torch.randn(90, 6, generator=g).abs().requires_grad_()
    z2 = torch.randn(90, 6, generator=g).abs().requires_grad_()
    slices = [torch.arange(0, 30), torch.arange(30, 55), torch.arange(55, 90)]
    a = losses.similarity_scaling(z1, z2, slices, k=5)
    b = losses.similarity_scaling_dense(z1, z2, slices, k=5)
    assert a.item() == pytest.approx(b.item(), rel=1e-5)
    for x, y in zip(torch.autograd.grad(a, [z1, z2]), torch.autograd.grad(b, [z1, z2])):
        assert torch.allclose(x, y, atol=1e-6)


def test_topk_means_in_small_blocks_match_full_topk():
    # blocks of query rows against both key sets: the same as top-k over each full set
    g = torch.Generator().manual_seed(3)
    q = torch.nn.functional.normalize(torch.randn(150, 4, generator=g), dim=1)  # 3 blocks of 64 rows
    keys = [torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=1) for n in (17, 3)]
    got = losses._topk_means(q, keys, k=5, block=40)
    for m, kset in zip(got, keys):
        want = (q @ kset.T).topk(min(5, kset.shape[0]), dim=1).values.mean(1)
        assert torch.allclose(m, want, atol=1e-6)


def test_similarity_scaling_gradient_is_deterministic():
    """The same inputs give the same gradient bit for bit, with torch's threads: a key chosen by many
    queries gets its gradient summed in a fixed order (2 threads, advanced indexing: it varied)."""
    torch.manual_seed(0)
    z1, z2 = torch.randn(1200, 16), torch.randn(1200, 16)
    slices = [torch.arange(0, 600), torch.arange(600, 1200)]
    grads = []
    for _ in range(4):
        a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
        losses.similarity_scaling(a, b, slices, 5).backward()
        grads.append(torch.cat([a.grad, b.grad]))
    assert all(torch.equal(g, grads[0]) for g in grads[1:])


def test_prototypical_contrastive_by_hand():
    # logits = cos / tau = [2, 0]; CE = log(1 + e^-2)
    z1 = torch.tensor([[2.0, 0.0]])
    protos = [(torch.tensor([[1.0, 0.0], [0.0, 3.0]]), torch.tensor([0]))]
    assert losses.prototypical_contrastive(z1, protos, tau=0.5).item() == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)
    # averaged over granularities: a second, wrong assignment costs log(1 + e^2)
    protos.append((torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([1])))
    want = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(2))) / 2
    assert losses.prototypical_contrastive(z1, protos, tau=0.5).item() == pytest.approx(want, abs=1e-6)


def test_pcl_granularities_strictly_increase():
    from spotscape.train import pcl_granularities

    assert pcl_granularities(7) == [7, 11, 14]
    assert pcl_granularities(2) == [2, 3, 4]
    assert pcl_granularities(1) == [1, 2, 3]


def test_host_sparse_product_same_in_blocks_chunks_and_on_any_thread_count(monkeypatch):
    """spotscape's CPU kernel: the exact product up to float rounding; bit for bit the same whether
    the dense operand is taken whole or in column blocks, and on 1 thread or several; in chunks of
    rows (the path of the 5,000-gene input), the same on any thread count and for any number of
    row blocks, and another summation order than whole."""
    from spotscape import _sparse

    m = sp.random(500, 300, density=0.2, format="csr", dtype=np.float32, random_state=0)
    d = torch.randn(300, 100, generator=torch.Generator().manual_seed(0))
    exact = torch.from_numpy(m.astype(np.float64) @ d.double().numpy())
    whole = _sparse._host_mm(m, d)  # 300 x 100 floats: one chunk of 128 KB, so not chunked
    assert torch.allclose(whole.double(), exact, atol=1e-4)
    monkeypatch.setattr(_sparse, "CACHE_BYTES", 300 * 4 * 16)  # 16 columns per block
    assert torch.equal(_sparse._host_mm(m, d), whole)
    monkeypatch.setattr(_sparse, "CHUNK_BYTES", 32 * 100 * 4)  # chunks of 32 rows of d: 10 chunks, 6 values per row in each
    monkeypatch.setattr(_sparse, "MIN_PER_CHUNK", 4)
    h = _sparse.HostCSR(m.copy())
    chunked = _sparse._host_mm(h, d)
    assert list(h._starts) == [32]  # the chunked path was taken
    assert not torch.equal(chunked, whole) and torch.allclose(chunked.double(), exact, atol=1e-4)
    monkeypatch.setattr(_sparse, "MIN_PER_CHUNK", 7)  # too few values per chunk: whole again
    assert torch.equal(_sparse._host_mm(m, d), whole)
    monkeypatch.setattr(_sparse, "MIN_PER_CHUNK", 4)
    out = np.zeros((500, 100), dtype=np.float32)
    _sparse._csr_dense_chunked_kernel(h.starts(32), h.m.indices, h.m.data, d.numpy(), out, 3)  # 3 row blocks, not 16
    assert torch.equal(torch.from_numpy(out), chunked)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert torch.equal(_sparse._host_mm(h, d), chunked)
        monkeypatch.setattr(_sparse, "CHUNK_BYTES", 128 << 10)
        assert torch.equal(_sparse._host_mm(m, d), whole)
    finally:
        torch.set_num_threads(threads)


def test_topk_indices_as_torch():
    from spotscape._topk import topk_indices

    g = torch.Generator().manual_seed(0)
    for shape, k, dtype in (((200, 700), 5, torch.float32), ((3, 5), 5, torch.float32), ((50, 40), 1, torch.float32),
                            ((30, 90), 7, torch.float64)):
        s = torch.randn(*shape, generator=g, dtype=dtype)
        assert torch.equal(topk_indices(s, k), s.topk(k, dim=1).indices)
