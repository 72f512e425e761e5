"""What one detection is: its settings, its results (on the working grid and on the scan's grid), the signals it
sends while it runs (progress, cancel), and the interface every anomaly method offers the pipeline."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from disanatdetect.io import Volume
from disanatdetect.postprocess import PostprocessConfig, lesion_components, lesion_mask
from disanatdetect.preprocess import NormalisationConfig, RegistrationConfig

STAGES = ("preparing", "registering", "reconstructing", "post-processing")

ProgressCallback = Callable[[str, float], None]


class Cancelled(Exception):
    """Raised inside :meth:`Detector.detect` when its ``should_cancel`` callback answers True."""


@dataclass(frozen=True)
class DetectionConfig:
    """Settings of one detection; the defaults are the released ones."""

    modality: str = "auto"
    threshold: float | None = None  # None: the bundle's label-free threshold for the modality
    batch_size: int = 16
    anatomy_weight: float = 0.0
    explain_csf: bool = True  # no score where scan and restored anatomy agree on CSF
    # DAL's encoder learnt to call the head around a brain background: a brain mask estimated from a skull-on scan
    # loses what it calls so (scalp, marrow, orbits) before normalisation and scoring, unless that would leave less
    # than ``min_brain_kept`` of it. A stripped scan's own brain is kept as it is (see ``analyse_prepared``).
    brain_from_encoder: bool = True
    min_brain_kept: float = 0.5
    min_atlas_overlap: float = 0.8  # share of the registered brain inside the atlas brain; below: failure
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    normalisation: NormalisationConfig = field(default_factory=NormalisationConfig)


@dataclass
class AtlasSpaceResult:
    """Everything on the working grid: inputs, reconstruction and scores."""

    image: np.ndarray
    brain: np.ndarray
    pseudo_healthy: np.ndarray | None  # None for methods without a reconstruction (thresholding)
    modality: str
    score: np.ndarray  # raw
    anomaly: np.ndarray  # post-processed
    encoded: np.ndarray | None = None  # tissue class per voxel (DAL only)
    restored: np.ndarray | None = None  # tissue class per voxel (DAL only)
    intensities: np.ndarray | None = None  # per tissue class (DAL only)
    scale: float = 1.0  # the intensity of the method's input that ``image`` has at 1 (re-normalised: not 1)


@dataclass
class Reconstruction:
    """What DAL makes of a normalised image on the working grid, before any scoring."""

    encoded: np.ndarray  # tissue class per voxel
    restored: np.ndarray  # tissue class per voxel
    intensities: np.ndarray  # per tissue class: the imaging information
    pseudo_healthy: np.ndarray
    disagreement: np.ndarray  # 1 - agreement of encoded and restored anatomy


@dataclass
class DetectionResult:
    """Outputs on the input grid, plus what the report needs."""

    pseudo_healthy: Volume
    anomaly_map: Volume
    lesion_mask: Volume
    threshold: float
    modality: str
    lesions: list[dict]
    timings: dict[str, float]
    model_version: str
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    working_grid: AtlasSpaceResult | None = None  # the same detection before resampling (evaluation reads it)

    def rethreshold(self, threshold: float) -> DetectionResult:
        """The same result with another threshold: no model call, only the mask and its components change."""
        mask, lesions = mask_and_lesions(self.anomaly_map, threshold, self.postprocess)
        return replace(self, lesion_mask=mask, lesions=lesions, threshold=float(threshold))

    @property
    def min_lesion_ml(self) -> float:
        return self.postprocess.min_lesion_ml

    @property
    def lesion_volume_ml(self) -> float:
        return float(sum(lesion["volume_ml"] for lesion in self.lesions))


class AnomalyMethod(Protocol):
    """What the pipeline and the benchmark harness need of a detector: DAL and the baselines alike.

    ``analyse`` works on the working grid with a normalised image; registration, normalisation and the way back
    to the input grid are the pipeline's job, shared by every method.
    """

    name: str
    version: str

    def analyse(self, image: np.ndarray, brain: np.ndarray, config: DetectionConfig,
                progress: ProgressCallback | None = None,
                should_cancel: Callable[[], bool] | None = None) -> AtlasSpaceResult: ...

    def threshold_for(self, modality: str) -> float: ...


def with_overrides(config: DetectionConfig, method: AnomalyMethod) -> DetectionConfig:
    """``config`` with the settings a method changes for itself (``detection_overrides``, if it has any)."""
    return replace(config, **getattr(method, "detection_overrides", {}))


def mask_and_lesions(anomaly: Volume, threshold: float,
                      config: PostprocessConfig = PostprocessConfig()) -> tuple[Volume, list[dict]]:
    mask = lesion_mask(anomaly.array, threshold, anomaly.spacing[::-1], config)
    return anomaly.with_array(mask), lesion_components(mask, anomaly.array, anomaly.affine)


class Stopwatch:
    """Stage reports (progress and cancellation) and seconds per stage for the report."""

    def __init__(self, progress: ProgressCallback | None = None, should_cancel: Callable[[], bool] | None = None):
        self.progress, self.should_cancel = progress, should_cancel
        self.timings: dict[str, float] = {}
        self._clock = time.perf_counter()

    def stage(self, name: str, fraction: float = 0.0) -> None:
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled()
        if self.progress is not None:
            self.progress(name, fraction)

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._clock, 3)
        self._clock = now

