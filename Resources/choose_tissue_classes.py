"""How many tissue classes the anatomy needs: what a class-constant rendering misses with 4 classes and with 5.

    python3 Resources/choose_tissue_classes.py [--label-maps DIR] [--batches 8]

The imaging information is one intensity per tissue class. Merging the deep grey nuclei (thalamus, basal ganglia)
into grey matter leaves their difference from cortex in every residual. On renders of the held-out subjects (no
lesion), this renders each image from its true classes with the per-class median intensity (the best a
class-constant model can do) and prints, per preset contrast, the mean absolute error inside the brain and inside
the deep nuclei, for 4 classes (background, CSF, GM, WM) and for 5 (deep grey matter apart).
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.nn import functional as F

from disanatdetect.models import class_intensities
from disanatdetect.synth.label_bank import load_bank
from disanatdetect.synth.slice_synthesis import SliceSynthesiser, SynthesisConfig
from disanatdetect.atlas import GREY_MATTER, load_atlas
from disanatdetect.synth.structures import DEEP_GREY_MATTER, MODALITY_PRESETS
from disanatdetect.data_paths import DEFAULT_LABEL_MAPS
from disanatdetect.synth.label_bank import split_subjects
from disanatdetect.train import LoopConfig, ValidationConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label-maps", default=DEFAULT_LABEL_MAPS)
    parser.add_argument("--batches", type=int, default=8)
    args = parser.parse_args()
    atlas = load_atlas()
    _, held_out = split_subjects(args.label_maps, LoopConfig().holdout_subjects)
    bank = load_bank(held_out, atlas)
    synthesiser = SliceSynthesiser(bank, atlas, SynthesisConfig(batch_size=16), deep_grey_matter=True)
    seed = ValidationConfig().seed
    for modality in MODALITY_PRESETS:
        totals = {(k, region): 0.0 for k in (4, 5) for region in ("brain", "deep nuclei")}
        voxels = {"brain": 0, "deep nuclei": 0}
        for index in range(args.batches):
            batch = synthesiser.batch(seed, index, modality=modality, lesions=False)
            image, five = batch["image_a"], batch["labels"]
            regions = {"brain": five > 0, "deep nuclei": five == DEEP_GREY_MATTER}
            for region, mask in regions.items():
                voxels[region] += int(mask.sum())
            for k, labels in ((4, torch.where(five == DEEP_GREY_MATTER, GREY_MATTER, five)), (5, five)):
                one_hot = F.one_hot(labels, k).permute(0, 3, 1, 2).float()
                rendered = (one_hot * class_intensities(image, one_hot)[:, :, None, None]).sum(1, keepdim=True)
                error = (rendered - image).abs()[:, 0]
                for region, mask in regions.items():
                    totals[k, region] += float(error[mask].sum())
        row = {"modality": modality}
        row.update({f"K={k} {region}": round(total / max(voxels[region], 1), 4)
                    for (k, region), total in totals.items()})
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
