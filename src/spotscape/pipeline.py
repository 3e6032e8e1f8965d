"""The end-to-end run behind ``spotscape run`` and ``spotscape demo``: read, train, embed, cluster,
score, and write ``result.h5ad``, ``metrics.json`` and ``domains.png`` all or nothing."""
from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from importlib.metadata import version

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import sklearn
import torch

from . import pl, tl
from ._version import __version__
from ._validate import SpotscapeInputError, check_label_key, check_n_domains, check_share, check_weight, check_writable
from .core import PUBLISHED_MULTI, PUBLISHED_SINGLE, Spotscape
from .metrics import COHERENCE_WARN, batch_mixing, cluster_scores, expression_coherence
from .train import TrainConfig

def write_json(path: str, obj) -> None:
    """Write JSON all or nothing (a temporary file, then an atomic rename)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=2)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def peak_memory_mb() -> float:
    """Peak resident memory of this process (ru_maxrss: KB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


def peak_gpu_memory_mb(device: torch.device) -> float | None:
    """torch's peak allocated GPU memory on ``device`` (None on a CPU)."""
    device = torch.device(device)
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def n_true_domains(slices, label_key) -> int:
    labels = pd.concat([a.obs[label_key] for a in slices]).dropna().astype(str)
    return int(labels[labels != "nan"].nunique())


def _keep_own_slice_column(joint, slices, names) -> None:
    """``obs['slice']`` of the joined slices holds each spot's slice name; an input's own ``slice`` column
    that says something else is kept beside it as ``obs['slice_input']``."""
    own = [a.obs["slice"] if "slice" in a.obs else pd.Series(None, index=a.obs_names, dtype=object) for a in slices]
    if all(o.isna().all() or (o.astype(str) == str(n)).all() for o, n in zip(own, names)):
        return
    # as text, and missing (NA) where an input has no slice column or no value in it
    joint.obs["slice_input"] = pd.Categorical([str(v) if pd.notna(v) else None for o in own for v in o])


def _write_result(joint, path, metrics) -> None:
    """``joint`` to ``path``; where an entry of ``uns`` carried over from the inputs cannot be written (h5ad
    has no form for, e.g., tuples or dicts with int keys), the file is written without the inputs'
    ``uns`` and ``metrics["warnings"]`` says so: the training is not lost to it."""
    try:
        joint.write_h5ad(path, compression="gzip")
    except Exception as e:  # anndata's IORegistryError and the errors of h5py underneath it
        own = {k: v for k, v in joint.uns.items() if k.startswith("spotscape")}
        dropped = sorted(set(joint.uns) - set(own))
        if not dropped:
            raise
        joint.uns = own
        joint.write_h5ad(path, compression="gzip")
        metrics.setdefault("warnings", []).append(
            f"result.h5ad was written without the inputs' uns ({', '.join(dropped)}): h5ad could not store one of them "
            f"({type(e).__name__}: {str(e)[:120]}).")


def _fit_and_cluster(slices, names, *, n_domains, seed, device, counts, n_top_genes, slice_norm, epochs, lr, progress,
                     batch_size, raw_z, weights):
    """Train a model on ``slices``, embed and cluster: (model, the slices joined with ``X_spotscape`` and
    ``spotscape_domain``, seconds per stage). Under torch.distributed the joined slices are None on
    every rank but 0."""
    model = Spotscape(dict(zip(names, slices)), n_domains=n_domains, seed=seed, device=device, counts=counts,
                      n_top_genes=n_top_genes, slice_norm=slice_norm)  # by name: input errors name the slice (its file)
    model.fit(epochs=epochs, lr=lr, progress=progress, batch_size=batch_size, **weights)
    if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank() > 0:
        return model, None, {}
    seconds = {}
    t0 = time.perf_counter()
    z = model.get_latent_representation(normalize=not raw_z)
    seconds["embed_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    joint = ad.concat(slices, join="inner", label="slice", keys=names, index_unique=None, merge="same", uns_merge="unique")
    joint.uns.pop("neighbors", None)  # scanpy's graph of the inputs: its obsp matrices do not survive the join
    if not joint.obs_names.is_unique:
        joint.obs_names = [f"{s}:{b}" for s, b in zip(joint.obs["slice"], joint.obs_names)]
    _keep_own_slice_column(joint, slices, names)
    joint.obsm["X_spotscape"] = z
    joint.uns["spotscape"] = dict(model.uns_info(), embedding="raw z" if raw_z else "unit-length z")
    tl.domains(joint, n_domains=n_domains, seed=seed)
    seconds["cluster_s"] = time.perf_counter() - t0
    seconds.update(model.timings)
    return model, joint, seconds


def _mixed_columns_as_text(obs: pd.DataFrame) -> None:
    """h5py cannot write an object column that mixes types (e.g. ints and strings): numbers where every value is
    one (ints and floats mixed), else text; in place, on the run's own copy of the inputs' obs."""
    for col in obs.columns:
        v = obs[col]
        if v.dtype == object and len({type(x) for x in v.dropna()}) > 1:
            num = pd.to_numeric(v, errors="coerce")
            obs[col] = num if num.notna().sum() == v.notna().sum() else v.map(lambda x: x if pd.isna(x) else str(x))


def _coherence(model, joint, slices, names, seed) -> tuple[dict, list, float]:
    """The label-free check that the domains follow the expression (``metrics.expression_coherence``),
    per slice, on the model's own log-normalised input: ({slice: value or None}, notes, seconds)."""
    t0 = time.perf_counter()
    domains = joint.obs["spotscape_domain"].to_numpy()
    x, _, rows = model._prepare(model.slices)  # kept from training
    coherence, notes = {}, []
    for name, a, r in zip(names, slices, rows):  # joint's rows are the slices' rows, in order
        try:  # a check after the training: if it cannot be computed, say so and keep the run's outputs
            c = expression_coherence(x[r], domains[r], np.asarray(a.obsm["spatial"]), seed=seed)
        except Exception as e:  # noqa: BLE001
            c = float("nan")
            notes.append(f"the expression coherence of {name} could not be computed ({type(e).__name__}: {e}).")
        coherence[name] = round(c, 4) if np.isfinite(c) else None  # None: nothing to score (e.g. one domain in the slice)
    return coherence, notes, time.perf_counter() - t0


def _training_mode(model) -> str:
    return "full batch" if model.train_config.batch_size is None else f"mini-batch {model.train_config.batch_size}"


def _ari(joint, label_key, names) -> dict:
    truth, pred, slice_ = joint.obs[label_key], joint.obs["spotscape_domain"], joint.obs["slice"].to_numpy()
    return {name: cluster_scores(truth[slice_ == name], pred[slice_ == name])["ari"] for name in names}


def _below(coherence: dict) -> list[str]:
    """The slices whose domains fail the check (coherence below ``COHERENCE_WARN``)."""
    return [name for name, c in coherence.items() if c is not None and c < COHERENCE_WARN]


def _remedy(retried: dict | None, edge_drop: float) -> str:
    """The warning's sentence on what was tried, or what to try."""
    if retried:
        return ("Trained again without dropped edges (edge_drop 0), they followed it more, but not enough. "
                if retried["kept"] != "first" else
                "Training again without dropped edges (edge_drop 0) did not make them follow it more. ")
    return "Try --edge-drop 0 (pipeline.run(edge_drop=0)). " if edge_drop > 0 else ""


def _worst(coherence: dict, names) -> float:
    """The lowest coherence over ``names``; a slice that could not be scored (None) counts as the lowest."""
    return min((coherence[n] if coherence[n] is not None else float("-inf") for n in names), default=float("-inf"))


def _train_again(first_run, low, slices, names, settings, label_key):
    """The domains of ``low`` do not follow the expression, as where a tissue's domains are one or two
    spots thick (README, "Held out"): train again without dropped edges, the measured remedy, and keep
    the run whose worst slice is more coherent (a slice scored in one run only counts as the worst;
    labels are recorded, never used for the choice). ``first_run``: (model, joint, seconds, coherence,
    notes) of the first run. Returns the run kept, in that form, and the record of both runs."""
    model, joint, run_s, coherence, notes = first_run
    seed = settings["seed"]
    if settings["progress"]:
        print(f"spotscape: the domains of {', '.join(low)} do not follow the expression (coherence below "
              f"{COHERENCE_WARN}); training again without dropped edges", file=sys.stderr)
    if model.device.type == "cuda":
        torch.cuda.empty_cache()
    # the same training mode as the first run (on a GPU "auto" reads free memory, which the first model still holds)
    again_settings = dict(settings, weights=dict(settings["weights"], edge_drop=0.0), batch_size=model.train_config.batch_size)
    model0, joint0, run0_s = _fit_and_cluster(slices, names, **again_settings)
    coherence0, notes0, run0_s["coherence_s"] = _coherence(model0, joint0, slices, names, seed)
    first, again = ({"edge_drop": m.train_config.edge_drop, "expression_coherence": c, "seconds": round(sum(t.values()), 3),
                     "n_domains": int(j.uns["spotscape"]["n_domains"]), "epochs_run": len(m.history),
                     "training_mode": _training_mode(m)}
                    for m, j, c, t in ((model, joint, coherence, run_s), (model0, joint0, coherence0, run0_s)))
    if label_key:  # for the record only
        first["ari"], again["ari"] = _ari(joint, label_key, names), _ari(joint0, label_key, names)
    scored = [n for n in names if coherence[n] is not None or coherence0[n] is not None]
    keep_again = _worst(coherence0, scored) > _worst(coherence, scored)
    retried = {"reason": f"expression coherence below {COHERENCE_WARN} with edge_drop {first['edge_drop']}",
               "first": first, "again": again, "kept": "again (edge_drop 0)" if keep_again else "first"}
    return ((model0, joint0, run0_s, coherence0, notes0) if keep_again else first_run), retried


def run(
    slices: list[ad.AnnData],
    names: list[str],
    out: str,
    n_domains: int | None = None,
    label_key: str | None = None,
    seed: int = 0,
    epochs: int | None = None,
    lr: float | None = None,
    device: str = "auto",
    counts: bool = True,
    n_top_genes: int = 5000,
    published: bool = False,
    progress: bool = True,
    save_model: bool = False,
    timings: dict | None = None,
    batch_size="auto",
    raw_z: bool = False,
    w_pcl: float | None = None,
    slice_norm: bool | None = None,
    edge_drop: float | None = None,
    retry: bool = True,
) -> dict:
    """Run Spotscape on ``slices`` (several = integration) and write the outputs into ``out``.

    ``n_domains``: given, else the number of distinct labels in ``label_key``, else estimated.
    ``published``: the published schedule (1,000 epochs), loss weights and BatchNorm instead of the fast default, and
    similarity scaling kept in mini-batches of several slices.
    ``batch_size``: "auto", None (full batch) or spots per mini-batch (``Spotscape.fit``).
    ``raw_z``: embed and cluster the encoder's raw z, as the published code does, instead of
    unit-length z (``Spotscape.get_latent_representation``).
    ``w_pcl``: weight of the prototype loss (several slices; default 0.02 in the fast schedule,
    the published 0.01 with ``published``).
    ``slice_norm``: per-slice BatchNorm statistics in the encoder (``Spotscape``; None: on for
    several slices, off with ``published``).
    ``edge_drop``: share of the graph's edges each augmented view drops (default: the published
    0.2; 0 for tissues whose domains are one or two spots thick, README "Held out").
    ``retry``: where the domains of a slice do not follow the expression (expression coherence below
    ``metrics.COHERENCE_WARN``) and ``edge_drop`` was not given, train again with ``edge_drop=0`` and
    keep the run whose worst slice is more coherent (``metrics.json["retried"]`` holds both runs).
    Not with ``published`` nor under torch.distributed, where the run only warns.
    Returns the metrics dictionary written to metrics.json. Under torch.distributed every process
    trains; only rank 0 embeds, clusters and writes (the others return ``{}``).
    """
    timings = dict(timings or {})
    check_writable(out)
    check_label_key(slices, label_key)
    if label_key == "slice":
        raise SpotscapeInputError("label key 'slice' is the column the run writes each spot's slice name to; rename the "
                                  "labels first, e.g. adata.obs = adata.obs.rename(columns={'slice': 'region'}).")
    n_spots = sum(a.n_obs for a in slices)
    k_source = "given" if n_domains is not None else ("labels" if label_key else "estimated")
    if label_key and n_domains is None:
        n_domains = n_true_domains(slices, label_key)
        if n_domains < 2:
            raise SpotscapeInputError(f"obs[{label_key!r}] holds {n_domains} distinct label(s) on labelled spots, so it cannot set "
                                      "the number of domains; give n_domains (CLI --n-domains), or another label column.")
    check_n_domains(n_domains, n_spots)
    if n_domains is None and n_spots < 10:  # estimate_n_domains' minimum, checked before training
        raise SpotscapeInputError(f"too few spots ({n_spots}) to estimate the number of domains; pass n_domains (CLI --n-domains).")
    if epochs is not None and epochs < 1:
        raise SpotscapeInputError(f"epochs must be >= 1 (got {epochs}).")
    if lr is not None and not lr > 0:
        raise SpotscapeInputError(f"the learning rate must be > 0 (got {lr}).")
    check_weight("prototype-loss weight", w_pcl)  # before the preprocessing in Spotscape()
    check_share("edge_drop", edge_drop)
    if n_top_genes < 1:
        raise SpotscapeInputError(f"n_top_genes must be >= 1 (got {n_top_genes}).")
    if len(set(names)) != len(names):
        names = [f"{n}_{i}" for i, n in enumerate(names)]

    if published and slice_norm is None:
        slice_norm = False  # the published BatchNorm
    if published:
        sched = PUBLISHED_MULTI if len(slices) > 1 else PUBLISHED_SINGLE
        epochs = epochs or sched["epochs"]
        lr = lr or sched["lr"]
    # published: every loss at its published weight, similarity scaling in mini-batches included
    weights = dict(w_ss=TrainConfig.w_ss, w_pcl=TrainConfig.w_pcl) if published else {}
    if w_pcl is not None:
        weights["w_pcl"] = w_pcl
    if edge_drop is not None:
        weights["edge_drop"] = edge_drop
    settings = dict(n_domains=n_domains, seed=seed, device=device, counts=counts, n_top_genes=n_top_genes, slice_norm=slice_norm,
                    epochs=epochs, lr=lr, progress=progress, batch_size=batch_size, raw_z=raw_z, weights=weights)
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    model, joint, run_s = _fit_and_cluster(slices, names, **settings)
    if joint is None:  # under torch.distributed only rank 0 embeds, clusters and writes
        return {}
    coherence, notes, run_s["coherence_s"] = _coherence(model, joint, slices, names, seed)
    retried = None
    low = _below(coherence)
    if low and retry and edge_drop is None and not published and not distributed and model.train_config.edge_drop > 0:
        first_run = (model, joint, run_s, coherence, notes)
        (model, joint, run_s, coherence, notes), retried = _train_again(first_run, low, slices, names, settings, label_key)
        if retried["kept"] == "first":
            timings["retry_run_s"] = retried["again"]["seconds"]
        else:
            timings["first_run_s"] = retried["first"]["seconds"]
        low = _below(coherence)
    timings.update(run_s)
    z = joint.obsm["X_spotscape"]
    if len(slices) > 1:  # the slices also brought together by mutual nearest neighbours (more mixing, same domains)
        t0 = time.perf_counter()
        tl.correct_slices(joint, slice_key="slice", key_added="X_spotscape_mnn")
        timings["correct_s"] = time.perf_counter() - t0

    metrics = {
        "spotscape_version": __version__,
        "spots": int(joint.n_obs),
        "genes_input": int(joint.n_vars),
        "genes_model": len(model.genes),
        "slices_names": list(names),
        "n_domains": int(joint.uns["spotscape"]["n_domains"]),
        "n_domains_source": k_source,
        "seed": seed,
        "device": str(model.device),
        "epochs_run": len(model.history),
        "training_mode": _training_mode(model),
        "processes": torch.distributed.get_world_size() if distributed else 1,
        "lr": model.train_config.lr,
        "w_pcl": model.train_config.w_pcl if len(slices) > 1 else None,  # the prototype loss needs several slices
        "edge_drop": model.train_config.edge_drop,
        "slice_norm": model.params["slice_norm"],
        "embedding": "raw z" if raw_z else "unit-length z",
        "final_loss": model.history[-1]["loss"] if model.history else None,
        "versions": {
            "python": platform.python_version(), "torch": torch.__version__, "anndata": version("anndata"),
            "scanpy": version("scanpy"), "scikit-learn": sklearn.__version__, "numpy": np.__version__,
        },
    }
    if "n_domains_evidence" in joint.uns["spotscape"]:
        metrics["n_domains_evidence"] = joint.uns["spotscape"]["n_domains_evidence"]
    scores = {}
    if label_key:
        truth = joint.obs[label_key]
        pred = joint.obs["spotscape_domain"]
        for name in names:
            m = (joint.obs["slice"] == name).to_numpy()
            scores[name] = cluster_scores(truth[m], pred[m], z[m], seed=seed)
        metrics["slices"] = scores
        metrics["pooled"] = cluster_scores(truth, pred, z, seed=seed)
    metrics["expression_coherence"] = coherence
    if retried:
        metrics["retried"] = retried
        joint.uns["spotscape"]["retried"] = f"{retried['reason']}; trained again with edge_drop 0; kept {retried['kept']}"
    if notes:
        metrics["warnings"] = notes
    if "slice_input" in joint.obs:
        metrics.setdefault("warnings", []).append(
            "the input's own obs column 'slice' is in result.h5ad as 'slice_input': 'slice' holds each spot's slice name.")
    if not save_model and os.path.exists(os.path.join(out, "model.pt")):
        metrics.setdefault("warnings", []).append(
            f"{os.path.join(out, 'model.pt')} is from an earlier run, not this one (which saved no model: --save-model); "
            "remove it, or write to another folder.")
    if low:
        metrics.setdefault("warnings", []).extend([
            f"the domains of {', '.join(low)} explain little of the (spatially smoothed) expression: expression coherence "
            f"{', '.join(f'{coherence[n]:.2f}' for n in low)}, below {COHERENCE_WARN} (0.90-0.95 on the slices where spotscape "
            "was measured to work). They may follow the tissue's position instead of its expression, as on tissues whose "
            f"domains are one or two spots thick. {_remedy(retried, model.train_config.edge_drop)}"
            "Compare with an expression-only clustering (README, 'Held out'). Very noisy spots also lower it (0.65 on "
            "the simulated demo)."])
    if len(slices) > 1:  # how well the slices mix (scIB's metrics; batch ASW and graph connectivity need labels)
        t0 = time.perf_counter()
        labels = joint.obs[label_key].to_numpy() if label_key else None
        metrics["mixing"] = {key: batch_mixing(joint.obsm[key], joint.obs["slice"].to_numpy(), labels, seed=seed)
                             for key in ("X_spotscape", "X_spotscape_mnn")}
        timings["mixing_s"] = time.perf_counter() - t0

    created = not os.path.exists(out)
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".spotscape-", dir=out)  # same file system: the final renames are atomic
    done = False
    try:
        t0 = time.perf_counter()
        per_slice = [joint[(joint.obs["slice"] == n).to_numpy()] for n in names]
        pl.domains(per_slice, names, truth_key=label_key, path=os.path.join(tmp, "domains.png"), scores=scores)
        _mixed_columns_as_text(joint.obs)
        _write_result(joint, os.path.join(tmp, "result.h5ad"), metrics)
        if save_model:
            model.save(os.path.join(tmp, "model.pt"))
        timings["write_s"] = time.perf_counter() - t0
        metrics["seconds"] = {k: round(v, 3) for k, v in timings.items()}
        metrics["seconds_total"] = round(sum(timings.values()), 3)
        metrics["peak_memory_mb"] = round(peak_memory_mb(), 1)
        gpu_mb = peak_gpu_memory_mb(model.device)
        if gpu_mb is not None:
            metrics.update(peak_gpu_memory_mb=round(gpu_mb, 1), gpu=torch.cuda.get_device_name(model.device))
        write_json(os.path.join(tmp, "metrics.json"), metrics)
        for f in os.listdir(tmp):
            os.replace(os.path.join(tmp, f), os.path.join(out, f))
        done = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not done and created and not os.listdir(out):
            os.rmdir(out)
    return metrics


def pca_kmeans_ari(adata: ad.AnnData, label_key: str, n_domains: int, seed: int = 0, n_top_genes: int = 3000, smooth: bool = False) -> float:
    """Floors: PCA (50) of log-normalised HVGs then k-means; ``smooth`` averages each spot's PCs with its
    6 nearest spots first."""
    from sklearn.cluster import KMeans
    from sklearn.neighbors import NearestNeighbors

    a = adata.copy()
    sc.pp.highly_variable_genes(a, n_top_genes=min(n_top_genes, a.n_vars - 1), flavor="seurat_v3")
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    a = a[:, a.var["highly_variable"]].copy()
    sc.pp.pca(a, n_comps=50, random_state=seed)
    pcs = a.obsm["X_pca"]
    if smooth:
        idx = NearestNeighbors(n_neighbors=7).fit(a.obsm["spatial"]).kneighbors(a.obsm["spatial"])[1]
        pcs = pcs[idx].mean(1)
    pred = KMeans(n_domains, n_init=10, random_state=seed).fit_predict(pcs)
    return cluster_scores(a.obs[label_key], pred)["ari"]
