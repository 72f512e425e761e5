"""Choose the lesion growth of the post-processing (fraction of the threshold, and reach) on synthetic validation
cases; no real case is used.

For 24 lesioned synthetic volumes (seeds 30000-30023: T2, FLAIR, PD, T1 x tumour, MS, stroke x 2) and 4 healthy
scans of the held-out subjects in each of those modalities (seeds 30100-30103), all disjoint from training,
calibration and the evaluation suite, each through ``detect``'s own path, prints for each setting the mean Dice at the shipped threshold and the mean false-positive lesion volume on
the healthy volumes; the release takes the setting with the best mean Dice.

    python3 Resources/choose_lesion_growth.py
"""

from itertools import product

import numpy as np

from disanatdetect.calibration import CalibrationConfig, false_positive_ml, healthy_maps
from disanatdetect.dal_inference import DALMethod
from disanatdetect.metrics import dice
from disanatdetect.pipeline import DetectionConfig, analyse_prepared, prepare_scan
from disanatdetect.postprocess import PostprocessConfig, lesion_mask
from disanatdetect.synth.cases import synthetic_cases

MODALITIES = ("t2", "flair", "pd", "t1")
SETTINGS = list(product((1.0, 0.8, 0.7, 0.6), (None, 1.5, 3.0, 4.5, 6.0)))
POSTPROCESS = [PostprocessConfig(grow_fraction=fraction, grow_reach_mm=reach) for fraction, reach in SETTINGS]


def _masks(method, case):
    """The lesion mask of ``case`` under every setting."""
    config = DetectionConfig(modality=case.modality)
    detection = analyse_prepared(method, prepare_scan(case.image, method.atlas, config), method.atlas, config)
    anomaly, spacing = detection.anomaly_map.array, case.image.spacing[::-1]
    return [lesion_mask(anomaly, detection.threshold, spacing, postprocess) > 0 for postprocess in POSTPROCESS]


def main() -> None:
    method = DALMethod(device="cpu")
    dices, healthy_ml = [], []
    seed = 30_000
    for modality in MODALITIES:
        for lesion in ("tumour", "ms", "stroke"):
            for _ in range(2):
                (case,) = synthetic_cases(method.atlas, seed, (modality,), lesion)
                dices.append([dice(mask, case.lesion_mask.array > 0) for mask in _masks(method, case)])
                print(modality, lesion, seed, " ".join(f"{value:.3f}" for value in dices[-1]), flush=True)
                seed += 1
    healthy = CalibrationConfig(volumes_per_modality=4, modalities=MODALITIES, seed=30_100, real_scans=())
    for modality, maps in healthy_maps(method, healthy).items():
        for index, healthy_map in enumerate(maps):
            threshold = method.threshold_for(modality)
            healthy_ml.append([false_positive_ml(healthy_map, threshold, postprocess) for postprocess in POSTPROCESS])
            print(modality, "healthy", index, " ".join(f"{value:.2f}" for value in healthy_ml[-1]), flush=True)
    mean_dice, mean_ml = np.mean(dices, 0), np.mean(healthy_ml, 0)
    print("fraction  reach (mm)  mean Dice  healthy FP (mL per volume)")
    for (fraction, reach), value, ml in zip(SETTINGS, mean_dice, mean_ml):
        print(f"{fraction:8.1f}  {str(reach):>10}  {value:9.4f}  {ml:8.2f}")
    fraction, reach = SETTINGS[int(np.argmax(mean_dice))]
    print(f"best mean Dice: grow_fraction {fraction}, grow_reach_mm {reach}")


if __name__ == "__main__":
    main()
