"""Choose the calibration's lesion-volume limit (``CalibrationConfig.max_false_positive_ml``) for a bundle.

Makes the calibration's healthy maps once (the bundle's own calibration scans: rendered held-out scans per
modality and the real healthy T1 scans, each through ``detect``'s path), then prints, for each limit, the
threshold per modality and the false-positive lesion volume of every healthy scan at it. For each limit it writes
a manifest beside the bundle's (``manifest-limit-<mL>.json``: the same weights, those thresholds), so that
``disanatdetect evaluate --model`` measures what the limit costs on lesions. No lesion is used here.

    python3 Resources/choose_false_positive_limit.py DisAnatDetect/disanatdetect/weights/manifest.json --limits 2,1,0.5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from disanatdetect.bundle import load_bundle
from disanatdetect.calibration import (false_positive_ml, healthy_maps, method_for, recorded_calibration,
                                       thresholds_from_maps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--limits", default="2,1,0.5", help="lesion-volume limits to try, in mL (comma-separated)")
    args = parser.parse_args()
    manifest = json.loads(args.manifest.read_text())
    config = recorded_calibration(manifest)
    maps = healthy_maps(method_for(load_bundle(args.manifest)), config)
    for limit in [None] + [float(value) for value in args.limits.split(",")]:
        limited = dataclasses.replace(config, max_false_positive_ml=limit)
        thresholds = thresholds_from_maps(maps, limited)
        print(f"limit {limit} mL: " + ", ".join(f"{name} {value:.4f}" for name, value in thresholds.items()))
        for modality, healthy in maps.items():
            volumes = np.array([false_positive_ml(scan, thresholds[modality]) for scan in healthy])
            print(f"  {modality}: healthy FP mean {volumes.mean():.2f} mL, worst {volumes.max():.2f} mL "
                  f"({np.count_nonzero(volumes > 1.0)} of {volumes.size} scans above 1 mL)", flush=True)
        if limit is not None:
            variant = dict(manifest, thresholds=thresholds, calibration=dataclasses.asdict(limited))
            path = args.manifest.with_name(f"manifest-limit-{limit:g}.json")
            path.write_text(json.dumps(variant, indent=2) + "\n")
            print(f"  written: {path}")


if __name__ == "__main__":
    main()
