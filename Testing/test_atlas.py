import numpy as np
from scipy import ndimage

from disanatdetect.atlas import BACKGROUND, CSF, GREY_MATTER, WHITE_MATTER, load_atlas


def test_priors_are_probabilities_that_sum_to_one(atlas):
    assert atlas.priors.shape[0] == 4
    assert atlas.priors.shape[1:] == atlas.template.shape
    assert atlas.priors.min() >= 0
    np.testing.assert_allclose(atlas.priors.sum(0), 1.0, atol=1e-5)


def test_brain_is_plausible_and_inside_the_grid(atlas):
    voxel_ml = atlas.config.spacing_mm ** 3 / 1000
    assert 1200 < atlas.brain_mask.sum() * voxel_ml < 2200  # adult brain incl. cerebellum, in mL
    mask = atlas.brain_mask
    # the working grid holds the whole brain: nothing on its in-plane faces, little on its first and last slices
    assert not mask[:, [0, -1]].any() and not mask[:, :, [0, -1]].any()
    assert mask[[0, -1]].sum() < 0.05 * mask.sum(axis=(1, 2)).max()


def test_white_matter_lies_inside_grey_matter(atlas):
    # Cortex wraps white matter: WM voxels are deeper below the brain surface than GM voxels.
    depth = ndimage.distance_transform_edt(atlas.brain_mask)
    classes = atlas.priors.argmax(0)
    assert np.median(depth[classes == WHITE_MATTER]) > 1.5 * np.median(depth[classes == GREY_MATTER])
    # and the outermost brain layer is grey matter or CSF, almost never white matter
    surface = atlas.brain_mask & ~ndimage.binary_erosion(atlas.brain_mask)
    assert (classes[surface] == WHITE_MATTER).mean() < 0.05
    assert set(np.unique(classes)) == {BACKGROUND, CSF, GREY_MATTER, WHITE_MATTER}


def test_second_load_comes_from_the_cache(atlas):
    load_atlas.cache_clear()
    again = load_atlas()
    np.testing.assert_array_equal(again.priors, atlas.priors)
    np.testing.assert_allclose(again.template.affine, atlas.template.affine)
