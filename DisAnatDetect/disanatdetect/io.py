"""Reading and writing volumes with their geometry.

A :class:`Volume` keeps the voxel array in SimpleITK's index order ``array[k, j, i]`` (the same order as
``slicer.util.arrayFromVolume``) and the physical geometry in ITK's LPS convention; :attr:`Volume.affine` gives the
RAS voxel-to-world matrix that NIfTI and nibabel use.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from disanatdetect.errors import InputError

READABLE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass
class Volume:
    """A 3D image: voxel array ``[k, j, i]`` plus spacing, origin and direction (LPS, as in ITK)."""

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def affine(self) -> np.ndarray:
        """4x4 voxel (i, j, k) to RAS world matrix, as nibabel and NIfTI define it."""
        lps = np.eye(4)
        lps[:3, :3] = self.direction @ np.diag(self.spacing)
        lps[:3, 3] = self.origin
        ras = np.eye(4)
        ras[:3] = _LPS_TO_RAS @ lps[:3]
        return ras

    def with_array(self, array: np.ndarray) -> Volume:
        """A volume on the same grid holding another array of the same shape."""
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} does not match the grid {self.array.shape}")
        return Volume(array, self.spacing, self.origin, self.direction.copy())

    def to_sitk(self) -> sitk.Image:
        image = sitk.GetImageFromArray(np.ascontiguousarray(self.array))
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(tuple(self.direction.ravel()))
        return image

    @classmethod
    def from_sitk(cls, image: sitk.Image) -> Volume:
        return cls(
            sitk.GetArrayFromImage(image),
            image.GetSpacing(),
            image.GetOrigin(),
            np.array(image.GetDirection()).reshape(image.GetDimension(), image.GetDimension()),
        )

    def same_grid(self, other: Volume, atol: float = 1e-4) -> bool:
        return self.shape == other.shape and np.allclose(self.affine, other.affine, atol=atol)


def _read_dicom_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(f"{folder} is a folder without a DICOM series; pass an image file or a DICOM folder.")
    # Several series in one folder: take the one with most slices, as viewers do.
    files = max((reader.GetGDCMSeriesFileNames(str(folder), s) for s in series), key=len)
    reader.SetFileNames(files)
    return reader.Execute()


def read_volume(path: str | os.PathLike) -> Volume:
    """Read a NIfTI, NRRD or MetaImage file, or a DICOM series folder, into a :class:`Volume`.

    Raises :class:`InputError` with one sentence when the path cannot be read as a 3D image.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist; check the path.")
    try:
        image = _read_dicom_series(path) if path.is_dir() else sitk.ReadImage(str(path))
    except InputError:
        raise
    except RuntimeError as error:
        raise InputError(
            f"{path} could not be read as an image ({_first_line(error)}); "
            f"use NIfTI, NRRD, MHA or a DICOM folder."
        ) from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path} has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
                         "pass a single-channel (greyscale) MRI volume.")
    if image.GetDimension() != 3:
        raise InputError(f"{path} is {image.GetDimension()}D; pass a 3D brain MRI volume.")
    return Volume.from_sitk(image)


def write_volume(volume: Volume, path: str | os.PathLike) -> Path:
    """Write ``volume`` to ``path`` atomically: a temporary file in the same folder, renamed when complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    try:
        sitk.WriteImage(volume.to_sitk(), temporary, useCompression=True)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # ITK messages start with a file:line banner; the last line holds the reason.
    return lines[-1] if lines else type(error).__name__
