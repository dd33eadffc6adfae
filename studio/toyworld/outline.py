"""Outline measures of a shape for the toy-world checker: convex-hull solidity and the points of its radial
profile (a star has five lobes, a triangle three, a square four, a circle none)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError


def solidity(solid: np.ndarray) -> float:
    """Area over convex-hull area, with the hull taken over pixel corners so that a square scores 1."""
    ys, xs = np.nonzero(solid)
    if len(xs) < 3:
        return 0.0
    corners = np.concatenate([np.stack([xs + dx, ys + dy], axis=1) for dx in (0, 1) for dy in (0, 1)])
    try:
        hull_area = ConvexHull(corners).volume
    except QhullError:
        return 0.0
    return float(solid.sum() / hull_area) if hull_area > 0 else 0.0


def radial_profile(alpha: np.ndarray, rays: int = 72) -> np.ndarray:
    """Distance from the coverage-weighted centroid to the first edge crossing (alpha < 0.5), per ray."""
    ys, xs = np.indices(alpha.shape)
    total = alpha.sum()
    cy, cx = (alpha * ys).sum() / total, (alpha * xs).sum() / total
    angles = np.linspace(0, 2 * np.pi, rays, endpoint=False)
    steps = np.arange(0, alpha.shape[0], 0.25)
    sy = cy + np.sin(angles)[:, None] * steps[None, :]
    sx = cx + np.cos(angles)[:, None] * steps[None, :]
    samples = ndimage.map_coordinates(alpha, [sy.ravel(), sx.ravel()], order=1, cval=0.0).reshape(sy.shape)
    outside = samples < 0.5
    first = np.where(outside.any(axis=1), outside.argmax(axis=1), len(steps) - 1)
    return steps[first]


def count_points(profile: np.ndarray, min_relief: float = 0.2) -> int:
    """Number of separate lobes of a circular radial profile (with hysteresis); 0 for a round outline."""
    profile = np.convolve(np.concatenate([profile[-1:], profile, profile[:1]]), np.ones(3) / 3, mode="valid")
    low, high = profile.min(), profile.max()
    if high <= 0 or (high - low) / high < min_relief:
        return 0
    middle, band = (high + low) / 2, 0.1 * (high - low)
    start = int(np.argmin(profile))
    above, lobes = False, 0
    for value in np.roll(profile, -start):
        if not above and value > middle + band:
            above, lobes = True, lobes + 1
        elif above and value < middle - band:
            above = False
    return lobes
