"""Lesions for training the restoration, painted into sampled structure maps on the training device.

Deliberately a generator of its own, apart from :mod:`disanatdetect.synth.lesions` (which makes the evaluation
suite's lesions): other shapes, sizes and placement rules, so that the suite measures generalisation, not memory.
Lesions live in the subject's 3D space (millimetres), so a slice cuts them anywhere, and they are rendered by the
same contrast model as healthy tissue:

- tumour: an irregular oedema (up to ``tumour_radius_mm``, i.e. 60 mm across) that follows white matter, a core
  with an enhancing rim and a necrotic centre, and mass effect that pushes the tissue around it outwards;
- MS-like: several small ellipsoids in white matter;
- stroke-like: one large irregular region of grey and white matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from disanatdetect.synth.structures import Structure

LESION_KINDS = ("none", "tumour", "ms", "stroke")
_WHITE, _GREY = 3, 2  # tissue classes the lesions grow in (see structures.tissue_class_table)
FAR = 1e3  # normalised distance of samples without such a lesion (finite, so that it interpolates)


@dataclass(frozen=True)
class TrainingLesionConfig:
    """How often each kind is drawn and the ranges of its size and shape."""

    kind_weights: tuple[float, float, float, float] = (0.2, 0.4, 0.2, 0.2)  # none, tumour, ms, stroke
    tumour_radius_mm: tuple[float, float] = (8.0, 30.0)
    core_fraction: tuple[float, float] = (0.25, 0.7)
    necrosis_fraction: tuple[float, float] = (0.0, 0.7)
    mass_effect: tuple[float, float] = (0.0, 0.5)  # displacement at the core's edge, as a fraction of its radius
    ms_count: tuple[int, int] = (3, 10)
    ms_radius_mm: tuple[float, float] = (1.5, 6.0)
    stroke_radius_mm: tuple[float, float] = (10.0, 32.0)
    irregularity: float = 0.35  # relative change of the radius around a lesion
    centre_depth_fraction: float = 0.5  # the slice cuts a lesion up to this fraction of its radius off centre


def uniform(shape, bounds: tuple[float, float], generator: torch.Generator, device) -> torch.Tensor:
    """Uniform random numbers in ``bounds`` from ``generator`` (the one generator of a batch)."""
    low, high = bounds
    return low + (high - low) * torch.rand(shape, generator=generator, device=device)


def _pick_points(candidates: torch.Tensor, points: torch.Tensor, count: int,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` random points per sample among ``candidates`` ``[B, N]`` of ``points`` ``[B, N, 3]``.

    Returns the points ``[B, count, 3]`` and whether each sample had any candidate ``[B]``.
    """
    weights = candidates.float()
    found = weights.sum(1) > 0
    weights = torch.where(found[:, None], weights, torch.ones_like(weights))
    index = torch.multinomial(weights, count, replacement=True, generator=generator)
    return torch.gather(points, 1, index[..., None].expand(-1, -1, 3)), found


def _normalised_distance(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, roughness: torch.Tensor,
                         irregularity: float) -> torch.Tensor:
    """Distance from ``centres`` ``[B, 3]`` in units of an irregular radius (``< 1`` inside), for ``points``
    ``[B, ..., 3]``; ``roughness`` ``[B, 1, 4, 4, 4]`` is a coarse random field that bends the radius."""
    shape = points.shape
    offsets = points.reshape(shape[0], -1, 3) - centres[:, None]
    grid = (offsets / (2 * radii[:, None, None])).clamp(-1, 1).flip(-1)  # grid_sample wants (x, y, z)
    bend = F.grid_sample(roughness, grid[:, :, None, None], align_corners=True).reshape(shape[0], -1)
    distance = offsets.norm(dim=-1) / (radii[:, None] * (1 + irregularity * bend.clamp(-1.5, 1.5)))
    return distance.reshape(shape[:-1])


