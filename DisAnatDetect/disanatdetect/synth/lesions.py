"""Lesions painted into healthy label maps with their own label ids, so every mask is exact.

Three kinds: a tumour (necrotic core, enhancing rim, oedema, with mass effect), MS-like white-matter lesions
(several small periventricular and deep ovoids) and a stroke-like cortical-subcortical infarct. Sizes are in mm
and converted with the voxel spacing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from disanatdetect.synth.fields import smooth_field
from disanatdetect.synth.labels import Label

LESION_TYPES = ("tumour", "ms", "stroke")


@dataclass(frozen=True)
class LesionConfig:
    """Size ranges in mm."""

    tumour_core_radius_mm: tuple[float, float] = (5.0, 14.0)
    tumour_oedema_factor: tuple[float, float] = (1.5, 2.4)
    tumour_rim_mm: tuple[float, float] = (3.0, 5.0)
    tumour_mass_effect: float = 0.5
    ms_count: tuple[int, int] = (4, 10)
    ms_radius_mm: tuple[float, float] = (2.0, 5.0)
    stroke_radius_mm: tuple[float, float] = (10.0, 22.0)
    irregularity: float = 0.3


def _distance_to(centre: np.ndarray, shape: tuple[int, ...], spacing: float, stretch: np.ndarray | None = None):
    """Distance in mm from ``centre`` (voxel coords), optionally scaled per axis to make ovoids."""
    axes = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij", sparse=True)
    stretch = np.ones(len(shape)) if stretch is None else stretch
    return np.sqrt(sum(((a - c) * spacing / s) ** 2 for a, c, s in zip(axes, centre, stretch)))


def _irregular_ball(shape, centre, radius_mm, spacing, rng, irregularity, stretch=None) -> np.ndarray:
    distance = _distance_to(centre, shape, spacing, stretch)
    wobble = 1.0 + irregularity * smooth_field(shape, rng, max(2.0, radius_mm / spacing))
    return distance < radius_mm * wobble


def _pick(candidates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    points = np.argwhere(candidates)
    if len(points) == 0:
        raise ValueError("no place for the lesion: the label map has too little white matter")
    return points[rng.integers(len(points))].astype(np.float32)


def _mass_effect(labels: np.ndarray, centre: np.ndarray, radius_vox: float, strength: float) -> np.ndarray:
    """Push tissue radially away from ``centre``: each voxel reads from closer to the centre."""
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in labels.shape], indexing="ij"))
    offset = grid - centre.reshape((-1,) + (1,) * labels.ndim)
    distance = np.sqrt((offset ** 2).sum(0)) + 1e-3
    # Gaussian fall-off, cut at three radii so that the deformation stays local to the tumour.
    push = strength * radius_vox * np.exp(-((distance / (1.5 * radius_vox)) ** 2)) * (distance < 3 * radius_vox)
    source = grid - offset / distance * np.minimum(push, distance)
    return ndimage.map_coordinates(labels, source, order=0, mode="nearest").astype(labels.dtype)


def add_tumour(labels, rng, spacing, config):
    brain = labels != Label.BACKGROUND
    depth = ndimage.distance_transform_edt(brain) * spacing
    core_radius = rng.uniform(*config.tumour_core_radius_mm)
    centre = _pick((labels == Label.WHITE_MATTER) & (depth > core_radius + 5.0), rng)
    labels = _mass_effect(labels, centre, core_radius / spacing, config.tumour_mass_effect)
    brain = labels != Label.BACKGROUND
    oedema_radius = core_radius * rng.uniform(*config.tumour_oedema_factor)
    oedema = _irregular_ball(labels.shape, centre, oedema_radius, spacing, rng, config.irregularity)
    # Oedema spreads along white matter and spares the ventricles.
    oedema &= np.isin(labels, (Label.WHITE_MATTER, Label.GREY_MATTER))
    tumour = _irregular_ball(labels.shape, centre, core_radius, spacing, rng, config.irregularity) & brain
    necrosis_radius = max(core_radius - rng.uniform(*config.tumour_rim_mm), 0.5 * core_radius)
    necrosis = _distance_to(centre, labels.shape, spacing) < necrosis_radius
    out = labels.copy()
    out[oedema] = Label.OEDEMA
    out[tumour] = Label.ENHANCING
    out[tumour & necrosis] = Label.NECROSIS
    return out


def add_ms(labels, rng, spacing, config):
    out = labels.copy()
    white = labels == Label.WHITE_MATTER
    near_ventricles = ndimage.distance_transform_edt(labels != Label.CSF) * spacing < 10.0
    depth = ndimage.distance_transform_edt(labels != Label.BACKGROUND) * spacing
    deep_white = white & (depth > 20.0)
    for index in range(int(rng.integers(config.ms_count[0], config.ms_count[1] + 1))):
        region = deep_white & near_ventricles if index % 2 == 0 else deep_white
        centre = _pick(region if region.any() else white, rng)
        radius = rng.uniform(*config.ms_radius_mm)
        stretch = rng.uniform(0.6, 1.6, labels.ndim)  # ovoid
        lesion = _irregular_ball(labels.shape, centre, radius, spacing, rng, config.irregularity / 2, stretch)
        out[lesion & white] = Label.WM_LESION
    return out


def add_stroke(labels, rng, spacing, config):
    grey_white_boundary = (labels == Label.WHITE_MATTER) & ndimage.binary_dilation(labels == Label.GREY_MATTER)
    centre = _pick(grey_white_boundary, rng)
    radius = rng.uniform(*config.stroke_radius_mm)
    region = _irregular_ball(labels.shape, centre, radius, spacing, rng, config.irregularity)
    out = labels.copy()
    out[region & np.isin(labels, (Label.GREY_MATTER, Label.WHITE_MATTER))] = Label.INFARCT
    return out


_ADDERS = {"tumour": add_tumour, "ms": add_ms, "stroke": add_stroke}


def add_lesion(labels: np.ndarray, kind: str, rng: np.random.Generator, spacing_mm: float = 1.5,
               config: LesionConfig = LesionConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Paint a lesion of ``kind`` ("tumour", "ms" or "stroke") into a healthy label map.

    Returns the new label map and the exact lesion mask (uint8, 1 = lesion). The input is not modified.
    """
    if kind not in _ADDERS:
        raise ValueError(f"unknown lesion type {kind!r}; choose one of {', '.join(LESION_TYPES)}")
    out = _ADDERS[kind](labels, rng, spacing_mm, config)
    return out, (out >= Label.OEDEMA).astype(np.uint8)
