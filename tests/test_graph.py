import numpy as np
import scipy.sparse as sp

from spotscape import graph
from spotscape.datasets import simulate_tissue

from conftest import shared_data


def test_visium_grid_gets_six_hexagonal_neighbours():
    a = simulate_tissue(n_spots=900, n_genes=50, seed=0)
    g = graph.spatial_graph(a.obsm["spatial"])
    deg = np.asarray(g.sum(1)).ravel()
    assert graph.choose_graph(a.obsm["spatial"])["method"] == "radius"
    assert np.median(deg) == 6 and deg.max() == 6
    assert (g != g.T).nnz == 0 and g.diagonal().sum() == 0


def test_real_visium_slice_default_graph():
    import anndata as ad

    a = ad.read_h5ad(shared_data("dlpfc_subject3_banksy/151673.h5ad"))
    deg = np.asarray(graph.spatial_graph(a.obsm["spatial"]).sum(1)).ravel()
    assert (deg == 6).mean() > 0.85 and deg.max() == 6


def test_knn_for_irregular_cells():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (300, 2))
    assert graph.choose_graph(xy) == {"method": "knn", "k": 5}
    g = graph.spatial_graph(xy).tocsr()
    deg = np.asarray(g.sum(1)).ravel()
    assert deg.min() >= 5 and (g != g.T).nnz == 0
    # each cell's 5 nearest cells are its neighbours, and few others are (symmetrised: at most 2 x 5 per cell)
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=6).fit(xy).kneighbors(xy, return_distance=False)[:, 1:]
    assert all(set(nn[i]) <= set(g[i].indices) for i in range(len(xy)))
    assert g.nnz <= 2 * 5 * len(xy) and g.diagonal().sum() == 0


def test_block_graph_has_no_edges_between_slices():
    g1 = graph.spatial_graph(np.random.default_rng(1).uniform(0, 10, (40, 2)), "knn", k=3)
    g2 = graph.spatial_graph(np.random.default_rng(2).uniform(0, 10, (30, 2)), "knn", k=3)
    b = graph.block_graph([g1, g2]).toarray()
    assert b.shape == (70, 70)
    assert (b[:40, :40] == g1.toarray()).all() and (b[40:, 40:] == g2.toarray()).all()
    assert b[:40, 40:].sum() == 0 and b[40:, :40].sum() == 0


def test_normalized_adjacency_is_gcn_normalisation():
    a = sp.csr_matrix(np.array([[0, 1, 1], [1, 0, 0], [1, 0, 0]], dtype=np.float32))
    n = graph.normalized_adjacency(a).toarray()
    deg = np.array([3.0, 2.0, 2.0])  # with self-loops
    want = (a.toarray() + np.eye(3)) / np.sqrt(np.outer(deg, deg))
    assert np.allclose(n, want)


def test_drop_edges_keeps_self_loops_and_drops_about_p():
    a = simulate_tissue(n_spots=900, n_genes=50, seed=0)
    g = graph.spatial_graph(a.obsm["spatial"])
    e = graph.edge_list(g)
    assert e.shape[1] == g.nnz
    d = graph.drop_edges(e, g.shape[0], 0.2, np.random.default_rng(0))
    assert (d.diagonal() > 0).all()
    off = d.nnz - g.shape[0]
    assert abs(off / g.nnz - 0.8) < 0.03
    r, c = (d - sp.diags(d.diagonal())).nonzero()
    assert np.asarray(g[r, c]).ravel().all()  # only edges of g are kept, none made up
