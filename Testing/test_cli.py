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


def test_shipped_demo_scan_is_readable_with_its_geometry():
    """The demo's real FLAIR and its reference: int16 and uint8 NIfTI on one grid, the whole lesion inside."""
    from disanatdetect.cli import DEMO_SCAN_DIR

    flair, reference = (nibabel.load(DEMO_SCAN_DIR / name) for name in ("flair.nii.gz", "reference.nii.gz"))
    assert flair.get_data_dtype() == np.int16 and reference.get_data_dtype() == np.uint8
    assert flair.shape == reference.shape == (137, 170, 139)
    np.testing.assert_allclose(flair.affine, reference.affine)
    np.testing.assert_allclose(np.abs(np.linalg.det(flair.affine[:3, :3])), 1.0)  # 1 mm voxels
    image, labels = np.asarray(flair.dataobj), np.asarray(reference.dataobj)
    assert (labels > 0).sum() / 1000 == pytest.approx(24.188)  # mL, the same as the uncropped reference
    assert (image[labels > 0] > 0).all()  # the lesion lies in the brain
    for axis in range(3):  # the crop leaves a margin of background around the head
        assert not np.take(image, [0, -1], axis=axis).any()
    volume = read_volume(DEMO_SCAN_DIR / "flair.nii.gz")  # the reader the pipeline uses sees the same geometry
    np.testing.assert_allclose(volume.affine, flair.affine, atol=1e-5)
    assert volume.shape == image.shape[::-1]


def test_shipped_demo_scan_keeps_the_source_voxel_positions(real_data):
    """Cropping moved no voxel: a voxel of the shipped files, carried through the two affines, is the same voxel of
    the source case with the same value."""
    from disanatdetect.cli import DEMO_CASE, DEMO_SCAN_DIR

    for name in ("flair.nii.gz", "reference.nii.gz"):
        shipped, source = nibabel.load(DEMO_SCAN_DIR / name), nibabel.load(real_data / DEMO_CASE / name)
        shipped_array, source_array = np.asarray(shipped.dataobj), np.asarray(source.dataobj)
        rng = np.random.default_rng(0)
        voxels = np.concatenate([rng.integers(0, shipped.shape, size=(200, 3)),
                                 np.argwhere(shipped_array > 0)[::997], [[0, 0, 0], np.array(shipped.shape) - 1]])
        world = nibabel.affines.apply_affine(shipped.affine, voxels)
        at_source = nibabel.affines.apply_affine(np.linalg.inv(source.affine), world)
        np.testing.assert_allclose(at_source, np.round(at_source), atol=1e-4)
        at_source = np.round(at_source).astype(int)
        np.testing.assert_array_equal(shipped_array[tuple(voxels.T)], source_array[tuple(at_source.T)])
        assert source_array.astype(np.int64).sum() == shipped_array.astype(np.int64).sum()  # nothing cut off


def test_demo_refuses_another_contrast_for_the_shipped_scan(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path / "out"), "--modality", "t2", "--quiet"])
    assert code == 2
    assert "--synthetic" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_demo_detects_on_the_shipped_scan_and_draws_the_figure(tmp_path, capsys):
    """``disanatdetect demo``: detect's outputs on the shipped scan's grid, the figure, the volume and the Dice."""
    from disanatdetect.bundle import DEFAULT_BUNDLE
    from disanatdetect.cli import DEMO_SCAN_DIR

    if not DEFAULT_BUNDLE.exists():
        pytest.skip("the shipped model bundle is not built")
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "mL" in printed and "Dice" in printed and "demo.png" in printed
    scan = nibabel.load(DEMO_SCAN_DIR / "flair.nii.gz")
    for name in OUTPUT_NAMES[:3]:
        output = nibabel.load(out / name)
        assert output.shape == scan.shape
        np.testing.assert_allclose(output.affine, scan.affine, atol=1e-4)
    report = json.loads((out / "report.json").read_text())
    assert report["modality"] == "flair" and report["input_shape"] == list(scan.shape)
    assert (out / "input" / "reference.nii.gz").read_bytes() == (DEMO_SCAN_DIR / "reference.nii.gz").read_bytes()
    assert (out / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_demo_synthetic_case_still_runs(tmp_path, capsys):
    from disanatdetect.bundle import DEFAULT_BUNDLE

    if not DEFAULT_BUNDLE.exists():
        pytest.skip("the shipped model bundle is not built")
    out = tmp_path / "demo"
    assert main(["demo", "--synthetic", "--out", str(out), "--modality", "t2", "--lesion", "ms", "--seed", "2",
                 "--device", "cpu", "--quiet"]) == 0
    assert json.loads((out / "report.json").read_text())["modality"] == "t2"
    assert (out / "input" / "synthetic_t2.nii.gz").exists() and (out / "demo.png").exists()


def test_evaluate_on_unstripped_healthy_scans_alone(tmp_path, all_label_maps, capsys):
    """Healthy scans alone have no lesion curve to draw; rendered with their heads, they go through extraction."""
    out = tmp_path / "evaluation"
    assert main(["evaluate", "--held-out-healthy", "1", "--with-head", "--methods", "threshold",
                 "--modalities", "t2", "--label-maps", str(all_label_maps), "--out", str(out), "--quiet"]) == 0
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("held-out,") and "-head," in rows[1]
    assert not (out / "pr_curves.png").exists()
    false_positive_ml = float(rows[1].split(",")[rows[0].split(",").index("false_positive_ml")])
    assert f"| t2 | Threshold | 1 | {false_positive_ml:.1f} |" in (out / "results.md").read_text()  # its own table
