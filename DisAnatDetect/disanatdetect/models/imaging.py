"""Imaging information: what a scan adds to its anatomy. A robust intensity per tissue class, times a smooth
multiplicative field that carries the scan's own inhomogeneity (coil sensitivity, bias), so that the PHI has it
too and the residual does not.

The same functions serve training (2D slices ``[B, 1, H, W]``) and inference (a whole volume ``[1, 1, D, H, W]``):
they work on any number of spatial axes.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ImagingConfig:
    """How the imaging information is estimated; ``bias_degree = 0`` keeps one intensity per class (as 1.0.0)."""

    bias_degree: int = 0  # total degree of the polynomial in the field's logarithm
    # Voxels whose intensity departs from their class's by more than this (log ratio) do not steer the field:
    # first against the class intensity alone (bias fields reach about +-0.7), then against the field so far.
    first_tolerance: float = 0.7
    tolerance: float = 0.25
    iterations: int = 3
    ridge: float = 1e-4  # keeps the fit defined where few voxels are trusted
    fit_voxels: int = 100_000  # the fit uses a regular subsample of about this many voxels: a volume in 0.1 s


def class_intensities(image: torch.Tensor, anatomy: torch.Tensor, trusted: torch.Tensor | None = None
                      ) -> torch.Tensor:
    """Median intensity of ``image`` ``[B, 1, ...]`` in each class of ``anatomy`` ``[B, K, ...]`` -> ``[B, K]``.

    A median, not a mean, so that a lesion occupying part of a class barely moves it; ``trusted`` ``[B, 1, ...]``
    (bool) restricts the voxels that count. Classes absent from a sample get the mean of the present classes'
    medians.
    """
    labels = anatomy.max(1).indices.flatten(1)  # argmax along dim 1, faster on CPU
    pixels = image[:, 0].flatten(1)
    counted = trusted[:, 0].flatten(1) if trusted is not None else torch.ones_like(labels, dtype=torch.bool)
    values = torch.zeros(anatomy.shape[:2], device=image.device, dtype=image.dtype)
    present = torch.zeros(anatomy.shape[:2], dtype=torch.bool, device=image.device)
    for k in range(1, anatomy.shape[1]):  # one call per class for the whole batch: no per-sample loop or sync
        inside = (labels == k) & counted
        values[:, k] = torch.nanmedian(torch.where(inside, pixels, torch.nan), dim=1).values
        present[:, k] = inside.any(1)
    values = torch.where(present, values, 0.0)
    fallback = values.sum(1, keepdim=True) / present.sum(1, keepdim=True).clamp(min=1)
    values = torch.where(present, values, fallback)
    values[:, 0] = 0.0  # background is zero after skull stripping
    return values


def monomials(axes: list[torch.Tensor], degree: int) -> list[torch.Tensor]:
    """The constant and every monomial of total degree up to ``degree`` in the coordinates ``axes`` (one vector
    per spatial axis), each as a broadcastable product of per-axis powers (cheap to evaluate on a full volume)."""
    n = len(axes)
    shaped = [a.reshape([-1 if i == axis else 1 for i in range(n)]) for axis, a in enumerate(axes)]
    powers = [p for p in itertools.product(range(degree + 1), repeat=n) if sum(p) <= degree]
    return [math.prod((shaped[axis] ** e for axis, e in enumerate(p) if e), start=torch.ones_like(shaped[0]))
            for p in powers]


def _weighted_fit(values: torch.Tensor, weights: torch.Tensor, config: ImagingConfig) -> torch.Tensor:
    """Per sample, the polynomial closest to ``values`` ``[B, 1, ...]`` in least squares weighted by ``weights``
    (same shape), fitted on a regular subsample of the voxels; returns it on every voxel."""
    spatial = values.shape[2:]
    stride = max(1, math.ceil((math.prod(spatial) / config.fit_voxels) ** (1 / len(spatial))))
    axes = [torch.linspace(-1, 1, n, device=values.device, dtype=values.dtype) for n in spatial]
    pick = (slice(None), 0) + (slice(None, None, stride),) * len(spatial)
    sub_shape = values[pick].shape[1:]
    design = torch.stack([m.expand(sub_shape).reshape(-1)
                          for m in monomials([a[::stride] for a in axes], config.bias_degree)], 1)  # [N, T]
    w, v = weights[pick].flatten(1), values[pick].flatten(1)
    weighted = design[None] * w[..., None]  # [B, N, T]
    normal = weighted.transpose(1, 2) @ design  # [B, T, T]
    normal = normal + config.ridge * w.sum(1).clamp(min=1)[:, None, None] * torch.eye(design.shape[1],
                                                                                     device=design.device)
    coefficients = torch.linalg.solve(normal, (weighted * v[..., None]).sum(1))  # [B, T]
    fitted = torch.zeros_like(values)
    for term, monomial in enumerate(monomials(axes, config.bias_degree)):
        fitted += coefficients[:, term].reshape(-1, *[1] * (values.dim() - 1)) * monomial
    return fitted


def piecewise_image(anatomy: torch.Tensor, intensities: torch.Tensor) -> torch.Tensor:
    """Each voxel at its class's intensity: ``[B, K, ...]`` x ``[B, K]`` -> ``[B, 1, ...]``."""
    per_class = intensities.reshape(*intensities.shape, *([1] * (anatomy.dim() - 2)))
    return (anatomy * per_class).sum(1, keepdim=True)


def imaging_information(image: torch.Tensor, anatomy: torch.Tensor, trusted: torch.Tensor | None = None,
                        config: ImagingConfig = ImagingConfig()) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class intensities ``[B, K]`` and a multiplicative field ``[B, 1, ...]`` with image ~ field x classes.

    The field's logarithm is a low-degree polynomial fitted, in weighted least squares, to log(image / class
    intensity) over the trusted tissue voxels whose ratio is plausible, so that lesions (which the caller leaves
    out of ``trusted``, or which depart too far) do not shape it. A polynomial, not a smoothing, so that it has no
    bias at the brain's edge. Without ``config.bias_degree`` the field is one.
    """
    trusted = (anatomy.max(1, keepdim=True).indices > 0) & (image > 0) & (
        trusted if trusted is not None else True)
    field = torch.ones_like(image)
    intensities = class_intensities(image, anatomy, trusted)
    if not config.bias_degree:
        return intensities, field
    log_image = torch.log(image.clamp(min=1e-6))
    for iteration in range(config.iterations):
        log_ratio = log_image - torch.log(piecewise_image(anatomy, intensities).clamp(min=1e-6))
        expected = torch.log(field) if iteration else torch.zeros_like(log_ratio)
        tolerance = config.tolerance if iteration else config.first_tolerance
        counted = (trusted & ((log_ratio - expected).abs() < tolerance)).to(image.dtype)
        field = torch.exp(_weighted_fit(torch.where(counted > 0, log_ratio, 0.0), counted, config))
        intensities = class_intensities(image / field, anatomy, trusted)
    return intensities, field
