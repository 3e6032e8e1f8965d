"""Spotscape's network (METHOD.md, "Model"): a 2-layer GCN encoder and an MLP decoder.

Encoder: z = ReLU(BN(Â ReLU(BN(Â X W1)) W2)), widths 256 and 64.
Decoder: X^ = ReLU(BN(z D1)) D2, 64 -> 256 -> genes (the last layer linear).
The input X is a fixed sparse matrix; a view's gene mask m (1 = kept) enters as X diag(m) W1.
"""
from __future__ import annotations

import torch
from torch import nn

from ._sparse import SparseMatrix

BN_MOMENTUM = 0.99  # as published (PyG BatchNorm(momentum=0.99)): running stats follow the last batches


class GCNEncoder(nn.Module):
    def __init__(self, n_genes: int, hidden: tuple[int, ...] = (256, 64)):
        super().__init__()
        dims = (n_genes, *hidden)
        self.weights = nn.ParameterList(
            [nn.Parameter(nn.init.xavier_uniform_(torch.empty(i, o))) for i, o in zip(dims[:-1], dims[1:])]
        )
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(o)) for o in hidden])
        self.norms = nn.ModuleList([nn.BatchNorm1d(o, momentum=BN_MOMENTUM) for o in hidden])

    def forward(self, x: SparseMatrix | torch.Tensor, adj: SparseMatrix):
        """z of one (un-augmented) graph; training views go through ``forward_views``."""
        w = self.weights[0]
        return self.propagate(x.mm(w) if isinstance(x, SparseMatrix) else x @ w, adj)

    def forward_views(self, x: SparseMatrix, adjs: list[SparseMatrix], masks: list[torch.Tensor]):
        """``forward`` for several views of the same input at once: X diag(m) W1 of every view from
        one shared product (``SparseMatrix.mm_masked``)."""
        return [self.propagate(h, adj) for h, adj in zip(x.mm_masked(self.weights[0], masks), adjs)]

    def propagate(self, h: torch.Tensor, adj: SparseMatrix) -> torch.Tensor:
        """From the first layer's product ``X W1`` (per view) to z."""
        for layer, (b, norm) in enumerate(zip(self.biases, self.norms)):
            if layer > 0:
                h = h @ self.weights[layer]
            h = torch.relu(norm(adj.mm(h) + b))
        return h


class MLPDecoder(nn.Module):
    def __init__(self, n_genes: int, latent: int = 64, hidden: int = 256):
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(latent, hidden), nn.BatchNorm1d(hidden, momentum=BN_MOMENTUM), nn.ReLU())
        self.out = nn.Linear(hidden, n_genes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(z))


class SpotscapeNet(nn.Module):
    def __init__(self, n_genes: int, hidden: tuple[int, ...] = (256, 64), decoder_hidden: int = 256):
        super().__init__()
        self.encoder = GCNEncoder(n_genes, hidden)
        self.decoder = MLPDecoder(n_genes, hidden[-1], decoder_hidden)

    def forward(self, x, adj1, mask1, adj2, mask2):
        """Both augmented views in one call (one forward per step, as DistributedDataParallel needs):
        returns z1, z2 and the decoder's hidden layer of each (the output layer is applied inside the
        reconstruction loss, which never forms the spots x genes matrix)."""
        z1, z2 = self.encoder.forward_views(x, [adj1, adj2], [mask1, mask2])
        return z1, z2, self.decoder.hidden(z1), self.decoder.hidden(z2)
