"""Table from the per-run lines that benchmarks/dlpfc.py prints (e.g. a saved console log).

    python benchmarks/summarize_log.py benchmarks/results/dlpfc_fast_5seeds_c7976ca.log
"""
import re
import sys
from collections import defaultdict

import numpy as np

LINE = re.compile(r"^(\S+) seed (\d+): ARI ([\d.]+) NMI ([\d.]+) CA ([\d.]+) ([\d.]+) s (\d+) MB")
PUBLISHED_S = 4000.0  # METHOD.md: about 4 s per epoch x 1,000 epochs on 151673, this machine

rows = defaultdict(list)
for line in open(sys.argv[1]):
    m = LINE.match(line.strip())
    if m:
        rows[m.group(1)].append([float(v) for v in m.groups()[2:]])
print("| data | runs | ARI | NMI | CA | wall s (median) | peak MB (median) | vs published code (~4,000 s) |")
print("|---|---|---|---|---|---|---|---|")
for name, vals in rows.items():
    v = np.array(vals)
    ms = [f"{v[:, i].mean():.3f} ± {v[:, i].std():.3f}" for i in range(3)]
    wall = np.median(v[:, 3])
    ratio = f"{PUBLISHED_S / wall:.0f}x faster" if name != "integrated" else "–"
    print(f"| {name} | {len(v)} | {' | '.join(ms)} | {wall:.1f} | {np.median(v[:, 4]):.0f} | {ratio} |")
