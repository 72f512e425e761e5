"""What the user chooses in the module, as plain data shared by the GUI's parameter node and the logic.

The GUI's ``parameterNodeWrapper`` (in ``DisAnatDetect.py``; it needs Slicer's Qt layer) takes its choices, ranges
and defaults from here, and the logic accepts the same spellings, so a script and the GUI behave the same.
"""

from __future__ import annotations

from disanatdetect.errors import InputError

MODULE_NAME = "DisAnatDetect"

# As shown in the GUI; the core pipeline spells modalities in lower case and calls the GPU "cuda".
MODALITY_CHOICES = ("auto", "T1", "T1c", "T2", "FLAIR", "PD")
DEVICE_CHOICES = ("auto", "CPU", "GPU")
_CORE_DEVICES = {"auto": "auto", "cpu": "cpu", "gpu": "cuda", "cuda": "cuda"}

# Anomaly scores are residuals of intensities normalised to the brain's 99th percentile, so a useful threshold lies
# well inside [0, 1]; the slider covers that range finely rather than the (clipped) maximum of 2.
THRESHOLD_RANGE = (0.0, 1.0)
THRESHOLD_STEP = 0.005
THRESHOLD_DECIMALS = 3
# Shown on the slider until a result brings the model's own label-free threshold for the scan's modality.
INITIAL_THRESHOLD = 0.2

# Opacity of the anomaly map drawn over the input in the slice views: enough to read the scan beneath.
DEFAULT_OVERLAY_OPACITY = 0.5

# Pipeline stages in order (the same names as ``disanatdetect.pipeline.STAGES``, which imports torch) and the rough
# share of the run time each takes on a CPU, so that one progress bar moves at a steady pace.
STAGES = ("preparing", "registering", "reconstructing", "post-processing")
STAGE_WEIGHTS = (5, 30, 55, 10)


def coreModality(modality: str | None) -> str:
    """The core's spelling of a modality choice ("FLAIR" -> "flair"); unknown names raise :class:`InputError`."""
    value = (modality or "auto").strip().lower()
    known = tuple(choice.lower() for choice in MODALITY_CHOICES)
    if value not in known:
        raise InputError(f"unknown modality {modality!r}; use one of {', '.join(MODALITY_CHOICES)}.")
    return value


def coreDevice(device: str | None) -> str:
    """The core's spelling of a device choice ("GPU" -> "cuda"); unknown names raise :class:`InputError`."""
    value = (device or "auto").strip().lower()
    if value not in _CORE_DEVICES:
        raise InputError(f"unknown device {device!r}; use one of {', '.join(DEVICE_CHOICES)}.")
    return _CORE_DEVICES[value]


def overallProgress(stage: str, fraction: float) -> int:
    """Percent done over the whole run, from the current pipeline stage and the fraction of that stage."""
    index = STAGES.index(stage) if stage in STAGES else 0
    fraction = min(max(float(fraction), 0.0), 1.0)
    done = sum(STAGE_WEIGHTS[:index]) + STAGE_WEIGHTS[index] * fraction
    return int(round(100.0 * done / sum(STAGE_WEIGHTS)))
