"""Scoring and post-processing: pure functions on small arrays."""

import numpy as np
import pytest

from disanatdetect.scoring import anomaly_score, infer_modality
from disanatdetect.postprocess import PostprocessConfig, anomaly_map, erode, lesion_components, lesion_mask


def test_score_is_signed_by_modality_and_silent_on_explained_csf():
    image = np.array([0.9, 0.1, 0.5])
    phi = np.array([0.5, 0.5, 0.5])
    np.testing.assert_allclose(anomaly_score(image, phi, "flair"), [0.4, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(anomaly_score(image, phi, "t1"), [0.4, 0.4, 0.0], atol=1e-6)
    explained = np.array([True, False, False])
    np.testing.assert_allclose(anomaly_score(image, phi, "t2", explained=explained), [0.0, 0.0, 0.0], atol=1e-6)
    disagreement = np.array([0.0, 1.0, 0.0])
    np.testing.assert_allclose(anomaly_score(image, phi, "flair", disagreement, 0.5), [0.4, 0.5, 0.0], atol=1e-6)


@pytest.mark.parametrize("intensities,modality", [
    ([0, 0.2, 0.5, 0.8], "t1"), ([0, 1.0, 0.55, 0.4], "t2"), ([0, 0.1, 0.6, 0.45], "flair"),
    ([0, 0.85, 0.78, 0.62], "pd"),
    # a FLAIR whose thick slices evened grey and white matter out (measured: 0.612 and 0.622), and a weak T1
    ([0, 0.25, 0.612, 0.622], "flair"), ([0, 0.3, 0.55, 0.6], "t1")])
def test_modality_from_tissue_order(intensities, modality):
    assert infer_modality(np.array(intensities)) == modality


def test_erosion_removes_the_brain_edge():
    brain = np.zeros((20, 20, 20), bool)
    brain[5:15, 5:15, 5:15] = True
    eroded = erode(brain, spacing_mm=1.5, erosion_mm=3.0)  # two voxels
    assert eroded.sum() == 6 ** 3
    assert erode(brain, 1.5, 0.0).sum() == brain.sum()


def test_anomaly_map_is_zero_outside_the_eroded_brain_and_smooths_speckle():
    brain = np.zeros((20, 20, 20), bool)
    brain[2:18, 2:18, 2:18] = True
    score = np.zeros((20, 20, 20), np.float32)
    score[8:13, 8:13, 8:13] = 1.0  # a lesion survives the median filter
    score[4, 4, 15] = 5.0  # a single hot voxel does not
    result = anomaly_map(score, brain, 1.5, PostprocessConfig(erosion_mm=1.5, median_size_vox=3))
    assert result[10, 10, 10] == 1.0 and result[4, 4, 15] == 0.0
    assert (result[~erode(brain, 1.5, 1.5)] == 0).all()


MM1 = (1.0, 1.0, 1.0)  # voxel spacing of the hand-made maps


def test_small_components_are_dropped_and_components_are_described():
    anomaly = np.zeros((10, 10, 10), np.float32)
    anomaly[1:4, 1:4, 1:4] = 0.8  # 27 voxels = 0.027 mL at 1 mm
    anomaly[8, 8, 8] = 0.9  # one voxel
    mask = lesion_mask(anomaly, 0.5, spacing_mm=(1.0, 1.0, 1.0), config=PostprocessConfig(min_lesion_ml=0.01))
    assert mask.sum() == 27 and mask[8, 8, 8] == 0
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    (component,) = lesion_components(mask, anomaly, affine)
    assert component["volume_ml"] == pytest.approx(0.027)
    assert component["peak_score"] == pytest.approx(0.8)
    # centroid voxel (i, j, k) = (2, 2, 2) -> RAS (-2, -2, 2)
    assert component["centroid_ras_mm"] == [-2.0, -2.0, 2.0]


def test_lesions_grow_into_their_connected_rim_only():
    anomaly = np.zeros((12, 12, 24), np.float32)
    anomaly[2:9, 2:9, 2:9] = 0.45  # rim, above 0.8 x 0.5
    anomaly[4:7, 4:7, 4:7] = 0.9  # core, above the threshold
    anomaly[2:9, 2:9, 14:21] = 0.45  # a rim-level region with no core: not a lesion
    grown = lesion_mask(anomaly, 0.5, MM1, PostprocessConfig(min_lesion_ml=0.01, grow_fraction=0.8))
    assert grown[2:9, 2:9, 2:9].all() and grown.sum() == 7 ** 3
    core_only = lesion_mask(anomaly, 0.5, MM1, PostprocessConfig(min_lesion_ml=0.01, grow_fraction=1.0))
    assert core_only.sum() == 27
    # the minimum size applies to the core: a one-voxel core does not grow a lesion
    anomaly[5, 5, 17] = 0.9
    assert lesion_mask(anomaly, 0.5, MM1, PostprocessConfig(min_lesion_ml=0.01))[2:9, 2:9, 14:21].sum() == 0


def test_growth_stops_at_its_reach_along_each_axis():
    """A core with a wide rim-level region around it: the lesion grows only ``grow_reach_mm`` into it, by
    millimetres (so fewer voxels along a coarse axis), and never through voxels below the lower level."""
    anomaly = np.zeros((20, 30, 30), np.float32)
    anomaly[2:18, 2:28, 2:28] = 0.45  # rim level, far wider than the reach
    anomaly[9:11, 14:16, 14:16] = 0.9  # core
    config = PostprocessConfig(min_lesion_ml=0.0, grow_fraction=0.8, grow_reach_mm=3.0)
    isotropic = lesion_mask(anomaly, 0.5, MM1, config).astype(bool)
    assert isotropic.sum() == (2 + 6) * (2 + 6) * (2 + 6)  # three voxels each way along each axis
    coarse_slices = lesion_mask(anomaly, 0.5, (2.0, 1.0, 1.0), config).astype(bool)
    assert coarse_slices.sum() == (2 + 2) * (2 + 6) * (2 + 6)  # one 2 mm slice each way
    assert not (isotropic & (anomaly == 0)).any()
    unlimited = lesion_mask(anomaly, 0.5, MM1, PostprocessConfig(min_lesion_ml=0.0, grow_fraction=0.8,
                                                                 grow_reach_mm=None))
    assert unlimited.sum() == (anomaly > 0.4).sum()
