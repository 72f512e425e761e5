"""Whole healthy scans rendered from real label maps, as a scanner would deliver them: for threshold calibration
and healthy false positives on subjects the model never saw.

Each scan is one subject of a label bank rendered at 1 mm in a preset contrast (jittered per structure), with a
smooth 3D bias field, then moved by a random rigid-plus-scale transform and resampled (linear: real partial
volume) onto its own scan grid, with Rician noise. It is skull-stripped, or (``with_head``) keeps the head the label
map draws around the brain (bone, marrow, scalp, eyes, orbital and other soft tissue) and noise over the whole field
of view, as a scanner delivers it; either way it lies off the atlas, so the detector must find the brain and
register it back like any real scan.
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
from disanatdetect.synth.structures import Structure, preset_means, tissue_class_table


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
    with_head: bool = False


SKULL_ON = HealthyScanConfig(spacings_mm=((0.9, 0.9, 5.5), (1.0, 1.0, 1.0)), with_head=True)
"""Unstripped scans as clinics deliver them: a 2D protocol's thick slices (like the native TCGA scans) or 3D."""


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
    shown = structures != Structure.AIR if config.with_head else brain
    image = np.where(shown, means[structures], 0).astype(np.float32)
    spacing = bank.config.spacing_mm
    image = ndimage.gaussian_filter(image, config.blur_sigma_mm / spacing)
    image *= np.exp(config.bias_strength * _smooth_field(image.shape, config.bias_control_points, rng))
    image = np.where(shown, image, 0).astype(np.float32)

    source = sitk.GetImageFromArray(image)
    source.CopyInformation(bank_grid(atlas, bank.config))
    centre = np.array(source.TransformContinuousIndexToPhysicalPoint(np.argwhere(brain).mean(0)[::-1].tolist()))
    inside = np.argwhere(shown)
    transform = _random_transform(rng, centre, config)
    scan_spacing = np.array(config.spacings_mm[rng.integers(len(config.spacings_mm))])
    # what is shown (x, y, z, mm) with room for the rotation, scaling and shift, and a margin of 10 mm a side
    extent = (inside.max(0) - inside.min(0) + 1)[::-1] * spacing * 1.25 + 2 * config.max_translation_mm + 20.0
    size = np.ceil(extent / scan_spacing).astype(int)
    grid = sitk.Image(*size.tolist(), sitk.sitkFloat32)
    grid.SetSpacing(tuple(scan_spacing))
    grid.SetOrigin(tuple(centre - (size - 1) * scan_spacing / 2))
    scan = sitk.Resample(source, grid, transform, sitk.sitkLinear, 0.0)
    array = sitk.GetArrayFromImage(scan)
    white = float(np.median(array[array > 0.5 * array.max()]))
    noise = config.noise_std * white * rng.standard_normal((2,) + array.shape).astype(np.float32)
    noisy = np.sqrt((array + noise[0]) ** 2 + noise[1] ** 2)
    # a stripped scan is zero outside the brain; a scanner's image has noise everywhere
    array = (noisy if config.with_head else np.where(array > 0, noisy, 0)).astype(np.float32)
    return Volume.from_sitk(scan).with_array(array)
