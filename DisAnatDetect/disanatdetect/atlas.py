"""The MNI152 2009a template and tissue-class priors on the working grid.

Everything the model sees lives on one working grid in MNI space (1.5 mm isotropic, cropped to the brain). The
priors are K tissue-class probability maps that sum to one per voxel: background, CSF, grey matter, white matter.
They come from nilearn's offline copies of the MNI ICBM152 2009a template and its GM/WM probability maps; CSF is
the brain mask minus GM and WM. (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological
Institute, McGill University; see LICENSE.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from disanatdetect.io import Volume

TISSUE_CLASSES = ("background", "csf", "grey_matter", "white_matter")
BACKGROUND, CSF, GREY_MATTER, WHITE_MATTER = range(4)


@dataclass(frozen=True)
class AtlasConfig:
    """The working grid: spacing in mm, shape as (slices, rows, columns) = (z, y, x), centre in MNI RAS mm.

    1.5 mm keeps small lesions (a few mm) visible while a whole brain fits in 104 slices of 128 x 112, which
    a 2-core CPU processes in seconds.
    """

    spacing_mm: float = 1.5
    shape_zyx: tuple[int, int, int] = (104, 128, 112)
    centre_ras_mm: tuple[float, float, float] = (0.0, -17.0, 5.0)

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class Atlas:
    """Template T1 (skull-stripped, in [0, 1]), tissue priors ``[K, z, y, x]`` and brain mask on the working grid."""

    template: Volume
    priors: np.ndarray
    config: AtlasConfig

    @property
    def brain_mask(self) -> np.ndarray:
        return self.priors[BACKGROUND] < 0.5

    @property
    def grid(self) -> Volume:
        return self.template


def _cache_dir() -> Path:
    root = os.environ.get("DISANATDETECT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "disanatdetect")
    return Path(root)


def working_grid(config: AtlasConfig) -> sitk.Image:
    """An empty image on the working grid (LPS geometry, axis-aligned like MNI)."""
    nz, ny, nx = config.shape_zyx
    centre_lps = np.array(config.centre_ras_mm) * np.array([-1.0, -1.0, 1.0])
    # RAS axes as the voxel axes (i = right-to-left flipped to LPS by the direction matrix).
    direction = np.diag([-1.0, -1.0, 1.0])
    extent = (np.array([nx, ny, nz]) - 1) * config.spacing_mm / 2.0
    origin = centre_lps - direction @ extent
    image = sitk.Image(nx, ny, nz, sitk.sitkFloat32)
    image.SetSpacing((config.spacing_mm,) * 3)
    image.SetOrigin(tuple(origin))
    image.SetDirection(tuple(direction.ravel()))
    return image


def _nilearn_to_sitk(img) -> sitk.Image:
    data = np.asarray(img.get_fdata(), dtype=np.float32)
    affine = img.affine
    image = sitk.GetImageFromArray(np.transpose(data, (2, 1, 0)).copy())
    lps = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    image.SetSpacing(tuple(spacing))
    image.SetDirection(tuple((lps / spacing).ravel()))
    image.SetOrigin(tuple(np.diag([-1.0, -1.0, 1.0]) @ affine[:3, 3]))
    return image


def _build(config: AtlasConfig) -> tuple[np.ndarray, np.ndarray]:
    from nilearn import datasets  # imported here: only the first build needs it

    reference = working_grid(config)

    def resample(img) -> np.ndarray:
        resampled = sitk.Resample(_nilearn_to_sitk(img), reference, sitk.Transform(), sitk.sitkLinear, 0.0)
        return sitk.GetArrayFromImage(resampled).astype(np.float32)

    template = resample(datasets.load_mni152_template(resolution=1))
    grey = resample(datasets.load_mni152_gm_template(resolution=1))
    white = resample(datasets.load_mni152_wm_template(resolution=1))
    brain = resample(datasets.load_mni152_brain_mask(resolution=1))
    grey, white = np.clip(grey, 0, 1), np.clip(white, 0, 1)
    tissue = np.clip(grey + white, 1e-6, None)
    # GM + WM may exceed the mask at its edge: rescale them to fit inside the brain probability.
    scale = np.minimum(1.0, brain / tissue)
    grey, white = grey * scale, white * scale
    csf = np.clip(brain - grey - white, 0, 1)
    background = 1.0 - brain
    priors = np.stack([background, csf, grey, white]).astype(np.float32)
    priors /= priors.sum(0, keepdims=True)
    template = np.clip(template / max(float(template.max()), 1e-6), 0, 1) * (brain > 0.5)
    return template.astype(np.float32), priors


# Prebuilt atlases shipped with the package (``atlas-<config key>.npz``), so that a fresh install (3D Slicer
# included) needs neither nilearn nor nibabel to detect.
PACKAGED_ATLAS_DIR = Path(__file__).parent / "data"


@lru_cache(maxsize=4)
def load_atlas(config: AtlasConfig = AtlasConfig()) -> Atlas:
    """The atlas on the working grid: the prebuilt copy shipped with the package for this configuration, else built
    from nilearn's offline files once and read from the cache after that."""
    packaged = PACKAGED_ATLAS_DIR / f"atlas-{config.key()}.npz"
    path = packaged if packaged.exists() else _cache_dir() / f"atlas-{config.key()}.npz"
    if path.exists():
        stored = np.load(path)
        template, priors = stored["template"], stored["priors"]
    else:
        template, priors = _build(config)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez_compressed(temporary, template=template, priors=priors)
        os.replace(temporary, path)
    grid = Volume.from_sitk(working_grid(config))
    return Atlas(grid.with_array(template), priors, config)
