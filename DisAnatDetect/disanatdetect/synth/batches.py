"""Training batches of healthy 2D slices on the working grid, generated on the fly."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from disanatdetect.atlas import Atlas
from disanatdetect.preprocess import normalise_intensity
from disanatdetect.synth.anatomy import AnatomyConfig, sample_anatomy
from disanatdetect.synth.contrast import MODALITIES, ContrastConfig, render, sample_contrast
from disanatdetect.synth.labels import Label
from disanatdetect.synth.lesions import _irregular_ball


@dataclass(frozen=True)
class BatchConfig:
    """How a batch is drawn: share of realistic presets versus random contrast, and the restoration corruption."""

    batch_size: int = 8
    preset_fraction: float = 0.5
    min_brain_voxels: int = 800
    corruption_probability: float = 0.8
    corruption_blobs: tuple[int, int] = (1, 3)
    corruption_radius_mm: tuple[float, float] = (3.0, 22.0)


def _contrast(rng: np.random.Generator, config: BatchConfig):
    modality = str(rng.choice(MODALITIES)) if rng.random() < config.preset_fraction else None
    return sample_contrast(rng, modality)


def corrupt_anatomy(labels: np.ndarray, rng: np.random.Generator, spacing_mm: float,
                    config: BatchConfig = BatchConfig()) -> np.ndarray:
    """Paste implausible blobs of a random tissue class into a label map (inside the brain).

    They imitate what the anatomy encoder makes of a lesion (a grey-matter blob in white matter, oedema read as
    CSF), so that the restoration network learns to replace such structures by the anatomy around them.
    """
    out = labels.copy()
    if rng.random() >= config.corruption_probability:
        return out
    brain = labels != Label.BACKGROUND
    points = np.argwhere(brain)
    for _ in range(int(rng.integers(config.corruption_blobs[0], config.corruption_blobs[1] + 1))):
        centre = points[rng.integers(len(points))].astype(np.float32)
        radius = rng.uniform(*config.corruption_radius_mm)
        blob = _irregular_ball(labels.shape, centre, radius, spacing_mm, rng, 0.3) & brain
        out[blob] = rng.choice([Label.CSF, Label.GREY_MATTER, Label.WHITE_MATTER])
    return out


def healthy_slice_batch(atlas: Atlas, rng: np.random.Generator, config: BatchConfig = BatchConfig(),
                        anatomy: AnatomyConfig = AnatomyConfig(),
                        contrast: ContrastConfig = ContrastConfig()) -> dict[str, np.ndarray]:
    """A batch of axial slices: one anatomy rendered in two contrasts, its labels, a corrupted copy, the priors.

    Arrays: ``image_a``, ``image_b`` ``[B, 1, H, W]`` (normalised), ``labels``, ``corrupted`` ``[B, H, W]``
    (int64), ``priors`` ``[B, K, H, W]`` (the atlas at that slice, undeformed: what registration provides).
    """
    usable = np.flatnonzero(atlas.brain_mask.sum((1, 2)) >= config.min_brain_voxels)
    spacing = atlas.config.spacing_mm
    fields = {name: [] for name in ("image_a", "image_b", "labels", "corrupted", "priors")}
    for _ in range(config.batch_size):
        z = int(rng.choice(usable))
        priors = atlas.priors[:, z]
        labels = sample_anatomy(priors, rng, anatomy)
        brain = labels != Label.BACKGROUND
        for name in ("image_a", "image_b"):
            image = render(labels, _contrast(rng, config), contrast)
            fields[name].append(normalise_intensity(image, brain)[None])
        fields["labels"].append(labels)
        fields["corrupted"].append(corrupt_anatomy(labels, rng, spacing, config))
        fields["priors"].append(priors)
    batch = {name: np.stack(values) for name, values in fields.items()}
    batch["labels"] = batch["labels"].astype(np.int64)
    batch["corrupted"] = batch["corrupted"].astype(np.int64)
    return batch
