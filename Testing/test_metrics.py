"""Metrics against hand-computed cases."""

import numpy as np
import pytest

from disanatdetect import metrics


def test_average_precision_hand_computed():
    # ranking: 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg): precision at the two hits is 1 and 2/3
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    reference = np.array([1, 0, 1, 0])
    assert metrics.average_precision(scores, reference) == pytest.approx((1 + 2 / 3) / 2)


def test_auroc_hand_computed():
    # of the 4 positive-negative pairs, 3 are ordered correctly
    assert metrics.auroc(np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 0, 1, 0])) == pytest.approx(0.75)


def test_dice_and_threshold():
    assert metrics.dice(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0])) == pytest.approx(2 / 3)
    assert metrics.dice(np.zeros(3), np.zeros(3)) == 1.0
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    assert metrics.dice_at_threshold(scores, np.array([1, 0, 1, 0]), 0.75) == pytest.approx(0.5)


def test_best_dice_searches_every_threshold():
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    reference = np.array([1, 0, 1, 0])
    # cuts: {0.9} -> 2/3, {0.9, 0.8} -> 1/2, {0.9, 0.8, 0.7} -> 4/5, all -> 2/3
    best, threshold = metrics.best_dice(scores, reference)
    assert best == pytest.approx(0.8)
    assert 0.1 < threshold < 0.7
    assert metrics.dice_at_threshold(scores, reference, threshold) == pytest.approx(best)


def test_best_dice_does_not_split_ties():
    scores = np.array([0.5, 0.5, 0.5, 0.1])
    reference = np.array([1, 0, 0, 0])
    # taking only the positive of the tie is impossible: best is 1 voxel of 3 -> 2*1/(3+1) or the empty cut
    best, _ = metrics.best_dice(scores, reference)
    assert best == pytest.approx(0.5)


def test_region_restricts_the_voxels():
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    reference = np.array([1, 0, 1, 0])
    region = np.array([True, False, True, True])
    assert metrics.average_precision(scores, reference, region) == pytest.approx(1.0)


def test_lesion_detection_rate_and_false_positives():
    reference = np.zeros((10, 10, 10), np.uint8)
    reference[1:3, 1:3, 1:3] = 1
    reference[6:8, 6:8, 6:8] = 1
    prediction = np.zeros_like(reference)
    prediction[2, 2, 2] = 1  # touches the first lesion only
    prediction[0, 9, 9] = 1  # a false positive voxel
    assert metrics.lesion_detection_rate(prediction, reference) == 0.5
    assert metrics.false_positive_volume_ml(prediction, reference, 0.001) == pytest.approx(0.001)
    assert np.isnan(metrics.lesion_detection_rate(prediction, np.zeros_like(reference)))


def test_restoration_shares_count_each_region():
    expected = np.full((2, 5), 3)
    encoded = expected.copy()
    encoded[0, :4] = 1  # the lesion (row 0, columns 0-3) reads as CSF
    restored = expected.copy()
    restored[0, 0] = 1  # the restoration turns three of its four voxels back
    restored[1, 4] = 2  # and changes one healthy voxel of five
    lesion = np.zeros((2, 5), bool)
    lesion[0, :4] = True
    brain = np.ones((2, 5), bool)
    brain[0, 4] = False
    shares = metrics.restoration_shares(encoded, restored, expected, lesion, brain)
    assert shares == {"lesion_expected_encoded": 0.0, "lesion_expected_restored": 0.75, "lesion_changed": 0.75,
                      "healthy_changed": 0.2}
    assert np.isnan(metrics.restoration_shares(encoded, restored, expected, lesion & False, brain)["lesion_changed"])
