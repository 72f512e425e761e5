"""The trained pipeline on synthetic cases, with the tiny model of the ``tiny_bundle`` fixture."""

import copy
import dataclasses
import math

import numpy as np
import pytest

from disanatdetect.bundle import DEFAULT_BUNDLE
from disanatdetect.calibration import (THRESHOLD_DECIMALS, CalibrationConfig, HealthyMap, calibrate_thresholds,
                                       false_positive_ml, healthy_maps, lowest_clean_threshold, thresholds_from_maps)
from disanatdetect.dal_inference import analyse_atlas_space
from disanatdetect.pipeline import DetectionConfig, Detector
from disanatdetect.postprocess import PostprocessConfig
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

    The bound leaves room for the tiny model's coarse reconstruction and is far above what a mask placed elsewhere
    would give (0): it fails if the reconstruction copies the lesion or the mask lands elsewhere.
    """
    case = synthetic_case(tiny_detector.atlas, 78, "flair", "tumour")
    result = tiny_detector.detect(case.image, DetectionConfig(modality="flair"))
    mask, reference = result.lesion_mask.array > 0, case.lesion_mask.array > 0
    dice = 2 * (mask & reference).sum() / (mask.sum() + reference.sum())
    assert dice > 0.5
    assert result.lesion_mask.same_grid(case.image)


@pytest.fixture(scope="module")
def shipped_detector():
    if not DEFAULT_BUNDLE.exists():
        pytest.skip("the shipped model bundle is not built")
    return Detector(device="cpu")


def _held_out_scans(label_maps, **settings) -> CalibrationConfig:
    """Calibration on one rendered scan of the test bank's held-out subject, no real scan."""
    return CalibrationConfig(volumes_per_modality=1, modalities=("t2",), seed=321, label_maps=str(label_maps),
                             holdout_subjects=1, real_scans=(), **settings)


def test_calibrated_threshold_has_the_asked_false_positive_rate(tiny_detector, label_maps):
    rate = 0.002
    config = _held_out_scans(label_maps, false_positive_rate=rate, max_false_positive_ml=None)
    thresholds = calibrate_thresholds(tiny_detector.method, config)
    (healthy,) = healthy_maps(tiny_detector.method, config)["t2"]
    scores = healthy.anomaly[healthy.brain]
    # Counted, not compared as rates: whatever interpolation a library's quantile uses, the (1 - rate) quantile of
    # n scores lies between two neighbouring sorted scores, so rate * n of them, give or take one, lie above it
    # (plus voxels tied at it); the stored threshold is that quantile rounded up by less than one step of the
    # stored decimals, so only scores within that step of the quantile may fall below the threshold.
    allowed = rate * scores.size
    step = 10.0 ** -THRESHOLD_DECIMALS
    assert np.count_nonzero(scores > thresholds["t2"]) <= math.ceil(allowed)
    assert np.count_nonzero(scores > thresholds["t2"] - step) >= math.floor(allowed) - 1
    assert thresholds["default"] == thresholds["t2"]


def test_calibrated_threshold_keeps_healthy_volumes_clean(tiny_detector, label_maps):
    # a voxel rate of one half leaves the decision to the lesion-volume limit
    config = _held_out_scans(label_maps, false_positive_rate=0.5, max_false_positive_ml=0.5)
    threshold = calibrate_thresholds(tiny_detector.method, config)["t2"]
    (healthy,) = healthy_maps(tiny_detector.method, config)["t2"]
    assert false_positive_ml(healthy, threshold) <= 0.5 < false_positive_ml(healthy, threshold * 0.97)


@pytest.mark.parametrize("max_ml,grow,expected", [(0.5, 1.0, 0.8), (1.1, 1.0, 0.6), (2.0, 1.0, 0.1), (8.0, 1.0, 0.0),
                                                  (2.0, 0.8, 0.125)])
def test_lowest_clean_threshold_by_hand(max_ml, grow, expected):
    """1 mm voxels, score 0.1 everywhere (8 mL); a 1 mL block at 0.8 and, apart from it, a 0.32 mL block at 0.6.
    Grown to 0.8 of the threshold, the blocks reach into the background until the threshold exceeds 0.1 / 0.8."""
    anomaly = np.full((20, 20, 20), 0.1, np.float32)
    anomaly[:10, :10, :10] = 0.8
    anomaly[12:, 12:, 12:17] = 0.6
    healthy = HealthyMap(anomaly, np.ones(anomaly.shape, bool), spacing_mm=(1.0, 1.0, 1.0))
    postprocess = PostprocessConfig(grow_fraction=grow, grow_reach_mm=None)
    assert lowest_clean_threshold(healthy, max_ml, postprocess) == pytest.approx(expected, abs=1e-6)


