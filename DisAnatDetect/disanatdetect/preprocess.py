"""Preprocessing shared by training and inference: brain mask, registration to the atlas, normalisation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from disanatdetect.io import Volume


@dataclass(frozen=True)
class NormalisationConfig:
    """Intensities are divided by this percentile of the brain and clipped, the same in training and inference."""

    percentile: float = 99.0
    clip_max: float = 2.0
    n4_bias_correction: bool = False  # N4 (SimpleITK) on the working grid before normalising; measured, not released
    n4_shrink: int = 2
    n4_iterations: tuple[int, ...] = (50, 50, 30)


def n4_bias_field(image: np.ndarray, brain: np.ndarray, config: NormalisationConfig = NormalisationConfig()
                  ) -> np.ndarray:
    """The multiplicative bias field that N4 (Tustison et al. 2010, SimpleITK) finds in ``image`` inside ``brain``.

    Fitted on a ``n4_shrink`` times smaller copy, evaluated at full resolution; ones outside the brain.
    """
    full = sitk.GetImageFromArray(np.maximum(image, 0).astype(np.float32) + 1e-3)  # N4 works on log intensities
    mask = sitk.GetImageFromArray(brain.astype(np.uint8))
    shrink = [config.n4_shrink] * 3
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations(list(config.n4_iterations))
    corrector.Execute(sitk.Shrink(full, shrink), sitk.Shrink(mask, shrink))
    log_field = sitk.GetArrayFromImage(corrector.GetLogBiasFieldAsImage(full))
    return np.where(brain, np.exp(log_field), 1.0).astype(np.float32)


def intensity_scale(image: np.ndarray, brain: np.ndarray,
                    config: NormalisationConfig = NormalisationConfig()) -> float:
    """The intensity that normalisation maps to 1: a high percentile of the brain (0 for an empty brain)."""
    values = image[brain]
    return float(np.percentile(values, config.percentile)) if values.size else 0.0


def normalise_intensity(image: np.ndarray, brain: np.ndarray,
                        config: NormalisationConfig = NormalisationConfig()) -> np.ndarray:
    """Scale ``image`` so that the given percentile inside ``brain`` is 1; zero outside the brain."""
    scale = intensity_scale(image, brain, config)
    if scale <= 0:
        return np.zeros_like(image, dtype=np.float32)
    return np.where(brain, np.clip(image / scale, 0, config.clip_max), 0).astype(np.float32)


@dataclass(frozen=True)
class RegistrationConfig:
    """Affine registration of the scan to the atlas template: Mattes mutual information, three resolutions."""

    histogram_bins: int = 32
    sampling_fraction: float = 0.1
    iterations: int = 200
    learning_rate: float = 1.0
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_mm: tuple[float, ...] = (3.0, 1.5, 0.0)
    seed: int = 7
    # ITK's multi-threaded mutual information sums in a varying order, so two runs on one scan would differ;
    # one thread makes registration (and every result downstream) bit-identical from run to run. 0: ITK's default.
    threads: int = 1
    # ITK precomputes smoothed gradient images of both whole images at every level unless told not to: about 3 s a
    # level for a 1 mm scan on one thread, against milliseconds for the gradients at the sampled points only.
    gradient_images: bool = False


def largest_component_filled(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of ``mask``, its holes filled: a brain or head without specks."""
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    if count > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        mask = labels == np.argmax(sizes)
    return ndimage.binary_fill_holes(mask)


def brain_mask(image: np.ndarray) -> np.ndarray:
    """Brain of a skull-stripped scan: voxels above zero, holes filled, specks removed."""
    return largest_component_filled(image > 0)


