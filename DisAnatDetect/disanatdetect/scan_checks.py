"""Input checks: refuse, with one sentence, volumes that cannot be a brain MRI, before any work is done."""

from __future__ import annotations

import numpy as np

from disanatdetect.errors import InputError
from disanatdetect.io import Volume, check_volume_size

MAX_LABEL_VALUES = 16  # an MRI has hundreds of grey values; a segmentation a handful
MIN_VOXELS_PER_AXIS = 4  # the coarsest registration level smooths across at least this many


def validate_input(volume: Volume) -> None:
    """Refuse volumes that cannot be a brain MRI, with one sentence saying why."""
    array = volume.array
    if array.ndim != 3:
        raise InputError(f"the image has shape {array.shape}; a 3D brain MRI volume is needed.")
    if min(array.shape) < MIN_VOXELS_PER_AXIS:
        raise InputError(f"the image is {' x '.join(map(str, array.shape[::-1]))} voxels; a 3D brain MRI volume "
                         f"needs at least {MIN_VOXELS_PER_AXIS} along each axis.")
    check_volume_size(array.shape)
    spacing = np.asarray(volume.spacing)
    if not (np.isfinite(spacing).all() and (spacing > 0).all()):
        raise InputError(f"the image's voxel spacing {tuple(spacing)} is not positive and finite; fix its header.")
    if not np.isfinite(volume.direction).all() or abs(np.linalg.det(volume.direction)) < 1e-3:
        raise InputError("the image's direction matrix is not a rotation (singular or not finite); fix its header.")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise InputError(f"the image has voxel type {array.dtype}; a real-valued MRI volume is needed.")
    finite = np.isfinite(array)
    if not finite.all():
        raise InputError(f"the image contains {int((~finite).sum())} NaN or infinite voxels; fix or mask them first.")
    if float(array.max()) <= float(array.min()):
        raise InputError("the image is constant (every voxel has the same value); it holds no MRI data.")
    distinct = np.unique(array[:: max(1, array.shape[0] // 16)])  # a sample of slices is enough to tell
    if distinct.size <= MAX_LABEL_VALUES:
        raise InputError(f"the image has only {distinct.size} distinct values, so it looks like a label map or "
                         "mask, not an MRI scan; pass the scan itself.")
