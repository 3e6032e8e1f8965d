"""``spotscape report DIR``: one self-contained HTML page (figures inlined) for a run folder."""
from __future__ import annotations

import base64
import html
import json
import os

from ._validate import SpotscapeInputError
from .metrics import MIXING_METRICS

CAPTIONS = {
    "domains.png": "Spatial domains per slice (with the annotation beside them when labels were given)",
    "umap.png": "UMAP of the representation, coloured by domain and by slice",
    "paga.png": "PAGA graph between domains on the representation",
    "aligned.png": "Slices before and after alignment",
    "de.png": "Differential expression between conditions within domains",
}


def retried_note(r: dict) -> str:
    """One line on a run trained twice (``metrics.json["retried"]``, ``pipeline.run(retry=True)``)."""
    def values(c):
        return ", ".join(f"{n} {'-' if v is None else f'{v:.2f}'}" for n, v in c.items())

    first, again = r["first"], r["again"]
    kept = "the second run, the more coherent" if r["kept"] != "first" else "the first run (the second was not more coherent)"
    return (f"the domains did not follow the expression with edge_drop {first['edge_drop']} (expression coherence "
            f"{values(first['expression_coherence'])}), so spotscape trained again with edge_drop 0 "
            f"({values(again['expression_coherence'])}) and kept {kept}; {first['seconds'] + again['seconds']:.1f} s "
            "for both (--no-retry, or pipeline.run(retry=False), keeps the first without training again).")


def _table(rows: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows) + "</table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return json.dumps(v) if isinstance(v, (dict, list)) else str(v)


def write_report(folder: str, umap: bool = True) -> str:
    """Write ``folder/report.html`` from ``metrics.json``, ``result.h5ad`` and the PNGs in the folder.

    With ``umap`` and no ``umap.png`` yet, a UMAP of ``result.h5ad`` is drawn first (coloured by
    domain and slice). Returns the path of the page."""
    metrics_path = os.path.join(folder, "metrics.json")
    if not os.path.isfile(metrics_path):
        raise SpotscapeInputError(f"{folder!r} holds no metrics.json: give a folder written by `spotscape run --out DIR`.")
    if not os.access(folder, os.W_OK):
        raise SpotscapeInputError(f"cannot write to {folder!r} (permission denied).")
    with open(metrics_path) as fh:
        m = json.load(fh)
    result = os.path.join(folder, "result.h5ad")
    if umap and not os.path.exists(os.path.join(folder, "umap.png")) and os.path.exists(result):
        import anndata as ad

        from . import pl

        a = ad.read_h5ad(result)
        keys = [k for k in ("spotscape_domain", "slice") if k in a.obs and (k != "slice" or a.obs[k].nunique() > 1)]
        pl.umap(a, color=keys, path=os.path.join(folder, "umap.png"), seed=int(m.get("seed", 0)))

    parts = ["<h2>Run</h2>", _table([
        ("slices", ", ".join(m.get("slices_names", []))), ("spots", _fmt(m.get("spots"))),
        ("genes (input / model)", f"{m.get('genes_input')} / {m.get('genes_model')}"),
        ("domains", f"{m.get('n_domains')} ({m.get('n_domains_source', '')})"), ("seed", _fmt(m.get("seed"))),
        ("device", _fmt(m.get("device"))), ("epochs", _fmt(m.get("epochs_run"))), ("learning rate", _fmt(m.get("lr"))),
        ("total time", f"{m.get('seconds_total', 0):.1f} s"), ("peak memory", f"{m.get('peak_memory_mb', 0):.0f} MB"),
        ("spotscape", _fmt(m.get("spotscape_version"))),
    ])]
    if "slices" in m:
        rows = "".join(
            f"<tr><td>{html.escape(n)}</td>" + "".join(f"<td>{_fmt(s.get(k)) if s.get(k) is not None else '–'}</td>"
                                                       for k in ("ari", "nmi", "ca", "silhouette")) + "</tr>"
            for n, s in list(m["slices"].items()) + [("pooled", m["pooled"])])
        parts += ["<h2>Agreement with the annotation</h2>",
                  "<table><tr><th>slice</th><th>ARI</th><th>NMI</th><th>CA</th><th>silhouette</th></tr>" + rows + "</table>"]
    if "expression_coherence" in m:
        parts += ["<h2>Do the domains follow the expression? (expression coherence; 1 = as coherent as clusters of "
                  "the spatially smoothed expression)</h2>",
                  _table([(n, "–" if c is None else _fmt(c)) for n, c in m["expression_coherence"].items()])]
        if "retried" in m:
            parts += [f"<p><b>Trained twice:</b> {html.escape(retried_note(m['retried']))}</p>"]
        parts += [f"<p><b>Warning:</b> {html.escape(w)}</p>" for w in m.get("warnings", [])]
    if m.get("mixing"):
        rows = "".join(f"<tr><td>{html.escape(key)}</td>" + "".join(f"<td>{_fmt(mix[k]) if k in mix else '–'}</td>" for k in MIXING_METRICS)
                       + "</tr>" for key, mix in m["mixing"].items())
        parts += ["<h2>How well the slices mix (scIB metrics; 1 = fully mixed)</h2>",
                  "<table><tr><th>representation</th>" + "".join(f"<th>{n}</th>" for n in MIXING_METRICS.values()) + "</tr>" + rows + "</table>"]
    if "seconds" in m:
        parts += ["<h2>Time per stage (s)</h2>", _table([(k, f"{v:.2f}") for k, v in m["seconds"].items()])]
    if "n_domains_evidence" in m:
        ev = m["n_domains_evidence"]
        parts += ["<h2>Number of domains: how it was estimated</h2>", _table([(k, _fmt(v)) for k, v in ev.items()])]
    pngs = sorted(f for f in os.listdir(folder) if f.endswith(".png"))
    order = [f for f in CAPTIONS if f in pngs] + [f for f in pngs if f not in CAPTIONS]
    for f in order:
        with open(os.path.join(folder, f), "rb") as fh:
            data = base64.b64encode(fh.read()).decode()
        parts += [f"<h2>{html.escape(CAPTIONS.get(f, f))}</h2>", f'<img alt="{html.escape(f)}" src="data:image/png;base64,{data}">']
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>spotscape report</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}img{max-width:100%;border:1px solid #ddd}"
            "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
            "</style></head><body><h1>spotscape report</h1>"
            f"<p>{html.escape(os.path.abspath(folder))}</p>" + "\n".join(parts) + "</body></html>")
    out = os.path.join(folder, "report.html")
    tmp = f"{out}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w") as fh:
            fh.write(page)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return out
