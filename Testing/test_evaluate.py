"""The benchmark harness on a folder of real NIfTI files: one lesioned case and one healthy case, DAL (the tiny
model of the ``tiny_bundle`` fixture) beside the thresholding baseline, through the detector's own path."""

import dataclasses

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


def test_results_read_back_as_the_evaluation_made_them(evaluation, tmp_path):
    rows = evaluation.rows
    read = harness.read_csv(harness.write_csv(rows, tmp_path / "results.csv"))
    assert read == rows  # every number exact, and no AP on the healthy case
    assert harness.versus_baseline_table(read) == harness.versus_baseline_table(rows)


def test_a_candidate_is_set_against_the_release_case_by_case(evaluation):
    release = [dict(r) for r in evaluation.rows]
    candidate = [dict(r) for r in evaluation.rows]
    rows = harness.versus_release_rows(release, candidate, "DAL 1", "DAL 2")
    assert {r["method"] for r in rows} == {"DAL 1", "DAL 2"} and len(rows) == 4  # DAL's rows only, both cases
    line = harness.versus_baseline_table(rows, method="DAL 2", baseline="DAL 1").splitlines()[2]
    assert "| 0 of 1 | 1 |" in line  # the same model wins nothing against itself
    patient = next(r for r in candidate if (r["case"], r["method"]) == ("patient", "DAL"))
    patient["best_dice"] += 0.01
    rows = harness.versus_release_rows(release, candidate, "DAL 1", "DAL 2")
    assert "| 1 of 1 | 1 |" in harness.versus_baseline_table(rows, method="DAL 2", baseline="DAL 1").splitlines()[2]


def test_a_candidates_gain_is_tested_case_by_case():
    def row(case, method, ap):
        return {"source": "real", "case": case, "modality": "t1", "method": method, "ap": ap, "best_dice": ap}

    release = [row(f"Brats18_{i}", "DAL 1", 0.5) for i in range(5)]
    candidate = [row(f"Brats18_{i}", "DAL 2", 0.5 + 0.01 * (i + 1)) for i in range(5)]  # +0.01 ... +0.05
    other = [row("ms-patient", "DAL 2", 0.0), row("ms-patient", "DAL 1", 0.9)]  # not named Brats18*
    table = harness.paired_differences_table(release + candidate + other, "DAL 2", "DAL 1",
                                             lesioned_prefix="Brats18").splitlines()
    # five gains of one sign: the exact two-sided signed-rank p is 2 / 2**5
    assert table[2] == "| t1 | ap | 5 | +0.030 | 0.016 | +0.010 | +0.050 | 0.062 |"
    itself = harness.paired_differences_table(release + other, "DAL 1", "DAL 1", lesioned_prefix="Brats18")
    assert itself.splitlines()[2] == "| t1 | ap | 5 | +0.000 | 0.000 | +0.000 | +0.000 | 1.000 |"


def test_healthy_false_positives_are_summed_up_per_modality_and_model():
    volumes = {"DAL 1": [0.0, 0.5, 2.0, 9.0], "DAL 2": [0.0, 0.0, 1.5]}
    rows = [{"source": "held-out", "case": f"healthy-{i}", "modality": "t2", "method": method,
             "false_positive_ml": volume} for method, values in volumes.items() for i, volume in enumerate(values)]
    lesioned = {"source": "held-out", "case": "tumour", "modality": "t2", "method": "DAL 1", "ap": 0.5,
                "false_positive_ml": 50.0}  # a lesioned case's false positives are not a healthy scan's
    other_source = dict(rows[0], source="real", false_positive_ml=70.0)
    table = harness.healthy_false_positive_table(rows + [lesioned, other_source], ["DAL 1", "DAL 2"],
                                                 source="held-out").splitlines()
    assert table[2] == "| t2 | DAL 1 | 4 | 2.9 | 1.2 | 2 | 9.0 |"  # mean 11.5 / 4, median of 0.5 and 2.0
    assert table[3] == "| t2 | DAL 2 | 3 | 0.5 | 0.0 | 1 | 1.5 |"
    assert harness.healthy_false_positive_table(rows, ["DAL 1"], source="synthetic") == ""


