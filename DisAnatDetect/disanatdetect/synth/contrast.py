"""Rendering label maps as MR images: realistic presets and domain-randomised contrast (after SynthSeg)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from disanatdetect.synth.fields import smooth_field
from disanatdetect.synth.labels import N_LABELS, Label

MODALITIES = ("t1", "t1c", "t2", "flair", "pd")

# Mean intensity per label (relative, brightest tissue near 1), from typical 1.5-3 T appearances:
# lesions are bright on T2/FLAIR/PD, dark on T1, and the enhancing rim is bright on T1c.
_PRESET_MEANS: dict[str, dict[Label, float]] = {
    "t1": {Label.CSF: 0.22, Label.GREY_MATTER: 0.55, Label.WHITE_MATTER: 0.80, Label.OEDEMA: 0.45,
           Label.NECROSIS: 0.25, Label.ENHANCING: 0.50, Label.WM_LESION: 0.45, Label.INFARCT: 0.35},
    "t1c": {Label.CSF: 0.22, Label.GREY_MATTER: 0.55, Label.WHITE_MATTER: 0.78, Label.OEDEMA: 0.45,
            Label.NECROSIS: 0.25, Label.ENHANCING: 1.00, Label.WM_LESION: 0.45, Label.INFARCT: 0.35},
    "t2": {Label.CSF: 1.00, Label.GREY_MATTER: 0.55, Label.WHITE_MATTER: 0.40, Label.OEDEMA: 0.80,
           Label.NECROSIS: 0.95, Label.ENHANCING: 0.65, Label.WM_LESION: 0.75, Label.INFARCT: 0.82},
    "flair": {Label.CSF: 0.12, Label.GREY_MATTER: 0.62, Label.WHITE_MATTER: 0.48, Label.OEDEMA: 0.95,
              Label.NECROSIS: 0.45, Label.ENHANCING: 0.85, Label.WM_LESION: 0.92, Label.INFARCT: 0.88},
    "pd": {Label.CSF: 0.85, Label.GREY_MATTER: 0.78, Label.WHITE_MATTER: 0.62, Label.OEDEMA: 0.92,
           Label.NECROSIS: 0.90, Label.ENHANCING: 0.85, Label.WM_LESION: 0.90, Label.INFARCT: 0.90},
}


@dataclass(frozen=True)
class ContrastConfig:
    """Ranges of the random imaging effects. Each sample draws one value from each range."""

    preset_jitter: float = 0.06
    texture_std: tuple[float, float] = (0.0, 0.06)
    texture_spacing_vox: float = 2.0
    bias_strength: tuple[float, float] = (0.0, 0.25)
    bias_spacing_vox: float = 40.0
    noise_std: tuple[float, float] = (0.005, 0.04)
    blur_sigma_vox: tuple[float, float] = (0.3, 0.9)
    gamma: tuple[float, float] = (0.8, 1.25)
    resolution_loss_probability: float = 0.25
    max_downsampling: float = 3.5


@dataclass
class ContrastSample:
    """One drawn contrast: mean and texture per label and the imaging effects, enough to render reproducibly."""

    modality: str  # a preset name, or "random"
    means: np.ndarray
    texture_std: float
    bias_strength: float
    noise_std: float
    blur_sigma: float
    gamma: float
    downsample_axis: int | None = None
    downsample_factor: float = 1.0
    seed: int = field(default=0)


def sample_contrast(rng: np.random.Generator, modality: str | None = None,
                    config: ContrastConfig = ContrastConfig()) -> ContrastSample:
    """Draw a contrast: a jittered preset when ``modality`` is given, else random intensities for every label."""
    if modality is None or modality == "random":
        means = rng.uniform(0.05, 1.0, N_LABELS)
        modality = "random"
    elif modality in _PRESET_MEANS:
        means = np.zeros(N_LABELS)
        for label, mean in _PRESET_MEANS[modality].items():
            means[label] = mean
        means[1:] = np.clip(means[1:] + rng.uniform(-config.preset_jitter, config.preset_jitter, N_LABELS - 1),
                            0.02, 1.1)
    else:
        raise ValueError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITIES)} or 'random'")
    means[Label.BACKGROUND] = 0.0
    downsample = rng.random() < config.resolution_loss_probability
    return ContrastSample(
        modality=modality,
        means=means.astype(np.float32),
        texture_std=float(rng.uniform(*config.texture_std)),
        bias_strength=float(rng.uniform(*config.bias_strength)),
        noise_std=float(rng.uniform(*config.noise_std)),
        blur_sigma=float(rng.uniform(*config.blur_sigma_vox)),
        gamma=float(rng.uniform(*config.gamma)),
        downsample_axis=int(rng.integers(0, 3)) if downsample else None,
        downsample_factor=float(rng.uniform(1.5, config.max_downsampling)) if downsample else 1.0,
        seed=int(rng.integers(0, 2**31 - 1)),
    )


def render(labels: np.ndarray, contrast: ContrastSample, config: ContrastConfig = ContrastConfig()) -> np.ndarray:
    """Render a label map as an MR image (float32, background 0, tissue roughly in [0, 1]).

    All randomness comes from ``contrast.seed``: the same contrast renders a healthy and a lesioned label map
    with identical texture, bias and noise, so they differ only where the labels differ (and by the blur).
    """
    rng = np.random.default_rng(contrast.seed)
    shape = labels.shape
    texture = 1.0 + contrast.texture_std * smooth_field(shape, rng, config.texture_spacing_vox)
    image = contrast.means[labels] * texture
    if contrast.blur_sigma > 0:
        image = ndimage.gaussian_filter(image, contrast.blur_sigma)
    bias = np.exp(contrast.bias_strength * smooth_field(shape, rng, config.bias_spacing_vox))
    image = np.clip(image * bias, 0, None) ** contrast.gamma
    if contrast.downsample_axis is not None and contrast.downsample_axis < len(shape):
        image = _lose_resolution(image, contrast.downsample_axis, contrast.downsample_factor)
    image = image + contrast.noise_std * rng.standard_normal(shape).astype(np.float32)
    brain = labels != Label.BACKGROUND
    return np.where(brain, np.clip(image, 0, None), 0.0).astype(np.float32)


def _lose_resolution(image: np.ndarray, axis: int, factor: float) -> np.ndarray:
    """Thick-slice acquisition along ``axis``: average over ``factor`` voxels, then interpolate back."""
    sigma = [0.0] * image.ndim
    sigma[axis] = factor / 2.355  # FWHM of one thick slice
    blurred = ndimage.gaussian_filter(image, sigma)
    zoom = [1.0] * image.ndim
    zoom[axis] = 1.0 / factor
    small = ndimage.zoom(blurred, zoom, order=1)
    back = ndimage.zoom(small, [n / s for n, s in zip(image.shape, small.shape)], order=1)
    return back[tuple(slice(0, n) for n in image.shape)]
