"""Measure brain extraction on unstripped scans whose brain is known: held-out subjects rendered with their heads.

Each scan is rendered twice from the same seed, with its head (``SKULL_ON``: thick slices or 1 mm, eyes, scalp,
noise everywhere) and without (the brain alone, in the same place); the extraction of the first is scored against
the brain of the second: Dice, and the volume it takes from outside the brain (the orbits, the scalp). Each
setting of ``BrainExtractionConfig.refinement_band_mm`` given is measured on the same scans.

    python3 Resources/measure_brain_extraction.py --per-modality 4 --bands none,10
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import SimpleITK as sitk

from disanatdetect.atlas import load_atlas
from disanatdetect.brain_extraction import BrainExtractionConfig, extract_brain
from disanatdetect.evaluate import DEFAULT_LABEL_MAPS, HELD_OUT_SEED
from disanatdetect.metrics import dice
from disanatdetect.synth.healthy_scans import SKULL_ON, render_healthy_scan
from disanatdetect.synth.label_bank import load_bank, split_subjects


def true_brain(stripped, on) -> np.ndarray:
    """The stripped twin's brain on the unstripped scan's grid (same place, another extent)."""
    mask = stripped.with_array((stripped.array > 0).astype(np.uint8)).to_sitk()
    return sitk.GetArrayFromImage(sitk.Resample(mask, on.to_sitk(), sitk.Transform(), sitk.sitkNearestNeighbor)) > 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-modality", type=int, default=4)
    parser.add_argument("--modalities", default="t1,t1c,t2,flair,pd")
    parser.add_argument("--bands", default="none,10", help="refinement bands in mm; none: head-to-head fit alone")
    parser.add_argument("--holdout-subjects", type=int, default=4)
    args = parser.parse_args()
    atlas = load_atlas()
    held_out = split_subjects(DEFAULT_LABEL_MAPS, args.holdout_subjects)[1]
    bank = load_bank(held_out, atlas)
    bands = [None if b == "none" else float(b) for b in args.bands.split(",")]
    results: dict = {band: [] for band in bands}
    print("modality seed spacing_mm " + " ".join(f"dice/outside_ml(band {b})" for b in bands))
    for modality in args.modalities.split(","):
        for index in range(args.per_modality):
            subject, seed = index % len(held_out), HELD_OUT_SEED + index
            scan = render_healthy_scan(bank, subject, modality, seed, atlas, SKULL_ON)
            brain = true_brain(render_healthy_scan(bank, subject, modality, seed, atlas,
                                                   dataclasses.replace(SKULL_ON, with_head=False)), scan)
            voxel_ml = float(np.prod(scan.spacing)) / 1000
            cells = []
            for band in bands:
                started = time.perf_counter()
                found = extract_brain(scan, BrainExtractionConfig(refinement_band_mm=band))
                row = (dice(found, brain), float((found & ~brain).sum()) * voxel_ml, time.perf_counter() - started)
                results[band].append((modality, *row))
                cells.append(f"{row[0]:.3f}/{row[1]:.1f} ({row[2]:.1f}s)")
            print(f"{modality} {seed} {'x'.join(f'{s:g}' for s in scan.spacing)} " + " ".join(cells), flush=True)
    print("\nmean per modality, Dice / mL outside the brain:")
    for band in bands:
        summary = []
        for modality in args.modalities.split(","):
            rows = np.array([r[1:3] for r in results[band] if r[0] == modality])
            summary.append(f"{modality} {rows[:, 0].mean():.3f}/{rows[:, 1].mean():.1f}")
        print(f"band {band}: " + ", ".join(summary))


if __name__ == "__main__":
    main()
