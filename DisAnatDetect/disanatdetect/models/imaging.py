"""Imaging information: what a scan adds to its anatomy. A robust intensity per tissue class, times a smooth
multiplicative field that carries the scan's own inhomogeneity (coil sensitivity, bias), so that the PHI has it
too and the residual does not.

The same functions serve training (2D slices ``[B, 1, H, W]``) and inference (a whole volume ``[1, 1, D, H, W]``):
they work on any number of spatial axes.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ImagingConfig:
    """How the imaging information is estimated: one intensity per class (as 1.0.0) unless a field is asked for,
    a polynomial of degree ``bias_degree`` > 0 or a cubic B-spline, in the field's logarithm."""

    bias_degree: int = 0  # total degree of the polynomial (field_basis "polynomial"; 0: no field)
    field_basis: str = "polynomial"  # or "bspline": local, follows a bias that is not a polynomial
    bspline_knots: int = 4  # per axis, over the volume (plus one outside each end)
    # B-spline: weight of the neighbouring knots' differences, relative to the data's. Of 0, 0.001, 0.01, 0.1 and
    # 1, the one that followed a synthetic hot spot best and bridged a lesion-sized hole most faithfully.
    smoothness: float = 0.1
    # Voxels whose intensity departs from their class's by more than this (log ratio) do not steer the field:
    # first against the class intensity alone (bias fields reach about +-0.7), then against the field so far.
    first_tolerance: float = 0.7
    tolerance: float = 0.25
    iterations: int = 3
    ridge: float = 1e-4  # keeps the fit defined where few voxels are trusted
    fit_voxels: int = 100_000  # the fit uses a regular subsample of about this many voxels: a volume in 0.1 s

    @property
    def has_field(self) -> bool:
        return self.field_basis == "bspline" or self.bias_degree > 0


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


def _axis_functions(axis: torch.Tensor, config: ImagingConfig) -> torch.Tensor:
    """The field's one-dimensional functions along one axis (coordinates in [-1, 1]) -> ``[len(axis), M]``.

    Polynomial: the powers 0 to ``bias_degree``. B-spline: uniform cubic B-splines with ``bspline_knots`` knots
    over [-1, 1] and one more on each side, so that they sum to one everywhere inside (a constant field is exact).
    """
    if config.field_basis == "polynomial":
        return torch.stack([axis**power for power in range(config.bias_degree + 1)], 1)
    spacing = 2 / (config.bspline_knots - 1)
    centres = -1 + spacing * torch.arange(-1, config.bspline_knots + 1, device=axis.device, dtype=axis.dtype)
    t = ((axis[:, None] - centres[None]) / spacing).abs()
    return torch.where(t < 1, 2 / 3 - t**2 + t**3 / 2, torch.where(t < 2, (2 - t) ** 3 / 6, 0.0))


def _terms(functions_per_axis: int, axes: int, config: ImagingConfig) -> list[tuple[int, ...]]:
    """Which products of per-axis functions make the field: every one for B-splines; for the polynomial, those
    of total degree up to ``bias_degree``."""
    terms = list(itertools.product(range(functions_per_axis), repeat=axes))
    return [t for t in terms if sum(t) <= config.bias_degree] if config.field_basis == "polynomial" else terms


def _difference_penalty(functions_per_axis: int, axes: int) -> torch.Tensor:
    """Sum of squared differences between neighbouring coefficients along each axis of the coefficient grid, as
    a quadratic form ``[T, T]`` over the terms in :func:`_terms`' order (P-splines, Eilers and Marx 1996)."""
    difference = torch.diff(torch.eye(functions_per_axis), dim=0)
    along = difference.T @ difference
    identity = torch.eye(functions_per_axis)
    return sum(functools.reduce(torch.kron, [along if i == axis else identity for i in range(axes)])
               for axis in range(axes))


