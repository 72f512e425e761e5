import numpy as np
import pytest
from scipy import ndimage

from disanatdetect.synth import (LESION_TYPES, Label, add_lesion, render, sample_anatomy,
                                 sample_contrast)
from disanatdetect.synth.cases import synthetic_case, synthetic_cases


@pytest.fixture(scope="module")
def healthy_labels(atlas):
    return sample_anatomy(atlas.priors, np.random.default_rng(3))


def test_anatomy_is_deterministic_per_seed_and_differs_between_seeds(atlas):
    priors = atlas.priors[:, 50]
    first = sample_anatomy(priors, np.random.default_rng(5))
    np.testing.assert_array_equal(first, sample_anatomy(priors, np.random.default_rng(5)))
    other = sample_anatomy(priors, np.random.default_rng(6))
    assert (first != other).mean() > 0.02


def test_anatomy_resembles_the_priors(atlas, healthy_labels):
    brain = healthy_labels > 0
    overlap = (brain & atlas.brain_mask).sum() / max(brain.sum(), atlas.brain_mask.sum())
    assert overlap > 0.85
    counts = np.bincount(healthy_labels.ravel(), minlength=4)
    assert counts[Label.GREY_MATTER] > counts[Label.CSF] and counts[Label.WHITE_MATTER] > counts[Label.CSF]


def test_cases_are_deterministic_and_differ_between_seeds(atlas):
    first = synthetic_case(atlas, 11, "t2", "ms")
    again = synthetic_case(atlas, 11, "t2", "ms")
    np.testing.assert_array_equal(first.image.array, again.image.array)
    np.testing.assert_array_equal(first.lesion_mask.array, again.lesion_mask.array)
    other = synthetic_case(atlas, 12, "t2", "ms")
    assert np.abs(first.image.array - other.image.array).mean() > 0.01


def test_one_anatomy_in_several_modalities_equals_the_cases_made_one_by_one(atlas):
    together = list(synthetic_cases(atlas, 11, ("t2", "flair"), "ms"))
    assert [case.modality for case in together] == ["t2", "flair"]
    for case in together:
        alone = synthetic_case(atlas, 11, case.modality, "ms")
        np.testing.assert_array_equal(case.image.array, alone.image.array)
        np.testing.assert_array_equal(case.lesion_mask.array, alone.lesion_mask.array)
    assert np.abs(together[0].image.array - together[1].image.array).mean() > 0.01


@pytest.mark.parametrize("kind", LESION_TYPES)
def test_lesion_lies_in_the_brain_and_its_mask_is_where_intensities_changed(atlas, healthy_labels, kind):
    rng = np.random.default_rng(21)
    lesioned, mask = add_lesion(healthy_labels, kind, rng, atlas.config.spacing_mm)
    assert mask.dtype == np.uint8 and mask.sum() > 20
    assert not (mask.astype(bool) & (healthy_labels == Label.BACKGROUND)).any()
    np.testing.assert_array_equal(mask > 0, lesioned >= Label.OEDEMA)
    contrast = sample_contrast(np.random.default_rng(2), "flair")
    contrast.blur_sigma, contrast.downsample_axis = 0.0, None  # compare voxel by voxel
    difference = np.abs(render(lesioned, contrast) - render(healthy_labels, contrast)) > 1e-6
    if kind == "tumour":  # mass effect moves tissue around the tumour too, but only nearby
        # the push stops at three core radii (at most 3 x 14 mm = 28 voxels from the centre)
        near = ndimage.distance_transform_edt(mask == 0) < 28
        assert difference[mask > 0].mean() > 0.9 and not (difference & ~near).any()
    else:
        assert difference[mask > 0].mean() > 0.9
        np.testing.assert_array_equal(difference & (mask == 0), np.zeros_like(difference))


def test_lesion_input_is_not_modified(healthy_labels):
    before = healthy_labels.copy()
    add_lesion(healthy_labels, "tumour", np.random.default_rng(0))
    np.testing.assert_array_equal(before, healthy_labels)


@pytest.mark.parametrize("modality,brighter", [("flair", True), ("t2", True), ("t1", False)])
def test_tumour_contrast_is_correct(atlas, modality, brighter):
    case = synthetic_case(atlas, 4, modality, "tumour")
    labels, image = case.labels.array, case.image.array
    oedema = np.median(image[labels == Label.OEDEMA])
    white = np.median(image[labels == Label.WHITE_MATTER])
    assert (oedema > 1.2 * white) if brighter else (oedema < 0.8 * white)


def test_enhancing_rim_is_bright_on_t1c_only(atlas):
    t1c = synthetic_case(atlas, 4, "t1c", "tumour")
    t1 = synthetic_case(atlas, 4, "t1", "tumour")
    rim = t1c.labels.array == Label.ENHANCING
    white = t1c.labels.array == Label.WHITE_MATTER
    assert np.median(t1c.image.array[rim]) > 1.1 * np.median(t1c.image.array[white])
    assert np.median(t1.image.array[rim]) < np.median(t1.image.array[white])