def register_to_atlas(moving: sitk.Image, fixed: sitk.Image, config: RegistrationConfig = RegistrationConfig(),
                      initial: sitk.Transform | None = None,
                      fixed_mask: sitk.Image | None = None) -> sitk.AffineTransform:
    """Affine transform mapping atlas (fixed) points to scan (moving) points, mutual information, multi-resolution.

    Starts from ``initial`` or else from aligned intensity centres of mass (moments), so scans far from the atlas
    origin start close. ``fixed_mask`` limits the metric to the atlas points inside it. The registration stops
    early when the metric has converged.
    """
    fixed = sitk.Cast(fixed, sitk.sitkFloat32)
    moving = coarsened(sitk.Cast(moving, sitk.sitkFloat32), min(fixed.GetSpacing()))
    if initial is None:
        initial = sitk.CenteredTransformInitializer(fixed, moving, sitk.AffineTransform(3),
                                                    sitk.CenteredTransformInitializerFilter.MOMENTS)
    method = _mutual_information_registration(config)
    if fixed_mask is not None:
        method.SetMetricFixedMask(fixed_mask)
    method.SetOptimizerAsGradientDescent(learningRate=config.learning_rate, numberOfIterations=config.iterations,
                                         convergenceMinimumValue=1e-6, convergenceWindowSize=10)
    method.SetInitialTransform(initial, inPlace=False)
    composite = sitk.CompositeTransform(_execute(method, fixed, moving, config.threads))
    composite.FlattenTransform()
    return sitk.AffineTransform(composite.GetNthTransform(0))


# Two scans of one patient: the same contrast-free metric, finer sampling, a step-halving optimiser that stops on
# its own, ITK's default threads and gradient images (as the native-scan measurements were made).
SAME_PATIENT_RIGID = RegistrationConfig(sampling_fraction=0.2, iterations=300, smoothing_mm=(2.0, 1.0, 0.0), seed=3,
                                        threads=0, gradient_images=True)


def register_rigid(fixed: Volume, moving: Volume, config: RegistrationConfig = SAME_PATIENT_RIGID) -> sitk.Transform:
    """Rigid transform mapping ``fixed`` points to ``moving`` points: two scans of one patient (mutual information,
    multi-resolution), e.g. to carry a result on a native scan's grid onto a reference's."""
    fixed_image = sitk.Cast(fixed.to_sitk(), sitk.sitkFloat32)
    moving_image = sitk.Cast(moving.to_sitk(), sitk.sitkFloat32)
    initial = sitk.CenteredTransformInitializer(fixed_image, moving_image, sitk.Euler3DTransform(),
                                                sitk.CenteredTransformInitializerFilter.MOMENTS)
    method = _mutual_information_registration(config)
    method.SetOptimizerAsRegularStepGradientDescent(config.learning_rate, minStep=1e-4,
                                                    numberOfIterations=config.iterations)
    method.SetInitialTransform(initial, inPlace=False)
    return _execute(method, fixed_image, moving_image, config.threads)


def _mutual_information_registration(config: RegistrationConfig) -> sitk.ImageRegistrationMethod:
    """Mattes mutual information at random samples, over ``config``'s resolutions; the optimiser is the caller's."""
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(config.histogram_bins)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(config.sampling_fraction, config.seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetMetricUseFixedImageGradientFilter(config.gradient_images)
    method.SetMetricUseMovingImageGradientFilter(config.gradient_images)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(config.shrink_factors))
    method.SetSmoothingSigmasPerLevel(list(config.smoothing_mm))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return method


def _execute(method: sitk.ImageRegistrationMethod, fixed: sitk.Image, moving: sitk.Image,
             threads: int) -> sitk.Transform:
    """``method`` run with ``threads`` ITK threads (0: the current default)."""
    # The metric takes ITK's global default thread count when it runs (the method's own setting does not reach it).
    default = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads or default)
    try:
        return method.Execute(fixed, moving)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(default)


def coarsened(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """``image`` averaged over whole blocks of voxels so that no axis is much finer than ``spacing_mm``.

    Registration to a template of that spacing gains nothing from finer voxels, and a 0.5 mm scan would cost it
    about 27 times the time (and memory) of a 1.5 mm one. Scans at or above the spacing pass unchanged.
    """
    factors = [max(1, int(spacing_mm / s)) for s in image.GetSpacing()]
    return sitk.BinShrink(image, factors) if max(factors) > 1 else image


def resample_to(image: sitk.Image, reference: sitk.Image | Volume, transform: sitk.Transform,
                interpolator=sitk.sitkLinear) -> sitk.Image:
    """``image`` resampled onto ``reference``'s grid (float32); ``transform`` maps reference points to ``image``
    points. A :class:`Volume` reference lends only its geometry, so no copy of its voxels is made."""
    if isinstance(reference, sitk.Image):
        return sitk.Resample(image, reference, transform, interpolator, 0.0, sitk.sitkFloat32)
    return sitk.Resample(image, reference.shape[::-1], transform, interpolator, reference.origin,
                         reference.spacing, tuple(reference.direction.ravel()), 0.0, sitk.sitkFloat32)
