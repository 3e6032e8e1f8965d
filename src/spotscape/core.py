"""The ``Spotscape`` model: AnnData in, embedding out (scvi-tools style: construct, ``fit``, ``embed``)."""
from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import asdict

import anndata as ad
import numpy as np
import scipy.sparse as sp
import torch

from ._version import __version__
from ._sparse import SparseMatrix
from ._validate import (SpotscapeInputError, check_coordinates, check_expression, check_n_domains, check_names, check_positive,
                        check_share, check_weight)
from .graph import block_graph, normalized_adjacency, spatial_graph
from .model import SpotscapeNet
from .pp import highly_variable_genes, normalize as log_normalize
from .batching import TileBatches
from .train import LR_SCHEDULES, TrainConfig, Trainer, full_batch_data, slice_of_rows

# Defaults chosen by measurement (README, "Training schedule"); the published schedule is
# TrainConfig() itself: 1,000 epochs at 1e-4 (one slice) or 5e-4 (several).
FAST_SINGLE = dict(epochs=100, lr=1e-3)
FAST_MULTI = dict(epochs=100, lr=2e-3, w_pcl=0.02)  # with per-slice BatchNorm (slice_norm), 10 seeds on
# four DLPFC slices: pooled ARI 0.59 against 0.54 for the published BatchNorm and w_pcl 0.01 (README)
PUBLISHED_SINGLE = dict(epochs=1000, lr=1e-4)
PUBLISHED_MULTI = dict(epochs=1000, lr=5e-4)  # loss weights: TrainConfig's (w_pcl 0.01)
# Mini-batch mode (issue #5): above this many spots "auto" trains on batches of MINIBATCH_SIZE spots
# on a CPU; on a GPU "auto" stays full batch while the data fit (GPU_BYTES_*, full_batch_fits).
MINIBATCH_ABOVE = 50_000
# Peak GPU memory of full-batch training on an H100 (benchmarks/results/scale_gpu*.json, dlpfc_gpu.json):
# 31-41 bytes per stored input value plus up to ~38 KB per spot (3,639 to 100,000 spots). Full batch is
# kept while this bound with 40 / 40,000 stays under half the free GPU memory; at 100,000 simulated spots
# it ran in 34 s (ARI 0.988, 2.4 GB) against 87 s in mini-batches of 4,096 (ARI 0.981).
GPU_BYTES_PER_VALUE, GPU_BYTES_PER_SPOT = 40, 40_000
MINIBATCH_SIZE = 4096
EMBED_BATCH = 32768  # spots per tile group when embedding above MINIBATCH_ABOVE spots
MINIBATCH_STEPS = 500  # default number of updates in mini-batch mode ...
MINIBATCH_EPOCHS = (5, 25)  # ... within these epochs: on DLPFC forced into batches of 1,024, 100 epochs
# (400 updates) lost up to 0.07 ARI against full batch; 25 epochs (100 updates) matched it
# (benchmarks/minibatch_real.py), and 300k spots collapsed at 20 epochs x 74 batches.
MINIBATCH_W_SS = 0.0  # similarity scaling in mini-batches of several slices: off unless asked for. A batch
# of spatial tiles rarely holds the matching tissue of every other slice, and L_SS then pulls unlike
# spots together: four DLPFC slices in batches of 4,096 integrated at pooled ARI 0.26 with it and
# 0.55 without it (0.53 full batch; README, "Large data").


