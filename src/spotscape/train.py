"""Training (METHOD.md, "Training"): two augmented views per step, Adam; full batch, or
mini-batches of spatial tiles (``batching``) for large data, optionally over several processes.

A step works on a ``TrainingData``: the sparse log-normalised input, the directed spatial edges,
the row indices of each slice, and (mini-batch) the number of leading rows the losses are
computed on (the tile spots; the rest is their two-hop halo, needed only by the GCN).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from . import losses
from ._cluster import estimate_n_domains
from ._kmeans import kmeans
from ._sparse import SparseMatrix
from ._validate import SpotscapeTrainingError
from .batching import TileBatches
from .graph import drop_edges, edge_list
from .model import SpotscapeNet
from .optim import Adam


LR_SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    epochs: int = 1000
    lr: float = 1e-4
    lr_schedule: str = "constant"  # one of LR_SCHEDULES; "cosine": the rate falls from lr to 0 over the epochs
    weight_decay: float = 1e-4
    edge_drop: float = 0.2
    gene_mask: float = 0.2
    w_re: float = 0.1
    w_sc: float = 1.0
    w_ss: float = 1.0
    w_pcl: float = 0.01
    topk: int = 5
    tau: float = 0.75
    pcl_warm_start: bool = True  # prototypes' k-means from the previous step's centroids (False: afresh, as
    # published; four DLPFC slices, 5 seeds: pooled ARI 0.549 afresh vs 0.548, benchmarks/integration_variants.py)
    warmup: float = 0.5  # fraction of epochs before PCL starts (500 of 1,000 as published)
    n_domains: int | None = None  # k for the PCL granularities k, 1.5k, 2k (None: estimated at warm-up)
    patience: int | None = None  # stop when the loss has not improved by `min_delta` for this many epochs
    min_delta: float = 1e-4
    batch_size: int | None = None  # spots per mini-batch (tile spots); None: full batch
    tile_size: int | None = None  # spatial tile size in mini-batch mode (None: batch_size / 8, 32..512)


@dataclass
class TrainingData:
    x: SparseMatrix
    edges: np.ndarray  # 2 x E directed edges (target, source), both directions present
    n: int
    slices: list[torch.Tensor] = field(default_factory=list)
    n_seeds: int | None = None  # losses on rows [0, n_seeds) only (mini-batch); None: every row
    target: SparseMatrix | None = None  # reconstruction target of those rows (default: x)
    codes: torch.Tensor | None = None  # slice of every row, for per-slice BatchNorm (several slices only)


def slice_of_rows(rows: list[np.ndarray]) -> np.ndarray:
    """The slice index of every stacked row, from each slice's (contiguous) row indices."""
    return np.concatenate([np.full(len(r), i) for i, r in enumerate(rows)])


def full_batch_data(x: sp.csr_matrix, adj: sp.csr_matrix, rows: list[np.ndarray], device="cpu") -> TrainingData:
    """The ``TrainingData`` of the whole input: every spot, the block graph, each slice's rows (several slices only)."""
    slices = [torch.from_numpy(r).to(device) for r in rows] if len(rows) > 1 else []
    codes = torch.from_numpy(slice_of_rows(rows)).to(device) if slices else None
    return TrainingData(x=SparseMatrix(x, device), edges=edge_list(adj), n=x.shape[0], slices=slices, codes=codes)


def batch_data(x: sp.csr_matrix, adj: sp.csr_matrix, slice_codes: np.ndarray, nodes: np.ndarray, n_seeds: int,
               device) -> TrainingData:
    """The ``TrainingData`` of one mini-batch: the sub-graph on ``nodes`` (seeds first)."""
    sub = x[nodes]
    seeds = slice_codes[nodes[:n_seeds]]
    present = np.unique(seeds)
    slices = [torch.from_numpy(np.flatnonzero(seeds == s)).to(device) for s in present] if len(present) > 1 else []
    # the halo lies in its seeds' slices (no edges between slices): several slices present = several in the batch
    codes = torch.from_numpy(slice_codes[nodes].astype(np.int64)).to(device) if slices else None
    return TrainingData(x=SparseMatrix(sub, device), edges=edge_list(adj[nodes][:, nodes]), n=len(nodes), slices=slices,
                        n_seeds=n_seeds, target=SparseMatrix(sub[:n_seeds], device), codes=codes)


def pcl_granularities(k: int) -> list[int]:
    """K_t = k, ceil(1.5 k), ceil(2 k), each strictly larger than the one before."""
    ks = [k]
    for f in (1.5, 2.0):
        ks.append(max(math.ceil(f * k), ks[-1] + 1))
    return ks


