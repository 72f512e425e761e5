"""Brain extraction for scans that still have skull, scalp and neck.

A skull-stripped scan passes through untouched (its brain is where it is above zero). A scan with skull is
registered, head to head, to the Colin27 head (one real person's MRI in MNI space); the head-to-head fit is then
refined with the metric limited to Colin27's brain and a band around it, so that the brain outline, not the scalp,
neck or face (which vary most between people and scanners' fields of view), decides where the brain lies. Colin27's
brain mask, slightly dilated so as not to cut the cortex, is carried back onto the scan. Registration to the atlas
then refines the alignment on the extracted brain.

The package ships Colin27's head and brain mask at 2 mm (``data/colin27_*_2mm.nii.gz``), made from Debian's
``mricron-data`` (``ch2.nii.gz``, ``ch2bet.nii.gz``) by ``python3 -m disanatdetect.brain_extraction``.
(C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological Institute; see LICENSE.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from disanatdetect.errors import InputError
from disanatdetect.io import Volume
from disanatdetect.preprocess import largest_component_filled

MRICRON_TEMPLATES = Path("/usr/share/mricron/templates")
TEMPLATE_FOLDER = Path(__file__).parent / "data"
HEAD_TEMPLATE = TEMPLATE_FOLDER / "colin27_head_2mm.nii.gz"
BRAIN_TEMPLATE = TEMPLATE_FOLDER / "colin27_brain_2mm.nii.gz"


@dataclass(frozen=True)
class BrainExtractionConfig:
    """A non-zero region larger than ``skull_volume_ml`` cannot be a skull-stripped brain (adults: 1.1-1.7 L)."""

    skull_volume_ml: float = 2100.0
    brain_dilation_mm: float = 2.0
    # the band around the brain that the refinement's metric sees: the skull's inner edge, not the face
    refinement_band_mm: float | None = 10.0  # None: the head-to-head fit alone


def foreground(array: np.ndarray) -> np.ndarray:
    """The head or brain: Otsu threshold of the intensities, largest component, holes filled."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))  # Otsu works on the stored type; no float copy of a large scan
    mask = largest_component_filled(sitk.GetArrayFromImage(sitk.OtsuThreshold(image, 0, 1)) > 0)
    # fill holes slice by slice too: thick-slice scans have few slices to close a 3D hole with
    return np.stack([ndimage.binary_fill_holes(s) for s in mask])


def has_skull(volume: Volume, config: BrainExtractionConfig = BrainExtractionConfig()) -> bool:
    """Whether the scan shows more than a brain: its non-zero region is larger than any brain.

    Skull stripping leaves a brain surrounded by zeros (interpolation may leave small negative values inside it);
    a head keeps scalp, bone and meninges, or the scanner's noise, around the brain, which makes that region too
    large even where the brain is the brightest part of the scan.
    """
    # A volume estimate needs no full resolution: every second voxel along the finely sampled axes.
    stride = [2 if n >= 64 else 1 for n in volume.array.shape]
    sampled = volume.array[::stride[0], ::stride[1], ::stride[2]]
    voxel_ml = float(np.prod(volume.spacing)) * float(np.prod(stride)) / 1000.0
    return float(largest_component_filled(sampled != 0).sum()) * voxel_ml > config.skull_volume_ml


def build_templates(source: Path = MRICRON_TEMPLATES, spacing_mm: float = 2.0) -> None:
    """Write the shipped 2 mm Colin27 head (uint8) and brain mask from mricron-data's 1 mm files."""
    head = sitk.ReadImage(str(source / "ch2.nii.gz"), sitk.sitkFloat32)
    brain = sitk.ReadImage(str(source / "ch2bet.nii.gz"), sitk.sitkFloat32)
    size = [int(round(n * s / spacing_mm)) for n, s in zip(head.GetSize(), head.GetSpacing())]
    reference = sitk.Image(size, sitk.sitkFloat32)
    reference.SetSpacing((spacing_mm,) * 3)
    reference.SetOrigin(head.GetOrigin())
    reference.SetDirection(head.GetDirection())
    smooth = sitk.SmoothingRecursiveGaussian(head, spacing_mm / 2.355)  # anti-aliasing before downsampling
    small_head = sitk.Resample(smooth, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkUInt8)
    small_brain = sitk.Resample(sitk.Cast(brain > 0, sitk.sitkFloat32), reference, sitk.Transform(),
                                sitk.sitkLinear, 0.0) > 0.5
    TEMPLATE_FOLDER.mkdir(exist_ok=True)
    sitk.WriteImage(small_head, str(HEAD_TEMPLATE), useCompression=True)
    sitk.WriteImage(sitk.Cast(small_brain, sitk.sitkUInt8), str(BRAIN_TEMPLATE), useCompression=True)


def _colin27() -> tuple[sitk.Image, sitk.Image]:
    if not (HEAD_TEMPLATE.exists() and BRAIN_TEMPLATE.exists()):
        raise InputError("the scan still has its skull, and the Colin27 templates that remove it are missing from "
                         "this installation; reinstall disanatdetect or skull-strip the scan.")
    return sitk.ReadImage(str(HEAD_TEMPLATE), sitk.sitkFloat32), sitk.ReadImage(str(BRAIN_TEMPLATE), sitk.sitkFloat32)


def extract_brain(volume: Volume, config: BrainExtractionConfig = BrainExtractionConfig()) -> np.ndarray:
    """Brain mask on the scan's grid for a scan with skull (see the module docstring)."""
    from disanatdetect.preprocess import RegistrationConfig, register_to_atlas

    head_template, brain_template = _colin27()
    scan = sitk.Cast(volume.to_sitk(), sitk.sitkFloat32)
    transform = register_to_atlas(scan, head_template, RegistrationConfig(shrink_factors=(4, 2, 1),
                                                                          smoothing_mm=(4.0, 2.0, 1.0)))
    brain_template = sitk.Cast(brain_template > 0, sitk.sitkUInt8)
    if config.refinement_band_mm is not None:
        band = _dilated(brain_template, config.refinement_band_mm)
        transform = register_to_atlas(scan, head_template, RegistrationConfig(shrink_factors=(2, 1),
                                                                              smoothing_mm=(2.0, 1.0),
                                                                              sampling_fraction=0.2),
                                      initial=transform, fixed_mask=band)
    brain = _dilated(brain_template, config.brain_dilation_mm)
    on_scan = sitk.Resample(brain, scan, transform.GetInverse(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    mask = sitk.GetArrayFromImage(on_scan) > 0
    return mask & foreground(volume.array)


def _dilated(mask: sitk.Image, radius_mm: float) -> sitk.Image:
    return sitk.BinaryDilate(mask, [max(1, int(round(radius_mm / s))) for s in mask.GetSpacing()])


if __name__ == "__main__":
    build_templates()
    print(f"wrote {HEAD_TEMPLATE} and {BRAIN_TEMPLATE}")
