"""Spatial transforms: a scan onto the working grid (brain, registration to the atlas, resampling, normalisation)
and results back onto the scan's own grid. Every method shares them."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from disanatdetect.atlas import Atlas
from disanatdetect.brain_extraction import extract_brain, has_skull
from disanatdetect.detection import (AtlasSpaceResult, DetectionConfig, DetectionResult, Stopwatch,
                                     mask_and_lesions)
from disanatdetect.errors import InputError
from disanatdetect.io import Volume
from disanatdetect.preprocess import (brain_mask, coarsened, intensity_scale, n4_bias_field, normalise_intensity,
                                      register_to_atlas, resample_to)
from disanatdetect.scan_checks import validate_input
from disanatdetect.synth.contrast import MODALITIES


@dataclass
class PreparedScan:
    """A scan registered to the atlas: what every method needs, computed once."""

    volume: Volume
    input_brain: np.ndarray  # on the input grid
    transform: sitk.AffineTransform  # atlas points -> scan points
    image: np.ndarray  # normalised, on the working grid
    brain: np.ndarray  # on the working grid
    scale: float  # the intensity that normalisation mapped to 1
    timings: dict[str, float]
    bias: np.ndarray | None = None  # N4's field on the working grid, when asked for: the PHI gets it back
    brain_extracted: bool = False  # the brain was estimated (a skull-on scan), not read off a stripped scan


def prepare_scan(volume: Volume, atlas: Atlas, config: DetectionConfig = DetectionConfig(),
                 stopwatch: Stopwatch | None = None) -> PreparedScan:
    """Check the input, find the brain, register it to the atlas and bring it, normalised, onto the working grid."""
    stopwatch = stopwatch or Stopwatch()
    if config.modality not in ("auto",) + MODALITIES:
        raise InputError(f"unknown modality {config.modality!r}; use auto, {', '.join(MODALITIES)}.")
    stopwatch.stage("preparing")
    validate_input(volume)
    brain_extracted = has_skull(volume)
    input_brain = extract_brain(volume) if brain_extracted else brain_mask(volume.array)
    if input_brain.sum() < 1000:
        raise InputError("the image has almost no voxels above zero; a brain MRI is expected.")
    masked = volume.array.astype(np.float32)
    masked[~input_brain] = 0
    reference = atlas.template.to_sitk()
    # Block averages down to about the working spacing: anti-aliased, and registration of a 0.5 mm scan as fast
    # as that of a 1.5 mm one. The copy in the image is freed with it; a 512 x 512 x 400 scan makes it 400 MB.
    masked_scan = coarsened(_like(volume, masked), min(reference.GetSpacing()))
    del masked
    stopwatch.lap("prepare")
    stopwatch.stage("registering")
    try:
        transform = register_to_atlas(masked_scan, reference, config.registration)
    except RuntimeError as error:  # ITK gives up on images it cannot sample (too thin, too small)
        reason = re.sub(r"^.*ITK ERROR: [^:]*: ", "", str(error).strip().splitlines()[-1]).split(". ")[0]
        raise InputError(f"registration to the brain atlas failed ({reason}); check that the image is a whole "
                         "brain MRI.") from None
    stopwatch.lap("register")
    image = sitk.GetArrayFromImage(resample_to(masked_scan, reference, transform))
    del masked_scan
    brain = mask_on_working_grid(volume.with_array(input_brain), atlas, transform)
    inside_atlas = float((brain & atlas.brain_mask).sum()) / max(1, int(brain.sum()))
    if brain.sum() < 1000 or inside_atlas < config.min_atlas_overlap:
        raise InputError(f"registration to the brain atlas failed (only {inside_atlas:.0%} of the registered brain "
                         "lies in the atlas brain); check that the image is a brain MRI.")
    bias = n4_bias_field(image, brain, config.normalisation) if config.normalisation.n4_bias_correction else None
    if bias is not None:
        image = image / bias
    scale = intensity_scale(image, brain, config.normalisation)
    normalised = normalise_intensity(image, brain, config.normalisation)
    stopwatch.lap("normalise")
    return PreparedScan(volume, input_brain, transform, normalised, brain, scale, dict(stopwatch.timings), bias,
                        brain_extracted)


def mask_on_working_grid(mask: Volume, atlas: Atlas, transform: sitk.Transform) -> np.ndarray:
    """A mask on a scan's grid (the brain, a reference lesion) brought onto the working grid."""
    moved = resample_to(_like(mask, (mask.array > 0).astype(np.uint8)), atlas.template, transform)
    return sitk.GetArrayFromImage(moved) > 0.5


def to_input_grid(prepared: PreparedScan, result: AtlasSpaceResult, atlas: Atlas, threshold: float,
                  config: DetectionConfig = DetectionConfig(), version: str = "") -> DetectionResult:
    """Resample a working-grid result back onto the scan's grid and threshold it there."""
    volume = prepared.volume
    inverse = prepared.transform.GetInverse()

    def back(array: np.ndarray) -> np.ndarray:  # onto the scan's grid, which lends only its geometry
        return sitk.GetArrayFromImage(resample_to(atlas.template.with_array(array).to_sitk(), volume, inverse))

    # Filled in place: a 512 x 512 x 400 scan makes every full-size float copy 400 MB.
    anomaly = back(result.anomaly)
    anomaly[~prepared.input_brain] = 0
    outside = ~(prepared.input_brain & (back(result.brain.astype(np.float32)) > 0.5))
    scale = result.scale * prepared.scale
    phi = back(_or_image(result) * scale * (prepared.bias if prepared.bias is not None else 1.0))
    phi[outside] = volume.array[outside]
    del outside
    anomaly, pseudo_healthy = volume.with_array(anomaly), volume.with_array(phi)
    mask, lesions = mask_and_lesions(anomaly, threshold, config.postprocess)
    return DetectionResult(pseudo_healthy, anomaly, mask, float(threshold), result.modality, lesions, {}, version,
                           config.postprocess, result)


def _or_image(result: AtlasSpaceResult) -> np.ndarray:
    """The pseudo-healthy image, or the scan itself for methods that do not reconstruct one."""
    return result.pseudo_healthy if result.pseudo_healthy is not None else result.image


def _like(volume: Volume, array: np.ndarray) -> sitk.Image:
    return volume.with_array(array).to_sitk()

