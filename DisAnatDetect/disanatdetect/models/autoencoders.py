"""The learned baselines' networks: a convolutional autoencoder and a denoising autoencoder (coarse noise)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from disanatdetect.models.registry import register
from disanatdetect.models.unet import UNet2d


@dataclass(frozen=True)
class AutoencoderConfig:
    """Bottleneck autoencoder: ``depth`` stride-2 stages down to a small spatial code."""

    base_channels: int = 16
    depth: int = 4
    code_channels: int = 16

    def to_dict(self) -> dict:
        return asdict(self)


@register("ae")
class ConvAutoencoder(nn.Module):
    """Dense-bottleneck-free convolutional AE; the narrow code is what keeps lesions out of its output."""

    def __init__(self, config: AutoencoderConfig = AutoencoderConfig()):
        super().__init__()
        self.config = config
        widths = [config.base_channels * 2 ** min(level, 3) for level in range(config.depth)]
        layers, channels = [], 1
        for width in widths:
            layers += [nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.GroupNorm(4, width), nn.LeakyReLU(0.1)]
            channels = width
        layers += [nn.Conv2d(channels, config.code_channels, 1)]
        self.encoder = nn.Sequential(*layers)
        layers, channels = [nn.Conv2d(config.code_channels, widths[-1], 1)], widths[-1]
        for width in reversed(widths):
            layers += [nn.ConvTranspose2d(channels, width, 4, stride=2, padding=1), nn.GroupNorm(4, width),
                       nn.LeakyReLU(0.1)]
            channels = width
        layers += [nn.Conv2d(channels, 1, 3, padding=1)]
        self.decoder = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(image))

    def corrupt(self, image: torch.Tensor) -> torch.Tensor:
        return image


@dataclass(frozen=True)
class DenoisingConfig:
    """U-Net denoiser trained to remove coarse (low-resolution) Gaussian noise, after Kascenas et al. 2022."""

    base_channels: int = 12
    depth: int = 3
    noise_std: float = 0.2
    noise_resolution: int = 16  # noise drawn on a 16 x 16 grid and upsampled: coarse, lesion-sized blobs

    def to_dict(self) -> dict:
        return asdict(self)


@register("dae")
class DenoisingAutoencoder(nn.Module):
    def __init__(self, config: DenoisingConfig = DenoisingConfig()):
        super().__init__()
        self.config = config
        self.network = UNet2d(1, 1, config.base_channels, config.depth)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.network(image)

    def corrupt(self, image: torch.Tensor) -> torch.Tensor:
        """Add coarse noise (training only); at test time the lesion plays the part of the noise."""
        b, _, h, w = image.shape
        r = self.config.noise_resolution
        noise = torch.randn(b, 1, r, r, device=image.device) * self.config.noise_std
        noise = F.interpolate(noise, size=(h, w), mode="bilinear", align_corners=False)
        return (image + noise) * (image > 0)