def _blocks(high_score: float) -> HealthyMap:
    """1 mm voxels, score 0.1 everywhere; a 1 mL block at ``high_score``."""
    anomaly = np.full((20, 20, 20), 0.1, np.float32)
    anomaly[:10, :10, :10] = high_score
    return HealthyMap(anomaly, np.ones(anomaly.shape, bool), spacing_mm=(1.0, 1.0, 1.0))


def test_lowest_clean_threshold_starts_where_asked():
    postprocess = PostprocessConfig(grow_fraction=1.0, grow_reach_mm=None)
    assert lowest_clean_threshold(_blocks(0.6), 0.5, postprocess, low=0.7) == 0.7  # already clean there
    assert lowest_clean_threshold(_blocks(0.6), 0.5, postprocess, low=0.3) == pytest.approx(0.6, abs=1e-6)


def test_volume_limit_is_the_strictest_scans():
    """The lesion-volume limit raises a modality's threshold to what its worst healthy scan needs, whatever the
    order of the scans."""
    maps = [_blocks(0.4), _blocks(0.7), _blocks(0.5)]
    config = CalibrationConfig(false_positive_rate=0.5, max_false_positive_ml=0.5)  # voxel limit 0.1: no say
    for order in (maps, maps[::-1]):
        thresholds = thresholds_from_maps({"t2": order}, config)
        assert thresholds["t2"] == pytest.approx(0.7, abs=2e-5) and thresholds["default"] == thresholds["t2"]


@pytest.mark.parametrize("modality", ["t1", "t2", "flair"])
def test_shipped_model_recognises_the_modality(shipped_detector, modality):
    case = synthetic_case(shipped_detector.atlas, 79, modality, "none")
    result = _analyse(shipped_detector, case, "auto")
    assert result.modality == modality


def test_rethreshold_changes_only_the_mask(tiny_detector):
    case = synthetic_case(tiny_detector.atlas, 80, "flair", "tumour")
    result = tiny_detector.detect(case.image)
    stricter = result.rethreshold(result.threshold * 2)
    assert stricter.anomaly_map is result.anomaly_map
    assert stricter.lesion_mask.array.sum() < result.lesion_mask.array.sum()
    assert stricter.lesion_volume_ml < result.lesion_volume_ml


def test_ablation_variants_change_what_they_name(tiny_detector):
    """The harness's DAL variants share one set of weights and each changes only its own part."""
    from disanatdetect.evaluate import ablations

    method = tiny_detector.method
    variants = {v.name: v for v in ablations(method)
                if v.bundle.model.anatomy_encoder is method.bundle.model.anatomy_encoder}
    assert set(variants) == {"DAL w/o restoration", "DAL soft anatomy", "DAL w/o CSF rule", "DAL w/o encoder's brain"}
    soft_model = copy.copy(method.bundle.model)  # a model trained soft reads its anatomy one-hot in the variant
    soft_model.config = dataclasses.replace(soft_model.config, hard_one_hot=False)
    soft_method = copy.copy(method)
    soft_method.bundle = dataclasses.replace(method.bundle, model=soft_model)
    hard = next(v for v in ablations(soft_method) if v.name == "DAL hard anatomy")
    assert hard.bundle.model.config.hard_one_hot and not soft_model.config.hard_one_hot
    case = synthetic_case(tiny_detector.atlas, 81, "t2", "tumour")
    brain = case.labels.array > 0
    image = normalise_intensity(case.image.array, brain)
    config = DetectionConfig(modality="t2")
    full = method.analyse(image, brain, config)
    without_restoration = variants["DAL w/o restoration"].analyse(image, brain, config)
    np.testing.assert_array_equal(without_restoration.restored, without_restoration.encoded)
    np.testing.assert_array_equal(without_restoration.encoded, full.encoded)
    without_rule = variants["DAL w/o CSF rule"].analyse(image, brain, config)
    np.testing.assert_array_equal(without_rule.pseudo_healthy, full.pseudo_healthy)
    explained = (full.encoded == 1) & (full.restored == 1)  # the rule's voxels (the rule itself: anomaly_score)
    assert (full.score[explained] == 0).all()
    np.testing.assert_array_equal(without_rule.score[~explained], full.score[~explained])
    soft = variants["DAL soft anatomy"].analyse(image, brain, config)
    assert not np.array_equal(soft.pseudo_healthy, full.pseudo_healthy)
    as_extracted = variants["DAL w/o encoder's brain"].analyse(image, brain, config)
    np.testing.assert_array_equal(as_extracted.brain, brain)
    assert as_extracted.scale == 1.0
    assert not (full.brain & ~brain).any() and (full.score[~full.brain] == 0).all()
