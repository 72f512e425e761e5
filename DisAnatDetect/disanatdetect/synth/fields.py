"""Smooth random fields: the shared ingredient of deformations, bias fields and textures."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def smooth_field(shape: tuple[int, ...], rng: np.random.Generator, control_spacing: float) -> np.ndarray:
    """Zero-mean, unit-scale random field with features about ``control_spacing`` voxels wide.

    Random values on a coarse control grid, upsampled by cubic interpolation: far cheaper than filtering
    white noise at full resolution.
    """
    coarse_shape = tuple(max(2, int(np.ceil(n / control_spacing)) + 1) for n in shape)
    coarse = rng.standard_normal(coarse_shape).astype(np.float32)
    factors = [n / c for n, c in zip(shape, coarse_shape)]
    field = ndimage.zoom(coarse, factors, order=3, mode="nearest", grid_mode=True)
    return field[tuple(slice(0, n) for n in shape)].astype(np.float32)