def _distributed() -> tuple[int, int]:
    """(rank, world size) of an initialised torch.distributed group; (0, 1) otherwise."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


_UMASK = os.umask(0o022)  # read once at import (setting it back at once): the mode saved models get
os.umask(_UMASK)


def resolve_device(device: str = "auto") -> torch.device:
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str) or not (device in ("cpu", "mps") or re.fullmatch(r"cuda(:\d+)?", device)):
        raise SpotscapeInputError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}.")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SpotscapeInputError("device='cuda' was asked for, but torch sees no CUDA GPU; use device='cpu' or 'auto'.")
    return torch.device(device)


def full_batch_fits(n_spots: int, n_values: int, device: torch.device, free_bytes: int | None = None) -> bool:
    """The "auto" batch-size rule: on a CPU full batch up to MINIBATCH_ABOVE spots; on a GPU while the
    measured memory bound for ``n_values`` stored input values and ``n_spots`` spots is at most half
    of the free GPU memory (``free_bytes``; read from the device when not given)."""
    if device.type != "cuda":
        return n_spots <= MINIBATCH_ABOVE
    if free_bytes is None:
        free_bytes = torch.cuda.mem_get_info(device)[0]
    return GPU_BYTES_PER_VALUE * n_values + GPU_BYTES_PER_SPOT * n_spots <= 0.5 * free_bytes


def unit_rows(z: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (an all-zero row stays zero)."""
    n = np.linalg.norm(z, axis=1, keepdims=True)
    return (z / np.maximum(n, 1e-12)).astype(z.dtype, copy=False)


def split_slices(adata, slice_key: str | None):
    """A list of AnnData (several slices), a dict of them by slice name, or one AnnData, optionally split by
    ``obs[slice_key]``.

    Returns (slices, names, positions): positions[i] are slice i's rows in the one AnnData (or None).
    """
    if isinstance(adata, ad.AnnData):
        if slice_key is None:
            return [adata], ["slice0"], None
        if slice_key not in adata.obs:
            raise SpotscapeInputError(f"slice_key {slice_key!r} is not a column of adata.obs.")
        if adata.obs[slice_key].isna().any():
            raise SpotscapeInputError(f"obs[{slice_key!r}] has missing values; give every spot a slice, or drop those spots.")
        codes = adata.obs[slice_key].astype("category")
        names = [str(c) for c in codes.cat.categories if (codes == c).any()]
        pos = [np.flatnonzero((codes == c).to_numpy()) for c in codes.cat.categories if (codes == c).any()]
        return [adata[p] for p in pos], names, pos
    adatas = list(adata.values()) if isinstance(adata, dict) else list(adata)
    if not adatas or not all(isinstance(a, ad.AnnData) for a in adatas):
        raise SpotscapeInputError("pass one AnnData or a non-empty list (or dict by slice name) of AnnData objects, one per slice.")
    names = [str(k) for k in adata] if isinstance(adata, dict) else [f"slice{i}" for i in range(len(adatas))]
    return adatas, names, None


