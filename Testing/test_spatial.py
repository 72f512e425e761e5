"""Spatial transforms shared by every method: the trip through a thick-slice scan's grid."""

import numpy as np
import SimpleITK as sitk

from disanatdetect.spatial import scan_acquisition


def _scan_grid(atlas, spacing_mm: tuple[float, float, float]) -> sitk.Image:
    """An empty scan grid covering the working grid, on the atlas's axes, with ``spacing_mm`` voxels (x, y, z)."""
    template = atlas.template.to_sitk()
    extent = np.array(template.GetSize()) * np.array(template.GetSpacing())
    grid = sitk.Image([int(n) for n in np.ceil(extent / spacing_mm)], sitk.sitkUInt8)
    grid.SetSpacing(spacing_mm)
    grid.SetDirection(template.GetDirection())
    grid.SetOrigin(template.GetOrigin())
    return grid


def test_a_scan_as_fine_as_the_working_grid_needs_no_acquisition(atlas):
    assert scan_acquisition(_scan_grid(atlas, (1.0, 1.0, 1.0)), atlas, sitk.AffineTransform(3), 1.5) is None
    assert scan_acquisition(_scan_grid(atlas, (1.0, 1.0, 6.0)), atlas, sitk.AffineTransform(3), None) is None


def test_thick_slices_blur_across_them_and_keep_what_is_smooth(atlas):
    acquire = scan_acquisition(_scan_grid(atlas, (1.0, 1.0, 6.0)), atlas, sitk.AffineTransform(3), 1.5)
    assert acquire is not None
    shape = atlas.template.shape  # (z, y, x)
    # stripes two working voxels (3 mm) thick along z, and the same stripes along x
    along_z = np.broadcast_to((np.arange(shape[0]) // 2 % 2)[:, None, None], shape).astype(np.float32)
    along_x = np.broadcast_to((np.arange(shape[2]) // 2 % 2)[None, None, :], shape).astype(np.float32)
    inner = (slice(8, -8),) * 3  # away from the edges of the field of view
    # 6 mm slices cannot hold 3 mm stripes across them: they come back far flatter; in-plane (1 mm) they survive
    assert acquire(along_z)[inner].std() < 0.5 * along_z[inner].std()
    assert acquire(along_x)[inner].std() > 0.8 * along_x[inner].std()
    constant = np.full(shape, 0.7, np.float32)
    np.testing.assert_allclose(acquire(constant)[inner], 0.7, atol=1e-5)
