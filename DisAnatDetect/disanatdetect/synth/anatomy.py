"""Healthy anatomy: tissue label maps sampled from randomly deformed atlas priors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from disanatdetect.synth.fields import smooth_field


@dataclass(frozen=True)
class AnatomyConfig:
    """Spread of the random deformation (in voxels of the working grid) and of the label sampling."""

    max_rotation_deg: float = 8.0
    max_scale: float = 0.08
    max_translation_vox: float = 3.0
    elastic_vox: float = 3.0
    elastic_spacing_vox: float = 12.0
    label_noise: float = 0.3
    label_noise_spacing_vox: float = 4.0


def random_deformation(shape: tuple[int, ...], rng: np.random.Generator, config: AnatomyConfig) -> np.ndarray:
    """Sampling coordinates ``[ndim, *shape]``: a random affine about the centre plus a smooth elastic field."""
    ndim = len(shape)
    centre = (np.array(shape) - 1) / 2.0
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"))
    matrix = np.diag(1.0 + rng.uniform(-config.max_scale, config.max_scale, ndim))
    # Rotations in each plane of the array axes (only the in-slice plane for 2D).
    for a in range(ndim):
        for b in range(a + 1, ndim):
            angle = np.deg2rad(rng.uniform(-config.max_rotation_deg, config.max_rotation_deg))
            rotation = np.eye(ndim)
            rotation[a, a] = rotation[b, b] = np.cos(angle)
            rotation[a, b], rotation[b, a] = -np.sin(angle), np.sin(angle)
            matrix = rotation @ matrix
    shift = rng.uniform(-config.max_translation_vox, config.max_translation_vox, ndim)
    offsets = grid.reshape(ndim, -1) - centre[:, None]
    coords = (matrix @ offsets + (centre + shift)[:, None]).reshape(grid.shape).astype(np.float32)
    for axis in range(ndim):
        coords[axis] += config.elastic_vox * smooth_field(shape, rng, config.elastic_spacing_vox)
    return coords


def deform(volumes: np.ndarray, coords: np.ndarray, order: int = 1) -> np.ndarray:
    """Resample each channel of ``volumes`` ``[C, *shape]`` at ``coords``; outside reads the edge value."""
    return np.stack([ndimage.map_coordinates(v, coords, order=order, mode="nearest") for v in volumes])


def sample_anatomy(priors: np.ndarray, rng: np.random.Generator,
                   config: AnatomyConfig = AnatomyConfig()) -> np.ndarray:
    """A random healthy tissue label map (uint8, values 0..K-1) from priors ``[K, *shape]``.

    The priors are deformed, then each voxel takes the class that maximises log prior plus a smooth noise field
    per class, which varies the boundaries the way real brains vary around the atlas mean.
    """
    shape = priors.shape[1:]
    deformed = deform(priors, random_deformation(shape, rng, config))
    scores = np.log(np.clip(deformed, 1e-4, None))
    for k in range(1, len(priors)):  # background stays as the atlas says: the brain outline is not noise
        scores[k] += config.label_noise * smooth_field(shape, rng, config.label_noise_spacing_vox)
    return np.argmax(scores, axis=0).astype(np.uint8)
