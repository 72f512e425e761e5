"""The imaging information's field, several kinds on the same weights, each recalibrated: a screen before a full
measurement. Every variant gets label-free thresholds from the first N calibration renders per modality (plus the
real healthy scans), then is run beside the others on the dev BraTS cases and on held-out healthy renders, every
scan prepared once and analysed by each variant (``disanatdetect.evaluate.evaluate``). Prints, per variant and
modality, mean AP, best Dice and Dice at its own threshold on the lesioned cases and the mean false lesion on the
healthy ones, then each variant against the first case by case; rows in OUT/results.csv. Not a release
measurement (that is ``disanatdetect evaluate``).

    python3 Resources/compare_imaging_information.py --fields poly3,bspline4 --out runs/fields
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
from pathlib import Path
from statistics import mean

import numpy as np

from disanatdetect.bundle import DEFAULT_BUNDLE, load_bundle
from disanatdetect.calibration import THRESHOLD_DECIMALS, CalibrationConfig
from disanatdetect.dal_inference import DALMethod
from disanatdetect.evaluate import (evaluate, folder_cases, held_out_healthy_scans, paired_differences_table,
                                    write_csv)
from disanatdetect.models import build_model
from disanatdetect.pipeline import DetectionConfig, analyse_prepared, prepare_scan
from disanatdetect.synth.contrast import MODALITIES

REAL, HEALTHY = "../shared/data/real", "../shared/data/healthy"


def field_settings(name: str) -> dict:
    """``poly3`` -> a degree-3 polynomial field, ``bspline4`` -> a cubic B-spline with 4 knots per axis."""
    match = re.fullmatch(r"(poly|bspline)(\d+)", name)
    if match is None:
        raise SystemExit(f"--fields: {name!r} is neither polyN nor bsplineN.")
    kind, number = match.group(1), int(match.group(2))
    return {"field_basis": "polynomial", "bias_degree": number} if kind == "poly" else \
        {"field_basis": "bspline", "bspline_knots": number}


def variant(manifest: Path, name: str) -> DALMethod:
    """The bundle's weights with the field ``name``; named after it."""
    bundle = load_bundle(manifest)
    config = {**bundle.manifest["model_config"], **field_settings(name)}
    model = build_model("dal", config)
    model.load_state_dict(bundle.model.state_dict())
    bundle.model = model.eval()
    method = DALMethod(bundle, "cpu")
    method.name = name
    return method


def calibrate(methods: list[DALMethod], per_modality: int, rate: float) -> None:
    """Each variant's thresholds, as ``calibration.thresholds_from_maps`` makes them, from the same scans."""
    config = CalibrationConfig()
    scans = itertools.chain(held_out_healthy_scans(per_modality, MODALITIES, seed=config.seed),
                            (case for case in folder_cases(HEALTHY) if not case.reference.array.any()))
    pooled = {method.name: {m: [] for m in MODALITIES} for method in methods}
    atlas = methods[0].atlas
    for case in scans:
        settings = DetectionConfig(modality=case.modality)
        prepared = prepare_scan(case.image, atlas, settings)
        for method in methods:
            detection = analyse_prepared(method, prepared, atlas, settings, threshold=math.inf)
            pooled[method.name][case.modality].append(detection.anomaly_map.array[prepared.input_brain])
        print("calibration scan", case.name, case.modality, flush=True)
    for method in methods:
        thresholds = {m: math.ceil(float(np.quantile(np.concatenate(v), 1 - rate)) * 10**THRESHOLD_DECIMALS)
                      / 10**THRESHOLD_DECIMALS for m, v in pooled[method.name].items()}
        method.bundle.thresholds = {**thresholds, "default": max(thresholds.values())}
        print(method.name, "thresholds", json.dumps(method.bundle.thresholds), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_BUNDLE), help="manifest.json (default: the shipped model)")
    parser.add_argument("--fields", default="poly3,bspline4")
    parser.add_argument("--calibration-scans", type=int, default=8, help="rendered per modality")
    parser.add_argument("--healthy-scans", type=int, default=8, help="held-out renders per modality")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    methods = [variant(Path(args.model), name) for name in args.fields.split(",")]
    calibrate(methods, args.calibration_scans, CalibrationConfig().false_positive_rate)
    cases = itertools.chain((c for c in folder_cases(REAL) if c.name.startswith("Brats18")),
                            held_out_healthy_scans(args.healthy_scans, MODALITIES),
                            (c for c in folder_cases(HEALTHY) if c.modality == "t1"))
    rows = evaluate(methods, cases, progress=lambda row: print(json.dumps(row), flush=True)).rows
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "results.csv")
    print("| field | modality | mean AP | mean best Dice | Dice at threshold | healthy false lesion, mean mL: "
          "held-out renders | real scans |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for method, modality in itertools.product(methods, MODALITIES):
        mine = [r for r in rows if r["method"] == method.name and r["modality"] == modality]
        lesioned = [r for r in mine if "ap" in r]
        cells = [f"{mean(r[k] for r in lesioned):.3f}" if lesioned else "" for k in ("ap", "best_dice", "dice")]
        for source in ("held-out", "real"):
            healthy = [r["false_positive_ml"] for r in mine if "ap" not in r and r["source"] == source]
            cells.append(f"{mean(healthy):.1f} ({len(healthy)} scans)" if healthy else "")
        print(f"| {method.name} | {modality} | {' | '.join(cells)} |")
    for method in methods[1:]:
        print(f"\n{method.name} minus {methods[0].name}, case by case:")
        print(paired_differences_table(rows, method.name, methods[0].name, "real", "Brats18"))

if __name__ == "__main__":
    main()
