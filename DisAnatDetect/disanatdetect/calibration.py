"""Label-free thresholds: from the anomaly maps of healthy synthetic validation volumes.

No lesion label is used. A modality's threshold is the higher of two limits measured on healthy volumes, after
the same post-processing as in detection:

- the score that only ``false_positive_rate`` of healthy brain voxels exceed (pooled over the volumes);
- optionally, the lowest score at which no healthy volume keeps more than ``max_false_positive_ml`` of lesion
  mask (after the minimum lesion size and the growth). Off in the release: with 0.5 mL over 8 volumes it raised
  the FLAIR threshold from 0.31 to 0.67 and the T2 one from 0.18 to 0.37, and the real tumours fell below it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from disanatdetect.bundle import Bundle, load_bundle
from disanatdetect.pipeline import AnomalyMethod, DetectionConfig
from disanatdetect.postprocess import PostprocessConfig, lesion_mask
from disanatdetect.preprocess import normalise_intensity
from disanatdetect.synth.cases import synthetic_cases
from disanatdetect.synth.contrast import MODALITIES


@dataclass(frozen=True)
class CalibrationConfig:
    """Healthy validation volumes per modality and the false positives the threshold allows on them."""

    volumes_per_modality: int = 3
    false_positive_rate: float = 0.001  # of brain voxels, pooled
    max_false_positive_ml: float | None = None  # of lesion mask, in every volume; None: no such limit
    modalities: tuple[str, ...] = MODALITIES
    seed: int = 10_000  # validation anatomies are disjoint from any training seed stream


# Stored thresholds are rounded up to this many decimals, so that a stored threshold still keeps every healthy
# volume within the limits it was fitted to.
THRESHOLD_DECIMALS = 5


@dataclass
class HealthyMap:
    """The post-processed anomaly map of one healthy volume, on the working grid."""

    anomaly: np.ndarray
    brain: np.ndarray
    spacing_mm: tuple[float, float, float]  # along the array's axes

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.spacing_mm)) / 1000.0


def healthy_maps(method: AnomalyMethod, modalities: tuple[str, ...], seed: int) -> dict[str, HealthyMap]:
    """Run ``method`` on one healthy synthetic anatomy rendered in each of ``modalities``."""
    maps = {}
    for case in synthetic_cases(method.atlas, seed, modalities, lesion="none"):
        brain = case.labels.array > 0
        config = DetectionConfig(modality=case.modality)
        image = normalise_intensity(case.image.array, brain, config.normalisation)
        anomaly = method.analyse(image, brain, config).anomaly
        maps[case.modality] = HealthyMap(anomaly, brain, case.image.spacing[::-1])
    return maps


def healthy_map(method: AnomalyMethod, modality: str, seed: int) -> HealthyMap:
    """Run ``method`` on one healthy synthetic volume of ``modality``."""
    return healthy_maps(method, (modality,), seed)[modality]


def healthy_scores(method: AnomalyMethod, modality: str, seed: int) -> np.ndarray:
    """Post-processed anomaly scores of the brain voxels of one healthy synthetic volume."""
    healthy = healthy_map(method, modality, seed)
    return healthy.anomaly[healthy.brain]


def false_positive_ml(healthy: HealthyMap, threshold: float,
                      postprocess: PostprocessConfig = PostprocessConfig()) -> float:
    """Lesion-mask volume (mL) that ``threshold`` gives on a healthy volume (with the released lesion growth)."""
    mask = lesion_mask(healthy.anomaly, threshold, healthy.spacing_mm, postprocess)
    return float(mask.sum()) * healthy.voxel_ml


def lowest_clean_threshold(healthy: HealthyMap, max_ml: float,
                           postprocess: PostprocessConfig = PostprocessConfig(), iterations: int = 30) -> float:
    """About the lowest threshold whose lesion mask on ``healthy`` is at most ``max_ml`` (bisection on the score).

    The mask only shrinks as the threshold rises (seed components and the regions they grow into only shrink or
    vanish), so bisection between 0 and the highest score finds the boundary.
    """
    low, high = 0.0, float(healthy.anomaly.max())
    if false_positive_ml(healthy, low, postprocess) <= max_ml:
        return low
    for _ in range(iterations):
        middle = (low + high) / 2
        low, high = (low, middle) if false_positive_ml(healthy, middle, postprocess) <= max_ml else (middle, high)
    return high


def calibrate_thresholds(method: AnomalyMethod,
                         config: CalibrationConfig = CalibrationConfig()) -> dict[str, float]:
    """One threshold per modality, plus "default" (the largest, i.e. the most conservative)."""
    by_seed = [healthy_maps(method, config.modalities, config.seed + index)
               for index in range(config.volumes_per_modality)]
    thresholds = {}
    for modality in config.modalities:
        maps = [seed_maps[modality] for seed_maps in by_seed]
        pooled = np.concatenate([healthy.anomaly[healthy.brain] for healthy in maps])
        voxel_limit = float(np.quantile(pooled, 1 - config.false_positive_rate))
        volume_limit = max(lowest_clean_threshold(healthy, config.max_false_positive_ml) for healthy in maps) \
            if config.max_false_positive_ml is not None else 0.0
        thresholds[modality] = math.ceil(max(voxel_limit, volume_limit) * 10**THRESHOLD_DECIMALS) \
            / 10**THRESHOLD_DECIMALS
    thresholds["default"] = max(thresholds.values())
    return thresholds


def method_for(bundle: Bundle, device: str = "cpu") -> AnomalyMethod:
    """The anomaly method that runs ``bundle``: DAL, or a reconstruction baseline (AE, DAE)."""
    from disanatdetect.baselines import ReconstructionMethod
    from disanatdetect.pipeline import DALMethod

    return DALMethod(bundle, device) if bundle.name == "dal" else ReconstructionMethod(bundle, device)


def recalibrate(manifest_path: str | Path, config: CalibrationConfig = CalibrationConfig()) -> dict[str, float]:
    """Calibrate a bundle's thresholds anew and rewrite its manifest; the weights and their checksum stay."""
    manifest_path = Path(manifest_path)
    thresholds = calibrate_thresholds(method_for(load_bundle(manifest_path)), config)
    manifest = json.loads(manifest_path.read_text())
    manifest.update(thresholds=thresholds, calibration=asdict(config))
    temporary = manifest_path.with_name(f".{manifest_path.name}.{os.getpid()}.partial")
    temporary.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(temporary, manifest_path)
    return thresholds
