"""Synthetic brains: healthy anatomy sampled from the priors, contrasts, and lesions with exact masks.

Healthy training data is synthesised, never downloaded: tissue labels are sampled from deformed atlas priors
(:mod:`.anatomy`), rendered with realistic or randomised contrast (:mod:`.contrast`), and lesions are painted into
the labels with their own classes so that their masks are exact (:mod:`.lesions`). Every function takes a
``numpy.random.Generator`` and works on 2D slices and 3D volumes alike.
"""

from disanatdetect.synth.anatomy import AnatomyConfig, sample_anatomy
from disanatdetect.synth.batches import BatchConfig, healthy_slice_batch
from disanatdetect.synth.contrast import MODALITIES, ContrastConfig, render, sample_contrast
from disanatdetect.synth.labels import LESION_CLASSES, N_LABELS, Label
from disanatdetect.synth.lesions import LESION_TYPES, LesionConfig, add_lesion

__all__ = [
    "AnatomyConfig", "BatchConfig", "ContrastConfig", "LesionConfig", "Label", "LESION_CLASSES", "LESION_TYPES",
    "MODALITIES",
    "N_LABELS", "add_lesion", "healthy_slice_batch", "render", "sample_anatomy", "sample_contrast",
]
