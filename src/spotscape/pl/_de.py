"""Differential-expression dot plot (matplotlib, no display needed)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402


def de_dotplot(table, n_genes=5, path=None, gene_labels=None, max_neglog10_q=10.0):
    """Top ``n_genes`` genes per domain (by q): x = genes, y = domains, colour = log2 fold change, size = -log10(q).

    ``table`` is the output of :func:`spotscape.tl.condition_de` (or ``pd.DataFrame(adata.uns[key]["table"])``).
    ``gene_labels`` (a dict or Series, e.g. ``adata.var["gene_symbol"]``) renames the genes on the x axis.
    -log10(q) is clipped at ``max_neglog10_q``. With several comparisons, each row is "domain: condition vs reference".
    """
    t = pd.DataFrame(table).copy()
    if t.empty:
        raise ValueError("the differential-expression table is empty; nothing to plot.")
    multi = t[["condition", "reference"]].drop_duplicates().shape[0] > 1
    t["row"] = t["domain"].astype(str) + (": " + t["condition"].astype(str) + " vs " + t["reference"].astype(str) if multi else "")
    rows = list(dict.fromkeys(t["row"]))  # order of the table: domain, then comparison
    top = t.sort_values(["qval", "pval"], kind="stable").groupby("row", sort=False).head(n_genes)
    genes = list(dict.fromkeys(g for r in rows for g in top.loc[top["row"] == r, "gene"]))
    sub = t[t["gene"].isin(genes)]
    x = sub["gene"].map({g: i for i, g in enumerate(genes)}).to_numpy()
    y = sub["row"].map({r: i for i, r in enumerate(rows)}).to_numpy()
    lfc = sub["logfoldchange"].to_numpy(float)
    nlq = np.clip(-np.log10(np.clip(sub["qval"].to_numpy(float), 1e-300, 1.0)), 0, max_neglog10_q)
    size = 8 + 140 * nlq / max_neglog10_q
    # colour saturates at the 95th percentile of |lfc| (at most 5): a gene absent from one group has |lfc| ~ 20-30
    vmax = float(np.clip(np.nanpercentile(np.abs(lfc[np.isfinite(lfc)]), 95) if np.isfinite(lfc).any() else 1.0, 0.25, 5.0))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * len(genes) + 2.5), max(2.5, 0.4 * len(rows) + 1.5)))
    dots = ax.scatter(x, y, s=size, c=np.clip(lfc, -vmax, vmax), cmap="RdBu_r",
                      norm=TwoSlopeNorm(0.0, -vmax, vmax), edgecolors="grey", linewidths=0.3)
    names = [str(gene_labels.get(g, g)) if gene_labels is not None else str(g) for g in genes]
    ax.set_xticks(range(len(genes)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_xlim(-0.6, len(genes) - 0.4)
    ax.set_ylim(len(rows) - 0.4, -0.6)
    ax.grid(True, color="0.92", linewidth=0.5)
    ax.set_axisbelow(True)
    fig.colorbar(dots, ax=ax, fraction=0.04, pad=0.02, extend="both").set_label("log2 fold change", fontsize=7)
    marks = [1.3, max_neglog10_q / 2, max_neglog10_q]
    handles = [plt.scatter([], [], s=8 + 140 * m / max_neglog10_q, color="grey") for m in marks]
    ax.legend(handles, [f"{m:.3g}" for m in marks], title="-log10 q", fontsize=6, title_fontsize=6, frameon=False,
              loc="upper left", bbox_to_anchor=(1.12, 1.0))
    ax.set_title(f"Differential expression: top {n_genes} genes per domain", fontsize=9)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig
