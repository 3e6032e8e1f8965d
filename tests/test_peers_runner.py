"""The peers benchmark runner (issue #3) on a dataset folder it has never seen: two simulated
slices and a manifest. Only tools that need nothing beyond the package's own environment run
(the floors and spotscape); a peer that is not installed here must be recorded as a crash while
the rest go on."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from spotscape.datasets import simulate_tissue

ROOT = Path(__file__).resolve().parents[1]


def test_runner_on_an_unseen_folder(tmp_path):
    data = tmp_path / "data"
    (data / "tissue").mkdir(parents=True)
    a = simulate_tissue(n_spots=500, n_genes=300, n_domains=4, seed=10)
    a.obs["region"] = a.obs["domain"].astype(str)
    a.obs.loc[a.obs_names[:20], "region"] = np.nan  # unlabelled spots are left out of the scores
    a.write_h5ad(data / "tissue" / "s0.h5ad")
    # a second slice of the same tissue: counts thinned to 70 %, coordinates moved
    rng = np.random.default_rng(1)
    b = a.copy()
    x = b.X.toarray() if hasattr(b.X, "toarray") else np.asarray(b.X)
    b.X = rng.binomial(x.astype(np.int64), 0.7).astype(np.float32)
    b.obsm["spatial"] = np.asarray(a.obsm["spatial"]) + 1000.0
    b.obs_names = [f"b{n}" for n in a.obs_names]
    b.write_h5ad(data / "tissue" / "s1.h5ad")
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"datasets": [
        {"name": "one", "files": ["tissue/s0.h5ad"], "label": "region"},
        {"name": "two", "files": ["tissue/s0.h5ad", "tissue/s1.h5ad"], "label": "region"},
        {"name": "three", "files": ["tissue/s1.h5ad"], "label": "region"}]}))
    out = tmp_path / "res"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "peers" / "run.py"), "--data", str(data), "--manifest", str(manifest),
           "--out", str(out), "--seeds", "1", "--tools", "pca", "pca_spatial", "spotscape", "stagate", "spotscape_harmony",
           "spotscape_mnn",
           "--timeout", "300"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads(out.with_suffix(".json").read_text())
    by = {(r["dataset"], r["tool"]): r for r in rows}
    assert len(rows) == 14  # spotscape_harmony and spotscape_mnn, batch corrections, run on the two slices only
    for tool in ("spotscape_harmony", "spotscape_mnn"):
        assert ("one", tool) not in by and ("three", tool) not in by
    mnn, plain = by[("two", "spotscape_mnn")], by[("two", "spotscape")]
    # the model already mixes these two simulated slices (iLISI about 0.97), so the correction has
    # little to add here: it must have run (other scores) and not unmixed them; that it mixes slices
    # that are apart is tested in test_correct.py
    assert mnn["status"] == "ok" and mnn["integration"] != plain["integration"], (mnn, plain)
    assert mnn["integration"]["ilisi"] > plain["integration"]["ilisi"] - 0.02, (mnn, plain)
    assert mnn["kmeans"]["ari"] > plain["kmeans"]["ari"] - 0.05
    h = by[("two", "spotscape_harmony")]
    try:
        import harmonypy  # noqa: F401  (not a dependency of the package)
    except ImportError:
        assert h["status"] == "crash" and "harmonypy" in h["error"]
    else:
        assert h["status"] == "ok" and "integration" in h
    try:
        import STAGATE_pyG  # noqa: F401  (not a dependency of the package)
    except ImportError:
        assert by[("one", "stagate")]["status"] == "crash" and "STAGATE" in by[("one", "stagate")]["error"]
    else:
        assert by[("one", "stagate")]["status"] == "ok"
    for ds in ("one", "two", "three"):
        r = by[(ds, "spotscape")]
        assert r["status"] == "ok" and r["k"] == 4 and r["peak_mb"] > 0
        assert r["kmeans"]["ari"] > 0.5, r["kmeans"]  # a clean simulated tissue
    # two slices with a depth difference: PCA of the pooled slices splits them (ARI 0.44 here),
    # the integrated embedding does not (0.72-0.89 over seeds 0-4)
    assert by[("two", "spotscape")]["kmeans"]["ari"] > by[("two", "pca")]["kmeans"]["ari"] + 0.15
    mix = by[("two", "spotscape")]["integration"]
    assert set(mix) == {"batch_asw", "ilisi", "graph_conn", "label_asw"} and all(0 <= v <= 1 for v in mix.values())
    assert "integration" not in by[("one", "spotscape")]
    md = out.with_suffix(".md").read_text()
    assert "| spotscape |" in md and "crash" in md and out.with_suffix(".png").stat().st_size > 5000
    assert "| biology | batch | overall |" in md and "| spotscape_harmony | – (one slice) |" in md
    # the ARI table's last column: each tool's mean over the two single-slice datasets ("one", "three")
    assert "| mean of the 2 single-slice datasets |" in md
    ari_row = next(line for line in md.splitlines() if line.startswith("| spotscape | "))
    mean_two = np.mean([by[(d, "spotscape")]["kmeans"]["ari"] for d in ("one", "three")])
    assert ari_row.split("|")[-2].strip().strip("*") == f"{mean_two:.3f}"
    if by[("one", "stagate")]["status"] != "ok":  # no mean without finished runs on every single-slice dataset
        assert next(line for line in md.splitlines() if line.startswith("| stagate | ")).split("|")[-2].strip() == "–"
    agg = next(line for line in md.splitlines() if line.startswith("| spotscape | ") and line.count("|") == 10)
    two = by[("two", "spotscape")]
    bio = np.mean([two["kmeans"]["ari"], two["kmeans"]["nmi"], two["integration"]["label_asw"]])
    assert agg.split("|")[7].strip() == f"{bio:.3f}"  # biology = mean of ARI, NMI and domain ASW
    # rerunning skips finished runs (and retries only the crashed one)
    again = cmd[:cmd.index("--tools")] + ["--tools", "pca", "pca_spatial", "spotscape"]
    res = subprocess.run(again, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and len(json.loads(out.with_suffix(".json").read_text())) == 14
    # --rerun runs a finished tool again, its new row in place of the old one, and still skips the rest
    before = {(r["dataset"], r["tool"]): r["wall_s"] for r in json.loads(out.with_suffix(".json").read_text())}
    res = subprocess.run(again + ["--datasets", "one", "--rerun", "pca"], capture_output=True, text=True, timeout=300)
    printed = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert res.returncode == 0 and [(r["dataset"], r["tool"]) for r in printed] == [("one", "pca")]
    after = {(r["dataset"], r["tool"]): r["wall_s"] for r in json.loads(out.with_suffix(".json").read_text())}
    assert after.keys() == before.keys() and after[("one", "pca")] == printed[0]["wall_s"] != before[("one", "pca")]
    assert all(after[key] == before[key] for key in before if key != ("one", "pca"))