@dataclass
class LesionDraw:
    """The lesions of one batch: a kind per sample and everything needed to paint them."""

    kind: torch.Tensor  # [B] index into LESION_KINDS
    centres: torch.Tensor  # [B, n, 3] mm, subject space
    radii: torch.Tensor  # [B, n]
    roughness: torch.Tensor  # [B, 1, 4, 4, 4]
    core_fraction: torch.Tensor  # [B]
    necrosis_fraction: torch.Tensor  # [B]
    mass_effect_mm: torch.Tensor  # [B]


def draw_lesions(points: torch.Tensor, tissue: torch.Tensor, generator: torch.Generator,
                 config: TrainingLesionConfig = TrainingLesionConfig(), forced_kind: str | None = None) -> LesionDraw:
    """Choose the lesions of a batch from its healthy sampling ``points`` ``[B, ..., 3]`` (mm) and their tissue
    classes ``[B, ...]``: centres lie in white matter (tumour, MS) or grey or white matter (stroke)."""
    device, batch = points.device, points.shape[0]
    flat_points, flat_tissue = points.reshape(batch, -1, 3), tissue.reshape(batch, -1)
    if forced_kind is None:
        weights = torch.tensor(config.kind_weights, device=device)
        kind = torch.multinomial(weights.expand(batch, -1), 1, generator=generator)[:, 0]
    else:
        kind = torch.full((batch,), LESION_KINDS.index(forced_kind), device=device)
    n = config.ms_count[1]
    white, _ = _pick_points(flat_tissue == _WHITE, flat_points, n, generator)
    brain, _ = _pick_points((flat_tissue == _WHITE) | (flat_tissue == _GREY), flat_points, 1, generator)
    has_white = (flat_tissue == _WHITE).any(1)
    kind = torch.where(has_white, kind, torch.zeros_like(kind))  # no white matter on the slice: no lesion

    tumour_r = uniform((batch, 1), config.tumour_radius_mm, generator, device)
    ms_r = uniform((batch, n), config.ms_radius_mm, generator, device)
    stroke_r = uniform((batch, 1), config.stroke_radius_mm, generator, device)
    ms_count = torch.randint(config.ms_count[0], config.ms_count[1] + 1, (batch, 1), generator=generator,
                             device=device)
    ms_r = torch.where(torch.arange(n, device=device)[None] < ms_count, ms_r, torch.zeros_like(ms_r))
    is_ms = (kind == LESION_KINDS.index("ms"))[:, None]
    is_stroke = (kind == LESION_KINDS.index("stroke"))[:, None]
    first_radius = torch.where(is_stroke, stroke_r, tumour_r)
    radii = torch.where(is_ms, ms_r, torch.cat([first_radius, torch.zeros_like(ms_r[:, 1:])], 1))
    centres = torch.where(is_ms[..., None], white, torch.where(is_stroke[..., None], brain, white[:, :1])
                          .expand(-1, n, -1))
    # move each centre off the slice plane, so that slices cut lesions anywhere between edge and middle
    depth = uniform((batch, n), (-config.centre_depth_fraction, config.centre_depth_fraction), generator, device)
    centres = centres + torch.stack([depth * radii, torch.zeros_like(depth), torch.zeros_like(depth)], -1)
    core = uniform((batch,), config.core_fraction, generator, device)
    return LesionDraw(
        kind=kind, centres=centres, radii=radii,
        roughness=torch.randn((batch, 1, 4, 4, 4), generator=generator, device=device),
        core_fraction=core,
        necrosis_fraction=uniform((batch,), config.necrosis_fraction, generator, device),
        mass_effect_mm=uniform((batch,), config.mass_effect, generator, device) * core * tumour_r[:, 0]
        * (kind == LESION_KINDS.index("tumour")),
    )


