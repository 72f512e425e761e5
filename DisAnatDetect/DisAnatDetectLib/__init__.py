"""MRML adapter of DisAnatDetect: volume nodes in, result nodes out, on any MRML scene.

- :mod:`.nodes`: volume node <-> :class:`disanatdetect.io.Volume`, and the content and display of output nodes.
- :mod:`.logic`: :class:`DisAnatDetectLogic` (start the detection, apply its result to nodes, re-threshold).
- :mod:`.process`: :class:`DetectionProcess`, the detection in a child process with Slicer's Python, its progress
  protocol, cancel and errors.
- :mod:`.parameters`: the user's choices as plain data, shared with the GUI's parameter node.
- :mod:`.dependencies`: which Python packages still need installing.

Imports ``slicer`` (MRML and ``slicer.util``) and ``vtk``, never Qt, so it runs in batch scripts and on the Qt-free
``slicer-core`` package. The model runs in a child process; torch is imported here only to read a finished result.
"""

from .logic import DetectionOutputs, DisAnatDetectLogic
from .parameters import (DEFAULT_OVERLAY_OPACITY, DEVICE_CHOICES, INITIAL_THRESHOLD, MODALITY_CHOICES, MODULE_NAME,
                         STAGES, THRESHOLD_DECIMALS, THRESHOLD_RANGE, THRESHOLD_STEP, coreDevice, coreModality,
                         overallProgress)
from .process import ComputedResult, DetectionCancelled, DetectionFailed, DetectionProcess

__all__ = [
    "ComputedResult",
    "DetectionCancelled",
    "DetectionFailed",
    "DetectionOutputs",
    "DetectionProcess",
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
