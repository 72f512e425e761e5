"""DAL on two devices, same scans through ``detect``'s path: seconds per scan on each device, and the largest
difference between their anomaly maps and lesion masks (the README's CPU/GPU comparison). Each scan is prepared
(registered) once; only the analysis runs on the devices.

    python3 Resources/compare_devices.py --cases ../shared/data/real --devices cpu,cuda --out runs/devices.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from itertools import chain
from pathlib import Path

import numpy as np

from disanatdetect.atlas import load_atlas
from disanatdetect.bundle import load_bundle
from disanatdetect.dal_inference import DALMethod
from disanatdetect.evaluate import folder_cases, healthy_scans
from disanatdetect.pipeline import DetectionConfig, analyse_prepared, prepare_scan


def difference(first, second) -> dict:
    """How far two detections of one scan lie apart: anomaly maps (largest absolute difference) and masks."""
    masks = first.lesion_mask.array > 0, second.lesion_mask.array > 0
    return {"max_anomaly_difference": float(np.abs(first.anomaly_map.array - second.anomaly_map.array).max()),
            "max_pseudo_healthy_difference": float(np.abs(first.pseudo_healthy.array
                                                          - second.pseudo_healthy.array).max()),
            "mask_voxels": [int(masks[0].sum()), int(masks[1].sum())],
            "mask_voxels_differing": int((masks[0] != masks[1]).sum())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", action="append", default=[], help="a BraTS-style folder of cases; repeatable")
    parser.add_argument("--scan", action="append", default=[], metavar="MODALITY:FILE", help="a single scan")
    parser.add_argument("--modalities", default="t1,t1c,t2,flair")
    parser.add_argument("--devices", default="cpu,cuda", help="the two devices to compare")
    parser.add_argument("--model", default=None, help="a bundle's manifest (default: the shipped model)")
    parser.add_argument("--runs", type=int, default=3, help="timed analyses per scan and device (median)")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    devices = args.devices.split(",")
    if len(devices) != 2:
        parser.error("--devices takes two devices, e.g. cpu,cuda")
    modalities = tuple(args.modalities.split(","))
    cases = chain(*(folder_cases(folder, modalities) for folder in args.cases), healthy_scans(args.scan))
    methods = [DALMethod(load_bundle(args.model), device) for device in devices]
    atlas = load_atlas()
    rows, warm = [], False
    for case in cases:
        config = DetectionConfig(modality=case.modality)
        prepared = prepare_scan(case.image, atlas, config)
        results, seconds = [], []
        for method in methods:
            if not warm:  # the first analysis on a device pays its start-up (kernels, allocator)
                analyse_prepared(method, prepared, atlas, config)
            times = []
            for _ in range(args.runs):
                started = time.perf_counter()
                result = analyse_prepared(method, prepared, atlas, config)  # returns arrays: device synchronised
                times.append(time.perf_counter() - started)
            results.append(result)
            seconds.append(round(statistics.median(times), 3))
        warm = True
        row = {"case": case.name, "modality": case.modality, **{f"{d}_seconds": s for d, s in zip(devices, seconds)},
               **difference(*results)}
        rows.append(row)
        print(json.dumps(row))
    if not rows:
        parser.error("no scan to compare; pass --cases DIR or --scan MODALITY:FILE")
    print("\n| device | median s per scan (analysis) |\n| --- | --- |")
    for device in devices:
        print(f"| {device} | {statistics.median(r[f'{device}_seconds'] for r in rows):.2f} |")
    print(f"\nlargest anomaly-map difference {max(r['max_anomaly_difference'] for r in rows):.2e}, "
          f"largest PHI difference {max(r['max_pseudo_healthy_difference'] for r in rows):.2e}, "
          f"mask voxels differing at most {max(r['mask_voxels_differing'] for r in rows)} "
          f"({len(rows)} scans, {methods[0].version})")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
