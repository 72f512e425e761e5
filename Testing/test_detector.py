"""The trained pipeline on synthetic cases, with the tiny model of the ``tiny_bundle`` fixture."""

import numpy as np
import pytest

from disanatdetect.calibration import healthy_scores
from disanatdetect.pipeline import DetectionConfig, analyse_atlas_space, infer_modality
from disanatdetect.preprocess import normalise_intensity
from disanatdetect.synth.cases import synthetic_case


def _analyse(detector, case, modality):
    brain = case.labels.array > 0
    image = normalise_intensity(case.image.array, brain)
    return analyse_atlas_space(detector.bundle.model, image, brain, detector.atlas, DetectionConfig(modality=modality))


def test_pseudo_healthy_is_close_on_healthy_tissue_and_far_inside_the_lesion(tiny_detector):
    case = synthetic_case(tiny_detector.atlas, 77, "flair", "tumour")
    result = _analyse(tiny_detector, case, "flair")
    lesion = case.lesion_mask.array > 0
    healthy_brain = (case.labels.array > 0) & ~lesion
    error = np.abs(result.image - result.pseudo_healthy)
    # the lesion is rebuilt as healthy tissue, so the scan departs from the PHI there several times more
    assert np.median(error[lesion]) > 3 * np.median(error[healthy_brain])
    assert np.median(error[healthy_brain]) < 0.15


def test_synthetic_tumour_is_found(tiny_detector):
    """Dice > 0.5 on a FLAIR tumour with the tiny model: a bright tumour against a PHI that shows white matter.

    The bound is set well below what the tiny model reaches (about 0.7), and far above what an unrelated mask
    would give (0): it fails if the reconstruction copies the lesion or the mask lands elsewhere.
    """
    case = synthetic_case(tiny_detector.atlas, 78, "flair", "tumour")
    result = tiny_detector.detect(case.image, DetectionConfig(modality="flair"))
    mask, reference = result.lesion_mask.array > 0, case.lesion_mask.array > 0
    dice = 2 * (mask & reference).sum() / (mask.sum() + reference.sum())
    assert dice > 0.5
    assert result.lesion_mask.same_grid(case.image)


def test_threshold_keeps_healthy_false_positives_rare(tiny_detector):
    scores = healthy_scores(tiny_detector.method, "flair", seed=123)
    threshold = tiny_detector.threshold_for("flair")
    assert (scores > threshold).mean() < 0.03  # calibrated at 1 % on another healthy volume


@pytest.mark.parametrize("modality", ["t1", "t2", "flair"])
def test_modality_is_recognised_from_tissue_intensities(tiny_detector, modality):
    case = synthetic_case(tiny_detector.atlas, 79, modality, "none")
    result = _analyse(tiny_detector, case, "flair")
    assert infer_modality(result.intensities) == modality


def test_rethreshold_changes_only_the_mask(tiny_detector):
    case = synthetic_case(tiny_detector.atlas, 80, "flair", "tumour")
    result = tiny_detector.detect(case.image)
    stricter = result.rethreshold(result.threshold * 2)
    assert stricter.anomaly_map is result.anomaly_map
    assert stricter.lesion_mask.array.sum() < result.lesion_mask.array.sum()
    assert stricter.lesion_volume_ml < result.lesion_volume_ml
