"""The efficiency-effectiveness Pareto front: fewest trainable parameters, highest score."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def pareto_front(params: npt.ArrayLike, scores: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Mask of the points on the Pareto front, minimising `params` and maximising `scores`.

    A point is on the front iff no other point has params <= and score >= with at least one strict.
    Exact duplicates do not dominate each other, so all copies of a front point are kept on the front.
    Points with a NaN in either coordinate are never on the front (and dominate nothing).
    O(n log n): one sort by (params ascending, score descending) and a running maximum.
    """
    p, s = np.asarray(params, dtype=float), np.asarray(scores, dtype=float)
    if p.shape != s.shape or p.ndim != 1:
        raise ValueError(f"params and scores must be 1-D arrays of one length, got shapes {p.shape} and {s.shape}")
    mask = np.zeros(p.shape, dtype=bool)
    valid = np.flatnonzero(~(np.isnan(p) | np.isnan(s)))
    if valid.size == 0:
        return mask
    order = valid[np.lexsort((-s[valid], p[valid]))]
    ps, ss = p[order], s[order]
    # Within a run of equal params the first point has the run's best score; it (and its exact duplicates)
    # survive iff they beat every point with strictly fewer params, i.e. the running max before the run.
    run_start = np.searchsorted(ps, ps, side="left")
    best_before = np.concatenate(([-np.inf], np.maximum.accumulate(ss)))[run_start]
    mask[order] = (ss == ss[run_start]) & (ss > best_before)
    return mask


def pareto_ranks(params: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[npt.NDArray[np.int_], npt.NDArray[np.float64]]:
    """Non-dominated sorting of the points (NSGA-II's order): each point's front number (0 = the Pareto front,
    1 = the front once front 0 is removed, ...) and its crowding distance within its front (the normalised
    gap between its neighbours; infinite for a front's extremes, so its cheapest and its best point rank first).
    NaN points come last (front len(points)). Sort by (rank, -crowding) to order points best first."""
    p, s = np.asarray(params, dtype=float), np.asarray(scores, dtype=float)
    ranks = np.full(p.shape, len(p), dtype=int)
    crowding = np.zeros(p.shape)
    left = np.flatnonzero(~(np.isnan(p) | np.isnan(s)))
    front = 0
    while left.size:
        members = left[pareto_front(p[left], s[left])]
        ranks[members] = front
        crowding[members] = _crowding(p[members], s[members])
        left, front = np.setdiff1d(left, members), front + 1
    return ranks, crowding


def _crowding(p: npt.NDArray[np.float64], s: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """NSGA-II crowding distance of the points of one front (sorted by params, scores follow inversely)."""
    out = np.zeros(len(p))
    order = np.argsort(p, kind="stable")
    out[order[[0, -1]]] = np.inf
    for values in (p, s):
        span = values.max() - values.min()
        if span > 0 and len(p) > 2:
            ordered = values[order]
            out[order[1:-1]] += np.abs(ordered[2:] - ordered[:-2]) / span
    return out
