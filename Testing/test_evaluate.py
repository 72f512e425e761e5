"""The benchmark harness on a folder of real NIfTI files: one lesioned case and one healthy case, DAL (the tiny
model of the ``tiny_bundle`` fixture) beside the thresholding baseline, through the detector's own path."""

import numpy as np
import pytest

from disanatdetect import evaluate as harness
from disanatdetect.baselines import ThresholdMethod
from disanatdetect.io import write_volume
from disanatdetect.synth.cases import synthetic_case


@pytest.fixture(scope="module")
def evaluation(tiny_detector, tmp_path_factory):
    root = tmp_path_factory.mktemp("cases")
    lesioned = synthetic_case(tiny_detector.atlas, 90, "flair", "tumour")
    write_volume(lesioned.image, root / "patient" / "flair.nii.gz")
    write_volume(lesioned.lesion_mask, root / "patient" / "reference.nii.gz")
    healthy = synthetic_case(tiny_detector.atlas, 91, "flair", "none")
    write_volume(healthy.image, root / "control" / "flair.nii.gz")  # no reference: a healthy case
    without_restoration = next(v for v in harness.ablations(tiny_detector.method) if v.name == "DAL w/o restoration")
    methods = [tiny_detector.method, without_restoration, ThresholdMethod()]
    return harness.evaluate(methods, harness.folder_cases(root, ("flair",)))


def test_every_method_scores_every_case(evaluation):
    rows = {(r["case"], r["method"]): r for r in evaluation.rows}
    assert set(rows) == {(case, method) for case in ("control", "patient")
                         for method in ("DAL", "DAL w/o restoration", "Threshold")}
    for method in ("DAL", "Threshold"):
        patient, control = rows[("patient", method)], rows[("control", method)]
        assert 0 < patient["ap"] <= 1 and patient["dice"] <= patient["best_dice"] <= 1
        assert "ap" not in control and control["false_positive_ml"] == control["lesion_ml"]


def test_restoration_shares_are_measured_for_dal_on_lesioned_cases(evaluation):
    rows = {(r["case"], r["method"]): r for r in evaluation.rows}
    shares = ("lesion_expected_encoded", "lesion_expected_restored", "lesion_changed", "healthy_changed")
    dal, unrestored = rows[("patient", "DAL")], rows[("patient", "DAL w/o restoration")]
    assert all(0 <= dal[key] <= 1 for key in shares)
    assert dal["lesion_changed"] > 0 and dal["healthy_changed"] > 0  # the tiny model's restoration changes things
    # without restoration the restored anatomy is the encoded one: nothing changes, and the encoder is shared
    assert unrestored["lesion_changed"] == unrestored["healthy_changed"] == 0
    assert unrestored["lesion_expected_restored"] == unrestored["lesion_expected_encoded"] \
        == dal["lesion_expected_encoded"]
    assert not any(key in rows[("patient", "Threshold")] or key in rows[("control", "DAL")] for key in shares)


def test_versus_baseline_table_counts_wins_and_healthy_scans(evaluation):
    rows = [dict(r) for r in evaluation.rows]
    table = harness.versus_baseline_table(rows)
    dal = next(r for r in rows if (r["case"], r["method"]) == ("patient", "DAL"))
    threshold = next(r for r in rows if (r["case"], r["method"]) == ("patient", "Threshold"))
    won = int(dal["best_dice"] > threshold["best_dice"])
    line = table.splitlines()[2]
    assert line.startswith("| flair | 1 |") and f"| {won} of 1 | 1 |" in line
    dal["best_dice"], threshold["best_dice"] = 0.9, 0.1  # the count follows the numbers
    assert "| 1 of 1 | 1 |" in harness.versus_baseline_table(rows).splitlines()[2]
    assert harness.versus_baseline_table([r for r in rows if r["method"] == "DAL"]).count("\n") == 2  # healthy only
