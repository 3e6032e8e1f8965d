"""Alignment of slices through the representation: mutual nearest neighbours, then a robust rigid fit,
then a finer rigid fit of the spots' positions weighted by their similarity (coherent point drift).

The first fit registers each slice directly onto the reference (no chaining, so its errors do not add up);
the optional refinement starts from it and registers each serial section onto its neighbour (or the reference).
"""
from __future__ import annotations

import numpy as np

from .._validate import SpotscapeInputError, check_coordinates
from ..graph import nearest_spot_distances


def _unit(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def _knn(ref: np.ndarray, query: np.ndarray, k: int, return_distance: bool = False):
    """Each query row's ``k`` nearest rows of ``ref`` (Euclidean): indices, or (distances, indices)."""
    from sklearn.neighbors import NearestNeighbors  # here: 1.5 s of import that training never needs

    k = min(k, len(ref))
    return NearestNeighbors(n_neighbors=k).fit(ref).kneighbors(query, return_distance=return_distance)


def mutual_nearest_neighbors(z_a: np.ndarray, z_b: np.ndarray, k: int = 5) -> np.ndarray:
    """Pairs ``(i, j)`` where spot ``j`` of b is among the ``k`` cosine neighbours of spot ``i`` of a and vice versa.

    Returns
    -------
    An ``(n_pairs, 2)`` integer array of row indices into ``z_a`` and ``z_b``.
    """
    a, b = _unit(z_a), _unit(z_b)
    ab = _knn(b, a, k)  # for each a: neighbours in b
    ba = _knn(a, b, k)  # for each b: neighbours in a
    nb = len(b)
    fwd = (np.repeat(np.arange(len(a)), ab.shape[1]) * nb + ab.ravel())
    bwd = (ba.ravel() * nb + np.repeat(np.arange(nb), ba.shape[1]))
    both = np.intersect1d(fwd, bwd)
    return np.stack([both // nb, both % nb], axis=1).astype(np.int64)


def rigid_transform(src: np.ndarray, dst: np.ndarray, scale: bool = False, weights: np.ndarray | None = None):
    """Least-squares ``dst ~ s * R @ src + t`` (Kabsch/Umeyama, reflections excluded), each pair weighted by
    ``weights`` (default: equally).

    Returns
    -------
    ``(R, t, s)``: 2x2 rotation, translation (2,), scale (1.0 unless ``scale``).
    """
    src, dst = np.asarray(src, float), np.asarray(dst, float)
    w = np.full(len(src), 1.0 / len(src)) if weights is None else np.asarray(weights, float) / np.sum(weights)
    mu_s, mu_d = w @ src, w @ dst
    a, b = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd((w[:, None] * b).T @ a)
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    r = u @ d @ vt
    var = w @ (a**2).sum(1)
    s = float((sig * np.diag(d)).sum() / var) if scale and var > 0 else 1.0
    return r, mu_d - s * r @ mu_s, s


def _apply(xy, r, t, s):
    return s * np.asarray(xy, float) @ r.T + t


def spot_spacing(xy: np.ndarray) -> float:
    """Median distance from each spot to its nearest other spot."""
    return float(np.median(nearest_spot_distances(np.asarray(xy, dtype=np.float64))))


def robust_rigid_transform(src, dst, scale: bool = False, n_iter: int = 2000, threshold: float | None = None, seed: int = 0):
    """RANSAC on 2-point samples, then least-squares refits on the inliers.

    ``threshold`` (distance for an inlier) defaults to 2x the median nearest-neighbour spacing of ``dst``.
    Returns ``(R, t, s, inliers)`` with a boolean inlier mask over the pairs.
    """
    src, dst = np.asarray(src, float), np.asarray(dst, float)
    n = len(src)
    if n < 2:
        raise SpotscapeInputError(f"only {n} matched pair(s); at least 2 are needed to estimate a transform.")
    if threshold is None:
        threshold = 2.0 * spot_spacing(np.unique(dst, axis=0)) if len(np.unique(dst, axis=0)) > 1 else 1.0
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, n, n_iter), rng.integers(0, n, n_iter)
    keep = i != j
    i, j = i[keep], j[keep]
    ds, dd = src[j] - src[i], dst[j] - dst[i]
    ls, ld = np.linalg.norm(ds, axis=1), np.linalg.norm(dd, axis=1)
    ok = (ls > 1e-9) & (ld > 1e-9)
    if not scale:  # a rigid sample must keep its length
        ok &= np.abs(ls - ld) < threshold
    i, j, ds, dd, ls, ld = i[ok], j[ok], ds[ok], dd[ok], ls[ok], ld[ok]
    best, best_inl = -1.0, np.ones(n, bool)
    if len(i):
        theta = np.arctan2(dd[:, 1], dd[:, 0]) - np.arctan2(ds[:, 1], ds[:, 0])
        s = ld / ls if scale else np.ones_like(ls)
        c, sn = np.cos(theta) * s, np.sin(theta) * s
        mid_s, mid_d = (src[i] + src[j]) / 2, (dst[i] + dst[j]) / 2
        tx = mid_d[:, 0] - (c * mid_s[:, 0] - sn * mid_s[:, 1])
        ty = mid_d[:, 1] - (sn * mid_s[:, 0] + c * mid_s[:, 1])
        for lo in range(0, len(i), 256):  # chunks keep memory at 256 x n
            sl = slice(lo, lo + 256)
            px = c[sl, None] * src[None, :, 0] - sn[sl, None] * src[None, :, 1] + tx[sl, None]
            py = sn[sl, None] * src[None, :, 0] + c[sl, None] * src[None, :, 1] + ty[sl, None]
            res2 = (px - dst[None, :, 0]) ** 2 + (py - dst[None, :, 1]) ** 2
            score = np.clip(1 - res2 / threshold**2, 0, None).sum(1)  # MSAC-like: closer inliers count more
            h = int(np.argmax(score))
            if score[h] > best:
                best, best_inl = float(score[h]), res2[h] < threshold**2
    inl = best_inl if best_inl.sum() >= 2 else np.ones(n, bool)
    for _ in range(10):
        r, t, s_ = rigid_transform(src[inl], dst[inl], scale)
        new = np.linalg.norm(_apply(src, r, t, s_) - dst, axis=1) < threshold
        if new.sum() < 2 or np.array_equal(new, inl):
            break
        inl = new
    return r, t, s_, inl


def _rot(deg: float) -> np.ndarray:
    th = np.deg2rad(deg)
    return np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])


