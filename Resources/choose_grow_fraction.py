"""Choose the lesion-growth fraction of the post-processing on synthetic validation cases (no real case).

For 24 lesioned synthetic volumes (seeds 30000-30023: T2, FLAIR, PD, T1 x tumour, MS, stroke x 2; disjoint from
training, calibration and the evaluation suite), prints the Dice at the shipped threshold for each fraction and
the mean; the release takes the fraction with the best mean.

    python3 Resources/choose_grow_fraction.py
"""

from dataclasses import replace

import numpy as np

from disanatdetect.metrics import dice
from disanatdetect.pipeline import DALMethod, DetectionConfig
from disanatdetect.postprocess import PostprocessConfig, lesion_mask
from disanatdetect.preprocess import normalise_intensity
from disanatdetect.synth.cases import synthetic_case

FRACTIONS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)


def main() -> None:
    method = DALMethod(device="cpu")
    scores = {fraction: [] for fraction in FRACTIONS}
    seed = 30_000
    for modality in ("t2", "flair", "pd", "t1"):
        for lesion in ("tumour", "ms", "stroke"):
            for _ in range(2):
                case = synthetic_case(method.atlas, seed, modality, lesion)
                brain = case.labels.array > 0
                config = DetectionConfig(modality=modality)
                image = normalise_intensity(case.image.array, brain, config.normalisation)
                anomaly = method.analyse(image, brain, config).anomaly
                voxel_ml = float(np.prod(case.image.spacing)) / 1000
                row = []
                for fraction in FRACTIONS:
                    postprocess = replace(PostprocessConfig(), grow_fraction=fraction)
                    mask = lesion_mask(anomaly, method.threshold_for(modality), voxel_ml, postprocess)
                    row.append(dice(mask, case.lesion_mask.array > 0))
                    scores[fraction].append(row[-1])
                print(modality, lesion, seed, " ".join(f"{value:.3f}" for value in row), flush=True)
                seed += 1
    print("mean Dice per fraction:", {fraction: round(float(np.mean(v)), 4) for fraction, v in scores.items()})


if __name__ == "__main__":
    main()
