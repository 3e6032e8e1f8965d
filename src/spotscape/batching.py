"""Mini-batches for large slices (METHOD.md: "For large data ... computes every loss inside the batch").

A batch is a few spatial tiles drawn at random from anywhere in the tissue (so one batch usually
spans several domains and slices), plus the spots within two graph hops of them: every tile spot's
two-hop neighbourhood is then in the batch (the batch's graph is normalised over its own spots, so
the halo's outer spots see smaller degrees than in the whole graph), and every loss is computed on
the tile spots only. Tiles come from
recursive median bisection of the coordinates within each slice, so they are compact and the
two-hop halo stays a small fraction of a batch. (The published code samples 4,096 random seed
spots with neighbour fan-out 10 then 5; random seeds on a spatial graph need nearly the whole
graph for their two-hop neighbourhoods, so every batch would cost about a full-graph pass.)
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def spatial_tiles(coords: np.ndarray, groups: np.ndarray | None, tile_size: int) -> list[np.ndarray]:
    """Spot indices of compact tiles of at most ``tile_size`` spots (by halving: between about half
    of it and all of it), never across ``groups`` (slices)."""
    coords = np.asarray(coords, dtype=np.float64)
    groups = np.zeros(len(coords), dtype=int) if groups is None else np.asarray(groups)
    tiles: list[np.ndarray] = []
    for g in np.unique(groups):
        stack = [np.flatnonzero(groups == g)]
        while stack:
            idx = stack.pop()
            if len(idx) <= tile_size:
                tiles.append(np.sort(idx))
                continue
            xy = coords[idx]
            axis = int(np.argmax(xy.max(0) - xy.min(0)))
            order = idx[np.argsort(xy[:, axis], kind="stable")]
            half = len(order) // 2
            stack += [order[half:], order[:half]]
    return tiles


def k_hop(adj: sp.csr_matrix, seeds: np.ndarray, hops: int) -> np.ndarray:
    """``seeds`` first (in order), then every other spot within ``hops`` edges of them."""
    n = adj.shape[0]
    inside = np.zeros(n, dtype=bool)
    inside[seeds] = True
    frontier = seeds
    for _ in range(hops):
        nb = adj[frontier].indices
        new = np.unique(nb[~inside[nb]])
        inside[new] = True
        frontier = new
    inside[seeds] = False
    return np.concatenate([seeds, np.flatnonzero(inside)])


class TileBatches:
    """An epoch = every tile once, in random order, ``tiles_per_batch`` tiles per batch."""

    def __init__(self, coords, groups, adj: sp.csr_matrix, batch_size: int = 4096, tile_size: int | None = None, hops: int = 2):
        """``tile_size`` (default: batch_size / 8, between 32 and 512): at least 8 tiles per batch, so
        that a batch samples several places (and domains) of the tissue."""
        self.adj = sp.csr_matrix(adj)
        self.hops = hops
        tile_size = int(np.clip(batch_size // 8, 32, 512)) if tile_size is None else min(tile_size, batch_size)
        self.tiles = spatial_tiles(coords, groups, tile_size)
        self.tiles_per_batch = max(1, batch_size // tile_size)

    def __len__(self) -> int:
        return -(-len(self.tiles) // self.tiles_per_batch)

    def epoch(self, rng: np.random.Generator):
        """Yields (nodes, n_seeds): the batch's spots with its seeds (tile spots) first."""
        order = rng.permutation(len(self.tiles))
        for start in range(0, len(order), self.tiles_per_batch):
            seeds = np.concatenate([self.tiles[t] for t in order[start : start + self.tiles_per_batch]])
            yield k_hop(self.adj, seeds, self.hops), len(seeds)