def test_retrained_ablations_are_named_by_the_parts_their_training_set_unlike_the_reference(tiny_bundle, tmp_path):
    from disanatdetect.bundle import load_bundle, write_bundle
    from disanatdetect.errors import InputError

    bundle = load_bundle(tiny_bundle)
    for name, change in (("reference", {"hard_one_hot": False}), ("no-restoration", {"use_restoration": False,
                         "hard_one_hot": False}), ("hard", {}), ("both", {"use_restoration": False})):
        write_bundle(bundle.model, "dal", {**bundle.manifest["model_config"], **change}, tmp_path / name, "0",
                     {"training": {"steps": 40}})
    soft_reference = {"use_restoration": True, "hard_one_hot": False, "use_priors": True}
    methods = {m.name: m for m in harness.retrained_ablations(tmp_path, "cpu", soft_reference)}
    assert set(methods) == {"DAL (40 steps)", "DAL w/o restoration (retrained, 40 steps)",
                            "DAL hard anatomy (retrained, 40 steps)",
                            "DAL w/o restoration hard anatomy (retrained, 40 steps)"}
    assert not methods["DAL w/o restoration (retrained, 40 steps)"].bundle.model.config.use_restoration
    assert methods["DAL hard anatomy (retrained, 40 steps)"].bundle.model.config.hard_one_hot
    assert not methods["DAL (40 steps)"].bundle.model.config.hard_one_hot
    hard_reference = {**soft_reference, "hard_one_hot": True}
    names = {m.name for m in harness.retrained_ablations(tmp_path, "cpu", hard_reference)}
    assert "DAL soft anatomy (retrained, 40 steps)" in names and "DAL (40 steps)" in names
    with pytest.raises(InputError, match="no DAL bundle"):
        harness.retrained_ablations(tmp_path / "reference" / "none", "cpu")


def test_the_train_command_starts_the_released_design_unless_a_part_is_set(tmp_path):
    from disanatdetect.cli import build_parser, new_run_config
    from disanatdetect.train import TrainConfig

    def model(*flags):
        return new_run_config(build_parser().parse_args(["train", "--out", str(tmp_path), *flags])).model

    released = TrainConfig().model
    assert model() == released
    assert model("--no-restoration") == dataclasses.replace(released, use_restoration=False)
    assert model("--hard-anatomy", "--no-priors") == dataclasses.replace(released, hard_one_hot=True,
                                                                         use_priors=False)
    assert model("--soft-anatomy", "--with-priors") == dataclasses.replace(released, hard_one_hot=False,
                                                                           use_priors=True)
    with pytest.raises(SystemExit):  # both settings of one part: refused, not the last one kept
        model("--hard-anatomy", "--soft-anatomy")


def test_ablation_table_compares_each_variant_with_its_reference_on_shared_cases():
    def row(method, case, ap, modality="t2"):
        return {"source": "real", "case": case, "modality": modality, "method": method, "ap": ap}

    rows = [row("DAL", "a", 0.6), row("DAL", "b", 0.4), row("DAL w/o CSF rule", "a", 0.5),
            row("DAL w/o CSF rule", "b", 0.1), row("DAL (40 steps)", "a", 0.3),
            row("DAL w/o priors (retrained, 40 steps)", "a", 0.35),
            row("DAL w/o priors (retrained, 40 steps)", "b", 0.9),  # its reference has no case b: not compared
            row("Threshold", "a", 0.9), {"source": "real", "case": "h", "modality": "t2", "method": "DAL",
                                         "false_positive_ml": 2.0}]
    lines = harness.ablation_table(rows).splitlines()
    assert lines[0] == "| variant | reference | t2 AP (change) |"
    assert lines[2:] == ["| DAL w/o CSF rule | DAL | 0.300 (-0.200) |",
                         "| DAL w/o priors (retrained, 40 steps) | DAL (40 steps) | 0.350 (+0.050) |"]
    assert harness.ablation_table([r for r in rows if r["method"] in ("DAL", "Threshold")]) == ""