def _raster(xy, f, lo, h, shape):
    from scipy.ndimage import gaussian_filter

    ij = np.floor((xy - lo) / h).astype(int)
    img = np.zeros((f.shape[1],) + shape)
    for c in range(f.shape[1]):
        np.add.at(img[c], (ij[:, 0], ij[:, 1]), f[:, c])
    return gaussian_filter(img, (0, 1.0, 1.0))


def _field_search(z_src, xy_src, z_ref, xy_ref, spacing, step=5.0, dims=16):
    """Coarse global search: the rotation (grid of ``step`` degrees) and translation (FFT cross-correlation on a
    half-spacing raster) that best overlay the slice-centred representation fields. Independent of the matches."""
    from scipy.signal import fftconvolve

    a, b = _unit(z_src), _unit(z_ref)
    a, b = a - a.mean(0), b - b.mean(0)
    vt = np.linalg.svd(np.vstack([a, b]), full_matrices=False)[2][:dims]
    a, b, h = a @ vt.T, b @ vt.T, spacing / 2
    lo = xy_ref.min(0) - h
    big = _raster(xy_ref, b, lo, h, tuple(np.ceil((xy_ref.max(0) - lo) / h).astype(int) + 2))
    c0 = xy_src.mean(0)

    def try_angle(deg):
        r = _rot(deg)
        p = (xy_src - c0) @ r.T
        plo = p.min(0) - h
        shape = tuple(np.ceil((p.max(0) - plo) / h).astype(int) + 2)
        small = _raster(p, a, plo, h, shape)
        cc = sum(fftconvolve(big[c], small[c][::-1, ::-1], mode="full") for c in range(len(vt)))
        k = np.unravel_index(np.argmax(cc), cc.shape)
        return cc[k], r, lo + (np.array(k) - (np.array(shape) - 1)) * h - plo - r @ c0

    coarse = [try_angle(d) + (d,) for d in np.arange(0.0, 360.0, step)]
    best = max(coarse, key=lambda x: x[0])  # then 1-degree steps around the best coarse angle
    best = max([best] + [try_angle(best[3] + d) + (0,) for d in np.arange(1 - step, step) if d], key=lambda x: x[0])
    return best[1], best[2]


