"""Label-free thresholds: from the anomaly scores of healthy synthetic validation volumes at a fixed FPR.

No lesion label is used: the threshold of a modality is the score that only ``false_positive_rate`` of healthy
brain voxels exceed, after the same post-processing as in detection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from disanatdetect.pipeline import AnomalyMethod, DetectionConfig
from disanatdetect.preprocess import normalise_intensity
from disanatdetect.synth.cases import synthetic_case
from disanatdetect.synth.contrast import MODALITIES


@dataclass(frozen=True)
class CalibrationConfig:
    """Healthy validation volumes per modality and the voxel false-positive rate the threshold allows."""

    volumes_per_modality: int = 3
    false_positive_rate: float = 0.001
    modalities: tuple[str, ...] = MODALITIES
    seed: int = 10_000  # validation anatomies are disjoint from any training seed stream


def healthy_scores(method: AnomalyMethod, modality: str, seed: int) -> np.ndarray:
    """Post-processed anomaly scores of the brain voxels of one healthy synthetic volume."""
    case = synthetic_case(method.atlas, seed, modality, lesion="none")
    brain = case.labels.array > 0
    config = DetectionConfig(modality=modality)
    image = normalise_intensity(case.image.array, brain, config.normalisation)
    return method.analyse(image, brain, config).anomaly[brain]


def calibrate_thresholds(method: AnomalyMethod,
                         config: CalibrationConfig = CalibrationConfig()) -> dict[str, float]:
    """One threshold per modality, plus "default" (the largest, i.e. the most conservative)."""
    thresholds = {}
    for modality in config.modalities:
        scores = np.concatenate([healthy_scores(method, modality, config.seed + index)
                                 for index in range(config.volumes_per_modality)])
        thresholds[modality] = round(float(np.quantile(scores, 1 - config.false_positive_rate)), 5)
    thresholds["default"] = max(thresholds.values())
    return thresholds
