"""Training (METHOD.md, "Training"): full batch, two augmented views per step, Adam.

The data a training run needs is a ``TrainingData``: the sparse log-normalised input, the
undirected spatial edges and the row indices of each slice. A later mini-batch mode builds the
same object per batch and calls the same ``step``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from . import losses
from ._cluster import estimate_n_domains
from ._kmeans import kmeans
from ._sparse import SparseMatrix
from .graph import drop_edges
from .model import SpotscapeNet


@dataclass
class TrainConfig:
    epochs: int = 1000
    lr: float = 1e-4
    weight_decay: float = 1e-4
    edge_drop: float = 0.2
    gene_mask: float = 0.2
    w_re: float = 0.1
    w_sc: float = 1.0
    w_ss: float = 1.0
    w_pcl: float = 0.01
    topk: int = 5
    tau: float = 0.75
    warmup: float = 0.5  # fraction of epochs before PCL starts (500 of 1,000 as published)
    n_domains: int | None = None  # k for the PCL granularities k, 1.5k, 2k (None: estimated at warm-up)
    patience: int | None = None  # stop when the loss has not improved by `min_delta` for this many epochs
    min_delta: float = 1e-4


@dataclass
class TrainingData:
    x: SparseMatrix
    edges: np.ndarray  # 2 x E directed edges (target, source), both directions present
    n: int
    slices: list[torch.Tensor] = field(default_factory=list)


def pcl_granularities(k: int) -> list[int]:
    """K_t = k, ceil(1.5 k), ceil(2 k), each strictly larger than the one before."""
    ks = [k]
    for f in (1.5, 2.0):
        ks.append(max(math.ceil(f * k), ks[-1] + 1))
    return ks


class Trainer:
    def __init__(self, net: SpotscapeNet, data: TrainingData, config: TrainConfig, seed: int = 0, device="cpu"):
        self.net, self.data, self.cfg, self.device = net, data, config, device
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.opt = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.history: list[dict] = []
        self._centroids: dict[int, torch.Tensor] = {}
        self.multi = len(data.slices) > 1

    def _view(self):
        d, c = self.data, self.cfg
        adj = SparseMatrix(drop_edges(d.edges, d.n, c.edge_drop, self.rng), self.device)
        mask = torch.from_numpy((self.rng.random(d.x.shape[1]) >= c.gene_mask).astype(np.float32)).to(self.device)
        return adj, mask

    def _prototypes(self, z2: torch.Tensor):
        zn = z2.detach()  # published: k-means on the raw (un-normalised) view-2 embedding
        if self.cfg.n_domains is None:  # not given: estimated once, when PCL starts
            self.cfg.n_domains = estimate_n_domains(zn.cpu().numpy(), seed=int(self.rng.integers(1 << 31)))[0]
        out = []
        for k in pcl_granularities(self.cfg.n_domains):
            c, labels = kmeans(zn, k, generator=self.gen, init=self._centroids.get(k))
            self._centroids[k] = c
            out.append((c, labels))
        return out

    def step(self, epoch: int) -> dict:
        c, net = self.cfg, self.net
        net.train()
        (a1, m1), (a2, m2) = self._view(), self._view()
        z1 = net.encoder(self.data.x, a1, m1)
        z2 = net.encoder(self.data.x, a2, m2)
        dec = net.decoder
        parts = {}
        if c.w_re:
            parts["re"] = (c.w_re, losses.reconstruction(self.data.x, [dec.hidden(z) for z in (z1, z2)], dec.out.weight, dec.out.bias))
        if c.w_sc:
            parts["sc"] = (c.w_sc, losses.similarity_telescope(z1, z2))
        if self.multi and c.w_ss:
            parts["ss"] = (c.w_ss, losses.similarity_scaling(z1, z2, self.data.slices, c.topk))
        if self.multi and c.w_pcl and epoch >= int(c.warmup * c.epochs):
            parts["pcl"] = (c.w_pcl, losses.prototypical_contrastive(z1, self._prototypes(z2), c.tau))
        loss = sum(w * v for w, v in parts.values())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        rec = {"epoch": epoch, "loss": loss.item()}
        rec.update({k: v.item() for k, (_, v) in parts.items()})
        return rec

    def fit(self, progress: bool = True) -> list[dict]:
        c = self.cfg
        best, since = math.inf, 0
        bar = tqdm(range(c.epochs), desc="spotscape", disable=not progress, leave=False)
        for epoch in bar:
            rec = self.step(epoch)
            self.history.append(rec)
            bar.set_postfix(loss=f"{rec['loss']:.4f}")
            if c.patience:
                if rec["loss"] < best - c.min_delta:
                    best, since = rec["loss"], 0
                else:
                    since += 1
                    if since >= c.patience:
                        break
        bar.close()
        return self.history
