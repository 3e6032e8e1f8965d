"""When is a dense input matrix faster than CSR on a CPU? Full-batch training steps with the input
forced sparse and forced dense, in alternation, on real slices and the demo tissue; the fill
(stored values / cells) of each input decides ``spotscape._sparse.DENSE_ABOVE``.

    python benchmarks/dense_threshold.py --rounds 2 --steps 8

Writes benchmarks/results/dense_threshold.md (``--out`` for another file: another machine's figures).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import anndata as ad
import numpy as np
import torch

import spotscape
import spotscape._sparse as sparse
from dlpfc import DATA, SLICES
from spotscape.datasets import simulate_tissue
from spotscape.graph import edge_list
from spotscape.train import TrainConfig, Trainer, TrainingData, slice_of_rows

HERE = Path(__file__).resolve().parent


def inputs():
    yield "demo tissue (3,000 spots x 2,000 genes)", simulate_tissue(seed=0), 5
    for s in ("151673", "151674"):
        yield f"DLPFC {s}", ad.read_h5ad(DATA / f"{s}.h5ad"), 7
    yield "4 DLPFC slices integrated", [ad.read_h5ad(DATA / f"{s}.h5ad") for s in SLICES], 7


def step_time(model, x, adj, rows, dense: bool, steps: int) -> float:
    default, sparse.DENSE_ABOVE = sparse.DENSE_ABOVE, (0.0 if dense else 1.0)
    xm = sparse.SparseMatrix(x)  # only the input is forced; the graphs built per step keep the rule
    sparse.DENSE_ABOVE = default
    assert xm.dense == dense
    data = TrainingData(xm, edge_list(adj), x.shape[0], [torch.from_numpy(r) for r in rows])
    if len(rows) > 1:  # slice of every row (per-slice BatchNorm, the default for several slices)
        data.codes = torch.from_numpy(slice_of_rows(rows))
    trainer = Trainer(model.net, data, TrainConfig(epochs=100, lr=1e-3, n_domains=model.params["n_domains"]), seed=0)
    times = []
    for epoch in range(steps + 1):
        t = time.perf_counter()
        trainer.step(epoch)
        times.append(time.perf_counter() - t)
    return float(np.median(times[1:]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--out", default=str(HERE / "results" / "dense_threshold.md"))
    args = ap.parse_args()
    default = sparse.DENSE_ABOVE
    lines = [f"Median seconds per full-batch step (first step left out), input forced sparse (CSR) or dense, "
             f"{args.rounds} rounds in alternation, {args.steps} steps each; torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads. Command: `python benchmarks/dense_threshold.py --rounds {args.rounds} --steps {args.steps}`.", "",
             "| input | spots x genes | fill | sparse s/step | dense s/step | dense / sparse |", "|---|---|---|---|---|---|"]
    for name, adata, k in inputs():
        model = spotscape.Spotscape(adata, n_domains=k, seed=0, device="cpu")
        x, adj, rows = model._prepare(model.slices)
        fill = x.nnz / (x.shape[0] * x.shape[1])
        res = {True: [], False: []}
        for _ in range(args.rounds):
            for dense in (False, True):
                res[dense].append(step_time(model, x, adj, rows, dense, args.steps))
        s, d = np.median(res[False]), np.median(res[True])
        line = f"| {name} | {x.shape[0]:,} x {x.shape[1]:,} | {fill:.3f} | {s:.3f} | {d:.3f} | {d / s:.2f} |"
        print(line, flush=True)
        lines.append(line)
    lines += ["", f"Rule in the package: dense when the fill exceeds {default} (and the dense matrix takes under 2 GB)."]
    out = Path(args.out)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
