"""Label-free thresholds: from the anomaly maps of healthy scans, made by the detector's own path.

No lesion label is used. The healthy scans are rendered from the held-out label maps (subjects the model never
saw) as a scanner delivers them (:mod:`~disanatdetect.synth.healthy_scans`: off the atlas, with bias and noise),
joined by the real healthy scans of the given folders, and each goes through registration, analysis and the way
back to its own grid, exactly as in ``detect``. A modality's threshold is the higher of two limits:

- the score that only ``false_positive_rate`` of healthy brain voxels exceed (pooled over the scans);
- optionally, the lowest score at which no healthy scan keeps more than ``max_false_positive_ml`` of lesion mask
  (after the minimum lesion size and the growth). Off in the release: with 0.5 mL over 8 volumes it raised the
  FLAIR threshold of model 1.0.0 from 0.31 to 0.67 and the T2 one from 0.18 to 0.37, and the real tumours fell
  below it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from disanatdetect.atlas import Atlas
from disanatdetect.bundle import Bundle, load_bundle
from disanatdetect.data_paths import DEFAULT_HEALTHY_SCANS, DEFAULT_LABEL_MAPS
from disanatdetect.errors import InputError
from disanatdetect.io import Volume
from disanatdetect.pipeline import AnomalyMethod, DetectionConfig, analyse_prepared, prepare_scan
from disanatdetect.postprocess import PostprocessConfig, lesion_mask
from disanatdetect.spatial import PreparedScan
from disanatdetect.synth.contrast import MODALITIES
from disanatdetect.synth.healthy_scans import HealthyScanConfig, render_healthy_scan
from disanatdetect.synth.label_bank import load_bank, split_subjects


@dataclass(frozen=True)
class CalibrationConfig:
    """Healthy scans per modality and the false positives the threshold allows on them."""

    volumes_per_modality: int = 20  # rendered from the held-out subjects, in turn
    false_positive_rate: float = 0.001  # of brain voxels, pooled
    max_false_positive_ml: float | None = None  # of lesion mask, in every scan; None: no such limit
    modalities: tuple[str, ...] = MODALITIES
    seed: int = 10_000  # disjoint from any training seed stream
    label_maps: str = DEFAULT_LABEL_MAPS
    holdout_subjects: int = 4  # the training's held-out subjects: the last ones by name
    real_scans: tuple[str, ...] = (DEFAULT_HEALTHY_SCANS,)  # case folders of real healthy scans (missing: skipped)
    scan: HealthyScanConfig = field(default_factory=HealthyScanConfig)


# Stored thresholds are rounded up to this many decimals, so that a stored threshold still keeps every healthy
# volume within the limits it was fitted to.
THRESHOLD_DECIMALS = 5


@dataclass
class HealthyMap:
    """The post-processed anomaly map of one healthy scan, on its own grid."""

    anomaly: np.ndarray
    brain: np.ndarray
    spacing_mm: tuple[float, float, float]  # along the array's axes

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.spacing_mm)) / 1000.0


def healthy_map(method: AnomalyMethod, volume: Volume, modality: str, atlas: Atlas) -> HealthyMap:
    """The anomaly map ``detect`` makes of a healthy scan (no threshold: every voxel's score)."""
    prepared = prepare_scan(volume, atlas, DetectionConfig(modality=modality))
    return prepared_healthy_map(method, prepared, modality, atlas)


def prepared_healthy_map(method: AnomalyMethod, prepared: PreparedScan, modality: str, atlas: Atlas) -> HealthyMap:
    """:func:`healthy_map` of a scan already prepared (several methods on one registration)."""
    detection = analyse_prepared(method, prepared, atlas, DetectionConfig(modality=modality), threshold=math.inf)
    return HealthyMap(detection.anomaly_map.array, prepared.input_brain, prepared.volume.spacing[::-1])


def healthy_maps(method: AnomalyMethod, config: CalibrationConfig = CalibrationConfig()
                 ) -> dict[str, list[HealthyMap]]:
    """Per modality: the maps of ``config.volumes_per_modality`` rendered held-out scans and the real ones."""
    from disanatdetect.evaluate import MODALITY_FILES, folder_cases

    atlas = method.atlas
    held_out = split_subjects(config.label_maps, config.holdout_subjects)[1]
    bank = load_bank(held_out, atlas)
    maps: dict[str, list[HealthyMap]] = {modality: [] for modality in config.modalities}
    for modality in config.modalities:
        for index in range(config.volumes_per_modality):
            scan = render_healthy_scan(bank, index % len(held_out), modality, config.seed + index, atlas, config.scan)
            maps[modality].append(healthy_map(method, scan, modality, atlas))
    for folder in config.real_scans:
        if not Path(folder).is_dir():
            continue
        try:
            cases = list(folder_cases(folder, tuple(m for m in config.modalities if m in MODALITY_FILES)))
        except InputError:  # no scan of these modalities there
            continue
        for case in cases:
            if not case.reference.array.any():  # healthy cases only
                maps[case.modality].append(healthy_map(method, case.image, case.modality, atlas))
    return maps


def false_positive_ml(healthy: HealthyMap, threshold: float,
                      postprocess: PostprocessConfig = PostprocessConfig()) -> float:
    """Lesion-mask volume (mL) that ``threshold`` gives on a healthy volume (with the released lesion growth)."""
    mask = lesion_mask(healthy.anomaly, threshold, healthy.spacing_mm, postprocess)
    return float(mask.sum()) * healthy.voxel_ml


def lowest_clean_threshold(healthy: HealthyMap, max_ml: float,
                           postprocess: PostprocessConfig = PostprocessConfig(), low: float = 0.0,
                           tolerance: float = 1e-7) -> float:
    """About the lowest threshold at or above ``low`` whose lesion mask on ``healthy`` is at most ``max_ml``
    (bisection on the score, to ``tolerance``; ``low`` itself where it is already clean).

    The mask only shrinks as the threshold rises (seed components and the regions they grow into only shrink or
    vanish), so bisection between ``low`` and the highest score finds the boundary.
    """
    high = max(low, float(healthy.anomaly.max()))
    if false_positive_ml(healthy, low, postprocess) <= max_ml:
        return low
    while high - low > tolerance:
        middle = (low + high) / 2
        low, high = (low, middle) if false_positive_ml(healthy, middle, postprocess) <= max_ml else (middle, high)
    return high


def calibrate_thresholds(method: AnomalyMethod,
                         config: CalibrationConfig = CalibrationConfig()) -> dict[str, float]:
    """One threshold per modality, plus "default" (the largest, i.e. the most conservative)."""
    return thresholds_from_maps(healthy_maps(method, config), config)


def thresholds_from_maps(maps_per_modality: dict[str, list[HealthyMap]],
                         config: CalibrationConfig = CalibrationConfig()) -> dict[str, float]:
    """The thresholds that ``config``'s limits give on these healthy maps, plus "default" (the largest)."""
    thresholds = {}
    for modality, maps in maps_per_modality.items():
        pooled = np.concatenate([healthy.anomaly[healthy.brain] for healthy in maps])
        voxel_limit = float(np.quantile(pooled, 1 - config.false_positive_rate))
        threshold = voxel_limit
        if config.max_false_positive_ml is not None:
            # raised scan by scan: a scan already clean at the running threshold cannot raise it (one mask each)
            for healthy in maps:
                threshold = lowest_clean_threshold(healthy, config.max_false_positive_ml, low=threshold)
        thresholds[modality] = math.ceil(threshold * 10**THRESHOLD_DECIMALS) / 10**THRESHOLD_DECIMALS
    thresholds["default"] = max(thresholds.values())
    return thresholds


def recorded_calibration(manifest: dict) -> CalibrationConfig:
    """The calibration settings a bundle's manifest records as plain values (the rest: the release's)."""
    recorded = manifest.get("calibration", {})
    names = ("volumes_per_modality", "false_positive_rate", "seed", "label_maps", "holdout_subjects")
    return CalibrationConfig(**{name: recorded[name] for name in names if name in recorded})


def method_for(bundle: Bundle, device: str = "cpu") -> AnomalyMethod:
    """The anomaly method that runs ``bundle``: DAL, or a reconstruction baseline (AE, DAE)."""
    from disanatdetect.baselines import ReconstructionMethod
    from disanatdetect.dal_inference import DALMethod

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
