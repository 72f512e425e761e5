"""Networks of the detector and the learned baselines, built by name through :func:`build_model`."""

from disanatdetect.models import autoencoders, dal  # noqa: F401  (register "ae", "dae", "dal")
from disanatdetect.models.autoencoders import (AutoencoderConfig, ConvAutoencoder, DenoisingAutoencoder,
                                               DenoisingConfig)
from disanatdetect.models.dal import DAL, DALConfig, edge_map
from disanatdetect.models.imaging import ImagingConfig, class_intensities, imaging_information
from disanatdetect.models.onehot import differentiable_one_hot
from disanatdetect.models.registry import MODELS, build_model, register
from disanatdetect.models.unet import UNet2d

__all__ = ["AutoencoderConfig", "ConvAutoencoder", "DAL", "DALConfig", "DenoisingAutoencoder", "DenoisingConfig",
           "ImagingConfig", "MODELS", "UNet2d", "build_model", "class_intensities", "differentiable_one_hot",
           "edge_map", "imaging_information", "register"]
