"""Where `tl.align`'s optional refinement (`refine=`, rigid coherent point drift) helps and where it hurts.

    python benchmarks/align_refine.py > benchmarks/results/align_refine.md

A hexagonal grid of 40 x 40 spots (spacing 1) with smooth expression fields plus noise, jittered by 0.1
spacing, and a first fit 2 degrees and (0.8, -0.6) spacings off: the median error (in spacings) of that
first fit and after the refinement, for sigma_min 0.5 and 1.2 (the default), in four cases: the same grid
(whole onto whole), half of it onto the whole, the whole onto half of it (one slice holds tissue the other
lacks), and its odd rows onto its even rows (two interleaved grids, as two sections' spots are).
Real sections: `benchmarks/peers/align.py` (README, "Side by side").
"""
import numpy as np

from spotscape.tl._align import _apply, _refine, _rot, spot_spacing


def main():
    rng = np.random.default_rng(0)
    ii, jj = np.meshgrid(np.arange(40), np.arange(40))
    xy = np.c_[ii.ravel() + 0.5 * (jj.ravel() % 2), jj.ravel() * np.sqrt(3) / 2]
    w = rng.normal(size=(2, 8))
    z = np.sin(xy @ w / 6 + rng.uniform(0, 6, 8)) + rng.normal(0, 0.3, (len(xy), 8))
    whole, half, even = np.ones(len(xy), bool), xy[:, 0] < 20, jj.ravel() % 2 == 0
    cases = {"whole onto whole": (whole, whole), "half onto whole": (half, whole), "whole onto half": (whole, half),
             "odd rows onto even rows": (~even, even)}
    print("| case | first fit | refined, sigma_min 0.5 | refined, sigma_min 1.2 (default) |")
    print("|---|---|---|---|")
    for name, (src, dst) in cases.items():
        moved = xy[src] + np.random.default_rng(1).normal(0, 0.1, (src.sum(), 2))
        r0, t0 = _rot(2.0), np.array([0.8, -0.6])
        err = lambda r, t: float(np.median(np.linalg.norm(_apply(moved, r, t, 1.0) - xy[src], axis=1)))  # noqa: E731
        cells = [err(r0, t0)]
        for sigma_min in (0.5, 1.2):
            cells.append(err(*_refine(z[src], moved, z[dst], xy[dst], r0, t0, 1.0, spot_spacing(xy[dst]), sigma_min=sigma_min)))
        print(f"| {name} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
