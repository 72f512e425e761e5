"""The model file cannot hurt the user: checksum, version and weights-only loading."""

import json
import pickle
import shutil

import pytest
import torch

from disanatdetect.bundle import load_bundle, sha256, write_bundle
from disanatdetect.errors import ModelError
from disanatdetect.models import DALConfig, build_model

SMALL = DALConfig(encoder_channels=4, restoration_channels=4, decoder_channels=4).to_dict()


@pytest.fixture
def bundle_dir(tmp_path):
    model = build_model("dal", SMALL)
    write_bundle(model, "dal", SMALL, tmp_path, "9.9.9", {"thresholds": {"default": 0.3}})
    return tmp_path


def test_round_trip(bundle_dir):
    bundle = load_bundle(bundle_dir / "manifest.json")
    assert bundle.version == "9.9.9" and bundle.thresholds == {"default": 0.3}
    reference = build_model("dal", SMALL)
    assert set(bundle.model.state_dict()) == set(reference.state_dict())


def test_tampered_weights_are_refused(bundle_dir):
    weights = bundle_dir / "dal-9.9.9.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum"):
        load_bundle(bundle_dir / "manifest.json")


def test_truncated_weights_are_refused(bundle_dir):
    weights = bundle_dir / "dal-9.9.9.pt"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelError, match="checksum"):
        load_bundle(bundle_dir / "manifest.json")


def test_wrong_format_version_is_refused(bundle_dir):
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["format"] = 99
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="format"):
        load_bundle(bundle_dir / "manifest.json")


class _Exploit:
    def __reduce__(self):
        return (shutil.copy, (__file__, str(_Exploit.target)))


def test_malicious_pickle_is_not_executed_even_with_a_matching_checksum(bundle_dir, tmp_path):
    # An attacker who replaces the weights can also rewrite the manifest's checksum: weights_only loading is
    # what stops the payload (here: copying a file to a marker path) from running.
    _Exploit.target = tmp_path / "payload-ran"
    weights = bundle_dir / "dal-9.9.9.pt"
    torch.save({"model": _Exploit()}, weights, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["sha256"] = sha256(weights)
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="cannot be loaded"):
        load_bundle(bundle_dir / "manifest.json")
    assert not _Exploit.target.exists()
    # and the payload is real: an unsafe load would have run it
    torch.load(weights, weights_only=False)
    assert _Exploit.target.exists()


def test_missing_manifest_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="cannot be read"):
        load_bundle(tmp_path / "manifest.json")


def test_recalibration_rewrites_only_the_thresholds(tiny_bundle, tmp_path, label_maps):
    from disanatdetect.calibration import CalibrationConfig, recalibrate

    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle.parent, copy)
    before = json.loads((copy / "manifest.json").read_text())
    config = CalibrationConfig(volumes_per_modality=1, modalities=("t2",), false_positive_rate=0.5,
                               max_false_positive_ml=1e9, label_maps=str(label_maps), holdout_subjects=1,
                               real_scans=())
    thresholds = recalibrate(copy / "manifest.json", config)
    after = json.loads((copy / "manifest.json").read_text())
    assert after["thresholds"] == thresholds and set(thresholds) == {"t2", "default"}
    assert after["calibration"]["false_positive_rate"] == 0.5
    assert {key: value for key, value in after.items() if key not in ("thresholds", "calibration")} == \
        {key: value for key, value in before.items() if key not in ("thresholds", "calibration")}
    assert load_bundle(copy / "manifest.json").threshold_for("t2") == thresholds["t2"]
    assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in tiny_bundle.parent.iterdir())
