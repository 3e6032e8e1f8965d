"""Checks on user input, run before any expensive work. Each error names the problem and the fix."""
from __future__ import annotations

import os
import tempfile

import numpy as np
import scipy.sparse as sp


class SpotscapeInputError(ValueError):
    """Raised for input that Spotscape cannot use; the message says how to fix it."""


class SpotscapeTrainingError(SpotscapeInputError):
    """Raised when training diverges (a loss that is not finite); the message says what to change."""


def check_positive(name: str, value, integer: bool = False, allow_zero: bool = False) -> None:
    """A setting that must be a finite number > 0 (>= 0 with ``allow_zero``; an integer with ``integer``)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and np.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0) and (not integer or int(value) == value)
    if not ok:
        kind = "an integer" if integer else "a finite number"
        raise SpotscapeInputError(f"{name} must be {kind} {'>= 0' if allow_zero else '> 0'}, got {value!r}.")


def _name(adata, i: int | str | None) -> str:
    """How an error names a slice: by index, or by its name (e.g. the input file's) when given one."""
    return "" if i is None else (f"slice {i!r} " if isinstance(i, str) else f"slice {i} ")


def check_coordinates(adata, spatial_key: str = "spatial", i: int | None = None) -> None:
    where = _name(adata, i)
    if spatial_key not in adata.obsm:
        raise SpotscapeInputError(
            f"{where}has no obsm[{spatial_key!r}]: store the spot coordinates there as an (n_spots, 2) array, "
            f"e.g. adata.obsm['spatial'] = adata.obs[['x', 'y']].to_numpy()."
        )
    c = np.asarray(adata.obsm[spatial_key])
    if c.ndim != 2 or c.shape[1] != 2:
        raise SpotscapeInputError(
            f"{where}obsm[{spatial_key!r}] has shape {c.shape}; Spotscape needs 2-D coordinates, shape (n_spots, 2). "
            "For 3-D data, pass each z-plane as its own slice."
        )
    if not np.issubdtype(c.dtype, np.number):
        raise SpotscapeInputError(f"{where}obsm[{spatial_key!r}] is not numeric ({c.dtype}); convert it to float.")
    bad = ~np.isfinite(c).all(axis=1)
    if bad.any():
        raise SpotscapeInputError(
            f"{where}obsm[{spatial_key!r}] has {int(bad.sum())} spots with missing, NaN or infinite coordinates "
            f"(first: {adata.obs_names[np.argmax(bad)]!r}); drop those spots, e.g. adata = adata[np.isfinite(adata.obsm[{spatial_key!r}]).all(1)].copy()."
        )
    if len(c) > 1 and not np.ptp(c, axis=0).any():
        raise SpotscapeInputError(f"{where}obsm[{spatial_key!r}] puts every spot at the same position; store each spot's own "
                                  "coordinates there (a spatial graph needs them).")


def check_names(adata, i: int | None = None) -> None:
    where = _name(adata, i)
    if not adata.obs_names.is_unique:
        dup = adata.obs_names[adata.obs_names.duplicated()][0]
        raise SpotscapeInputError(f"{where}has duplicate spot names (e.g. {dup!r}); call adata.obs_names_make_unique().")
    if not adata.var_names.is_unique:
        dup = adata.var_names[adata.var_names.duplicated()][0]
        raise SpotscapeInputError(f"{where}has duplicate gene names (e.g. {dup!r}); call adata.var_names_make_unique().")


def check_expression(adata, counts: bool = True, i: int | None = None) -> None:
    where = _name(adata, i)
    if adata.n_obs == 0:
        raise SpotscapeInputError(f"{where}is empty (0 spots); remove it from the input.")
    if adata.n_vars == 0:
        raise SpotscapeInputError(f"{where}has no genes; check how the expression matrix was read.")
    x = adata.X
    if x is None:
        raise SpotscapeInputError(f"{where}has no expression matrix in .X; put the raw counts there.")
    vals = x.data if sp.issparse(x) else np.asarray(x).ravel()
    if vals.size and not np.isfinite(vals).all():
        raise SpotscapeInputError(f"{where}.X contains NaN or infinite values; fix or drop those entries.")
    if not vals.size or not vals.any():
        raise SpotscapeInputError(f"{where}.X is all zeros; check how the expression matrix was read (or drop that slice).")
    if vals.min() < 0:
        raise SpotscapeInputError(
            f"{where}.X contains negative values (min {vals.min():.3g}); Spotscape needs raw counts (or non-negative "
            "normalised values with counts=False). Scaled or centred data (sc.pp.scale) cannot be used."
        )
    sample = vals[: 1_000_000]
    whole = np.allclose(sample, np.round(sample))
    if not counts and whole and sample.max() > 20:
        import warnings

        warnings.warn(f"{where}.X holds whole numbers up to {sample.max():.0f} although counts=False (CLI --normalized) "
                      "says it is normalised: if these are raw counts, leave counts=True so that they are normalised and "
                      "log-transformed.", stacklevel=3)
    if counts and not whole:
        raise SpotscapeInputError(
            f"{where}.X has non-integer values, but raw counts are expected (highly variable genes use the "
            "seurat_v3 model on counts). Put raw counts in .X (e.g. adata.X = adata.layers['counts']), or, if "
            "the data are already normalised, pass counts=False (CLI: --normalized)."
        )


def check_n_domains(n_domains, n_spots: int) -> None:
    if n_domains is None:
        return
    if isinstance(n_domains, bool) or int(n_domains) != n_domains or n_domains < 2:
        raise SpotscapeInputError(f"n_domains must be an integer >= 2 (got {n_domains!r}).")
    if n_domains > n_spots:
        raise SpotscapeInputError(f"n_domains={n_domains} is more than the {n_spots} spots; choose fewer domains.")


def check_weight(what: str, w) -> None:
    """A loss weight: finite and >= 0 (0 switches the loss off). ``what`` names it in the error."""
    if w is not None and not (np.isfinite(w) and w >= 0):
        raise SpotscapeInputError(f"the {what} must be a finite number >= 0 (0 switches the loss off), got {w}.")


def check_share(name: str, p) -> None:
    """An augmentation's share (``edge_drop``, ``gene_mask``): 0 <= p < 1. ``name`` names it in the error."""
    if p is not None and not 0 <= p < 1:
        raise SpotscapeInputError(f"{name} is the share of edges / genes each augmented view drops: give 0 <= {name} < 1 "
                                  f"(got {p!r}).")


def check_label_key(adatas, label_key: str | None) -> None:
    if label_key is None:
        return
    for i, a in enumerate(adatas):
        if label_key not in a.obs:
            cols = ", ".join(map(repr, list(a.obs.columns)[:15])) or "none"
            raise SpotscapeInputError(
                f"label key {label_key!r} is not a column of obs in {_name(a, i if len(adatas) > 1 else None)or 'the input'}"
                f"; available columns: {cols}."
            )


def check_writable(path: str) -> None:
    """The output folder must be creatable and writable (checked before training)."""
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise SpotscapeInputError(f"output path {path!r} exists and is not a folder; choose another --out.")
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise SpotscapeInputError(f"cannot create {path!r}: {parent!r} is a file, not a folder; choose another --out.")
    if not os.access(parent, os.W_OK | os.X_OK) or (parent == path and not os.access(path, os.W_OK | os.X_OK)):
        raise SpotscapeInputError(f"cannot write to {parent!r} (permission denied); choose a writable --out.")
    try:  # permissions do not tell everything (a read-only mount, /proc as root): make and remove an empty folder
        tempfile.TemporaryDirectory(dir=parent, prefix=".spotscape-check-").cleanup()
    except OSError as e:
        raise SpotscapeInputError(f"cannot write to {parent!r} ({e.strerror or e}); choose a writable --out.") from None


def check_output_file(path: str, suffixes: tuple[str, ...] = (".h5ad",)) -> None:
    """An output file: right suffix, not a folder, and its folder creatable and writable."""
    if not path.endswith(suffixes):
        raise SpotscapeInputError(f"output {path!r} must end with {' or '.join(suffixes)}.")
    if os.path.isdir(path):
        raise SpotscapeInputError(f"output {path!r} is a folder; give a file name ending with {suffixes[0]}.")
    check_writable(os.path.dirname(os.path.abspath(path)))