class Trainer:
    """``data``: the whole training set. Mini-batch mode: ``batches`` (a ``TileBatches``) with
    ``full`` = (x CSR, adjacency CSR, slice code per spot). Several processes: ``rank``/``world``
    under an initialised ``torch.distributed`` group; the net is wrapped in DistributedDataParallel
    and each process takes its own share of every epoch's batches."""

    def __init__(self, net: SpotscapeNet, data: TrainingData | None, config: TrainConfig, seed: int = 0, device="cpu",
                 batches: TileBatches | None = None, full=None, rank: int = 0, world: int = 1):
        self.net, self.data, self.cfg, self.device = net, data, config, device
        self.rank, self.world = rank, world
        self.rng = np.random.default_rng(seed)
        # one process: one stream (as before mini-batches existed); several: augmentations differ per
        # process while the batch order (self.rng) stays the same in all of them
        self.view_rng = self.rng if world == 1 else np.random.default_rng([seed, rank])
        self.gen = torch.Generator().manual_seed(seed)
        self.model = net
        if world > 1:
            dev = torch.device(device)
            ids = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)
        self.opt = Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.history: list[dict] = []
        self._centroids: dict[int, torch.Tensor] = {}
        self.batches, self.full = batches, full
        self.multi = (len(np.unique(full[2])) > 1) if full is not None else len(data.slices) > 1

    def _view(self, d: TrainingData):
        c = self.cfg
        adj = SparseMatrix(drop_edges(d.edges, d.n, c.edge_drop, self.view_rng), self.device)
        mask = torch.from_numpy((self.view_rng.random(d.x.shape[1]) >= c.gene_mask).astype(np.float32)).to(self.device)
        return adj, mask

    def _prototypes(self, z2: torch.Tensor):
        zn = z2.detach()  # published: k-means on the raw (un-normalised) view-2 embedding
        if self.cfg.n_domains is None:  # not given: estimated once, when PCL starts
            self.cfg.n_domains = estimate_n_domains(zn.cpu().numpy(), seed=int(self.rng.integers(1 << 31)))[0]
        out = []
        for k in pcl_granularities(self.cfg.n_domains):
            c, labels = kmeans(zn, k, generator=self.gen, init=self._centroids.get(k))
            if self.cfg.pcl_warm_start:  # kept only to start the next step's k-means from
                self._centroids[k] = c
            out.append((c, labels))
        return out

    def step(self, epoch: int, data: TrainingData | None = None) -> dict:
        c, net = self.cfg, self.net
        d = data if data is not None else self.data
        net.train()
        (a1, m1), (a2, m2) = self._view(d), self._view(d)
        z1, z2, h1, h2 = self.model(d.x, a1, m1, a2, m2, d.codes)
        ns = d.n_seeds or d.n
        z1, z2, h1, h2 = z1[:ns], z2[:ns], h1[:ns], h2[:ns]
        dec = net.decoder
        parts = {}
        if c.w_re:
            target = d.target if d.target is not None else d.x
            parts["re"] = (c.w_re, losses.reconstruction(target, [h1, h2], dec.out.weight, dec.out.bias))
        if c.w_sc:
            parts["sc"] = (c.w_sc, losses.similarity_telescope(z1, z2))
        if len(d.slices) > 1 and c.w_ss:
            parts["ss"] = (c.w_ss, losses.similarity_scaling(z1, z2, d.slices, c.topk))
        if self.multi and c.w_pcl and epoch >= int(c.warmup * c.epochs) and ns > 4 * (self.cfg.n_domains or 1):
            parts["pcl"] = (c.w_pcl, losses.prototypical_contrastive(z1, self._prototypes(z2), c.tau))
        loss = sum(w * v for w, v in parts.values())
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        rec = {"epoch": epoch, "loss": loss.item()}
        rec.update({k: v.item() for k, (_, v) in parts.items()})
        return rec

    def epoch(self, epoch: int) -> dict:
        """One epoch (every batch once) at the schedule's rate for it; the record holds the mean
        loss terms and that rate."""
        if self.cfg.lr_schedule == "cosine":  # from lr at epoch 0 towards 0 at the last
            self.opt.lr = self.cfg.lr * (1 + math.cos(math.pi * epoch / self.cfg.epochs)) / 2
        rec = self._batches(epoch) if self.batches is not None else self.step(epoch)
        rec["lr"] = self.opt.lr
        return rec

    def _batches(self, epoch: int) -> dict:
        x, adj, codes = self.full
        batches = list(self.batches.epoch(self.rng))  # the same order in every process (same seed)
        # several processes: the same number of steps in each (collectives), at least one
        n_steps = max(1, len(batches) // self.world) if self.world > 1 else len(batches)
        recs = []
        for i in range(n_steps):
            nodes, ns = batches[(i * self.world + self.rank) % len(batches)]
            recs.append(self.step(epoch, batch_data(x, adj, codes, nodes, ns, self.device)))
        rec = {"epoch": epoch}
        for k in recs[0]:
            if k != "epoch":
                rec[k] = float(np.mean([r[k] for r in recs if k in r]))
        return rec

    def fit(self, progress: bool = True) -> list[dict]:
        c = self.cfg
        best, since = math.inf, 0
        bar = tqdm(range(c.epochs), desc="spotscape", disable=not progress or self.rank > 0, leave=False)
        for epoch in bar:
            rec = self.epoch(epoch)
            first = self.history[0]["loss"] if self.history else rec["loss"]
            if not math.isfinite(rec["loss"]) or rec["loss"] > 1e3 * max(first, 1e-3):
                bar.close()
                raise SpotscapeTrainingError(
                    f"training diverged: the loss became {rec['loss']:.4g} at epoch {epoch + 1} (learning rate {c.lr:g}; "
                    f"{first:.4g} at the first). "
                    "Lower the learning rate (the defaults: 1e-3 for one slice, 2e-3 for several), and check that X holds "
                    "raw counts (or normalised, log-transformed values with counts=False).")
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
