"""The one path from a scan to its score: prepare (check the input, find the brain, register it to the atlas,
normalise) -> analyse (any anomaly method, on the working grid) -> back onto the scan's grid and threshold.

Detection, evaluation, calibration, the benchmark and the Slicer logic all run this path, so a fix lands everywhere
at once. Each stage lives in the module that owns its job: :mod:`~disanatdetect.scan_checks` (input validation),
:mod:`~disanatdetect.spatial` (registration and resampling), :mod:`~disanatdetect.dal_inference` (DAL),
:mod:`~disanatdetect.scoring` (residual to anomaly map), :mod:`~disanatdetect.detection` (settings and results).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from disanatdetect.atlas import Atlas, load_atlas
from disanatdetect.bundle import Bundle
from disanatdetect.dal_inference import DALMethod
from disanatdetect.detection import (STAGES, AnomalyMethod, Cancelled, DetectionConfig, DetectionResult,
                                     ProgressCallback, Stopwatch, with_overrides)
from disanatdetect.io import Volume
from disanatdetect.spatial import PreparedScan, prepare_scan, to_input_grid

__all__ = ["STAGES", "AnomalyMethod", "Cancelled", "DetectionConfig", "DetectionResult", "Detector", "PreparedScan",
           "analyse_prepared", "prepare_scan"]


def analyse_prepared(method: AnomalyMethod, prepared: PreparedScan, atlas: Atlas,
                     config: DetectionConfig = DetectionConfig(), threshold: float | None = None,
                     stopwatch: Stopwatch | None = None) -> DetectionResult:
    """Run ``method`` on a prepared scan and bring its result back onto the scan's grid.

    ``threshold`` (default: ``config.threshold``, else the method's own for the modality it finds) makes the mask.
    """
    config = with_overrides(config, method)
    # A stripped scan's brain is exact; on it the encoder would only trim the rim (measured: it costs T2 AP).
    config = replace(config, brain_from_encoder=config.brain_from_encoder and prepared.brain_extracted)
    stopwatch = stopwatch or Stopwatch()
    stopwatch.stage("reconstructing")
    result = method.analyse(prepared.image, prepared.brain, config, stopwatch.progress, stopwatch.should_cancel)
    stopwatch.lap("reconstruct")
    stopwatch.stage("post-processing")
    if threshold is None:
        threshold = config.threshold if config.threshold is not None else method.threshold_for(result.modality)
    detection = to_input_grid(prepared, result, atlas, threshold, config, method.version)
    stopwatch.lap("resample_back")
    stopwatch.stage("post-processing", 1.0)
    detection.timings = {**prepared.timings, **stopwatch.timings}
    return detection


class Detector:
    """A loaded method ready to process volumes; reuse it for many volumes to load the weights once.

    ``Detector()`` is DAL with the shipped model; ``Detector(bundle)`` another DAL bundle; ``Detector(method=...)``
    any :class:`AnomalyMethod` (the baselines), run through the same registration and resampling.
    """

    def __init__(self, bundle: Bundle | None = None, device: str = "auto", method: AnomalyMethod | None = None):
        self.method = method or DALMethod(bundle, device)
        self.atlas = getattr(self.method, "atlas", None) or load_atlas()

    @property
    def bundle(self) -> Bundle:
        return self.method.bundle

    def threshold_for(self, modality: str) -> float:
        return self.method.threshold_for(modality)

    def detect(self, volume: Volume, config: DetectionConfig = DetectionConfig(),
               progress: ProgressCallback | None = None,
               should_cancel: Callable[[], bool] | None = None) -> DetectionResult:
        """Run the whole pipeline on ``volume``; outputs lie on its grid. The input is not modified."""
        stopwatch = Stopwatch(progress, should_cancel)
        prepared = prepare_scan(volume, self.atlas, with_overrides(config, self.method), stopwatch)
        return analyse_prepared(self.method, prepared, self.atlas, config, stopwatch=stopwatch)
