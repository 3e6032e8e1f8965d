"""Built-in data: a simulated layered tissue on a Visium-like hexagonal grid (no download)."""
from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp


def simulate_tissue(
    n_spots: int = 3000,
    n_genes: int = 2000,
    n_domains: int = 5,
    markers_per_domain: int = 30,
    marker_effect: float = 0.6,
    gradient_width: float = 0.35,
    mean_library: float = 1500.0,
    dispersion: float = 4.0,
    n_cell_programs: int = 4,
    seed: int = 0,
    geometry: str = "bands",
) -> ad.AnnData:
    """A layered tissue (cortex-like bands with curved boundaries) on a hexagonal spot grid.

    - Grid: Visium geometry, 100 units between neighbouring spots (6 neighbours each).
    - Domains: ``n_domains`` bands of unequal width along a depth axis bent by a sine wave;
      ``geometry="rings"``: concentric rings around the grid's centre instead (depth = distance
      from the centre), like the layers of an olfactory bulb.
    - Expression: each domain raises its own marker genes by ``marker_effect`` (log scale); the
      profile changes smoothly across boundaries (a Gaussian blend over depth, ``gradient_width``
      in units of the mean band width), so spots near a boundary resemble both sides. Spot-level
      cell-type programs that ignore the layers add structure a non-spatial method can latch onto.
    - Counts: negative binomial (gamma-Poisson, ``dispersion``), log-normal library sizes.

    Returns raw integer counts in X (CSR), obsm['spatial'], obs['domain'] (truth) and
    obs['array_row'/'array_col'].
    """
    if geometry not in ("bands", "rings"):
        raise ValueError(f"geometry must be 'bands' or 'rings', got {geometry!r}")
    if n_domains < 1 or n_spots < max(10, 2 * n_domains):
        raise ValueError(f"simulate_tissue needs n_domains >= 1 and n_spots >= max(10, 2 * n_domains) "
                         f"(got n_spots={n_spots}, n_domains={n_domains}).")
    if n_genes < 1:
        raise ValueError(f"simulate_tissue needs n_genes >= 1 (got {n_genes}).")
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n_spots)))
    rows, cols = np.meshgrid(np.arange(side), np.arange(2 * side), indexing="ij")
    keep = (rows + cols) % 2 == 0
    rows, cols = rows[keep], cols[keep]
    order = np.lexsort((cols, rows))[:n_spots]
    rows, cols = rows[order], cols[order]
    xy = np.column_stack([cols * 50.0, rows * 50.0 * np.sqrt(3)])

    # depth axis: y bent by a sine, normalised to [0, 1]
    width = xy[:, 0].max() + 1e-9
    depth = xy[:, 1] + 0.08 * xy[:, 1].max() * np.sin(2 * np.pi * xy[:, 0] / width * 1.3 + rng.uniform(0, 2 * np.pi))
    if geometry == "rings":  # the sine's phase is drawn either way: bands stay as they were for a seed
        depth = np.linalg.norm(xy - (xy.max(0) + xy.min(0)) / 2, axis=1)
    depth = (depth - depth.min()) / (depth.max() - depth.min())
    widths = rng.uniform(0.6, 1.4, n_domains)
    edges = np.concatenate([[0.0], np.cumsum(widths) / widths.sum()])
    centers = (edges[:-1] + edges[1:]) / 2
    domain = np.clip(np.searchsorted(edges, depth, side="right") - 1, 0, n_domains - 1)
    if len(np.unique(domain)) < n_domains:
        raise ValueError(f"{n_spots} spots hold only {len(np.unique(domain))} of the {n_domains} domains at seed {seed}; "
                         "simulate more spots or fewer domains.")

    # smooth blend of domain profiles across boundaries
    sigma = gradient_width / n_domains
    w = np.exp(-((depth[:, None] - centers[None, :]) ** 2) / (2 * sigma**2))
    w[np.arange(len(depth)), domain] += 1.0  # each spot is mostly its own domain
    w /= w.sum(1, keepdims=True)

    base = rng.normal(0, 1.0, n_genes)
    effects = np.zeros((n_domains, n_genes))
    genes = rng.permutation(n_genes)
    for d in range(n_domains):
        m = genes[d * markers_per_domain : (d + 1) * markers_per_domain]
        effects[d, m] = marker_effect * rng.uniform(0.7, 1.3, len(m))
    programs = np.zeros((n_cell_programs, n_genes))
    for p in range(n_cell_programs):
        m = rng.choice(n_genes, min(3 * markers_per_domain, n_genes), replace=False)
        programs[p, m] = marker_effect * rng.uniform(0.7, 1.3, len(m))
    mix = rng.dirichlet(np.full(n_cell_programs, 0.5), len(depth))

    logmu = base[None, :] + w @ effects + mix @ programs
    prop = np.exp(logmu - logmu.max(1, keepdims=True))
    prop /= prop.sum(1, keepdims=True)
    lib = rng.lognormal(np.log(mean_library), 0.35, len(depth))
    mean = prop * lib[:, None]
    lam = rng.gamma(dispersion, mean / dispersion)
    counts = rng.poisson(lam).astype(np.float32)

    adata = ad.AnnData(sp.csr_matrix(counts))
    adata.obs_names = [f"spot{i}" for i in range(len(depth))]
    adata.var_names = [f"gene{j}" for j in range(n_genes)]
    adata.obs["domain"] = pd.Categorical([f"D{d + 1}" for d in domain], categories=[f"D{d + 1}" for d in range(n_domains)])
    adata.obs["array_row"] = rows
    adata.obs["array_col"] = cols
    adata.obsm["spatial"] = xy
    adata.uns["simulation"] = dict(n_domains=n_domains, markers_per_domain=markers_per_domain, marker_effect=marker_effect,
                                   gradient_width=gradient_width, mean_library=mean_library, dispersion=dispersion, seed=seed)
    return adata
