"""Spotscape's network (METHOD.md, "Model"): a 2-layer GCN encoder and an MLP decoder.

Encoder: z = ReLU(BN(Â ReLU(BN(Â X W1)) W2)), widths 256 and 64.
Decoder: X^ = ReLU(BN(z D1)) D2, 64 -> 256 -> genes (the last layer linear).
The input X is a fixed sparse matrix; a view's gene mask m (1 = kept) enters as X diag(m) W1.

With ``slice_norm`` the encoder's BN normalises each slice by that slice's own mean and variance
(one shared scale and shift; domain-specific batch normalisation), in training and at inference:
a shift or scale of a whole slice's features in those layers does not reach z (README, "Where we differ").
"""
from __future__ import annotations

import torch
from torch import nn

from ._gather import gather_rows
from ._sparse import SparseMatrix

BN_MOMENTUM = 0.99  # as published (PyG BatchNorm(momentum=0.99)): running stats follow the last batches


class SliceBatchNorm(nn.Module):
    """BN(h)_i = (h_i - mu_s) / sqrt(var_s + eps) * gamma + beta for spot i of slice s = ``codes[i]``.

    mu_s, var_s: the moments of slice s's rows of ``h`` (all rows when ``codes`` is None), or
    ``stats`` = (mu, var), each slices x features, when given (embedding in tiles). There are no
    running averages: training and inference both use the statistics of the spots at hand, so a
    slice embedded later is normalised by its own."""

    def __init__(self, features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))

    def forward(self, h: torch.Tensor, codes: torch.Tensor | None = None, stats=None) -> torch.Tensor:
        if codes is None:
            codes = torch.zeros(h.shape[0], dtype=torch.long, device=h.device)
        if stats is None:
            ids, pos, counts = torch.unique(codes, return_inverse=True, return_counts=True)
            if bool((codes[1:] >= codes[:-1]).all()):  # slices in consecutive rows (full batch): views, no copies
                rows = torch.split(h, counts.tolist())
            else:
                rows = [h[codes == s] for s in ids]
            mu = torch.stack([r.mean(0) for r in rows])
            var = torch.stack([r.var(0, unbiased=False) for r in rows])
        else:
            (mu, var), pos = stats, codes
        scale = self.weight * torch.rsqrt(var + self.eps)  # slices x features: the formula above, as h * scale + shift
        shift = self.bias - mu * scale
        return h * gather_rows(scale, pos) + gather_rows(shift, pos)  # scale[pos], with a deterministic gradient


class GCNEncoder(nn.Module):
    def __init__(self, n_genes: int, hidden: tuple[int, ...] = (256, 64), slice_norm: bool = False):
        super().__init__()
        self.slice_norm = slice_norm
        dims = (n_genes, *hidden)
        self.weights = nn.ParameterList(
            [nn.Parameter(nn.init.xavier_uniform_(torch.empty(i, o))) for i, o in zip(dims[:-1], dims[1:])]
        )
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(o)) for o in hidden])
        norm = SliceBatchNorm if slice_norm else (lambda o: nn.BatchNorm1d(o, momentum=BN_MOMENTUM))
        self.norms = nn.ModuleList([norm(o) for o in hidden])

    def forward(self, x: SparseMatrix | torch.Tensor, adj: SparseMatrix, codes=None, stats=None, upto=None):
        """z of one (un-augmented) graph; training views go through ``forward_views``. ``codes``:
        slice of each row (``slice_norm``); ``stats``/``upto``: see ``propagate``."""
        w = self.weights[0]
        return self.propagate(x.mm(w) if isinstance(x, SparseMatrix) else x @ w, adj, codes, stats, upto)

    def forward_views(self, x: SparseMatrix, adjs: list[SparseMatrix], masks: list[torch.Tensor], codes=None):
        """``forward`` for several views of the same input at once: X diag(m) W1 of every view from
        one shared product (``SparseMatrix.mm_masked``)."""
        return [self.propagate(h, adj, codes) for h, adj in zip(x.mm_masked(self.weights[0], masks), adjs)]

    def propagate(self, h: torch.Tensor, adj: SparseMatrix, codes=None, stats=None, upto=None) -> torch.Tensor:
        """From the first layer's product ``X W1`` (per view) to z. ``slice_norm`` only: ``stats``,
        one (mu, var) per layer, replaces the moments of the rows at hand, and ``upto`` = l returns
        layer l's input to BN (for computing those moments tile by tile)."""
        for layer, (b, norm) in enumerate(zip(self.biases, self.norms)):
            if layer > 0:
                h = h @ self.weights[layer]
            h = adj.mm(h) + b
            if layer == upto:
                return h
            h = torch.relu(norm(h, codes, stats[layer] if stats else None) if self.slice_norm else norm(h))
        return h


class MLPDecoder(nn.Module):
    def __init__(self, n_genes: int, latent: int = 64, hidden: int = 256):
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(latent, hidden), nn.BatchNorm1d(hidden, momentum=BN_MOMENTUM), nn.ReLU())
        self.out = nn.Linear(hidden, n_genes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(z))


class SpotscapeNet(nn.Module):
    def __init__(self, n_genes: int, hidden: tuple[int, ...] = (256, 64), decoder_hidden: int = 256, slice_norm: bool = False):
        super().__init__()
        self.encoder = GCNEncoder(n_genes, hidden, slice_norm)
        self.decoder = MLPDecoder(n_genes, hidden[-1], decoder_hidden)

    def forward(self, x, adj1, mask1, adj2, mask2, codes=None):
        """Both augmented views in one call (one forward per step, as DistributedDataParallel needs):
        returns z1, z2 and the decoder's hidden layer of each (the output layer is applied inside the
        reconstruction loss, which never forms the spots x genes matrix). ``codes``: slice per row."""
        z1, z2 = self.encoder.forward_views(x, [adj1, adj2], [mask1, mask2], codes)
        return z1, z2, self.decoder.hidden(z1), self.decoder.hidden(z2)
