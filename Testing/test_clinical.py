"""Clinical scans as they come: rotated, anisotropic, with non-brain tissue around the brain.

Uses the shipped model on a real case; a known transform is applied to the scan and its reference, and the
detection on the transformed scan must agree with the detection on the original within 0.10 Dice.
"""

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from disanatdetect.bundle import DEFAULT_BUNDLE
from disanatdetect.io import Volume
from disanatdetect.io import read_volume
from disanatdetect.metrics import dice

pytestmark = pytest.mark.skipif(not DEFAULT_BUNDLE.exists(), reason="the shipped model bundle is not built yet")


@pytest.fixture(scope="module")
def detector():
    from disanatdetect.pipeline import Detector

    return Detector(device="cpu")


def _with_head(volume: Volume) -> Volume:
    """Surround the brain with meninges, bone and scalp shells (15 mm in all), like an unstripped scan."""
    brain = volume.array > 0
    distance = ndimage.distance_transform_edt(~brain, sampling=volume.spacing[::-1])
    top = float(np.percentile(volume.array[brain], 99))
    rng = np.random.default_rng(0)
    shells = np.select([(distance > 0) & (distance <= 4), (distance > 4) & (distance <= 9),
                        (distance > 9) & (distance <= 15)], [0.25 * top, 0.05 * top, 1.1 * top], 0.0)
    noisy = shells * (1 + 0.1 * rng.standard_normal(shells.shape)) * (shells > 0)
    return volume.with_array(np.where(brain, volume.array, noisy).astype(np.float32))


def test_skull_is_recognised(real_data):
    from disanatdetect.brain_extraction import has_skull

    stripped = read_volume(real_data / "TCGA-DU-7294" / "flair.nii.gz")
    assert not has_skull(stripped)
    assert has_skull(_with_head(stripped))
    assert has_skull(read_volume(real_data / "TCGA-FG-6692" / "native" / "flair.nii.gz"))