def minibatch_epochs(n_spots: int, batch_size: int) -> int:
    """The default epochs in mini-batches: an epoch is ``n_spots / batch_size`` updates; about
    ``MINIBATCH_STEPS`` updates in all, within ``MINIBATCH_EPOCHS``."""
    n_batches = max(1, -(-n_spots // batch_size))
    return int(np.clip(-(-MINIBATCH_STEPS // n_batches), *MINIBATCH_EPOCHS))


class Spotscape:
    """Spotscape for one slice or several (integration).

    Parameters
    ----------
    adata
        One AnnData (raw counts in ``X``, coordinates in ``obsm['spatial']``) or a list of them,
        one per slice. It is not modified until ``embed`` writes the embedding into it.
    slice_key
        With one AnnData holding several slices: the ``obs`` column naming the slice.
    counts
        ``True``: X holds raw counts (checked). ``False``: X is already normalised and log-transformed.
    n_top_genes
        Highly variable genes per slice (seurat_v3); several slices keep those common to all.
    graph, radius, k
        Spatial graph per slice: ``"auto"`` (radius on spot grids such as Visium, 6 neighbours;
        5 nearest neighbours otherwise), ``"radius"`` or ``"knn"``.
    n_domains
        Number of domains; used by the prototypes (PCL) when several slices are integrated.
    slice_norm
        The encoder's batch normalisation with each slice's own statistics (``SliceBatchNorm``)
        instead of statistics pooled over all spots, as published. ``None`` (default): on when
        several slices are trained together, where it measured higher (README, "Where we differ").
        Every slice embedded is normalised by its own statistics, so embed whole slices (a crop
        is normalised by the crop's).
    seed, device
        Random seed (same seed, same machine: same result) and ``"auto"``, ``"cpu"`` or ``"cuda"``.
    """

    def __init__(
        self,
        adata,
        slice_key: str | None = None,
        *,
        spatial_key: str = "spatial",
        counts: bool = True,
        n_top_genes: int = 5000,
        graph: str = "auto",
        radius: float | None = None,
        k: int | None = None,
        hidden: tuple[int, ...] = (256, 64),
        n_domains: int | None = None,
        slice_norm: bool | None = None,
        seed: int = 0,
        device: str = "auto",
    ):
        self._input = adata
        self._prepared = None
        self.slices, self.slice_names, self._positions = split_slices(adata, slice_key)
        self.slice_key = slice_key
        for a, name in zip(self.slices, self._error_names(self.slice_names)):
            check_names(a, name)
            check_expression(a, counts, name)
            check_coordinates(a, spatial_key, name)
            if a.n_obs < 2:
                raise SpotscapeInputError(f"{f'slice {name!r} ' if name else 'the input '}has {a.n_obs} spot: too few to "
                                          "train on (batch normalisation needs at least 2); drop it or add spots.")
        check_n_domains(n_domains, sum(a.n_obs for a in self.slices))
        n_domains = None if n_domains is None else int(n_domains)
        check_positive("n_top_genes", n_top_genes, integer=True)
        if hidden is None or len(hidden) == 0 or not all(isinstance(h, (int, np.integer)) and h > 0 for h in hidden):
            raise SpotscapeInputError(f"hidden must be a non-empty tuple of layer widths > 0 (default (256, 64)), got {hidden!r}.")
        if graph not in ("auto", "radius", "knn"):
            raise SpotscapeInputError(f"graph must be 'auto', 'radius' or 'knn', got {graph!r}.")
        if k is not None:
            check_positive("k (neighbours per spot)", k, integer=True)
        if radius is not None:
            check_positive("radius", radius)
        if slice_norm not in (None, True, False):
            raise SpotscapeInputError(f"slice_norm must be None, True or False, got {slice_norm!r}.")
        self.params = dict(
            spatial_key=spatial_key, counts=counts, n_top_genes=n_top_genes, graph=graph, radius=radius, k=k,
            hidden=list(hidden), n_domains=n_domains, seed=seed,
            slice_norm=len(self.slices) > 1 if slice_norm is None else bool(slice_norm),
        )
        self.device = resolve_device(device)
        self.timings: dict[str, float] = {}
        t0 = time.perf_counter()
        self.genes = self._select_genes(self.slices)
        self.timings["preprocess_s"] = time.perf_counter() - t0
        torch.manual_seed(seed)
        self.net = SpotscapeNet(len(self.genes), tuple(hidden), slice_norm=self.params["slice_norm"]).to(self.device)
        self.history: list[dict] = []
        self.train_config: TrainConfig | None = None

    # ------------------------------------------------------------------ data
    def _select_genes(self, slices) -> list[str]:
        """One slice: its top ``n_top_genes`` HVGs. Several: the genes common to all slices, ranked
        by seurat_v3 within each slice and combined (scanpy's ``batch_key``). The published code
        intersects per-slice HVG sets instead, which keeps far fewer genes when slices were
        filtered differently (1,066 of 3,851 shared genes on the four DLPFC files here)."""
        p = self.params
        return highly_variable_genes(slices, p["n_top_genes"], p["counts"], names=self._error_names(self.slice_names))

    def _graph(self, coords: np.ndarray) -> sp.csr_matrix:
        p = self.params
        return spatial_graph(coords, p["graph"], p["radius"], p["k"])

    def _prepare(self, slices) -> tuple[sp.csr_matrix, sp.csr_matrix, list[np.ndarray]]:
        """Log-normalised input, block graph and row indices per slice (kept for the training slices)."""
        if slices is self.slices and self._prepared is not None:
            return self._prepared
        p = self.params
        xs = [log_normalize(a, self.genes, p["counts"]) for a in slices]
        adj = block_graph([self._graph(np.asarray(a.obsm[p["spatial_key"]], dtype=np.float64)) for a in slices])
        bounds = np.cumsum([0] + [a.n_obs for a in slices])
        rows = [np.arange(bounds[i], bounds[i + 1]) for i in range(len(slices))]
        out = sp.vstack(xs, format="csr"), adj, rows
        if slices is self.slices:
            self._prepared = out
        return out

    def _tiles(self, slices, codes, adj, batch_size: int, tile_size: int | None) -> TileBatches:
        """Spatial tiles of the stacked slices (never across slices; ``codes``: slice of each row), for mini-batches."""
        coords = np.vstack([np.asarray(a.obsm[self.params["spatial_key"]], dtype=np.float64) for a in slices])
        return TileBatches(coords, codes, adj, batch_size=batch_size, tile_size=tile_size)

    # ------------------------------------------------------------------ training
    def default_schedule(self) -> dict:
        return dict(FAST_MULTI if len(self.slices) > 1 else FAST_SINGLE)

    def fit(self, epochs: int | None = None, lr: float | None = None, progress: bool = True,
            batch_size: int | str | None = "auto", **loss_options) -> "Spotscape":
        """Train. ``epochs``/``lr`` (and, for several slices, ``w_pcl`` 0.02) default to the measured
        fast schedule (``default_schedule``); other keywords go to
        ``TrainConfig`` (loss weights ``w_re``, ``w_sc``, ``w_ss``, ``w_pcl`` (0 switches a loss off),
        ``edge_drop``, ``gene_mask``, ``topk``, ``tau``, ``warmup``, ``weight_decay``, ``patience``,
        ``pcl_warm_start``, ``tile_size``, ``lr_schedule``: ``"constant"`` (default) or ``"cosine"``).

        ``batch_size``: ``"auto"`` trains full batch up to ``MINIBATCH_ABOVE`` spots on a CPU, and
        on a GPU while the data fit in half its free memory (``full_batch_fits``), else in
        mini-batches of 4,096 spots; ``None`` forces full batch; a number forces mini-batches
        of that many spots (spatial tiles plus their two-hop halo, every loss inside the batch).
        In mini-batch mode the default number of epochs gives about 500 updates (5 to 25 epochs),
        and with several slices similarity scaling is off unless ``w_ss`` is given (it hurt
        integration inside batches; README, "Large data").
        Under ``torch.distributed`` (e.g. started by ``torchrun``) every process trains on its own
        share of the batches and gradients are averaged (DistributedDataParallel)."""
        sched = self.default_schedule()
        if epochs is not None:
            check_positive("epochs", epochs, integer=True)
            sched["epochs"] = int(epochs)
        if lr is not None:
            check_positive("the learning rate lr", lr)
            sched["lr"] = float(lr)
        if "weight_decay" in loss_options:
            check_positive("weight_decay", loss_options["weight_decay"], allow_zero=True)
        unknown = set(loss_options) - set(TrainConfig.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown training option(s): {sorted(unknown)}")
        for name in ("w_re", "w_sc", "w_ss", "w_pcl"):
            check_weight(f"loss weight {name}", loss_options.get(name))
        for name in ("edge_drop", "gene_mask"):
            check_share(name, loss_options.get(name))
        active = ("w_re", "w_sc", "w_ss", "w_pcl") if len(self.slices) > 1 else ("w_re", "w_sc")  # w_ss, w_pcl: several slices
        if all(loss_options.get(n, 1) == 0 for n in active):
            raise SpotscapeInputError(f"every loss weight that applies here is 0 ({', '.join(active)}): nothing would be trained; "
                                      "keep at least one > 0.")
        if loss_options.get("lr_schedule", "constant") not in LR_SCHEDULES:
            raise SpotscapeInputError(f"lr_schedule must be {' or '.join(map(repr, LR_SCHEDULES))}, got {loss_options['lr_schedule']!r}.")
        n_spots = sum(a.n_obs for a in self.slices)
        rank, world = _distributed()
        if batch_size != "auto" and batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 8):
            raise SpotscapeInputError(f"batch_size must be 'auto', None or an integer >= 8, got {batch_size!r}.")
        if world > 1 and batch_size is None:
            raise SpotscapeInputError("several processes need mini-batches: leave batch_size='auto' or give a number.")
        t0 = time.perf_counter()
        x, adj, rows = self._prepare(self.slices)
        if adj.nnz == 0 and n_spots > 1:
            raise SpotscapeInputError(f"the spatial graph has no edges (graph={self.params['graph']!r}, radius={self.params['radius']}): "
                                      "no spot has a neighbour; give a radius of at least the spot spacing in the units of "
                                      "obsm['spatial'], or use graph='knn'.")
        if batch_size == "auto":
            batch_size = MINIBATCH_SIZE if (world > 1 or not full_batch_fits(n_spots, x.nnz, self.device)) else None
        if batch_size is not None and epochs is None:
            sched["epochs"] = minibatch_epochs(n_spots, int(batch_size))
        if batch_size is not None and len(self.slices) > 1:
            loss_options.setdefault("w_ss", MINIBATCH_W_SS)
        cfg = TrainConfig(**{**sched, **loss_options}, n_domains=self.params["n_domains"], batch_size=batch_size)
        if batch_size is None:
            trainer_args = dict(data=full_batch_data(x, adj, rows, self.device))
        else:
            codes = slice_of_rows(rows)
            batches = self._tiles(self.slices, codes, adj, int(batch_size), cfg.tile_size)
            trainer_args = dict(data=None, batches=batches, full=(x, sp.csr_matrix(adj), codes), rank=rank, world=world)
        self.timings["graph_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        trainer = Trainer(self.net, config=cfg, seed=self.params["seed"], device=self.device, **trainer_args)
        self.train_config = cfg
        self.history = trainer.fit(progress=progress)
        self.timings["train_s"] = time.perf_counter() - t0
        return self

    # ------------------------------------------------------------------ inference
    def _new_slices(self, adata) -> tuple:
        """``split_slices`` of data given for inference, each slice checked as the training data were."""
        split = split_slices(adata, self.slice_key if isinstance(adata, ad.AnnData) else None)
        for a, name in zip(split[0], self._error_names(split[1])):
            check_expression(a, self.params["counts"], name)
            check_coordinates(a, self.params["spatial_key"], name)
        return split

    @staticmethod
    def _error_names(names: list[str]) -> list:
        """How input errors name each slice: by its name when there are several, not at all for one."""
        return list(names) if len(names) > 1 else [None]

    def _check_trained(self) -> None:
        """Warn when the weights are the random initial ones (a user's call before fit(); the benchmarks that score the
        untrained encoder or embed during training call get_latent_representation, which does not warn)."""
        if self.train_config is None:
            import warnings

            warnings.warn("this model has not been trained: its embedding comes from random weights. Call fit() first "
                          "(or load a trained model with Spotscape.load).", stacklevel=3)

    @torch.no_grad()
    def _embed_slices(self, slices, prepared=None) -> np.ndarray:
        """z of the un-augmented graph. Above MINIBATCH_ABOVE spots, tile by tile with each tile's
        two-hop halo and the global GCN normalisation: the same z, in memory bounded by a batch
        (with ``slice_norm``, each layer's per-slice moments first gathered over all tiles).
        ``prepared``: the output of ``_prepare(slices)`` when the caller already has it."""
        x, adj, rows = prepared if prepared is not None else self._prepare(slices)
        enc = self.net.encoder
        self.net.eval()
        a_norm = normalized_adjacency(adj)
        codes = slice_of_rows(rows)
        on_device = lambda c: torch.from_numpy(c).to(self.device) if enc.slice_norm else None  # noqa: E731
        if x.shape[0] <= MINIBATCH_ABOVE:
            z = enc(SparseMatrix(x, self.device), SparseMatrix(a_norm, self.device, symmetric=True), on_device(codes))
            return z.cpu().numpy()
        tiles = list(self._tiles(slices, codes, adj, EMBED_BATCH, EMBED_BATCH // 8).epoch(np.random.default_rng(0)))
        inputs = lambda nodes: (SparseMatrix(x[nodes], self.device), SparseMatrix(a_norm[nodes][:, nodes], self.device, symmetric=True))  # noqa: E731
        stats = None
        if enc.slice_norm:  # layer by layer: sum and sum of squares of BN's input over every slice's spots
            stats = []
            count = np.maximum(np.bincount(codes, minlength=len(rows)), 1)[:, None]  # the tiles hold every spot once
            for layer in range(len(enc.norms)):
                acc = np.zeros((2, len(rows), enc.biases[layer].shape[0]))  # sum, sum of squares
                for nodes, ns in tiles:
                    h = enc(*inputs(nodes), on_device(codes[nodes]), stats, upto=layer)[:ns].double().cpu().numpy()
                    np.add.at(acc[0], codes[nodes[:ns]], h)
                    np.add.at(acc[1], codes[nodes[:ns]], h * h)
                mu = acc[0] / count
                var = np.maximum(acc[1] / count - mu * mu, 0)
                stats.append(tuple(torch.from_numpy(m.astype(np.float32)).to(self.device) for m in (mu, var)))
        out = np.empty((x.shape[0], enc.weights[-1].shape[1]), dtype=np.float32)
        for nodes, ns in tiles:  # every tile once; the order does not matter
            out[nodes[:ns]] = enc(*inputs(nodes), on_device(codes[nodes]), stats)[:ns].cpu().numpy()
        return out

    @torch.no_grad()
    def get_reconstruction(self, adata=None, batch_size: int = 8192) -> tuple[sp.csr_matrix, np.ndarray]:
        """The model's input and its decoder output (spots x model genes, log-normalised scale).

        Returns (x, x_hat): ``x`` the log-normalised input (CSR, ``self.genes``), ``x_hat`` the
        decoder's reconstruction from the un-augmented embedding, computed ``batch_size`` spots at a
        time (eval mode: no batch statistics involved)."""
        self._check_trained()
        slices = self.slices if adata is None else self._new_slices(adata)[0]
        if not slices:
            raise SpotscapeInputError("this model holds no data: pass adata, or load it with Spotscape.load(path, adata=...).")
        prepared = self._prepare(slices)
        x = prepared[0]
        z = torch.from_numpy(self._embed_slices(slices, prepared)).to(self.device)  # sets eval mode
        out = np.empty((x.shape[0], len(self.genes)), dtype=np.float32)
        for start in range(0, x.shape[0], batch_size):
            out[start : start + batch_size] = self.net.decoder(z[start : start + batch_size]).cpu().numpy()
        return x, out

    def get_latent_representation(self, adata=None, normalize: bool = True) -> np.ndarray:
        """The embedding (spots x 64) of the training data, or of ``adata`` (same genes needed).

        ``normalize=True`` (default): each row scaled to unit length, the geometry in which every
        loss compares spots (they all use cosine similarity of z), so that k-means and nearest
        neighbours see directions only. ``False``: the encoder's raw z, as the published code
        clusters it (README, "Where we differ")."""
        if adata is None:
            if not self.slices:
                raise SpotscapeInputError("this model holds no data: pass adata, or load it with Spotscape.load(path, adata=...).")
            z = self._embed_slices(self.slices)
        else:
            z = self._embed_slices(self._new_slices(adata)[0])
        return unit_rows(z) if normalize else z

    def embed(self, adata=None, key_added: str = "X_spotscape", normalize: bool = True) -> np.ndarray:
        """Compute the embedding and write it to ``obsm[key_added]`` of the training AnnData (or of
        ``adata``), with the parameters in ``uns['spotscape']``; returns it (all slices stacked).
        ``normalize``: unit-length rows (default) or the raw z (``get_latent_representation``)."""
        self._check_trained()
        target = self._input if adata is None else adata
        z = self.get_latent_representation(adata, normalize=normalize)
        slices, _, positions = split_slices(target, self.slice_key if isinstance(target, ad.AnnData) else None)
        info = self.uns_info()
        info["embedding"] = "unit-length z" if normalize else "raw z"
        if isinstance(target, ad.AnnData):
            if positions is None:
                target.obsm[key_added] = z
            else:
                full = np.zeros((target.n_obs, z.shape[1]), dtype=z.dtype)
                start = 0
                for p in positions:
                    full[p] = z[start : start + len(p)]
                    start += len(p)
                target.obsm[key_added] = full
            target.uns["spotscape"] = info
        else:
            start = 0
            for a in slices:
                a.obsm[key_added] = z[start : start + a.n_obs]
                a.uns["spotscape"] = info
                start += a.n_obs
        return z

    def uns_info(self) -> dict:
        info = {"version": __version__, "genes": len(self.genes), "slices": list(self.slice_names)}
        info.update({k: v for k, v in self.params.items() if v is not None})
        if self.train_config is not None:
            info["train"] = {k: v for k, v in asdict(self.train_config).items() if v is not None}
            info["epochs_run"] = len(self.history)
        return info

    # ------------------------------------------------------------------ persistence
    def save(self, path: str) -> None:
        """Weights and configuration in one file (tensors and JSON; no pickled code)."""
        payload = {
            "format": "spotscape-model",
            "format_version": 1,
            "config": json.dumps({"params": self.params, "genes": self.genes, "slice_key": self.slice_key,
                                  "slice_names": self.slice_names,
                                  "train": asdict(self.train_config) if self.train_config else None}),
            "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
        }
        path = os.path.abspath(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        os.close(fd)
        try:
            torch.save(payload, tmp)
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would keep the model from the user's group
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    @classmethod
    def load(cls, path: str, adata=None, device: str = "auto") -> "Spotscape":
        """Load a saved model (``torch.load(weights_only=True)``: nothing in the file is executed).

        ``adata``: the data to attach (for ``embed()`` without arguments); it must hold the model's genes.
        """
        if not os.path.isfile(path):
            raise SpotscapeInputError(f"no model file at {path!r}; give the path written by Spotscape.save() (CLI: --save-model).")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # not a torch file at all (e.g. an .h5ad), or a damaged one: torch's message says little
            raise SpotscapeInputError(f"{path!r} is not a model saved by Spotscape.save() (torch could not read it: "
                                      f"{str(e).splitlines()[0][:200] if str(e) else type(e).__name__}).") from None
        if not isinstance(payload, dict) or payload.get("format") != "spotscape-model":
            raise SpotscapeInputError(f"{path!r} is not a model saved by Spotscape.save().")
        cfg = json.loads(payload["config"])
        self = cls.__new__(cls)
        self.params, self.genes = cfg["params"], cfg["genes"]
        self.slice_key, self.slice_names = cfg["slice_key"], cfg["slice_names"]
        self.train_config = TrainConfig(**cfg["train"]) if cfg["train"] else None
        self.device = resolve_device(device)
        self.timings, self.history = {}, []
        self.params.setdefault("slice_norm", False)  # models saved before the option: published BatchNorm
        self.net = SpotscapeNet(len(self.genes), tuple(self.params["hidden"]), slice_norm=self.params["slice_norm"])
        self.net.load_state_dict(payload["state_dict"])
        self.net.to(self.device)
        self._input = adata
        self._prepared = None
        if adata is not None:
            self.slices, self.slice_names, self._positions = self._new_slices(adata)
        else:
            self.slices, self._positions = [], None
        return self
