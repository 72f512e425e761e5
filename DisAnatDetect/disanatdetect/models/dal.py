"""DAL: disentangled anatomy learning (after Yang et al., Medical Image Analysis 2026).

Four parts, each a small 2D network or a fixed operator:

- ``anatomy_encoder``: scan slice (+ atlas priors where ``use_priors``) -> K tissue logits -> anatomical image:
  class probabilities (partial volume and the encoder's doubt pass), or one-hot (straight-through) where
  ``hard_one_hot`` (nothing of the contrast passes);
- imaging information: the scan's robust intensity per tissue class times a smooth field that follows its
  inhomogeneity (:mod:`disanatdetect.models.imaging`);
- ``restoration``: the anatomy's edges (+ priors where ``use_priors``) -> healthy anatomy; abnormal regions,
  which leave only an outline in the edge map, are filled with the tissue that belongs there;
- ``decoder``: anatomy + imaging information -> image in the scan's contrast (FiLM-conditioned U-Net on top of
  a piecewise-constant rendering).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from disanatdetect.models.imaging import ImagingConfig, imaging_information, piecewise_image
from disanatdetect.models.onehot import differentiable_one_hot
from disanatdetect.models.registry import register
from disanatdetect.models.unet import UNet2d


@dataclass(frozen=True)
class DALConfig:
    """Architecture settings; the flags switch parts for the ablation study (the release's are
    :class:`disanatdetect.train.TrainConfig`'s and each bundle's manifest)."""

    n_classes: int = 4
    encoder_channels: int = 16
    restoration_channels: int = 16
    decoder_channels: int = 12
    depth: int = 3
    use_priors: bool = True
    hard_one_hot: bool = True
    use_restoration: bool = True
    bias_degree: int = 0  # of the imaging information's field (0: one intensity per class, as in 1.0.0)
    field_basis: str = "polynomial"  # or "bspline" (see ImagingConfig)
    bspline_knots: int = 4

    @property
    def imaging(self) -> ImagingConfig:
        return ImagingConfig(bias_degree=self.bias_degree, field_basis=self.field_basis,
                             bspline_knots=self.bspline_knots)

    def to_dict(self) -> dict:
        return asdict(self)


def edge_map(anatomy: torch.Tensor) -> torch.Tensor:
    """High-pass of each class channel: |x - 3x3 mean of x|, non-zero only at tissue boundaries."""
    local_mean = F.avg_pool2d(anatomy, 3, stride=1, padding=1, count_include_pad=False)
    return (anatomy - local_mean).abs() * 2.0


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

    def render(self, anatomy: torch.Tensor, intensities: torch.Tensor,
               field: torch.Tensor | None = None) -> torch.Tensor:
        """Image ``[B, 1, H, W]`` of ``anatomy`` in the contrast given by per-class ``intensities`` ``[B, K]``
        and the multiplicative ``field`` ``[B, 1, H, W]`` (none: uniform)."""
        piecewise = piecewise_image(anatomy, intensities)
        residual = self.decoder(torch.cat([anatomy, piecewise], 1), intensities)
        image = (piecewise + residual) * (anatomy[:, :1] < 0.5)  # background stays zero
        return image if field is None else image * field

    def imaging_information(self, image: torch.Tensor, anatomy: torch.Tensor,
                            trusted: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-class intensities and field of ``image`` read with ``anatomy`` (see :mod:`~.imaging`)."""
        return imaging_information(image, anatomy, trusted, self.config.imaging)

    @torch.inference_mode()
    def pseudo_healthy(self, image: torch.Tensor, priors: torch.Tensor) -> dict[str, torch.Tensor]:
        """Inference for a batch of slices, each on its own: encoded and restored anatomy (probabilities) and the
        PHI. The detector measures the imaging information over the whole volume instead
        (:mod:`disanatdetect.pipeline`)."""
        encoded = self.one_hot(self.encode(image, priors))
        if self.config.use_restoration:
            restored_probabilities = F.softmax(self.restore(encoded, priors), 1)
        else:
            restored_probabilities = encoded
        restored = differentiable_one_hot(torch.log(restored_probabilities + 1e-8), hard=self.config.hard_one_hot)
        agree = encoded.max(1, keepdim=True).indices == restored.max(1, keepdim=True).indices
        intensities, field = self.imaging_information(image, restored, agree)
        return {
            "encoded": encoded,
            "restored": restored_probabilities,
            "pseudo_healthy": self.render(restored, intensities, field),
        }
