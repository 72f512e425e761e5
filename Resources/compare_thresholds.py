"""Healthy false positives of several bundles at the same thresholds, on one modality's calibration scans.

A bundle's stored threshold comes from the code it was calibrated with; this makes each bundle's calibration maps
with the current code (rendered held-out scans and, for T1, the real healthy scans, each through ``detect``'s path) and
prints, per bundle: its stored threshold, the pooled voxel quantiles the calibration would choose now, and the mean
false lesion volume (after the lesion growth) of the rendered and of the real scans at its own threshold and at
each threshold given. No lesion is used.

    mkdir old && git archive 0ed3d5c DisAnatDetect/disanatdetect/weights/manifest.json \\
        DisAnatDetect/disanatdetect/weights/dal-2.0.0.pt | tar -x -C old      # release 2.0.0, from the history
    python3 Resources/compare_thresholds.py old/DisAnatDetect/disanatdetect/weights/manifest.json \\
        DisAnatDetect/disanatdetect/weights/manifest.json --modality t1 --at 0.2238,0.25,0.30
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from disanatdetect.bundle import load_bundle
from disanatdetect.calibration import false_positive_ml, healthy_maps, method_for, recorded_calibration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifests", nargs="+", type=Path)
    parser.add_argument("--modality", default="t1")
    parser.add_argument("--at", default="0.2238,0.25,0.30", help="thresholds to compare at (comma-separated)")
    args = parser.parse_args()
    for manifest in args.manifests:
        recorded = json.loads(manifest.read_text())
        config = dataclasses.replace(recorded_calibration(recorded), modalities=(args.modality,))
        maps = healthy_maps(method_for(load_bundle(manifest)), config)[args.modality]
        rendered = config.volumes_per_modality  # healthy_maps lists the rendered scans first, then the real ones
        stored = recorded["thresholds"][args.modality]
        pooled = np.concatenate([healthy.anomaly[healthy.brain] for healthy in maps])
        quantiles = {q: float(np.quantile(pooled, q)) for q in (0.99, 1 - config.false_positive_rate, 0.9999)}
        print(f"{manifest}: stored {args.modality} threshold {stored:.4f}; pooled quantiles now "
              + ", ".join(f"{q:g}: {value:.4f}" for q, value in quantiles.items()))
        for threshold in dict.fromkeys([stored] + [float(value) for value in args.at.split(",")]):  # once each
            volumes = np.array([false_positive_ml(healthy, threshold) for healthy in maps])
            real = volumes[rendered:]
            print(f"  at {threshold:.4f}: mean false lesion {volumes[:rendered].mean():.2f} mL on {rendered} "
                  f"rendered scans, " + (f"{real.mean():.2f} mL on {real.size} real ones" if real.size else
                                         "no real scan"), flush=True)


if __name__ == "__main__":
    main()