def _weighted_fit(values: torch.Tensor, weights: torch.Tensor, config: ImagingConfig) -> torch.Tensor:
    """Per sample, the smooth function closest to ``values`` ``[B, 1, ...]`` in least squares weighted by
    ``weights`` (same shape), fitted on a regular subsample of the voxels; returns it on every voxel.

    The function is a sum of products of per-axis functions (:func:`_axis_functions`), so that it is evaluated on
    the full grid axis by axis (one contraction per axis) rather than term by term.
    """
    spatial = values.shape[2:]
    n = len(spatial)
    stride = max(1, math.ceil((math.prod(spatial) / config.fit_voxels) ** (1 / n)))
    functions = [_axis_functions(torch.linspace(-1, 1, size, device=values.device, dtype=values.dtype), config)
                 for size in spatial]  # [size, M] per axis
    terms = _terms(functions[0].shape[1], n, config)
    sub = [f[::stride] for f in functions]
    sub_shape = [f.shape[0] for f in sub]
    design = torch.stack([  # [N, T]: each term's product of per-axis functions on the subsample
        math.prod(sub[axis][:, index].reshape([-1 if i == axis else 1 for i in range(n)])
                  for axis, index in enumerate(term)).expand(sub_shape).reshape(-1) for term in terms], 1)
    pick = (slice(None), 0) + (slice(None, None, stride),) * n
    w, v = weights[pick].flatten(1), values[pick].flatten(1)
    weighted = design[None] * w[..., None]  # [B, N, T]
    normal = weighted.transpose(1, 2) @ design  # [B, T, T]
    # The ridge is relative to the total weight for the polynomial (as released), to the mean diagonal for the
    # B-splines, whose local functions each see a small share of the weight.
    scale = w.sum(1) if config.field_basis == "polynomial" else normal.diagonal(dim1=1, dim2=2).mean(1)
    penalty = config.ridge * torch.eye(design.shape[1], device=design.device, dtype=design.dtype)
    if config.field_basis == "bspline":  # neighbouring knots alike: a hole (a lesion) is bridged, not pulled to 1
        penalty = penalty + config.smoothness * _difference_penalty(functions[0].shape[1], n).to(design)
    normal = normal + scale.clamp(min=1)[:, None, None] * penalty
    coefficients = torch.linalg.solve(normal, (weighted * v[..., None]).sum(1))  # [B, T]
    grid = torch.zeros((values.shape[0],) + (functions[0].shape[1],) * n, device=values.device, dtype=values.dtype)
    grid[(slice(None),) + tuple(torch.tensor(index) for index in zip(*terms))] = coefficients
    inner, outer = "ijklm"[:n], "vwxyz"[:n]  # coefficient axes, voxel axes
    equation = f"b{inner}," + ",".join(f"{o}{i}" for o, i in zip(outer, inner)) + f"->b{outer}"
    return torch.einsum(equation, grid, *functions).unsqueeze(1)


def piecewise_image(anatomy: torch.Tensor, intensities: torch.Tensor) -> torch.Tensor:
    """Each voxel at its class's intensity: ``[B, K, ...]`` x ``[B, K]`` -> ``[B, 1, ...]``."""
    per_class = intensities.reshape(*intensities.shape, *([1] * (anatomy.dim() - 2)))
    return (anatomy * per_class).sum(1, keepdim=True)


def imaging_information(image: torch.Tensor, anatomy: torch.Tensor, trusted: torch.Tensor | None = None,
                        config: ImagingConfig = ImagingConfig()) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class intensities ``[B, K]`` and a multiplicative field ``[B, 1, ...]`` with image ~ field x classes.

    The field's logarithm is a low-degree polynomial or a coarse cubic B-spline fitted, in weighted least squares,
    to log(image / class intensity) over the trusted tissue voxels whose ratio is plausible, so that lesions (which
    the caller leaves out of ``trusted``, or which depart too far) do not shape it. A fitted basis, not a
    smoothing, so that it has no bias at the brain's edge. Without a field in ``config`` it is one.
    """
    trusted = (anatomy.max(1, keepdim=True).indices > 0) & (image > 0) & (
        trusted if trusted is not None else True)
    field = torch.ones_like(image)
    intensities = class_intensities(image, anatomy, trusted)
    if not config.has_field:
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
