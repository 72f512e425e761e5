"""Whole synthetic cases: a 3D scan on the working grid, with its exact lesion mask and tissue labels."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from disanatdetect.atlas import Atlas
from disanatdetect.io import Volume
from disanatdetect.synth.anatomy import sample_anatomy
from disanatdetect.synth.contrast import render, sample_contrast
from disanatdetect.synth.lesions import add_lesion


@dataclass
class SyntheticCase:
    image: Volume  # float32, background 0
    lesion_mask: Volume  # uint8, 1 = lesion (all zero for a healthy case)
    labels: Volume  # uint8 label ids (see synth.labels.Label)
    modality: str
    lesion: str  # "none" for a healthy case


def synthetic_cases(atlas: Atlas, seed: int | tuple[int, ...], modalities: Iterable[str],
                    lesion: str = "tumour") -> Iterator[SyntheticCase]:
    """One anatomy (with its lesion) for ``seed``, rendered in each of ``modalities``: exactly what
    :func:`synthetic_case` gives for each modality, with the anatomy sampled once instead of once per modality."""
    anatomy_rng = np.random.default_rng(seed)
    labels = sample_anatomy(atlas.priors, anatomy_rng)
    mask = np.zeros_like(labels)
    if lesion != "none":
        labels, mask = add_lesion(labels, lesion, anatomy_rng, atlas.config.spacing_mm)
    grid = atlas.template
    for modality in modalities:
        contrast_rng = np.random.default_rng([*np.atleast_1d(seed), zlib.crc32(modality.encode())])
        image = render(labels, sample_contrast(contrast_rng, modality))
        yield SyntheticCase(grid.with_array(image), grid.with_array(mask), grid.with_array(labels), modality, lesion)


def synthetic_case(atlas: Atlas, seed: int | tuple[int, ...], modality: str = "flair",
                   lesion: str = "tumour") -> SyntheticCase:
    """A deterministic synthetic case for ``seed``: the same seed gives the same anatomy in every modality."""
    return next(synthetic_cases(atlas, seed, (modality,), lesion))
