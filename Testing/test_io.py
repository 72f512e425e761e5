import numpy as np
import pytest
import SimpleITK as sitk

from disanatdetect.errors import InputError
from disanatdetect.io import Volume, read_volume, write_volume


def oblique_volume(rng, dtype=np.int16) -> Volume:
    angle = np.deg2rad(23.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    tilt = np.array([[1, 0, 0], [0, np.cos(0.3), -np.sin(0.3)], [0, np.sin(0.3), np.cos(0.3)]])
    array = rng.integers(-100, 3000, size=(7, 20, 16)).astype(dtype)
    return Volume(array, spacing=(0.9, 0.85, 5.5), origin=(12.5, -80.25, 33.0), direction=rotation @ tilt)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_round_trip_keeps_array_and_geometry(tmp_path, rng, suffix):
    volume = oblique_volume(rng)
    path = write_volume(volume, tmp_path / f"scan{suffix}")
    back = read_volume(path)
    assert back.array.dtype == volume.array.dtype
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.spacing, volume.spacing, atol=1e-5)
    np.testing.assert_allclose(back.origin, volume.origin, atol=1e-4)
    np.testing.assert_allclose(back.direction, volume.direction, atol=1e-5)
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-4)


def test_affine_matches_nibabel(tmp_path, rng):
    nibabel = pytest.importorskip("nibabel")
    volume = oblique_volume(rng)
    path = write_volume(volume, tmp_path / "scan.nii.gz")
    image = nibabel.load(path)
    np.testing.assert_allclose(image.affine, volume.affine, atol=1e-4)
    # nibabel indexes [i, j, k]; the volume array is [k, j, i].
    np.testing.assert_array_equal(np.asarray(image.dataobj), volume.array.transpose(2, 1, 0))


def test_dicom_series_folder_is_read_with_its_geometry(tmp_path, rng):
    volume = Volume(rng.integers(0, 1000, size=(5, 12, 10)).astype(np.int16), spacing=(0.8, 0.8, 3.0),
                    origin=(-20.0, 10.0, 5.0))
    image = volume.to_sitk()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        slice_image = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in {
            "0008|0060": "MR", "0020|000d": "1.2.3.4", "0020|000e": "1.2.3.4.5", "0020|0037": "1\\0\\0\\0\\1\\0",
            "0020|0032": "\\".join(map(str, position)), "0020|0013": str(k + 1), "0028|0030": "0.8\\0.8",
            "0018|0050": "3.0", "0008|0018": f"1.2.3.4.5.{k + 1}",
        }.items():
            slice_image.SetMetaData(tag, value)
        writer.SetFileName(str(tmp_path / f"slice{k:03d}.dcm"))
        writer.Execute(slice_image)
    back = read_volume(tmp_path)
    assert back.shape == volume.shape
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.spacing, volume.spacing, atol=1e-4)
    np.testing.assert_allclose(back.origin, volume.origin, atol=1e-4)


def test_write_is_atomic_and_leaves_no_temporary(tmp_path, rng):
    write_volume(oblique_volume(rng), tmp_path / "out.nii.gz")
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]


@pytest.mark.parametrize("content", [b"", b"not an image at all"])
def test_unreadable_file_is_one_clear_error(tmp_path, content):
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(content)
    with pytest.raises(InputError, match="could not be read"):
        read_volume(path)


def test_missing_file_and_empty_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_volume(tmp_path / "nothing.nii.gz")
    with pytest.raises(InputError, match="without a DICOM series"):
        read_volume(tmp_path)