def _transform(volume: Volume, reference: Volume, seed: int) -> tuple[Volume, Volume]:
    """Rotate by a random angle (up to 20 degrees per axis) and resample to 1 x 1.2 x 4 mm, as a scanner would."""
    rng = np.random.default_rng(seed)
    image = volume.to_sitk()
    centre = image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()])
    rotation = sitk.Euler3DTransform(centre, *np.deg2rad(rng.uniform(-20, 20, 3)))
    new_spacing = (1.0, 1.2, 4.0)
    size = [int(n * s / t) for n, s, t in zip(image.GetSize(), image.GetSpacing(), new_spacing)]
    direction = np.array(rotation.GetMatrix()).reshape(3, 3) @ np.array(image.GetDirection()).reshape(3, 3)
    grid = sitk.Image(size, sitk.sitkFloat32)
    grid.SetSpacing(new_spacing)
    grid.SetDirection(tuple(direction.ravel()))
    grid.SetOrigin(tuple(np.array(centre) - direction @ (np.array(size) - 1) * np.array(new_spacing) / 2))
    moved = sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), grid, sitk.Transform(), sitk.sitkLinear, 0.0)
    moved_reference = sitk.Resample(reference.to_sitk(), grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return Volume.from_sitk(moved), Volume.from_sitk(moved_reference)


@pytest.mark.slow
def test_rotated_anisotropic_scan_with_head_gives_the_same_answer(detector, real_data):
    case = real_data / "TCGA-DU-7294"
    scan, reference = read_volume(case / "flair.nii.gz"), read_volume(case / "reference.nii.gz")
    original = detector.detect(scan)
    dice_original = dice(original.lesion_mask.array, reference.array > 0)
    moved_scan, moved_reference = _transform(_with_head(scan), reference, seed=2)
    moved = detector.detect(moved_scan)
    assert moved.lesion_mask.same_grid(moved_scan) and moved.anomaly_map.same_grid(moved_scan)
    dice_moved = dice(moved.lesion_mask.array, moved_reference.array > 0)
    assert dice_original > 0.3  # the comparison means something only if the original finds the tumour
    assert abs(dice_moved - dice_original) < 0.10


@pytest.mark.slow
def test_rotated_anisotropic_scan_gives_the_same_answer(detector, real_data):
    """The same without the head: orientation and anisotropic thick slices alone."""
    case = real_data / "TCGA-DU-7294"
    scan, reference = read_volume(case / "flair.nii.gz"), read_volume(case / "reference.nii.gz")
    dice_original = dice(detector.detect(scan).lesion_mask.array, reference.array > 0)
    moved_scan, moved_reference = _transform(scan, reference, seed=2)
    moved = detector.detect(moved_scan)
    assert moved.lesion_mask.same_grid(moved_scan)
    assert abs(dice(moved.lesion_mask.array, moved_reference.array > 0) - dice_original) < 0.10


@pytest.mark.slow
def test_native_scan_mask_lies_on_the_tumour(detector, real_data):
    """The native FLAIR (skull on, 0.9 x 0.9 x 5.5 mm, 26 slices): outputs on its grid, and the mask's centroid,
    carried by a rigid registration onto the same patient's SRI24 FLAIR, falls inside the reference tumour."""
    from disanatdetect.brain_extraction import extract_brain
    from disanatdetect.preprocess import register_rigid

    case = real_data / "TCGA-FG-6692"
    native = read_volume(case / "native" / "flair.nii.gz")
    result = detector.detect(native)
    mask = result.lesion_mask
    assert mask.same_grid(native) and result.anomaly_map.same_grid(native) and mask.array.sum() > 0
    # The registration sees the native brain only, as the SRI24 scan is skull-stripped.
    brain_only = native.with_array(np.where(extract_brain(native), native.array, 0))
    # Fixed SRI24, moving native: the transform maps SRI24 points to native ones, its inverse the other way.
    native_to_sri24 = register_rigid(read_volume(case / "flair.nii.gz"), brain_only).GetInverse()
    reference = read_volume(case / "reference.nii.gz").to_sitk()
    centroid = np.argwhere(mask.array).mean(0)[::-1]  # (i, j, k)
    point = native_to_sri24.TransformPoint(native.to_sitk().TransformContinuousIndexToPhysicalPoint(centroid))
    index = reference.TransformPhysicalPointToIndex(point)
    assert reference[index] > 0, f"the mask's centroid maps to {point} (SRI24), outside the tumour"


@pytest.mark.slow
def test_the_encoder_takes_the_head_out_of_a_skull_on_scans_brain_mask(detector, all_label_maps):
    """A healthy head rendered from a held-out subject: the mask that brain extraction leaves takes in scalp and
    orbits; what the encoder calls background must remove most of that and keep the brain."""
    import dataclasses

    from disanatdetect.dal_inference import brain_seen_by_encoder
    from disanatdetect.spatial import mask_on_working_grid, prepare_scan
    from disanatdetect.synth.healthy_scans import SKULL_ON, render_healthy_scan
    from disanatdetect.synth.label_bank import load_bank, split_subjects

    atlas = detector.atlas
    bank = load_bank(split_subjects(all_label_maps, 4)[1][:1], atlas)
    one_mm = dataclasses.replace(SKULL_ON, spacings_mm=((1.0, 1.0, 1.0),))
    head = render_healthy_scan(bank, 0, "t2", 5, atlas, one_mm)
    stripped = render_healthy_scan(bank, 0, "t2", 5, atlas, dataclasses.replace(one_mm, with_head=False))
    prepared = prepare_scan(head, atlas)
    truth = mask_on_working_grid(stripped.with_array((stripped.array > 0).astype(np.uint8)), atlas,
                                 prepared.transform)
    seen = brain_seen_by_encoder(detector.bundle.model, prepared.image, prepared.brain, atlas)
    outside_before, outside_after = (prepared.brain & ~truth).sum(), (seen & ~truth).sum()
    assert outside_before > 0.05 * truth.sum()  # the extracted mask does take in the head
    assert outside_after < 0.5 * outside_before
    assert (seen & truth).sum() > 0.95 * (prepared.brain & truth).sum()
    assert dice(seen, truth) > dice(prepared.brain, truth)