def test_held_out_healthy_scans_come_from_held_out_subjects_and_new_seeds(label_maps, atlas):
    from disanatdetect.calibration import CalibrationConfig
    from disanatdetect.synth.healthy_scans import render_healthy_scan
    from disanatdetect.synth.label_bank import load_bank, split_subjects

    cases = list(harness.held_out_healthy_scans(2, ("t2",), str(label_maps), holdout_subjects=1))
    held_out = split_subjects(label_maps, 1)[1]
    assert [(c.source, c.modality) for c in cases] == [("held-out", "t2")] * 2
    assert all(c.name.startswith(held_out[0].name.split(".")[0]) and not c.reference.array.any() for c in cases)
    bank = load_bank(held_out, atlas)
    np.testing.assert_array_equal(cases[1].image.array,
                                  render_healthy_scan(bank, 0, "t2", harness.HELD_OUT_SEED + 1, atlas).array)
    calibration_seeds = range(CalibrationConfig().seed, CalibrationConfig().seed + 1000)
    assert harness.HELD_OUT_SEED not in calibration_seeds  # not the scans the thresholds were fitted on


def test_versus_baseline_table_keeps_the_named_lesioned_cases_and_every_healthy_one(evaluation):
    rows = [dict(r) for r in evaluation.rows]
    assert harness.versus_baseline_table(rows, lesioned_prefix="pat") == harness.versus_baseline_table(rows)
    line = harness.versus_baseline_table(rows, lesioned_prefix="other").splitlines()[2]
    assert line.startswith("| flair | 0 |") and "| 0 of 0 | 1 |" in line  # no lesioned case, the healthy one stays


def test_figures_are_drawn_from_one_kept_slice_per_case(evaluation, tmp_path):
    from disanatdetect.figures import method_panels

    patient, control = evaluation.panels[("real", "patient", "flair")], evaluation.panels[("real", "control", "flair")]
    assert patient["scan"].ndim == 2 and patient["reference"].any()  # the slice through the lesion
    assert not control["reference"].any()
    for method in ("DAL", "DAL w/o restoration", "Threshold"):
        assert [array.shape for array in patient[method]] == [patient["scan"].shape] * 3
    assert method_panels(tmp_path / "patient.png", patient, ["DAL", "Threshold"]).stat().st_size > 10_000


def test_a_long_curve_is_thinned_for_drawing_with_its_ends_and_order_kept():
    from disanatdetect.figures import CURVE_VERTICES, thinned

    recall = np.linspace(1.0, 0.0, 1_000_003)
    precision = np.sqrt(1.0 - recall)
    x, y = thinned(recall, precision)
    assert len(x) <= CURVE_VERTICES and x[0] == 1.0 and x[-1] == 0.0
    assert np.all(np.diff(x) < 0)  # a subset of the curve's points, in its order
    np.testing.assert_array_equal(y, np.sqrt(1.0 - x))
    short = np.arange(5.0)
    assert thinned(short, short)[0] is short  # a short curve is drawn as it is


def test_a_pooled_curve_reports_the_average_precision_of_its_pooled_voxels():
    from disanatdetect.figures import pooled_precision_recall
    from disanatdetect.metrics import average_precision

    rng = np.random.default_rng(3)
    pairs = []
    for size in (500, 2000, 50):
        labels = rng.random(size) < 0.2
        scores = np.round(rng.random(size) + 0.4 * labels, 2)  # ties, as in quantised anomaly maps
        pairs.append((scores, labels))
    precision, recall, pooled = pooled_precision_recall(pairs)
    scores, labels = (np.concatenate(part) for part in zip(*pairs))
    assert pooled == pytest.approx(average_precision(scores, labels), abs=1e-12)
    assert pooled != pytest.approx(np.mean([average_precision(s, y) for s, y in pairs]), abs=1e-6)
    assert recall[0] == 1.0 and recall[-1] == 0.0
