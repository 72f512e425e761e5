"""The imaging information's field on and off, same weights: PHI correlation on healthy scans, AP and best Dice on
a few dev cases, all on the working grid through the detector's own preparation. An early check of a checkpoint,
not a release measurement (that is ``disanatdetect evaluate``).

    python3 Resources/compare_imaging_information.py training/ablations/reference/last.pt --degrees 0,3
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from disanatdetect import metrics
from disanatdetect.atlas import load_atlas
from disanatdetect.bundle import Bundle
from disanatdetect.dal_inference import DALMethod
from disanatdetect.io import read_volume
from disanatdetect.models import DAL
from disanatdetect.pipeline import DetectionConfig, analyse_prepared, prepare_scan
from disanatdetect.preprocess import resample_to
from disanatdetect.train import load_run_config

HEALTHY, REAL = "../shared/data/healthy", "../shared/data/real"
SCANS = (("colin27", "/usr/share/mricron/templates/ch2bet.nii.gz", "t1", None),
         ("mass-03", f"{HEALTHY}/mass-03/t1.nii.gz", "t1", None),
         ("mass-07", f"{HEALTHY}/mass-07/t1.nii.gz", "t1", None),
         ("hcp-t2", f"{HEALTHY}/hcp-mni152-t2-template/t2.nii.gz", "t2", None),
         ("2013_11 flair", f"{REAL}/Brats18_2013_11_1/flair.nii.gz", "flair", "Brats18_2013_11_1"),
         ("2013_11 t2", f"{REAL}/Brats18_2013_11_1/t2.nii.gz", "t2", "Brats18_2013_11_1"),
         ("ABM flair", f"{REAL}/Brats18_CBICA_ABM_1/flair.nii.gz", "flair", "Brats18_CBICA_ABM_1"),
         ("ABM t1", f"{REAL}/Brats18_CBICA_ABM_1/t1.nii.gz", "t1", "Brats18_CBICA_ABM_1"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--run", default=None,
                        help="the run folder whose config.json built it (default: the checkpoint's folder)")
    parser.add_argument("--degrees", default="0,3")
    args = parser.parse_args()
    torch.set_num_threads(2)
    atlas = load_atlas()
    architecture = load_run_config(args.run or str(Path(args.checkpoint).parent)).model
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)["model"]
    prepared = {name: prepare_scan(read_volume(path), atlas, DetectionConfig(modality=modality))
                for name, path, modality, _ in SCANS}
    for degree in (int(d) for d in args.degrees.split(",")):
        model = DAL(replace(architecture, bias_degree=degree))
        model.load_state_dict(state)
        method = DALMethod(Bundle(model.eval(), "dal", "checkpoint", {}, {}), "cpu")
        row = {"bias_degree": degree}
        for name, _, modality, case in SCANS:
            scan = prepared[name]
            result = analyse_prepared(method, scan, atlas, DetectionConfig(modality=modality)).working_grid
            entry = {"phi_correlation": round(float(np.corrcoef(result.pseudo_healthy[scan.brain],
                                                                 scan.image[scan.brain])[0, 1]), 3)}
            if case:
                reference = read_volume(f"{REAL}/{case}/reference.nii.gz")
                on_grid = resample_to(reference.with_array((reference.array > 0).astype(np.float32)).to_sitk(),
                                      atlas.template.to_sitk(), scan.transform)
                lesion = sitk.GetArrayFromImage(on_grid) > 0.5
                entry["ap"] = round(metrics.average_precision(result.anomaly, lesion, scan.brain), 3)
                entry["best_dice"] = round(metrics.best_dice(result.anomaly, lesion, scan.brain)[0], 3)
            row[name] = entry
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
