"""Synthetic brains, never downloaded.

- Training: real label maps (:mod:`.structures`, :mod:`.label_bank`) deformed and rendered as slices on the
  training device (:mod:`.slice_synthesis`), with lesions of their own generator (:mod:`.training_lesions`).
- Evaluation and calibration: volumes whose tissue labels are sampled from deformed atlas priors
  (:mod:`.anatomy`), rendered with realistic or randomised contrast (:mod:`.contrast`), with lesions painted in
  their own classes so that their masks are exact (:mod:`.lesions`). These functions take a
  ``numpy.random.Generator`` and work on 2D slices and 3D volumes alike.
"""

from disanatdetect.synth.anatomy import AnatomyConfig, sample_anatomy
from disanatdetect.synth.contrast import MODALITIES, ContrastConfig, render, sample_contrast
from disanatdetect.synth.labels import LESION_CLASSES, N_LABELS, Label
from disanatdetect.synth.lesions import LESION_TYPES, LesionConfig, add_lesion

__all__ = [
    "AnatomyConfig", "ContrastConfig", "LesionConfig", "Label", "LESION_CLASSES", "LESION_TYPES",
    "MODALITIES",
    "N_LABELS", "add_lesion", "render", "sample_anatomy", "sample_contrast",
]
