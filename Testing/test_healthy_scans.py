"""Healthy scans rendered from held-out label maps: what calibration and the false-positive checks run on."""

import numpy as np
import pytest

from disanatdetect.synth.healthy_scans import render_healthy_scan
from disanatdetect.synth.label_bank import load_bank, split_subjects


@pytest.fixture(scope="module")
def held_out_bank(label_maps, atlas):
    return load_bank(split_subjects(label_maps, 1)[1], atlas)


def test_a_healthy_scan_is_determined_by_its_seed(held_out_bank, atlas):
    first = render_healthy_scan(held_out_bank, 0, "t2", 5, atlas)
    again = render_healthy_scan(held_out_bank, 0, "t2", 5, atlas)
    other = render_healthy_scan(held_out_bank, 0, "t2", 6, atlas)
    np.testing.assert_array_equal(first.array, again.array)
    assert first.affine.tolist() == again.affine.tolist()
    assert first.shape != other.shape or not np.array_equal(first.array, other.array)


def test_a_healthy_scan_is_a_skull_stripped_brain_off_the_atlas_grid(held_out_bank, atlas):
    scan = render_healthy_scan(held_out_bank, 0, "flair", 7, atlas)
    assert not scan.same_grid(atlas.template)  # the detector must register it like any scan
    brain = scan.array > 0
    volume_ml = brain.sum() * np.prod(scan.spacing) / 1000
    # a whole brain with its CSF and nothing around it, MNI-sized (the bank lies in atlas space; MNI's
    # intracranial volume is about 1.9 L) and scaled by up to 8 % per axis
    assert 1200 < volume_ml < 2600
    assert not brain[0].any() and not brain[-1].any()  # the grid holds the brain with a margin


def test_a_skull_on_scan_is_a_head_whose_brain_extraction_finds_the_brain(held_out_bank, atlas):
    """With its head, the same seed puts the same brain in the same place; extraction must find that brain."""
    import dataclasses

    import SimpleITK as sitk

    from disanatdetect.brain_extraction import extract_brain, has_skull
    from disanatdetect.metrics import dice
    from disanatdetect.synth.healthy_scans import SKULL_ON

    one_mm = dataclasses.replace(SKULL_ON, spacings_mm=((1.0, 1.0, 1.0),))
    head = render_healthy_scan(held_out_bank, 0, "t1", 3, atlas, one_mm)
    stripped = render_healthy_scan(held_out_bank, 0, "t1", 3, atlas, dataclasses.replace(one_mm, with_head=False))
    assert has_skull(head) and not has_skull(stripped)
    assert (head.array > 0).mean() > 0.99  # noise over the whole field of view, as a scanner's image
    mask = stripped.with_array((stripped.array > 0).astype(np.uint8)).to_sitk()
    brain = sitk.GetArrayFromImage(sitk.Resample(mask, head.to_sitk(), sitk.Transform(),
                                                 sitk.sitkNearestNeighbor)) > 0
    # the stripped brain lies whole inside the head's grid (the two grids differ by a fraction of a voxel)
    assert abs(brain.sum() / (stripped.array > 0).sum() - 1) < 0.02
    # a brain mask in the wrong place, or the head's outline, would overlap far less
    assert dice(extract_brain(head), brain) > 0.85
