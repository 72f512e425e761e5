"""Preprocessing shared by training and inference: intensity normalisation (registration joins it later)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NormalisationConfig:
    """Intensities are divided by this percentile of the brain and clipped, the same in training and inference."""

    percentile: float = 99.0
    clip_max: float = 2.0


def normalise_intensity(image: np.ndarray, brain: np.ndarray,
                        config: NormalisationConfig = NormalisationConfig()) -> np.ndarray:
    """Scale ``image`` so that the given percentile inside ``brain`` is 1; zero outside the brain."""
    values = image[brain]
    scale = float(np.percentile(values, config.percentile)) if values.size else 0.0
    if scale <= 0:
        return np.zeros_like(image, dtype=np.float32)
    return np.where(brain, np.clip(image / scale, 0, config.clip_max), 0).astype(np.float32)
