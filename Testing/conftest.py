"""Shared fixtures: the atlas, the real example cases, and small volumes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("DISANATDETECT_REAL_DATA", REPOSITORY.parent / "shared" / "data" / "real"))
LABEL_MAPS = Path(os.environ.get("DISANATDETECT_LABEL_MAPS",
                                 REPOSITORY.parent / "shared" / "data" / "anatomy" / "synthseg"))
TEST_SUBJECTS = 3  # the first two train, the third is held out: a bank that builds in seconds


@pytest.fixture(scope="session")
def atlas():
    from disanatdetect.atlas import load_atlas

    return load_atlas()


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The folder of real example cases (TCIA gliomas); tests that need it are skipped without it."""
    if not (REAL_DATA / "TCGA-DU-7294" / "flair.nii.gz").exists():
        pytest.skip(f"real example cases not found at {REAL_DATA} (set DISANATDETECT_REAL_DATA)")
    return REAL_DATA


@pytest.fixture(scope="session")
def all_label_maps() -> Path:
    """The real label maps of healthy heads; tests that need them are skipped without them."""
    if not any(LABEL_MAPS.glob("*.nii*")):
        pytest.skip(f"label maps not found at {LABEL_MAPS} (set DISANATDETECT_LABEL_MAPS)")
    return LABEL_MAPS


@pytest.fixture(scope="session")
def label_maps(all_label_maps, tmp_path_factory) -> Path:
    """A folder with the first few real label maps (links), for training tests."""
    folder = tmp_path_factory.mktemp("label-maps")
    for path in sorted(all_label_maps.glob("*.nii*"))[:TEST_SUBJECTS]:
        (folder / path.name).symlink_to(path)
    return folder


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, label_maps) -> Path:
    """A tiny DAL really trained for a few steps on synthetic data, calibrated on FLAIR, written as a bundle.

    Small enough to train in about a minute on two CPU cores; used wherever a test needs a working model without
    depending on the shipped weights.
    """
    from disanatdetect.calibration import CalibrationConfig
    from disanatdetect.models import DALConfig
    from disanatdetect.synth.slice_synthesis import SynthesisConfig
    from disanatdetect.train import TrainConfig, ValidationConfig, export_bundle, train

    out = tmp_path_factory.mktemp("tiny-model")
    config = TrainConfig(out_dir=str(out), steps=300, warmup_steps=10, checkpoint_every=10_000, log_every=50,
                         learning_rate=4e-3, model=DALConfig(encoder_channels=6, restoration_channels=6,
                                                             decoder_channels=4, depth=3),
                         synthesis=SynthesisConfig(batch_size=4), label_maps=str(label_maps), holdout_subjects=1,
                         validation=ValidationConfig(every=0))
    checkpoint = train(config, progress=False)
    # A tiny model reconstructs less precisely: its threshold allows 1 % healthy false-positive voxels, not 0.1 %,
    # and no limit on their lesion volume.
    calibration = CalibrationConfig(volumes_per_modality=1, modalities=("flair",), false_positive_rate=0.01,
                                    max_false_positive_ml=None)
    return export_bundle(checkpoint, config, out / "bundle", "0.0.0-test", "test fixture", calibration)


@pytest.fixture(scope="session")
def tiny_detector(tiny_bundle):
    from disanatdetect.bundle import load_bundle
    from disanatdetect.pipeline import Detector

    return Detector(load_bundle(tiny_bundle), device="cpu")
