"""The imaging information's field, several kinds on the same weights, each recalibrated: a screen before a full
measurement. Every variant gets label-free thresholds from the first N calibration renders per modality (plus the
real healthy scans), then is run beside the others on the dev BraTS cases and on held-out healthy renders, every
scan prepared once and analysed by each variant (``disanatdetect.evaluate.evaluate``). Prints the harness's
summary table (per source, modality and variant: mean AP, best Dice, Dice at its own threshold, healthy false
lesion), then each variant against the first case by case; rows in OUT/results.csv. Not a release measurement
(that is ``disanatdetect evaluate``).

    python3 Resources/compare_imaging_information.py --fields poly3,bspline4 --out runs/fields
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
from pathlib import Path

from disanatdetect.bundle import DEFAULT_BUNDLE, load_bundle
from disanatdetect.calibration import CalibrationConfig, prepared_healthy_map, thresholds_from_maps
from disanatdetect.dal_inference import DALMethod
from disanatdetect.evaluate import (evaluate, folder_cases, held_out_healthy_scans, paired_differences_table,
                                    summary_table, write_csv)
from disanatdetect.models import build_model
from disanatdetect.pipeline import DetectionConfig, prepare_scan
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


def calibrate(methods: list[DALMethod], per_modality: int) -> None:
    """Each variant's thresholds from the same healthy scans, by ``calibration.thresholds_from_maps``."""
    config = CalibrationConfig()
    scans = itertools.chain(held_out_healthy_scans(per_modality, MODALITIES, seed=config.seed),
                            (case for case in folder_cases(HEALTHY) if not case.reference.array.any()))
    maps = {method.name: {m: [] for m in MODALITIES} for method in methods}
    atlas = methods[0].atlas
    for case in scans:
        prepared = prepare_scan(case.image, atlas, DetectionConfig(modality=case.modality))
        for method in methods:
            maps[method.name][case.modality].append(prepared_healthy_map(method, prepared, case.modality, atlas))
        print("calibration scan", case.name, case.modality, flush=True)
    for method in methods:
        method.bundle.thresholds = thresholds_from_maps(maps[method.name], config)
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
    calibrate(methods, args.calibration_scans)
    cases = itertools.chain((c for c in folder_cases(REAL) if c.name.startswith("Brats18")),
                            held_out_healthy_scans(args.healthy_scans, MODALITIES),
                            (c for c in folder_cases(HEALTHY) if c.modality == "t1"))
    rows = evaluate(methods, cases, progress=lambda row: print(json.dumps(row), flush=True)).rows
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "results.csv")
    print(summary_table(rows))
    for method in methods[1:]:
        print(f"\n{method.name} minus {methods[0].name}, case by case:")
        print(paired_differences_table(rows, method.name, methods[0].name, "real", "Brats18"))


if __name__ == "__main__":
    main()
