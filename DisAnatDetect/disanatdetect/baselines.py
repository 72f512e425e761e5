"""Baselines behind the same :class:`~disanatdetect.pipeline.AnomalyMethod` interface as DAL.

- ``ThresholdMethod``: rank-equalised intensity (strong on FLAIR, blind on T2 where CSF is bright);
- ``ReconstructionMethod``: a learned reconstruction (the convolutional autoencoder or the denoising autoencoder
  of :mod:`disanatdetect.models.autoencoders`) scored by the residual, like DAL's PHI residual.

All use the same registration, normalisation and post-processing as DAL, so that only the scoring differs.
"""

from __future__ import annotations

import numpy as np
import torch

from disanatdetect.atlas import load_atlas
from disanatdetect.bundle import Bundle, load_bundle
from disanatdetect.detection import AtlasSpaceResult, DetectionConfig
from disanatdetect.devices import resolve_device
from disanatdetect.postprocess import PostprocessConfig, anomaly_map
from disanatdetect.scoring import LESION_SIGN, anomaly_score


def _modality(config: DetectionConfig) -> str:
    # Without an anatomy there is no tissue order to recognise the contrast from: "auto" scores both ways.
    return config.modality if config.modality != "auto" else "t1"


class ThresholdMethod:
    """Score = the voxel's intensity rank among brain voxels (0..1); T1-like contrasts: distance from the median.

    Ranks are uniform over the brain whatever the scanner, so its label-free threshold is a fixed quantile.
    """

    name = "Threshold"
    version = "rank-equalised"
    # Ranks are uniform over the brain: a fraction of the threshold would take in a third of it, so no growth.
    detection_overrides = {"postprocess": PostprocessConfig(grow_fraction=1.0)}

    def __init__(self, quantile: float = 0.99):
        self.atlas = load_atlas()
        self.quantile = quantile

    def analyse(self, image, brain, config, progress=None, should_cancel=None) -> AtlasSpaceResult:
        modality = _modality(config)
        values = image[brain]
        ranks = np.empty(values.size, dtype=np.float32)
        key = values if LESION_SIGN[modality] > 0 else np.abs(values - np.median(values))
        ranks[np.argsort(key, kind="stable")] = np.linspace(0, 1, values.size, dtype=np.float32)
        score = np.zeros(image.shape, dtype=np.float32)
        score[brain] = ranks
        anomaly = anomaly_map(score, brain, self.atlas.config.spacing_mm, config.postprocess)
        return AtlasSpaceResult(image, brain, None, modality, score, anomaly)

    def threshold_for(self, modality: str) -> float:
        return self.quantile


class ReconstructionMethod:
    """An autoencoder (``ae``) or denoising autoencoder (``dae``) bundle; PHI = its reconstruction."""

    def __init__(self, bundle: Bundle | str, device: str = "auto", batch_size: int = 16):
        self.device = resolve_device(device)
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, device=self.device)
        self.bundle.model.to(self.device).eval()
        self.name = {"ae": "AE", "dae": "DAE"}.get(self.bundle.name, self.bundle.name)
        self.version = self.bundle.version
        self.batch_size = batch_size
        self.atlas = load_atlas()

    @torch.inference_mode()
    def analyse(self, image, brain, config, progress=None, should_cancel=None) -> AtlasSpaceResult:
        modality = _modality(config)
        reconstruction = np.zeros_like(image)
        slices = np.flatnonzero(brain.any((1, 2)))
        for start in range(0, len(slices), self.batch_size):
            batch = slices[start:start + self.batch_size]
            x = torch.from_numpy(image[batch]).unsqueeze(1).to(self.device)
            reconstruction[batch] = self.bundle.model(x)[:, 0].cpu().numpy()
        reconstruction = np.where(brain, reconstruction, 0).astype(np.float32)
        score = np.where(brain, anomaly_score(image, reconstruction, modality), 0)
        anomaly = anomaly_map(score, brain, self.atlas.config.spacing_mm, config.postprocess)
        return AtlasSpaceResult(image, brain, reconstruction, modality, score, anomaly)

    def threshold_for(self, modality: str) -> float:
        return self.bundle.threshold_for(modality)
