"""How many spots a mini-batch holds, and how many updates the default schedule makes, on the simulated
tissue of the scale benchmark (100,000 spots; 300,000 = three copies side by side, as
``scale.py --sizes 300000`` builds it). Tiles come from halving, so they hold fewer spots than their
bound (README, "Large data").

    python benchmarks/tile_sizes.py > benchmarks/results/tile_sizes.md
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from spotscape.batching import TileBatches
from spotscape.core import MINIBATCH_SIZE, minibatch_epochs
from spotscape.datasets import simulate_tissue

xy = simulate_tissue(n_spots=100_000, n_genes=20, n_domains=5, seed=0).obsm["spatial"]
width = xy[:, 0].max() + 1000
print("| spots | tiles | spots per tile | batches per epoch | tile spots per batch | default epochs | updates |")
print("|---|---|---|---|---|---|---|")
for n, coords in ((100_000, xy), (300_000, np.vstack([xy + [i * width, 0] for i in range(3)]))):
    tb = TileBatches(coords, None, sp.csr_matrix((n, n)), batch_size=MINIBATCH_SIZE)
    sizes = [len(t) for t in tb.tiles]
    epochs = minibatch_epochs(n, MINIBATCH_SIZE)  # Spotscape.fit's default
    print(f"| {n:,} | {len(sizes)} | {min(sizes)}-{max(sizes)} | {len(tb)} | {n / len(tb):,.0f} | {epochs} | {epochs * len(tb):,} |")
