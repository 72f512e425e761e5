"""DAL inference: a normalised image on the working grid -> encoded and restored anatomy, imaging information and
the pseudo-healthy image (:func:`reconstruct`), and DAL as an anomaly method (:class:`DALMethod`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch
from torch.nn import functional as F

from disanatdetect.atlas import Atlas, AtlasConfig, load_atlas
from disanatdetect.bundle import Bundle, load_bundle
from disanatdetect.detection import (AtlasSpaceResult, Cancelled, DetectionConfig, ProgressCallback,
                                     Reconstruction)
from disanatdetect.devices import resolve_device
from disanatdetect.preprocess import intensity_scale, largest_component_filled, normalise_intensity
from disanatdetect.scoring import score_reconstruction


def _slices_with_brain(brain: np.ndarray) -> np.ndarray:
    return np.flatnonzero(brain.any((1, 2)))


def _batches(indices: np.ndarray, size: int):
    for start in range(0, len(indices), size):
        yield indices[start:start + size]


def analyse_atlas_space(model: torch.nn.Module, image: np.ndarray, brain: np.ndarray, atlas: Atlas,
                        config: DetectionConfig = DetectionConfig(), device: torch.device = torch.device("cpu"),
                        progress: ProgressCallback | None = None,
                        should_cancel: Callable[[], bool] | None = None) -> AtlasSpaceResult:
    """Reconstruct and score a normalised image on the working grid (first taking out of ``brain`` what the
    encoder calls background and normalising again, if ``config.brain_from_encoder``)."""
    scale = 1.0
    if config.brain_from_encoder:
        brain = brain_seen_by_encoder(model, image, brain, atlas, config, device, should_cancel)
        scale = intensity_scale(image, brain, config.normalisation)
        image = normalise_intensity(image, brain, config.normalisation)
    reconstruction = reconstruct(model, image, brain, atlas, config, device, progress, should_cancel)
    return replace(score_reconstruction(image, brain, reconstruction, atlas, config), scale=scale)


@torch.inference_mode()
def brain_seen_by_encoder(model: torch.nn.Module, image: np.ndarray, brain: np.ndarray, atlas: Atlas,
                          config: DetectionConfig = DetectionConfig(), device: torch.device = torch.device("cpu"),
                          should_cancel: Callable[[], bool] | None = None) -> np.ndarray:
    """``brain`` without the voxels the encoder calls background, as one piece without holes.

    Training shows the encoder a band of the head around a share of its brains, labelled background; so it knows
    scalp, marrow and orbits where a brain mask from a skull-on scan takes them in. ``brain`` itself is returned if
    less than ``config.min_brain_kept`` of it would stay.
    """
    priors = torch.from_numpy(atlas.priors).to(device)
    image_t = torch.from_numpy(image).to(device)
    background = np.zeros(image.shape, dtype=bool)
    for batch in _batches(_slices_with_brain(brain), config.batch_size):
        if should_cancel is not None and should_cancel():
            raise Cancelled()
        logits = model.encode(image_t[batch].unsqueeze(1), priors[:, batch].permute(1, 0, 2, 3))
        background[batch] = (logits.argmax(1) == 0).cpu().numpy()
    kept = largest_component_filled(brain & ~background) & brain
    return kept if kept.sum() >= config.min_brain_kept * brain.sum() else brain


@torch.inference_mode()
def reconstruct(model: torch.nn.Module, image: np.ndarray, brain: np.ndarray, atlas: Atlas,
                config: DetectionConfig = DetectionConfig(), device: torch.device = torch.device("cpu"),
                progress: ProgressCallback | None = None,
                should_cancel: Callable[[], bool] | None = None) -> Reconstruction:
    """The pseudo-healthy image of a normalised image on the working grid, in three passes over the slices.

    Pass 1 encodes the anatomy of every slice, pass 2 restores it; the imaging information (per-class intensities
    and the field) is then measured over the whole brain in 3D, which is more robust than per slice. Pass 3
    renders.
    """
    slices = _slices_with_brain(brain)
    k = atlas.priors.shape[0]
    priors = torch.from_numpy(atlas.priors).to(device)
    image_t = torch.from_numpy(image).to(device)
    disagreement = np.zeros(image.shape, dtype=np.float32)
    pseudo_healthy = np.zeros(image.shape, dtype=np.float32)
    passes = 2 + bool(model.config.use_restoration)
    total = passes * max(1, len(slices))
    done = 0

    def step(count: int) -> None:
        nonlocal done
        done += count
        if should_cancel is not None and should_cancel():
            raise Cancelled()
        if progress is not None:
            progress("reconstructing", done / total)

    def slice_priors(batch: np.ndarray) -> torch.Tensor:
        return priors[:, batch].permute(1, 0, 2, 3)

    brain_t = torch.from_numpy(brain).to(device)

    def inside_brain(probabilities: torch.Tensor, batch: np.ndarray) -> torch.Tensor:
        """The brain mask is known: background outside it, one of the tissues inside it."""
        inside = brain_t[batch].unsqueeze(1)
        tissue = probabilities.clone()
        tissue[:, :1] = 0
        tissue = tissue / tissue.sum(1, keepdim=True).clamp(min=1e-8)
        outside = torch.zeros_like(probabilities)
        outside[:, 0] = 1
        return torch.where(inside, tissue, outside)

    encoded_probabilities = np.zeros((k,) + image.shape, dtype=np.float32)
    encoded_probabilities[0] = 1.0
    for batch in _batches(slices, config.batch_size):
        logits = model.encode(image_t[batch].unsqueeze(1), slice_priors(batch))
        probabilities = inside_brain(F.softmax(logits, 1), batch)
        encoded_probabilities[:, batch] = probabilities.permute(1, 0, 2, 3).cpu().numpy()
        step(len(batch))
    encoded = encoded_probabilities.argmax(0).astype(np.uint8)

    def encoded_anatomy(batch: np.ndarray) -> torch.Tensor:  # one-hot, or soft in the ablation
        probabilities = torch.from_numpy(encoded_probabilities[:, batch]).permute(1, 0, 2, 3).to(device)
        return model.one_hot(torch.log(probabilities + 1e-8))

    restored_probabilities = encoded_probabilities
    if model.config.use_restoration:
        restored_probabilities = np.zeros_like(encoded_probabilities)
        restored_probabilities[0] = 1.0
        for batch in _batches(slices, config.batch_size):
            logits = model.restore(encoded_anatomy(batch), slice_priors(batch))
            restored_probabilities[:, batch] = inside_brain(F.softmax(logits, 1), batch).permute(1, 0, 2, 3).cpu() \
                .numpy()
            step(len(batch))
    restored = restored_probabilities.argmax(0).astype(np.uint8)

    # The imaging information of the whole volume, read where the scan's anatomy and the restored one agree (a
    # lesion, where they differ, does not shape it).
    volume_anatomy = model.one_hot(torch.log(torch.from_numpy(restored_probabilities).to(device)[None] + 1e-8))
    trusted = torch.from_numpy((encoded == restored) & brain).to(device)[None, None]
    intensities_t, field = model.imaging_information(image_t[None, None], volume_anatomy, trusted)
    del volume_anatomy
    intensities_t, field = intensities_t[0], field[0, 0]
    for batch in _batches(slices, config.batch_size):
        anatomy = torch.from_numpy(restored_probabilities[:, batch]).permute(1, 0, 2, 3).to(device)
        rendered = model.render(model.one_hot(torch.log(anatomy + 1e-8)), intensities_t.expand(len(batch), -1),
                                field[batch].unsqueeze(1))
        pseudo_healthy[batch] = rendered[:, 0].cpu().numpy()
        disagreement[batch] = (1 - (encoded_anatomy(batch) * anatomy).sum(1)).cpu().numpy()
        step(len(batch))
    pseudo_healthy = np.where(brain, pseudo_healthy, 0).astype(np.float32)
    return Reconstruction(encoded, restored, intensities_t.cpu().numpy(), pseudo_healthy, disagreement)


class DALMethod:
    """DAL from a model bundle (the shipped one by default)."""

    name = "DAL"
    detection_overrides: dict = {}  # settings an ablation variant changes (see evaluate.ablations)

    def __init__(self, bundle: Bundle | None = None, device: str | torch.device = "auto"):
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.bundle = bundle or load_bundle(device=self.device)
        self.bundle.model.to(self.device).eval()
        self.version = self.bundle.version
        self.atlas = load_atlas(AtlasConfig(**_tuples(self.bundle.manifest.get("atlas_config", {}))))

    def analyse(self, image, brain, config, progress=None, should_cancel=None) -> AtlasSpaceResult:
        return analyse_atlas_space(self.bundle.model, image, brain, self.atlas,
                                   replace(config, **self.detection_overrides), self.device, progress, should_cancel)

    def threshold_for(self, modality: str) -> float:
        return self.bundle.threshold_for(modality)


def _tuples(config: dict) -> dict:
    """JSON turns tuples into lists; frozen dataclasses want them back as tuples."""
    return {key: tuple(value) if isinstance(value, list) else value for key, value in config.items()}

