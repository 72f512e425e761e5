"""Reading and writing volumes with their geometry.

A :class:`Volume` keeps the voxel array in SimpleITK's index order ``array[k, j, i]`` (the same order as
``slicer.util.arrayFromVolume``) and the physical geometry in ITK's LPS convention; :attr:`Volume.affine` gives the
RAS voxel-to-world matrix that NIfTI and nibabel use.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from disanatdetect.errors import InputError

READABLE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
_NIFTI2_HEADER_BYTES = 540
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class VolumeLimits:
    """The largest volume the tool accepts (512 x 512 x 512 voxels by default).

    The pipeline holds a few float32 copies of the input grid, so memory grows with the voxel count; beyond this
    limit a scan is refused, before its voxels are read, rather than left to exhaust the machine.
    """

    max_voxels: int = 512 ** 3
    max_size_per_axis: int = 4096


def check_volume_size(size: tuple[int, ...], limits: VolumeLimits = VolumeLimits()) -> None:
    """Raise :class:`InputError` when an image of ``size`` voxels (any axis order) is beyond ``limits``."""
    voxels = int(np.prod([int(n) for n in size], dtype=object))
    if voxels > limits.max_voxels or max(size, default=0) > limits.max_size_per_axis:
        shape = " x ".join(str(int(n)) for n in size)
        raise InputError(f"the image is {shape} voxels, more than the {limits.max_voxels:,} (at most "
                         f"{limits.max_size_per_axis} per axis) this tool processes; crop or downsample it first.")


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


def _read_dicom_series(folder: Path, limits: VolumeLimits) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(f"{folder} is a folder without a DICOM series; pass an image file or a DICOM folder.")
    # Several series in one folder: take the one with most slices, as viewers do.
    files = max((reader.GetGDCMSeriesFileNames(str(folder), s) for s in series), key=len)
    first = sitk.ImageFileReader()
    first.SetFileName(files[0])
    first.ReadImageInformation()
    check_volume_size(first.GetSize()[:2] + (len(files),), limits)
    reader.SetFileNames(files)
    return reader.Execute()


def _read_file(path: Path, limits: VolumeLimits) -> sitk.Image:
    """Read the header first, so that a header announcing a huge image is refused before any allocation."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    with _native_stderr_silenced():
        reader.ReadImageInformation()
        check_volume_size(reader.GetSize(), limits)
        _check_nifti_data_length(path)
        return reader.Execute()


def _check_nifti_data_length(path: Path) -> None:
    """ITK's NIfTI reader pads a truncated file (or gzip stream) silently; refuse one whose data is incomplete.

    The header gives the data offset, the voxel count and the bits per voxel; the file must hold that many bytes.
    Files that are not single-file NIfTI (another format, or a .hdr/.img pair) are left to their reader.
    """
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as stream:
            header = stream.read(_NIFTI2_HEADER_BYTES)
            length = len(header) + sum(len(chunk) for chunk in iter(lambda: stream.read(1 << 22), b""))
    except (OSError, EOFError, zlib.error):
        raise InputError(f"{path} is a damaged or truncated gzip file; copy or export the scan again.") from None
    if header[344:347] != b"n+1" and header[4:7] != b"n+2":
        return
    endian = "<" if struct.unpack("<i", header[:4])[0] in (348, 540) else ">"
    if struct.unpack(endian + "i", header[:4])[0] == 540:  # NIfTI-2
        dims = struct.unpack(endian + "8q", header[16:80])
        bitpix = struct.unpack(endian + "h", header[14:16])[0]
        offset = struct.unpack(endian + "q", header[168:176])[0]
    else:  # NIfTI-1
        dims = struct.unpack(endian + "8h", header[40:56])
        bitpix = struct.unpack(endian + "h", header[72:74])[0]
        offset = struct.unpack(endian + "f", header[108:112])[0]
    if not math.isfinite(offset) or offset < 0:  # found by the fuzz suite: int(inf) would raise
        raise InputError(f"{path} has a damaged NIfTI header (data offset {offset}); copy or export the scan again.")
    offset = int(offset)
    voxels = int(np.prod([max(1, int(n)) for n in dims[1:1 + max(0, min(7, dims[0]))]], dtype=object))
    expected = offset + voxels * bitpix // 8
    if length < expected:
        raise InputError(f"{path} is truncated: its header announces {expected:,} bytes but the file holds "
                         f"{length:,}; copy or export the scan again.")


@contextlib.contextmanager
def _native_stderr_silenced():
    """ITK's MetaImage reader prints to the C-level stderr; the user gets our one sentence instead."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to silence
        yield
        return
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def read_volume(path: str | os.PathLike, limits: VolumeLimits = VolumeLimits()) -> Volume:
    """Read a NIfTI, NRRD or MetaImage file, or a DICOM series folder, into a :class:`Volume`.

    Raises :class:`InputError` with one sentence when the path cannot be read as a 3D image, or when its header
    announces more voxels than ``limits`` allow.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist; check the path.")
    try:
        image = _read_dicom_series(path, limits) if path.is_dir() else _read_file(path, limits)
    except InputError:
        raise
    except RuntimeError as error:
        raise InputError(
            f"{path} could not be read as an image ({_reason(error)}); "
            f"use NIfTI, NRRD, MHA or a DICOM folder."
        ) from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path} has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
                         "pass a single-channel (greyscale) MRI volume.")
    if image.GetDimension() == 4:
        raise InputError(f"{path} is a 4D series of {image.GetSize()[3]} volumes; pass the one to analyse as a 3D "
                         "file (for example the first, extracted with Slicer or fslroi).")
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


def _reason(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # ITK messages start with a file:line banner; the last line holds the reason.
    reason = lines[-1] if lines else type(error).__name__
    if "Unable to determine ImageIO reader" in reason:
        return "unknown or damaged file format"
    # MetaImage reports incomplete data as the errno left over from the C library.
    return "incomplete or unreadable data" if "No such file or directory" in reason else reason
