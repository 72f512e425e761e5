"""Fixtures for the Slicer adapter and module tests (loaded with ``pytest_plugins = ["conftest_slicer"]``).

- ``slicerApp``: the Qt-free Slicer application of :mod:`slicer_scene` (one per test session).
- ``countingDetector``: a real detector on the small trained test model (``tiny_bundle``) that counts its model runs,
  so tests can prove that re-thresholding does not run the model.
- ``flairPath``: the real FLAIR scan of case TCGA-DU-7294.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from slicer_scene import addModulePath, createSlicerApplication

pytest.importorskip("slicer", reason="the slicer-core package (Slicer's MRML libraries) is not installed")


class CountingDetector:
    """Wraps a real :class:`disanatdetect.pipeline.Detector` and counts how often it runs the model."""

    def __init__(self, detector):
        self.detector = detector
        self.calls = 0

    def detect(self, *args, **kwargs):
        self.calls += 1
        return self.detector.detect(*args, **kwargs)

    def threshold_for(self, modality: str) -> float:
        return self.detector.threshold_for(modality)


@pytest.fixture(scope="session")
def slicerApp():
    addModulePath()
    return createSlicerApplication()


@pytest.fixture(scope="session")
def countingDetector(tiny_detector):
    return CountingDetector(tiny_detector)


@pytest.fixture(scope="session")
def flairPath(real_data) -> Path:
    return real_data / "TCGA-DU-7294" / "flair.nii.gz"
