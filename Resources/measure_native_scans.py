"""Measure detection on a patient's native scans (skull on, the scanner's own grid) against the reference drawn on
the same patient's preprocessed (SRI24, skull-stripped) scan.

The lesion mask found on each native scan is carried onto the SRI24 grid by a rigid registration of the native
brain to the SRI24 scan of the same contrast; reported: Dice with the reference, the mask's volume outside it,
and whether the mask's centroid falls inside it. With ``--compare-encoder-brain`` each scan is also run with the
brain mask as extracted (``DetectionConfig.brain_from_encoder=False``).

    python3 Resources/measure_native_scans.py ../shared/data/real/TCGA-FG-6692 --compare-encoder-brain [--model MANIFEST]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from disanatdetect.brain_extraction import extract_brain
from disanatdetect.bundle import load_bundle
from disanatdetect.detection import DetectionConfig
from disanatdetect.io import read_volume
from disanatdetect.metrics import dice
from disanatdetect.pipeline import Detector
from disanatdetect.preprocess import register_rigid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", type=Path, help="a case folder with native/<contrast>.nii.gz, <contrast>.nii.gz and "
                                                "reference.nii.gz")
    parser.add_argument("--compare-encoder-brain", action="store_true")
    parser.add_argument("--model", default=None, help="manifest.json of a DAL bundle (default: the shipped one)")
    args = parser.parse_args()
    detector = Detector(load_bundle(args.model), device="cpu")  # None: the shipped one
    reference = read_volume(args.case / "reference.nii.gz")
    truth = reference.array > 0
    voxel_ml = float(np.prod(reference.spacing)) / 1000
    settings = [("encoder's brain", DetectionConfig())]
    if args.compare_encoder_brain:
        settings.append(("as extracted", DetectionConfig(brain_from_encoder=False)))
    print("| contrast | brain mask | Dice on SRI24 | mL outside the reference | centroid inside |")
    print("| --- | --- | --- | --- | --- |")
    for native_path in sorted((args.case / "native").glob("*.nii.gz")):
        contrast = native_path.name.split(".")[0]
        native = read_volume(native_path)
        brain_only = native.with_array(np.where(extract_brain(native), native.array, 0))
        sri24_to_native = register_rigid(read_volume(args.case / native_path.name), brain_only)
        for label, config in settings:
            mask = detector.detect(native, replace(config, modality=contrast)).lesion_mask
            carried = sitk.Resample(mask.to_sitk(), reference.to_sitk(), sri24_to_native, sitk.sitkNearestNeighbor)
            on_reference = sitk.GetArrayFromImage(carried) > 0
            inside = False
            if mask.array.any():
                centroid = np.argwhere(mask.array).mean(0)[::-1]  # (i, j, k)
                point = sri24_to_native.GetInverse().TransformPoint(
                    native.to_sitk().TransformContinuousIndexToPhysicalPoint(centroid))
                inside = bool(truth[reference.to_sitk().TransformPhysicalPointToIndex(point)[::-1]])
            outside_ml = float((on_reference & ~truth).sum()) * voxel_ml
            print(f"| {contrast} | {label} | {dice(on_reference, truth):.3f} | {outside_ml:.1f} | "
                  f"{'yes' if inside else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