def _overlay_score(z_src, xy_moved, z_ref, xy_ref, radius):
    """Mean, over source spots, of the best cosine similarity among reference spots within ``radius`` (0 if none)."""
    from sklearn.neighbors import NearestNeighbors  # here: 1.5 s of import that training never needs

    a, b = _unit(z_src), _unit(z_ref)
    d, idx = NearestNeighbors(n_neighbors=min(6, len(b))).fit(xy_ref).kneighbors(xy_moved)
    sim = np.where(d < radius, (a[:, None, :] * b[idx]).sum(-1), 0.0)
    return float(sim.max(1).mean())


def _cpd_rigid(z, xy, z_ref, xy_ref, r, t, s, spacing, tau, k, iters, sigma_min, outlier, sigma0, trim, seed=0,
               max_spots=5000):
    """Rigid coherent point drift (EM soft iterative closest point) of ``xy`` onto ``xy_ref`` from ``(r, t, s)``;
    at most ``max_spots`` spots of ``xy`` (drawn with ``seed``) take part: three parameters need no more."""
    from sklearn.neighbors import NearestNeighbors

    if len(xy) > max_spots:
        keep = np.sort(np.random.default_rng(seed).choice(len(xy), max_spots, replace=False))
        z, xy = z[keep], xy[keep]
    a, b = _unit(z), _unit(z_ref)
    tree = NearestNeighbors(n_neighbors=min(k, len(xy_ref))).fit(xy_ref)
    sig2, floor = (sigma0 * spacing) ** 2, (sigma_min * spacing) ** 2
    for _ in range(iters):
        now = _apply(xy, r, t, s)
        d, idx = tree.kneighbors(now)
        cos = (a[:, None, :] * b[idx]).sum(-1)
        w = np.exp(-d**2 / (2 * sig2) + (cos - 1) / tau)
        p = w / (w.sum(1, keepdims=True) + outlier * 2 * np.pi * sig2 / spacing**2)  # sum ~ 1 inside the tissue
        p *= d[:, :1] < trim * np.sqrt(sig2)  # spots off the other slice take no part
        wi = p.sum(1)
        if wi.sum() < 1e-9:
            break
        tgt = (p[..., None] * xy_ref[idx]).sum(1) / np.maximum(wi, 1e-12)[:, None]
        r, t, _ = rigid_transform(s * xy, tgt, weights=wi)  # the scale kept: s * R @ xy + t
        step = np.abs(_apply(xy, r, t, s) - now).max()
        sig2 = max(min(float((p * d**2).sum() / p.sum()) / 2, sig2), floor)
        if step < 1e-3 * spacing and sig2 <= floor * 1.0001:
            break
    return r, t


def _refine(z, xy, z_ref, xy_ref, r, t, s, spacing, tau=2.0, k=16, iters=200, sigma_min=1.2, outlier=0.1,
            sigma0=2.0, trim=2.0, seed=0):
    """Finer registration of one slice onto ``xy_ref``, from the first fit ``(r, t, s)`` (scale kept).

    A rigid coherent point drift (Myronenko & Song 2010; an EM form of iterative closest point): each spot
    is drawn to its ``k`` nearest spots of the other slice, weighted by a Gaussian of their distance
    times ``exp(cosine similarity / tau)`` in the representation, against a uniform outlier term; sigma
    starts at ``sigma0`` spacings and follows the residuals down to ``sigma_min``; spots farther than
    ``trim`` sigma from the other slice take no part. It runs from the slice that the other covers more
    (so that spots without a counterpart do not pull it), and the map is inverted when that is the
    reference. Below about one spacing two grids of spots lock onto each other: 151673's even and odd
    rows, interleaved, ended one row apart at 0.5-0.9 from a close first fit, not at 1.2; from a first
    fit a row or so off they still can (docs/benchmarks.md)."""
    moved = _apply(xy, r, t, s)
    cover = lambda q, ref: float(np.mean(_knn(ref, q, 1, return_distance=True)[0][:, 0] < 1.5 * spacing))
    args = (spacing, tau, k, iters, sigma_min, outlier, sigma0, trim, seed)
    if cover(moved, xy_ref) >= cover(xy_ref, moved):
        return _cpd_rigid(z, xy, z_ref, xy_ref, r, t, s, *args)
    r2, t2 = _cpd_rigid(z_ref, xy_ref, z, moved, np.eye(2), np.zeros(2), 1.0, *args)  # r2 @ xy_ref + t2 ~ moved
    return r2.T @ r, r2.T @ (t - t2)


