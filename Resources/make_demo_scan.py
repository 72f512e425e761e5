#!/usr/bin/env python3
"""Make the real scan that ``disanatdetect demo`` runs on: TCGA-DU-7294, FLAIR, with its lesion reference.

Reads ``flair.nii.gz`` and ``reference.nii.gz`` of the case (the project's development set,
``../shared/data/real/TCGA-DU-7294``: SRI24 space, 240 x 240 x 155, 1 mm, skull-stripped), crops both to the
bounding box of the head (the voxels that are not 0) plus a margin, and writes

    DisAnatDetect/disanatdetect/data/demo/flair.nii.gz       int16, intensities rounded (the range is checked)
    DisAnatDetect/disanatdetect/data/demo/reference.nii.gz   uint8, lesion where > 0 (labels kept)

as gzip NIfTI with their true geometry: the cropped affine is the original one shifted by the crop's first voxel,
so that every voxel stays where it was in scanner space (checked before writing). The gzip stream has no time
stamp, so the files are the same bytes each time.

Sources: image from TCIA (The Cancer Genome Atlas LGG/GBM collections, CC BY 3.0); reference: majority vote of five
BraTS-2020 algorithms, from the BrainLesion tutorials repository (Apache-2.0). See the README.md next to the files.

Usage, from the repository root:

    python3 Resources/make_demo_scan.py [--case ../shared/data/real/TCGA-DU-7294] [--margin 4]
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import nibabel
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CASE = ROOT.parent / "shared" / "data" / "real" / "TCGA-DU-7294"
OUT = ROOT / "DisAnatDetect" / "disanatdetect" / "data" / "demo"


def crop_box(image: np.ndarray, margin: int) -> tuple[slice, ...]:
    """The bounding box of the voxels that are not 0, grown by ``margin`` voxels and clipped to the volume."""
    found = np.argwhere(image != 0)
    if not found.size:
        raise SystemExit("error: the image is empty")
    low = np.maximum(found.min(0) - margin, 0)
    high = np.minimum(found.max(0) + 1 + margin, image.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))


def cropped(image: nibabel.Nifti1Image, box: tuple[slice, ...], array: np.ndarray, dtype) -> nibabel.Nifti1Image:
    """``array`` (already cropped) as a NIfTI of ``dtype`` whose affine puts voxel (0, 0, 0) at the box's corner."""
    start = np.array([s.start for s in box] + [1.0])
    affine = image.affine.copy()
    affine[:, 3] = image.affine @ start
    header = image.header.copy()
    header.set_data_dtype(dtype)
    result = nibabel.Nifti1Image(array.astype(dtype), affine, header)
    # keep the source's qform and sform codes (scanner/aligned space), with the shifted affine in both
    result.set_qform(affine, int(image.header["qform_code"]) or 1)
    result.set_sform(affine, int(image.header["sform_code"]) or 1)
    result.header["scl_slope"], result.header["scl_inter"] = 1.0, 0.0
    return result


def write(image: nibabel.Nifti1Image, path: Path) -> None:
    """Gzip NIfTI, best compression, no time stamp (reproducible bytes)."""
    path.write_bytes(gzip.compress(image.to_bytes(), compresslevel=9, mtime=0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", type=Path, default=CASE, help="folder with flair.nii.gz and reference.nii.gz")
    parser.add_argument("--margin", type=int, default=4, help="voxels kept around the head's bounding box")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    flair = nibabel.load(args.case / "flair.nii.gz")
    reference = nibabel.load(args.case / "reference.nii.gz")
    if flair.shape != reference.shape or not np.allclose(flair.affine, reference.affine, atol=1e-4):
        raise SystemExit("error: the image and its reference are not on the same grid")
    intensities = np.asarray(flair.get_fdata(dtype=np.float64))
    labels = np.asarray(reference.dataobj)
    box = crop_box(intensities, args.margin)
    if (labels > 0).sum() != (labels[box] > 0).sum():
        raise SystemExit("error: part of the lesion reference lies outside the crop")
    rounded = np.round(intensities[box])
    info = np.iinfo(np.int16)
    if rounded.min() < info.min or rounded.max() > info.max:
        raise SystemExit(f"error: intensities {rounded.min()}..{rounded.max()} do not fit int16")
    if labels.min() < 0 or labels.max() > 255 or not np.array_equal(labels, np.round(labels)):
        raise SystemExit("error: the reference labels do not fit uint8")
    images = {"flair.nii.gz": cropped(flair, box, rounded, np.int16),
              "reference.nii.gz": cropped(reference, box, labels[box], np.uint8)}

    # every voxel must sit where it was: world position of cropped voxel i == original voxel i + start
    start = np.array([s.start for s in box])
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in rounded.shape], indexing="ij")).reshape(3, -1).T
    for image in images.values():
        moved = nibabel.affines.apply_affine(image.affine, corners)
        np.testing.assert_allclose(moved, nibabel.affines.apply_affine(flair.affine, corners + start), atol=1e-5)

    args.out.mkdir(parents=True, exist_ok=True)
    for name, image in images.items():
        write(image, args.out / name)
        print(f"{args.out / name}: {image.shape} {image.get_data_dtype()}, "
              f"{(args.out / name).stat().st_size / 1e6:.2f} MB")
    lesion_ml = (labels > 0).sum() * abs(np.linalg.det(flair.affine[:3, :3])) / 1000
    print(f"crop (voxels, from {flair.shape}): {[(s.start, s.stop) for s in box]}; intensities "
          f"{int(rounded.min())}..{int(rounded.max())}; lesion {lesion_ml:.1f} mL")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
