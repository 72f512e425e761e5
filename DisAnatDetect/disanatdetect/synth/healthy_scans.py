"""Whole healthy scans rendered from real label maps, as a scanner would deliver them: for threshold calibration
and healthy false positives on subjects the model never saw.

Each scan is one subject of a label bank rendered at 1 mm in a preset contrast (jittered per structure), with a
smooth 3D bias field, then moved by a random rigid-plus-scale transform and resampled (linear: real partial
volume) onto its own scan grid, with Rician noise. It is skull-stripped, and lies off the atlas, so the detector
must register it back like any real scan.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from disanatdetect.atlas import Atlas
from disanatdetect.io import Volume
from disanatdetect.synth.label_bank import LabelBank, bank_grid
from disanatdetect.synth.structures import preset_means, tissue_class_table


@dataclass(frozen=True)
class HealthyScanConfig:
    """Ranges of the random choices of one healthy scan."""

    spacings_mm: tuple[tuple[float, float, float], ...] = ((1.0, 1.0, 1.0), (0.9, 0.9, 3.0))  # (x, y, z)
    preset_jitter: float = 0.05
    max_rotation_deg: float = 10.0
    max_translation_mm: float = 10.0
    max_scale: float = 0.08
    bias_strength: float = 0.3  # std of the log field
    bias_control_points: int = 4  # per axis
    blur_sigma_mm: float = 0.5
    noise_std: float = 0.02  # of the white-matter intensity


def _smooth_field(shape: tuple[int, ...], control_points: int, rng: np.random.Generator,
                  step: int = 8) -> np.ndarray:
    """A smooth random field of ``shape``: cubic from the control points to every ``step``-th voxel, then linear."""
    coarse = rng.normal(size=(control_points,) * len(shape))
    middle = ndimage.zoom(coarse, [-(-n // step) / control_points for n in shape], order=3)
    return ndimage.zoom(middle, [n / m for n, m in zip(shape, middle.shape)], order=1)[tuple(slice(0, n)
                                                                                            for n in shape)]


def _random_transform(rng: np.random.Generator, centre: np.ndarray, config: HealthyScanConfig) -> sitk.Transform:
    """Scan points -> bank points: a rotation about the brain's centre, a scaling and a shift."""
    transform = sitk.AffineTransform(3)
    angles = np.deg2rad(rng.uniform(-config.max_rotation_deg, config.max_rotation_deg, 3))
    euler = sitk.Euler3DTransform(tuple(centre), *angles)
    scale = np.diag(1 + rng.uniform(-config.max_scale, config.max_scale, 3))
    matrix = np.array(euler.GetMatrix()).reshape(3, 3) @ scale
    transform.SetCenter(tuple(centre))
    transform.SetMatrix(tuple(matrix.ravel()))
    transform.SetTranslation(tuple(rng.uniform(-config.max_translation_mm, config.max_translation_mm, 3)))
    return transform


def render_healthy_scan(bank: LabelBank, subject: int, modality: str, seed: int, atlas: Atlas,
                        config: HealthyScanConfig = HealthyScanConfig()) -> Volume:
    """One healthy scan of bank subject ``subject`` in ``modality``; the same arguments give the same scan."""
    rng = np.random.default_rng([seed, subject, zlib.crc32(modality.encode())])
    structures = bank.structures[subject]
    means = preset_means(modality) * (1 + config.preset_jitter * rng.standard_normal(len(preset_means(modality))))
    brain = tissue_class_table()[structures] > 0
    image = np.where(brain, means[structures], 0).astype(np.float32)
    spacing = bank.config.spacing_mm
    image = ndimage.gaussian_filter(image, config.blur_sigma_mm / spacing)
    image *= np.exp(config.bias_strength * _smooth_field(image.shape, config.bias_control_points, rng))
    image = np.where(brain, image, 0).astype(np.float32)

    source = sitk.GetImageFromArray(image)
    source.CopyInformation(bank_grid(atlas, bank.config))
    inside = np.argwhere(brain)
    centre = np.array(source.TransformContinuousIndexToPhysicalPoint(inside.mean(0)[::-1].tolist()))
    transform = _random_transform(rng, centre, config)
    scan_spacing = np.array(config.spacings_mm[rng.integers(len(config.spacings_mm))])
    # the brain (x, y, z, mm) with room for the rotation, scaling and shift, and a margin of 10 mm a side
    extent = (inside.max(0) - inside.min(0) + 1)[::-1] * spacing * 1.25 + 2 * config.max_translation_mm + 20.0
    size = np.ceil(extent / scan_spacing).astype(int)
    grid = sitk.Image(*size.tolist(), sitk.sitkFloat32)
    grid.SetSpacing(tuple(scan_spacing))
    grid.SetOrigin(tuple(centre - (size - 1) * scan_spacing / 2))
    scan = sitk.Resample(source, grid, transform, sitk.sitkLinear, 0.0)
    array = sitk.GetArrayFromImage(scan)
    white = float(np.median(array[array > 0.5 * array.max()]))
    noise = config.noise_std * white * rng.standard_normal((2,) + array.shape).astype(np.float32)
    array = np.where(array > 0, np.sqrt((array + noise[0]) ** 2 + noise[1] ** 2), 0).astype(np.float32)
    return Volume.from_sitk(scan).with_array(array)
