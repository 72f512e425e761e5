"""The pseudo-healthy image of real scans beside the scan (the README's figure): a healthy T1 (Colin27, not used
in calibration), a healthy T1 of ``../shared/data/healthy`` and the shipped demo FLAIR with its tumour, each
through ``detect``, with the PHI's correlation with the scan over the brain outside any reference lesion. The
correlation on the MNI152 T1 template (nilearn's offline copy, brain only) is printed too; the figure leaves it
out, since the template is the atlas the scans are registered to.

    python3 Resources/make_phi_figure.py [--model MANIFEST] [--out Resources/phi-examples.png]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

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


def _mni_template(folder: Path) -> Path:
    """nilearn's MNI152 T1 template, brain only, written as NIfTI so that it is read like any scan."""
    from nilearn import datasets, image

    template = image.math_img("t * (m > 0.5)", t=datasets.load_mni152_template(resolution=1),
                              m=datasets.load_mni152_brain_mask(resolution=1))
    path = folder / "mni152_t1_brain.nii.gz"
    template.to_filename(path)
    return path


def _phi(detector: Detector, scan, modality: str, reference: np.ndarray):
    """The PHI ``detect`` makes of a scan and its correlation with the scan over the brain outside ``reference``."""
    config = DetectionConfig(modality=modality)
    prepared = prepare_scan(scan, detector.atlas, config)  # detect's path, keeping the brain mask it found
    result = analyse_prepared(detector.method, prepared, detector.atlas, config)
    return result.pseudo_healthy, phi_correlation(scan.array, result.pseudo_healthy.array,
                                                  prepared.input_brain & ~reference)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a bundle's manifest (default: the shipped model)")
    parser.add_argument("--out", default="Resources/phi-examples.png")
    args = parser.parse_args()
    detector = Detector(load_bundle(args.model), device="cpu")  # None: the shipped one
    rows = []
    for name, path, modality, reference_path in SCANS:
        scan = read_volume(path)
        reference = read_volume(reference_path).array > 0 if reference_path else np.zeros(scan.shape, bool)
        pseudo_healthy, correlation = _phi(detector, scan, modality, reference)
        print(f"{name}: PHI correlation {correlation:.3f} (model {detector.bundle.version})")
        rows.append((f"{name}\nr = {correlation:.2f}", scan, pseudo_healthy, reference if reference.any() else None))
    with tempfile.TemporaryDirectory() as folder:
        template = read_volume(_mni_template(Path(folder)))
    _, correlation = _phi(detector, template, "t1", np.zeros(template.shape, bool))
    print(f"MNI152 T1 template: PHI correlation {correlation:.3f} (model {detector.bundle.version})")
    print(pseudo_healthy_rows(args.out, rows, f"DAL {detector.bundle.version}: scans and their pseudo-healthy images"))


if __name__ == "__main__":
    main()
