"""The command line as a user meets it: files in, files out, one-line errors."""

import json

import nibabel
import numpy as np
import pytest

from disanatdetect.cli import OUTPUT_NAMES, main
from disanatdetect.io import Volume, read_volume, write_volume
from disanatdetect.synth.cases import synthetic_case


@pytest.fixture(scope="module")
def synthetic_flair(tmp_path_factory, atlas):
    folder = tmp_path_factory.mktemp("input")
    case = synthetic_case(atlas, 5, "flair", "tumour")
    # store it as int16 with an oblique, anisotropic header to check the outputs keep the input grid
    image = Volume((case.image.array * 1000).astype(np.int16), case.image.spacing, case.image.origin,
                   case.image.direction)
    return write_volume(image, folder / "flair.nii.gz"), case


def test_detect_writes_four_outputs_on_the_input_grid(tmp_path, tiny_bundle, synthetic_flair, capsys):
    path, case = synthetic_flair
    before = path.read_bytes()
    code = main(["detect", str(path), "--out", str(tmp_path / "out"), "--model", str(tiny_bundle), "--device",
                 "cpu", "--quiet"])
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(OUTPUT_NAMES)
    reference = nibabel.load(path)
    for name in OUTPUT_NAMES[:3]:
        output = nibabel.load(tmp_path / "out" / name)
        assert output.shape == reference.shape
        np.testing.assert_allclose(output.affine, reference.affine, atol=1e-4)
    mask = nibabel.load(tmp_path / "out" / "lesion_mask.nii.gz")
    assert mask.get_data_dtype() == np.uint8 and set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["modality"] == "flair" and report["lesion_count"] == len(report["lesions"]) >= 1
    assert report["model_version"] == "0.0.0-test"
    assert {"read", "register", "reconstruct", "resample_back", "write"} <= set(report["timings_s"])
    voxel_ml = np.prod(case.image.spacing) / 1000
    assert report["lesion_volume_ml"] == pytest.approx(np.asarray(mask.dataobj).sum() * voxel_ml, rel=1e-3)
    assert path.read_bytes() == before  # the input file is never modified


def test_existing_outputs_are_kept_without_overwrite(tmp_path, tiny_bundle, synthetic_flair, capsys):
    path, _ = synthetic_flair
    out = tmp_path / "out"
    out.mkdir()
    (out / "lesion_mask.nii.gz").write_bytes(b"precious")
    code = main(["detect", str(path), "--out", str(out), "--model", str(tiny_bundle), "--quiet"])
    assert code == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "lesion_mask.nii.gz").read_bytes() == b"precious"
    assert [p.name for p in out.iterdir()] == ["lesion_mask.nii.gz"]


@pytest.mark.parametrize("make,message", [
    (lambda p: p.write_bytes(b"garbage"), "could not be read"),
    (lambda p: write_volume(Volume(np.full((20, 20, 20), 7.0, np.float32)), p), "constant"),
    (lambda p: write_volume(Volume(np.where(np.indices((20, 30, 30)).sum(0) % 7 == 0, np.nan, 1.0)
                                   .astype(np.float32)), p), "NaN"),
    (lambda p: None, "does not exist"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, tiny_bundle, capsys, make, message):
    path = tmp_path / "bad.nrrd"  # NRRD keeps NaN (ITK's NIfTI reader turns NaN into 0)
    make(path)
    out = tmp_path / "out"
    code = main(["detect", str(path), "--out", str(out), "--model", str(tiny_bundle), "--quiet"])
    error = capsys.readouterr().err.strip()
    assert code == 2
    assert message in error and error.startswith("error: ") and len(error.splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_damaged_model_is_refused(tmp_path, tiny_bundle, synthetic_flair, capsys):
    manifest = json.loads(tiny_bundle.read_text())
    weights = (tiny_bundle.parent / manifest["weights"]).read_bytes()
    (tmp_path / manifest["weights"]).write_bytes(weights[:-10] + b"0123456789")
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    path, _ = synthetic_flair
    code = main(["detect", str(path), "--out", str(tmp_path / "out"), "--model", str(tmp_path / "manifest.json")])
    assert code == 3
    assert "checksum" in capsys.readouterr().err


def test_synth_is_deterministic_per_seed(tmp_path):
    for folder in ("a", "b"):
        assert main(["synth", "--out", str(tmp_path / folder), "--n", "1", "--modality", "t2", "--lesion", "ms",
                     "--seed", "3", "--quiet"]) == 0
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["ms_t2_3_000_image.nii.gz", "ms_t2_3_000_mask.nii.gz"]
    for name in names:
        np.testing.assert_array_equal(read_volume(tmp_path / "a" / name).array,
                                      read_volume(tmp_path / "b" / name).array)
    assert read_volume(tmp_path / "a" / names[1]).array.sum() > 0


def test_label_map_and_4d_inputs_are_refused(tmp_path, tiny_bundle, capsys):
    import SimpleITK as sitk

    labels = tmp_path / "seg.nii.gz"
    write_volume(Volume((np.indices((30, 30, 30)).sum(0) % 4).astype(np.uint8)), labels)
    series = tmp_path / "series.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.random.default_rng(0).random((3, 10, 10, 10)).astype(np.float32),
                                           isVector=False), str(series))
    for path, message in ((labels, "label map"), (series, "4D")):
        out = tmp_path / f"out-{path.stem}"
        assert main(["detect", str(path), "--out", str(out), "--model", str(tiny_bundle), "--quiet"]) == 2
        error = capsys.readouterr().err.strip()
        assert message in error and len(error.splitlines()) == 1
        assert not out.exists()
