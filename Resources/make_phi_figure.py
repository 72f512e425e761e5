"""The pseudo-healthy image of real scans beside the scan (the README's figure): a healthy T1 (Colin27, not used
in calibration), a healthy T1 of ``../shared/data/healthy`` and the shipped demo FLAIR with its tumour, each
through ``detect``, with the PHI's correlation with the scan over the brain outside any reference lesion.

    python3 Resources/make_phi_figure.py [--model MANIFEST] [--out Resources/phi-examples.png]
"""

from __future__ import annotations

import argparse

import numpy as np

from disanatdetect.bundle import load_bundle
from disanatdetect.cli import DEMO_SCAN_DIR
from disanatdetect.evaluate import phi_correlation
from disanatdetect.figures import pseudo_healthy_rows
from disanatdetect.io import read_volume
from disanatdetect.pipeline import DetectionConfig, Detector, analyse_prepared, prepare_scan

SCANS = (("Colin27 T1", "/usr/share/mricron/templates/ch2bet.nii.gz", "t1", None),
         ("mass-03 T1", "../shared/data/healthy/mass-03/t1.nii.gz", "t1", None),
         ("TCGA-DU-7294 FLAIR", DEMO_SCAN_DIR / "flair.nii.gz", "flair", DEMO_SCAN_DIR / "reference.nii.gz"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a bundle's manifest (default: the shipped model)")
    parser.add_argument("--out", default="Resources/phi-examples.png")
    args = parser.parse_args()
    detector = Detector(load_bundle(args.model) if args.model else None, device="cpu")
    rows = []
    for name, path, modality, reference_path in SCANS:
        scan = read_volume(path)
        reference = read_volume(reference_path).array > 0 if reference_path else np.zeros(scan.shape, bool)
        config = DetectionConfig(modality=modality)
        prepared = prepare_scan(scan, detector.atlas, config)  # detect's path, keeping the brain mask it found
        result = analyse_prepared(detector.method, prepared, detector.atlas, config)
        correlation = phi_correlation(scan.array, result.pseudo_healthy.array, prepared.input_brain & ~reference)
        print(f"{name}: PHI correlation {correlation:.3f} (model {detector.bundle.version})")
        rows.append((f"{name}\nr = {correlation:.2f}", scan, result.pseudo_healthy, reference if reference.any()
                     else None))
    print(pseudo_healthy_rows(args.out, rows, f"DAL {detector.bundle.version}: scans and their pseudo-healthy images"))


if __name__ == "__main__":
    main()