def _check_rep(a, use_rep, name):
    if use_rep not in a.obsm:
        raise SpotscapeInputError(f"{name} has no obsm[{use_rep!r}]: run Spotscape(...).fit() and .embed() first.")
    return np.asarray(a.obsm[use_rep], dtype=np.float64)


def align(adatas, use_rep: str = "X_spotscape", reference: int = 0, spatial_key: str = "spatial",
          key_added: str = "spatial_aligned", scale: bool = False, k: int = 5, slice_key: str | None = None,
          global_search: bool = True, refine: str | None = None, seed: int = 0) -> dict:
    """Register every slice rigidly onto slice ``reference`` through the representation.

    Each slice is fitted directly onto the reference (no chaining): mutual nearest neighbours in
    ``obsm[use_rep]`` (cosine, ``k``) and RANSAC (``robust_rigid_transform``). With ``global_search``
    a match-free candidate is also tried (rotation grid and FFT cross-correlation of the representation
    fields; it rescues slices whose spot matches are mostly wrong), and the candidate whose overlay puts
    more similar spots on top of each other is kept. ``refine`` then registers each slice finer (a soft
    iterative-closest-point fit on the spots' positions, weighted by their similarity in the representation,
    ``_refine``): ``"neighbour"`` (serial sections of one shape) onto the already refined slice next to it
    in the given order, towards the reference; ``"reference"`` onto the reference itself; ``None``
    (default) keeps the first fit. The refinement helped on serial sections of one shape and hurt where
    one slice holds tissue the other lacks (README, "Alignment"), so it is not the default. Writes ``obsm[key_added]`` (the reference keeps its coordinates) and returns, per slice
    name, angle (degrees), translation, scale, n_matches, n_inliers, method, refined_onto; the same dict
    goes to ``uns['spotscape']['align']``.
    ``adatas``: a list of AnnData, or one AnnData with ``slice_key``.
    """
    from ..core import split_slices

    slices, names, positions = split_slices(adatas, slice_key)
    if len(slices) < 2:
        raise SpotscapeInputError(f"alignment needs at least 2 slices, got {len(slices)}: pass a list of AnnData "
                                  "or one AnnData with slice_key=<obs column naming the slice>.")
    if not -len(slices) <= reference < len(slices):
        raise SpotscapeInputError(f"reference={reference} is out of range for {len(slices)} slices; use 0..{len(slices) - 1}.")
    reference %= len(slices)
    if refine not in ("neighbour", "reference", None):
        raise SpotscapeInputError(f"refine={refine!r}: use 'neighbour' (serial sections), 'reference' or None.")
    zs = [_check_rep(a, use_rep, f"slice {n!r}") for a, n in zip(slices, names)]
    if len({z.shape[1] for z in zs}) > 1:
        raise SpotscapeInputError(f"obsm[{use_rep!r}] widths differ across slices ({[z.shape[1] for z in zs]}): "
                                  "embed all slices with the same model.")
    for a, n, z in zip(slices, names, zs):
        check_coordinates(a, spatial_key, str(n))
        if not np.isfinite(z).all():
            raise SpotscapeInputError(f"slice {n!r}: obsm[{use_rep!r}] has NaN or infinite values; embed again.")
    xys = [np.asarray(a.obsm[spatial_key], dtype=np.float64) for a in slices]
    z_ref, xy_ref = zs[reference], xys[reference]
    spacing = spot_spacing(xy_ref)
    out, fits = {}, []
    for i, (z, xy) in enumerate(zip(zs, xys)):
        if i == reference:
            r, t, s, n_m, n_in, how = np.eye(2), np.zeros(2), 1.0, len(xy), len(xy), "reference"
        else:
            pairs = mutual_nearest_neighbors(z, z_ref, k)
            n_m = len(pairs)
            r, t, s, inl = robust_rigid_transform(xy[pairs[:, 0]], xy_ref[pairs[:, 1]], scale, threshold=2 * spacing, seed=seed)
            n_in, how = int(inl.sum()), "matches"
            if global_search:
                best = _overlay_score(z, _apply(xy, r, t, s), z_ref, xy_ref, 1.5 * spacing)
                r2, t2 = _field_search(z, xy * s, z_ref, xy_ref, spacing)  # scale from the matches, if any
                if _overlay_score(z, _apply(xy, r2, t2, s), z_ref, xy_ref, 1.5 * spacing) > best:
                    r, t, how = r2, t2, "field"
                    n_in = int((np.linalg.norm(_apply(xy[pairs[:, 0]], r, t, s) - xy_ref[pairs[:, 1]], axis=1) < 2 * spacing).sum())
        fits.append([r, t, s, n_m, n_in, how, None])
    if refine is not None:  # outwards from the reference, so that a slice's neighbour is refined before it
        for i in list(range(reference + 1, len(slices))) + list(range(reference - 1, -1, -1)):
            j = reference if refine == "reference" else (i - 1 if i > reference else i + 1)
            r, t, s = fits[i][:3]
            xy_j = _apply(xys[j], *fits[j][:3])
            fits[i][:2] = _refine(zs[i], xys[i], zs[j], xy_j, r, t, s, spot_spacing(xy_j), seed=seed)
            fits[i][6] = names[j]
    aligned = [_apply(xy, *f[:3]) for xy, f in zip(xys, fits)]
    for name, (r, t, s, n_m, n_in, how, onto) in zip(names, fits):
        out[name] = dict(angle=float(np.degrees(np.arctan2(r[1, 0], r[0, 0]))), translation=[float(v) for v in t],
                         scale=float(s), n_matches=int(n_m), n_inliers=int(n_in), method=how, refined_onto=onto)
    if positions is None:
        for a, xy in zip(slices, aligned):
            a.obsm[key_added] = xy
            a.uns.setdefault("spotscape", {})["align"] = out
    else:
        full = np.full((adatas.n_obs, 2), np.nan)
        for p, xy in zip(positions, aligned):
            full[p] = xy
        adatas.obsm[key_added] = full
        adatas.uns.setdefault("spotscape", {})["align"] = out
    return out


