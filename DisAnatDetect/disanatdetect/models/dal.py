"""DAL: disentangled anatomy learning (after Yang et al., Medical Image Analysis 2026).

Four parts, each a small 2D network or a fixed operator:

- ``anatomy_encoder``: scan slice (+ atlas priors) -> K tissue logits -> one-hot anatomical image (no contrast);
- imaging information: the scan's robust intensity per tissue class (:func:`class_intensities`);
- ``restoration``: the anatomy's edges (+ priors) -> healthy anatomy; abnormal regions, which leave only an outline
  in the edge map, are filled with the tissue that belongs there;
- ``decoder``: anatomy + imaging information -> image in the scan's contrast (FiLM-conditioned U-Net on top of
  a piecewise-constant rendering).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from disanatdetect.models.onehot import differentiable_one_hot
from disanatdetect.models.registry import register
from disanatdetect.models.unet import UNet2d


@dataclass(frozen=True)
class DALConfig:
    """Architecture settings; the flags switch parts off for the ablation study."""

    n_classes: int = 4
    encoder_channels: int = 16
    restoration_channels: int = 16
    decoder_channels: int = 12
    depth: int = 3
    use_priors: bool = True
    hard_one_hot: bool = True
    use_restoration: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def edge_map(anatomy: torch.Tensor) -> torch.Tensor:
    """High-pass of each class channel: |x - 3x3 mean of x|, non-zero only at tissue boundaries."""
    local_mean = F.avg_pool2d(anatomy, 3, stride=1, padding=1, count_include_pad=False)
    return (anatomy - local_mean).abs() * 2.0


def class_intensities(image: torch.Tensor, anatomy: torch.Tensor) -> torch.Tensor:
    """Median intensity of ``image`` ``[B, 1, H, W]`` in each class of ``anatomy`` ``[B, K, H, W]`` -> ``[B, K]``.

    A median, not a mean, so that a lesion occupying part of a class barely moves it. Classes absent from a
    sample get the mean of the present classes' medians.
    """
    labels = anatomy.max(1).indices.flatten(1)  # argmax along dim 1, faster on CPU
    pixels = image[:, 0].flatten(1)
    values = torch.zeros(anatomy.shape[:2], device=image.device, dtype=image.dtype)
    present = torch.zeros(anatomy.shape[:2], dtype=torch.bool, device=image.device)
    for k in range(1, anatomy.shape[1]):  # one call per class for the whole batch: no per-sample loop or sync
        inside = labels == k
        values[:, k] = torch.nanmedian(torch.where(inside, pixels, torch.nan), dim=1).values
        present[:, k] = inside.any(1)
    values = torch.where(present, values, 0.0)
    fallback = values.sum(1, keepdim=True) / present.sum(1, keepdim=True).clamp(min=1)
    values = torch.where(present, values, fallback)
    values[:, 0] = 0.0  # background is zero after skull stripping
    return values


@register("dal")
class DAL(nn.Module):
    def __init__(self, config: DALConfig = DALConfig()):
        super().__init__()
        self.config = config
        k = config.n_classes
        priors = k if config.use_priors else 0
        self.anatomy_encoder = UNet2d(1 + priors, k, config.encoder_channels, config.depth)
        self.restoration = UNet2d(k + priors, k, config.restoration_channels, config.depth)
        self.decoder = UNet2d(k + 1, 1, config.decoder_channels, config.depth, condition_size=k)

    def _with_priors(self, x: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, priors], 1) if self.config.use_priors else x

    def encode(self, image: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
        """Anatomy logits ``[B, K, H, W]`` of an image slice ``[B, 1, H, W]``."""
        return self.anatomy_encoder(self._with_priors(image, priors))

    def one_hot(self, logits: torch.Tensor) -> torch.Tensor:
        return differentiable_one_hot(logits, hard=self.config.hard_one_hot)

    def restore(self, anatomy: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
        """Healthy-anatomy logits rebuilt from the edges of ``anatomy`` alone (plus the priors)."""
        return self.restoration(self._with_priors(edge_map(anatomy), priors))

    def render(self, anatomy: torch.Tensor, intensities: torch.Tensor) -> torch.Tensor:
        """Image ``[B, 1, H, W]`` of ``anatomy`` in the contrast given by per-class ``intensities`` ``[B, K]``."""
        piecewise = (anatomy * intensities[:, :, None, None]).sum(1, keepdim=True)
        residual = self.decoder(torch.cat([anatomy, piecewise], 1), intensities)
        return (piecewise + residual) * (anatomy[:, :1] < 0.5)  # background stays zero

    @torch.inference_mode()
    def pseudo_healthy(self, image: torch.Tensor, priors: torch.Tensor,
                       intensities: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Inference for a batch of slices: encoded and restored anatomy (probabilities) and the PHI.

        ``intensities`` are normally measured over the whole volume (see :mod:`disanatdetect.pipeline`);
        without them they are measured on these slices.
        """
        encoded = self.one_hot(self.encode(image, priors))
        if intensities is None:
            intensities = class_intensities(image, encoded)
        if self.config.use_restoration:
            restored_probabilities = F.softmax(self.restore(encoded, priors), 1)
        else:
            restored_probabilities = encoded
        restored = differentiable_one_hot(torch.log(restored_probabilities + 1e-8), hard=self.config.hard_one_hot)
        return {
            "encoded": encoded,
            "restored": restored_probabilities,
            "pseudo_healthy": self.render(restored, intensities),
        }
