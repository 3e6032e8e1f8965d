"""Why do DLPFC slices get better domains inside a four-slice integration than alone? One slice
trained alone with one setting of the integration changed, to see which (if any) carries the gain.

    python benchmarks/single_ablation.py 151674 0 base
    python benchmarks/single_ablation.py 151674 0 pcl pcl=1          # prototypes (PCL) as in integration
    python benchmarks/single_ablation.py 151674 0 lr2e-3 lr=2e-3     # the integration's learning rate
    python benchmarks/single_ablation.py 151674 0 common common=1    # only the genes shared by all 4 slices
    python benchmarks/single_ablation.py 151676 0 knn12 knn=12       # 12 nearest spots instead of the 6-spot radius graph
    python benchmarks/single_ablation.py 151676 0 hvg3000 hvg=3000   # 3,000 highly variable genes instead of 5,000

Prints one JSON line: mean ARI of 3 k-means runs (10 starts, true k = 7) on the labelled spots.
Lines from the session that added it: benchmarks/results/single_ablation.log.
"""
import json
import sys
import time

import anndata as ad
import numpy as np
from sklearn.cluster import KMeans

import spotscape as ss
import spotscape.train as T
from dlpfc import DATA, SLICES  # the DLPFC benchmark's data folder and slices
from spotscape.metrics import cluster_scores

s, seed, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
opts = dict(a.split("=") for a in sys.argv[4:])
pcl = opts.pop("pcl", "0") == "1"
common = opts.pop("common", "0") == "1"
model_opts = dict(graph="knn", k=int(opts["knn"])) if "knn" in opts else {}  # Spotscape() options
if "hvg" in opts:
    model_opts["n_top_genes"] = int(opts["hvg"])
kw = {k: (int(v) if k == "epochs" else float(v)) for k, v in opts.items() if k not in ("knn", "hvg")}
if pcl:  # PCL runs only with several slices; switch it on for one
    orig = T.Trainer.__init__

    def init(self, *a, **k):
        orig(self, *a, **k)
        self.multi = True

    T.Trainer.__init__ = init
a = ad.read_h5ad(DATA / f"{s}.h5ad")
if common:
    g = a.var_names
    for o in SLICES:
        g = g[g.isin(ad.read_h5ad(DATA / f"{o}.h5ad", backed="r").var_names)]
    a = a[:, g].copy()
t = time.time()
m = ss.Spotscape(a, seed=seed, device="cpu", n_domains=7, **model_opts)
m.fit(progress=False, **kw)
z = m.get_latent_representation()
dt = time.time() - t
lab = a.obs["layer_guess"][a.obs["layer_guess"].notna().to_numpy()]  # k-means on the labelled spots only
z = z[a.obs["layer_guess"].notna().to_numpy()]
r = [cluster_scores(lab, KMeans(7, n_init=10, random_state=k).fit_predict(z))["ari"] for k in range(3)]
print(json.dumps(dict(slice=s, seed=seed, tag=tag, opts=opts, pcl=pcl, ari=round(float(np.mean(r)), 4), s=round(dt, 1))), flush=True)
