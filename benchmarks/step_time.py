"""Seconds per full-batch training step on the four DLPFC slices integrated (14,364 spots, every
loss but PCL, which starts at half the epochs) or on the slices given by ``--slices`` (one slice:
L_RE and L_SC), for comparing two versions of the package on this machine. Its speed drifts from
hour to hour, so compare versions in alternation, e.g.:

    git worktree add /tmp/before 7711546          # the version to compare against
    for round in 1 2; do for src in /tmp/before/src src; do
        PYTHONPATH=$src python benchmarks/step_time.py --steps 8; done; done

Prints the package's location and the median step time (the first step is left out). With
``--profile``, also torch's profile of 5 more steps by operator and input shape: the CSR products
of the 5,000-gene input (``aten::addmm`` with a 5,000 dimension) against everything else.
"""
from __future__ import annotations

import argparse
import time

import anndata as ad
import numpy as np
import torch

import spotscape
from dlpfc import DATA, SLICES
from spotscape._sparse import SparseMatrix
from spotscape.graph import edge_list
from spotscape.train import TrainConfig, Trainer, TrainingData


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--slices", nargs="+", default=SLICES)
    ap.add_argument("--slice-norm", choices=["on", "off"], help="Spotscape(slice_norm=...) (versions that have it)")
    ap.add_argument("--profile", action="store_true", help="also print torch's profile of 5 steps")
    args = ap.parse_args()
    ads = [ad.read_h5ad(DATA / f"{s}.h5ad") for s in args.slices]
    opt = {} if args.slice_norm is None else {"slice_norm": args.slice_norm == "on"}
    model = spotscape.Spotscape(ads if len(ads) > 1 else ads[0], n_domains=7, seed=0, device="cpu", **opt)
    x, adj, rows = model._prepare(model.slices)
    # built here, not with train.full_batch_data: the script must also run against earlier versions
    data = TrainingData(SparseMatrix(x), edge_list(adj), x.shape[0], [torch.from_numpy(r) for r in rows])
    if "codes" in TrainingData.__dataclass_fields__ and len(rows) > 1:  # slice of every row (per-slice BatchNorm)
        data.codes = torch.from_numpy(np.concatenate([np.full(len(r), i) for i, r in enumerate(rows)]))
    trainer = Trainer(model.net, data, TrainConfig(epochs=100, lr=2e-3 if len(ads) > 1 else 1e-3, n_domains=7), seed=0)
    times = []
    for epoch in range(args.steps + 1):
        t = time.perf_counter()
        trainer.step(epoch)
        times.append(time.perf_counter() - t)
    norm = f" slice_norm {model.params['slice_norm']}" if "slice_norm" in model.params else ""
    print(f"{spotscape.__file__} {' '.join(args.slices)}{norm}: median {np.median(times[1:]):.2f} s per step over {args.steps} steps "
          f"({' '.join(f'{v:.2f}' for v in times[1:])})", flush=True)
    if args.profile:
        from torch.profiler import profile

        with profile(record_shapes=True) as prof:
            for epoch in range(5):
                trainer.step(epoch)
        print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=20,
                                                                  max_name_column_width=24, max_shapes_column_width=70))


if __name__ == "__main__":
    main()
