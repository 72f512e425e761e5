"""Evaluation metrics: pure functions of scores, masks and references.

Average precision and AUROC come from scikit-learn (``average_precision_score``, ``roc_auc_score``), which
implement them exactly and are widely cited; the rest is written here. "Pooled" means over all voxels of all
volumes of a set together; per-volume values are averaged by the caller.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score


def _flat(scores: np.ndarray, reference: np.ndarray, region: np.ndarray | None):
    scores, reference = np.asarray(scores, dtype=np.float64), np.asarray(reference) > 0
    if region is not None:
        region = np.asarray(region, dtype=bool)
        return scores[region], reference[region]
    return scores.ravel(), reference.ravel()


def average_precision(scores, reference, region=None) -> float:
    """Area under the precision-recall curve (scikit-learn's step-wise AP); NaN without positive voxels."""
    s, y = _flat(scores, reference, region)
    return float(average_precision_score(y, s)) if y.any() else float("nan")


def auroc(scores, reference, region=None) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    s, y = _flat(scores, reference, region)
    return float(roc_auc_score(y, s)) if 0 < y.sum() < y.size else float("nan")


def dice(prediction, reference) -> float:
    """Dice overlap of two binary masks; 1.0 when both are empty."""
    p, r = np.asarray(prediction) > 0, np.asarray(reference) > 0
    total = p.sum() + r.sum()
    return 1.0 if total == 0 else float(2.0 * (p & r).sum() / total)


def dice_at_threshold(scores, reference, threshold: float, region=None) -> float:
    """Dice of ``scores > threshold`` against the reference (inside ``region``)."""
    s, y = _flat(scores, reference, region)
    return dice(s > threshold, y)


def best_dice(scores, reference, region=None) -> tuple[float, float]:
    """Best possible Dice over all thresholds, and the threshold reaching it (the literature's "⌈Dice⌉").

    It picks the threshold on the case's own reference, so it is an upper bound for comparison with papers,
    not what a user gets. Exact: every distinct score is tried, in O(n log n).
    """
    s, y = _flat(scores, reference, region)
    positives = int(y.sum())
    if positives == 0:
        return float("nan"), float("nan")
    order = np.argsort(-s, kind="stable")
    sorted_scores, hits = s[order], y[order]
    true_positives = np.cumsum(hits)
    predicted = np.arange(1, len(s) + 1)
    # only cut between distinct scores: a threshold cannot separate tied voxels
    last_of_tie = np.append(sorted_scores[1:] != sorted_scores[:-1], True)
    dices = np.where(last_of_tie, 2.0 * true_positives / (predicted + positives), -1.0)
    best = int(np.argmax(dices))
    below = sorted_scores[best + 1] if best + 1 < len(s) else sorted_scores[best] - 1.0
    return float(dices[best]), float((sorted_scores[best] + below) / 2.0)


def lesion_detection_rate(prediction, reference) -> float:
    """Share of the reference's connected lesions (26-connected) that the prediction touches; NaN without any."""
    labels, count = ndimage.label(np.asarray(reference) > 0, structure=np.ones((3,) * np.ndim(reference)))
    if count == 0:
        return float("nan")
    hit = np.unique(labels[(np.asarray(prediction) > 0) & (labels > 0)])
    return float(len(hit) / count)


def false_positive_volume_ml(prediction, reference, voxel_volume_ml: float) -> float:
    """Volume (mL) predicted as lesion outside the reference; for healthy volumes, all that is predicted."""
    return float(((np.asarray(prediction) > 0) & ~(np.asarray(reference) > 0)).sum() * voxel_volume_ml)


def restoration_shares(encoded, restored, expected, lesion, brain) -> dict[str, float]:
    """What the restoration does to a lesion, from tissue-class maps on one grid.

    ``expected`` is the healthy tissue class a voxel should have (the atlas's most likely one). Returns the share
    of lesion voxels whose encoded and whose restored class is the expected one (the restoration should raise it),
    and the share of voxels the restoration changes inside the lesion and in the rest of the brain (it should
    change the first and leave the second). NaN where a region is empty.
    """
    encoded, restored, expected = (np.asarray(a) for a in (encoded, restored, expected))
    lesion = (np.asarray(lesion) > 0) & np.asarray(brain, dtype=bool)
    rest = np.asarray(brain, dtype=bool) & ~lesion
    changed = encoded != restored

    def share(values: np.ndarray, region: np.ndarray) -> float:
        return float(values[region].mean()) if region.any() else float("nan")

    return {"lesion_expected_encoded": share(encoded == expected, lesion),
            "lesion_expected_restored": share(restored == expected, lesion),
            "lesion_changed": share(changed, lesion),
            "healthy_changed": share(changed, rest)}