def mass_effect(points: torch.Tensor, lesions: LesionDraw) -> tuple[torch.Tensor, torch.Tensor]:
    """The samples with mass effect ``[M]`` and their sampling points ``[M, ..., 3]`` displaced towards the tumour
    centre, so that tissue appears pushed outwards (the other samples' points do not move).

    The displacement is ``mass_effect_mm`` at the core and fades with distance (Gaussian, over the tumour's
    radius); it keeps the order of points along each ray, so the anatomy folds nowhere.
    """
    moved = torch.nonzero(lesions.mass_effect_mm > 0).flatten()
    points = points[moved]
    shape = (len(moved),) + (1,) * (points.dim() - 2)
    centre = lesions.centres[moved, 0].reshape(*shape, 3)
    radius = lesions.radii[moved, 0].clamp(min=1.0).reshape(shape)
    push = lesions.mass_effect_mm[moved].reshape(shape)
    offsets = points - centre
    distance = offsets.norm(dim=-1).clamp(min=1e-3)
    # u(r) = push * exp(-(r / 2R)^2) with push <= R / 2 has |du/dr| < 0.25: r - u(r) keeps increasing (no folding)
    shift = torch.minimum(push * torch.exp(-(distance / (2 * radius)) ** 2), distance * 0.9)
    return moved, points - offsets * (shift / distance)[..., None]


def lesion_distances(points: torch.Tensor, lesions: LesionDraw,
                     config: TrainingLesionConfig = TrainingLesionConfig()) -> torch.Tensor:
    """Normalised distance (``< 1``: inside) to each sample's lesion at ``points`` ``[B, ..., 3]`` -> ``[B, ...]``:
    to the tumour or stroke, or to the nearest MS lesion (``FAR`` without a lesion). Computed only for the samples
    that have a lesion; smooth, so it may be computed on coarse points and interpolated."""
    kind = lesions.kind
    distance = torch.full(points.shape[:-1], FAR, device=points.device)
    single = torch.nonzero((kind == LESION_KINDS.index("tumour")) | (kind == LESION_KINDS.index("stroke"))).flatten()
    if single.numel():
        distance[single] = _normalised_distance(points[single], lesions.centres[single, 0], lesions.radii[single, 0],
                                                lesions.roughness[single], config.irregularity)
    ms = torch.nonzero(kind == LESION_KINDS.index("ms")).flatten()
    if ms.numel():
        nearest = torch.full(points[ms].shape[:-1], FAR, device=points.device)
        for index in range(lesions.radii.shape[1]):
            radius = lesions.radii[ms, index]
            each = _normalised_distance(points[ms], lesions.centres[ms, index], radius.clamp(min=1e-3),
                                        lesions.roughness[ms], config.irregularity)
            present = (radius > 0).reshape((-1,) + (1,) * (each.dim() - 1))
            nearest = torch.minimum(nearest, torch.where(present, each, FAR))
        distance[ms] = nearest
    return distance


def paint_lesions(structures: torch.Tensor, tissue: torch.Tensor, distance: torch.Tensor,
                  lesions: LesionDraw) -> torch.Tensor:
    """``structures`` ``[B, ...]`` with the lesion compartments painted where ``distance`` (of
    :func:`lesion_distances`, same shape) is below 1, each compartment in the tissue it grows in."""
    batch = structures.shape[0]
    shape = (batch,) + (1,) * (structures.dim() - 1)
    kind = lesions.kind.reshape(shape)
    in_brain = tissue > 0
    white = tissue == _WHITE
    grey_or_white = white | (tissue == _GREY)
    tumour = kind == LESION_KINDS.index("tumour")
    core = lesions.core_fraction.reshape(shape)
    necrotic = core * lesions.necrosis_fraction.reshape(shape)
    out = torch.where(tumour & (distance < 1) & grey_or_white & ((distance < 0.8) | white), Structure.OEDEMA,
                      structures)
    out = torch.where(tumour & (distance < core) & in_brain, Structure.ENHANCING, out)
    out = torch.where(tumour & (distance < necrotic) & in_brain, Structure.NECROSIS, out)
    out = torch.where((kind == LESION_KINDS.index("stroke")) & (distance < 1) & grey_or_white, Structure.INFARCT,
                      out)
    return torch.where((kind == LESION_KINDS.index("ms")) & (distance < 1) & white, Structure.WM_LESION, out)
