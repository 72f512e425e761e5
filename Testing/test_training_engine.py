"""The training engine: real anatomy in the label bank, batches on the training device, runs that stop and go."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from disanatdetect.synth.label_bank import label_map_paths, load_bank
from disanatdetect.synth.slice_synthesis import SliceSynthesiser, SynthesisConfig
from disanatdetect.synth.structures import (FIRST_LESION, HEAD, Structure, freesurfer_lookup,
                                            preset_means, tissue_class_table)
from disanatdetect.synth.training_lesions import LESION_KINDS
from disanatdetect.train import (TrainConfig, ValidationConfig, batch_for_memory, load_run_config, tissue_dice,
                                 train)
from disanatdetect.models import DALConfig

TINY = DALConfig(encoder_channels=4, restoration_channels=4, decoder_channels=4, depth=3)


@pytest.fixture(scope="module")
def synthesiser(atlas, label_maps):
    bank = load_bank(label_map_paths(label_maps)[:2], atlas)
    return SliceSynthesiser(bank, atlas, SynthesisConfig(batch_size=4))


def test_label_mapping_covers_every_label_of_the_maps(all_label_maps):
    for path in label_map_paths(all_label_maps):
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.int64)
        structures = freesurfer_lookup(labels)  # raises on a label without a structure
        assert (structures == Structure.AIR).sum() == (labels == 0).sum(), path.name


def test_unknown_labels_are_named():
    with pytest.raises(ValueError, match=r"\[77\]"):
        freesurfer_lookup(np.array([0, 2, 77]))


def test_every_healthy_structure_has_a_tissue_class_and_every_preset_an_intensity():
    for deep in (False, True):
        table = tissue_class_table(deep)
        assert (table[:FIRST_LESION] >= 0).all() and (table[FIRST_LESION:] == -1).all()
        assert (table[list(HEAD)] == 0).all()
    assert tissue_class_table(True)[Structure.THALAMUS] == 4 and tissue_class_table(False)[Structure.THALAMUS] == 2
    for modality in ("t1", "t1c", "t2", "flair", "pd"):
        assert (preset_means(modality)[1:] > 0).all() and preset_means(modality)[0] == 0


def test_bank_lies_on_the_atlas(atlas, synthesiser):
    # the registered subjects' brains cover the atlas brain: tissue where the atlas says brain
    batch = synthesiser.batch(seed=3, step=0, lesions=False)
    prior_brain = batch["priors"][:, 0] < 0.5
    brain = batch["labels"] > 0
    overlap = 2 * (brain & prior_brain).sum() / (brain.sum() + prior_brain.sum())
    assert overlap > 0.8


def test_a_batch_is_a_function_of_seed_and_step(synthesiser):
    first, again, other = synthesiser.batch(0, 5), synthesiser.batch(0, 5), synthesiser.batch(0, 6)
    for name in first:
        assert torch.equal(first[name], again[name]), name
    assert not torch.equal(first["image_a"], other["image_a"])
    assert not torch.equal(synthesiser.batch(1, 5)["image_a"], first["image_a"])


def test_batch_contents(synthesiser, atlas):
    batch = synthesiser.batch(0, 1)
    b = synthesiser.config.batch_size
    shape = atlas.template.shape[1:]
    assert batch["image_a"].shape == batch["image_lesioned"].shape == (b, 1) + shape
    assert batch["labels"].shape == batch["lesion"].shape == (b,) + shape
    assert batch["priors"].shape == (b, 4) + shape
    for name in ("image_a", "image_b", "image_lesioned"):
        image = batch[name]
        assert torch.isfinite(image).all() and image.min() >= 0 and image.max() <= 2.0
    # two contrasts of one anatomy: different intensities, and nothing outside the brain unless the head is kept
    assert (batch["image_a"] - batch["image_b"]).abs().mean() > 0.01
    assert set(batch["labels"].unique().tolist()) <= {0, 1, 2, 3}


def test_lesions_change_the_image_only_around_the_lesion(synthesiser):
    batch = synthesiser.batch(2, 0)
    for index, kind in enumerate(batch["lesion_kind"].tolist()):
        lesion = batch["lesion"][index]
        difference = (batch["image_lesioned"][index, 0] - batch["image_a"][index, 0]).abs()
        if LESION_KINDS[kind] == "none":
            assert not lesion.any() and difference.max() < 1e-6
        elif lesion.sum() > 20 and LESION_KINDS[kind] != "tumour":  # no mass effect: only the lesion differs
            far = ~torch.nn.functional.max_pool2d(lesion[None, None].float(), 9, 1, 4)[0, 0].bool()
            # the per-slice normalisation may rescale the whole image a little
            assert difference[lesion].mean() > 3 * difference[far].mean()
        # the lesioned image without its lesion (the PHI's target) is the lesioned image away from the lesion
        near = torch.nn.functional.max_pool2d(lesion[None, None].float(), 9, 1, 4)[0, 0].bool()
        healthy_part = (batch["image_lesioned"][index, 0] - batch["image_displaced"][index, 0]).abs()
        assert healthy_part[~near].mean() < 0.02
        if lesion.sum() > 20:
            assert healthy_part[lesion].mean() > 3 * healthy_part[~near].mean()


def test_forced_modality_and_no_lesions(synthesiser):
    batch = synthesiser.batch(4, 0, modality="flair", lesions=False)
    assert not batch["lesion"].any()
    assert torch.equal(batch["labels"], batch["labels_lesioned"])
    # FLAIR: CSF darker than white matter
    image, labels = batch["image_a"][:, 0], batch["labels"]
    assert image[labels == 1].median() < image[labels == 3].median()


def test_tissue_dice_counts():
    predicted = torch.tensor([[0, 1, 1, 2]])
    labels = torch.tensor([[0, 1, 2, 2]])
    counts = tissue_dice(predicted, labels, 3)
    assert counts.tolist() == [[1, 2], [1, 3], [1, 3]]


@pytest.mark.parametrize("per_anatomy,free,expected", [(1e6, 1e9, 512), (1e8, 1e10, 56), (1e9, 1e9, 8)])
def test_batch_for_memory(per_anatomy, free, expected):
    assert batch_for_memory(per_anatomy, free) == expected


def _config(out, label_maps, steps):
    return TrainConfig(out_dir=str(out), steps=steps, warmup_steps=1, log_every=1, checkpoint_every=2,
                       label_maps=str(label_maps), holdout_subjects=1, model=TINY,
                       synthesis=SynthesisConfig(batch_size=2), validation=ValidationConfig(every=0))


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path, label_maps):
    whole = _config(tmp_path / "whole", label_maps, 4)
    train(whole, progress=False)
    # the interrupted run: stopped by its time limit after its first step, then continued from its folder alone
    interrupted = _config(tmp_path / "pieces", label_maps, 4)
    interrupted.max_minutes = 1e-9
    interrupted.export_bundle = False  # as started with --no-export
    train(interrupted, progress=False)
    stopped = torch.load(tmp_path / "pieces" / "last.pt", weights_only=True)["step"]
    assert 0 < stopped < 4
    with (tmp_path / "pieces" / "log.jsonl").open("a") as log:  # as a run killed after its checkpoint leaves it
        log.write(json.dumps({"step": stopped + 1, "total": 0.0}) + "\n")
    resumed = load_run_config(tmp_path / "pieces")
    assert resumed.max_minutes == 0.0  # the stopped piece's time limit is not the continuation's
    assert resumed.export_bundle is False  # but whether its end is exported is the run's own
    train(resumed, resume=True, progress=False)
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "pieces" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    steps = [json.loads(line)["step"] for line in (tmp_path / "pieces" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # each step once: the killed run's record past its checkpoint was dropped


def test_a_restarted_run_replaces_the_logs_of_the_one_before(tmp_path, label_maps):
    config = _config(tmp_path, label_maps, 4)
    config.log_every = 2
    train(config, progress=False)
    config.steps = 2
    train(config, resume=False, progress=False)
    steps = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == [2]
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 2


def test_gpu_script_smoke_mode_runs_on_cpu(tmp_path, label_maps):
    from conftest import REPOSITORY

    spec = importlib.util.spec_from_file_location("gpu_training_run", REPOSITORY / "Resources" / "gpu_training_run.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "gpu-run"
    assert script.main([str(out), "--smoke", "--device", "cpu", "--label-maps", str(label_maps)]) == 0
    for name in ("last.pt", "config.json", "log.jsonl", "validation.jsonl", "training_curves.png",
                 "environment.json", "throughput.json"):
        assert (out / name).exists(), name
    result = json.loads((out / "throughput.json").read_text())
    assert result["steps"] == 3 and result["images_per_second"] > 0 and result["steps_in_8_minutes"] > 0
    validation = json.loads((out / "validation.jsonl").read_text().splitlines()[-1])
    assert len(validation["dice_t1"]) == 3


def test_train_command_refuses_bad_folders_in_one_line(tmp_path, capsys):
    from disanatdetect.cli import main

    assert main(["train", "--out", str(tmp_path / "run"), "--label-maps", str(tmp_path)]) == 2
    assert main(["train", "--out", str(tmp_path / "none"), "--resume"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2
    assert "no label maps" in errors[0] and "--label-maps" in errors[0]
    assert "no run to resume" in errors[1]


def test_curves_draw_a_validation_log_whose_false_positive_check_runs_less_often(tmp_path):
    from disanatdetect.figures import training_curves

    (tmp_path / "log.jsonl").write_text("".join(json.dumps({"step": s, "total": 1.0 / s}) + "\n" for s in (25, 50)))
    dice = {"dice_t1": [0.5, 0.6, 0.7]}
    records = [{"step": 25, **dice, "healthy_fp_ml_t2": 3.0}, {"step": 50, **dice}]
    (tmp_path / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert training_curves(tmp_path).stat().st_size > 0


@pytest.mark.parametrize("ablation", [{"hard_one_hot": False}, {"use_restoration": False}, {"use_priors": False}])
def test_each_ablation_trains(tmp_path, label_maps, ablation):
    config = _config(tmp_path, label_maps, 2)
    config.model = dataclasses.replace(TINY, **ablation)
    train(config, progress=False)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(np.isfinite(r["total"]) for r in records)
    assert json.loads((tmp_path / "config.json").read_text())["model"] == config.model.to_dict()