def label_transfer(source, target, label_key: str, use_rep: str = "X_spotscape", key_added: str | None = None):
    """Give each target spot the label of its nearest source spot in the representation (cosine).

    Returns ``(labels, ari)``: the transferred labels and their ARI against ``target.obs[label_key]``
    on labelled spots (METHOD.md's label-transfer ARI, LTARI). ``key_added``: also write them to ``target.obs``.
    """
    for a, n in ((source, "source"), (target, "target")):
        if label_key not in a.obs:
            raise SpotscapeInputError(f"{n} has no obs[{label_key!r}]: give the column holding the labels.")
    zs, zt = _check_rep(source, use_rep, "source"), _check_rep(target, use_rep, "target")
    if zs.shape[1] != zt.shape[1]:
        raise SpotscapeInputError(f"obsm[{use_rep!r}] widths differ ({zs.shape[1]} vs {zt.shape[1]}): embed both with the same model.")
    src_lab = source.obs[label_key].to_numpy()
    ok = source.obs[label_key].notna().to_numpy()
    labels = src_lab[ok][_knn(_unit(zs[ok]), _unit(zt), 1)[:, 0]]
    from sklearn.metrics import adjusted_rand_score

    truth = target.obs[label_key]
    lab = truth.notna().to_numpy()
    ari = float(adjusted_rand_score(truth.astype(str)[lab], labels[lab].astype(str)))
    if key_added:
        target.obs[key_added] = labels
    return labels, ari
