"""MRML adapter of DisAnatDetect: volume nodes in, result nodes out, on any MRML scene.

- :mod:`.nodes`: volume node <-> :class:`disanatdetect.io.Volume`, and the content and display of output nodes.
- :mod:`.logic`: :class:`DisAnatDetectLogic` (compute in a worker thread, apply on the main thread, re-threshold).
- :mod:`.parameters`: the user's choices as plain data, shared with the GUI's parameter node.
- :mod:`.dependencies`: which Python packages still need installing.

Imports ``slicer`` (MRML and ``slicer.util``) and ``vtk``, never Qt, so it runs in batch scripts and on the Qt-free
``slicer-core`` package; torch is imported only when a detection runs.
"""

from .logic import ComputedResult, DetectionOutputs, DetectionTask, DisAnatDetectLogic
from .parameters import (DEFAULT_OVERLAY_OPACITY, DEVICE_CHOICES, INITIAL_THRESHOLD, MODALITY_CHOICES, MODULE_NAME,
                         STAGES, THRESHOLD_DECIMALS, THRESHOLD_RANGE, THRESHOLD_STEP, coreDevice, coreModality,
                         overallProgress)

__all__ = [
    "ComputedResult",
    "DetectionOutputs",
    "DetectionTask",
    "DisAnatDetectLogic",
    "DEFAULT_OVERLAY_OPACITY",
    "DEVICE_CHOICES",
    "INITIAL_THRESHOLD",
    "MODALITY_CHOICES",
    "MODULE_NAME",
    "STAGES",
    "THRESHOLD_DECIMALS",
    "THRESHOLD_RANGE",
    "THRESHOLD_STEP",
    "coreDevice",
    "coreModality",
    "overallProgress",
]
