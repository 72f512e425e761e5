"""Training slices synthesised from the label bank on the training device, SynthSeg-style, in batched torch.

One batch: for each sample a subject of the bank, an axial slice of the working grid, a random 3D affine and
elastic deformation; the structures are sampled (nearest neighbour) at sub-voxels of the working grid (``fine``
per axis in plane, ``sub_planes`` through the slice, spread over a random slice thickness), rendered with an
intensity per structure and averaged down to the working grid, so partial volume is real. Then texture, blur,
bias field, gamma, in-plane resolution loss and Rician noise. Each anatomy is rendered in two contrasts (for the
invariance loss) and, with a lesion of :mod:`.training_lesions`, once more in the first contrast with identical
imaging effects. A share of images keeps a band of the head around the brain, as a skull stripping leaves it.

Every random number comes from one generator seeded by (seed, step): a batch is a function of them (and of the
device, whose generators differ), so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from disanatdetect.atlas import Atlas
from disanatdetect.preprocess import NormalisationConfig
from disanatdetect.synth.label_bank import LabelBank
from disanatdetect.synth.structures import (HEAD, MODALITY_PRESETS, N_STRUCTURES, Structure, preset_means,
                                            tissue_class_table)
from disanatdetect.synth.training_lesions import (TrainingLesionConfig, draw_lesions, lesion_distances,
                                                  mass_effect, paint_lesions, uniform)


@dataclass(frozen=True)
class SynthesisConfig:
    """Ranges of every random choice of a training batch; each sample draws one value from each range."""

    batch_size: int = 8
    fine: int = 2  # sub-voxels per in-plane axis
    sub_planes: int = 3  # sub-planes through the slice
    min_brain_fraction: float = 0.08  # of the slice's voxels: slices with less brain are not drawn
    # deformation in subject space. The bank and every scan are registered affinely to the atlas, so the affine
    # only models what registration leaves (and keeps the atlas priors informative); the elastic field and the
    # atrophy model the anatomy's own variation.
    max_rotation_deg: float = 5.0
    max_scale: float = 0.06  # per axis
    max_translation_mm: float = 3.0
    elastic_mm: float = 4.0
    elastic_control_points: tuple[int, int, int] = (5, 6, 6)
    atrophy_fraction: float = 0.3  # images whose CSF spaces widen into the tissue around them
    atrophy_subvoxels: tuple[int, int] = (1, 2)  # by this many sub-voxels (in plane)
    # contrast
    preset_fraction: float = 0.5
    preset_jitter: float = 0.06
    texture_std: tuple[float, float] = (0.0, 0.06)
    texture_control_points: int = 48
    blur_sigma_vox: tuple[float, float] = (0.0, 0.8)
    bias_strength: tuple[float, float] = (0.0, 0.35)
    bias_control_points: int = 4
    gamma: tuple[float, float] = (0.75, 1.3)
    noise_std: tuple[float, float] = (0.0, 0.05)
    thick_slice_fraction: float = 0.25
    slice_thickness_mm: tuple[float, float] = (2.0, 6.0)
    in_plane_loss_fraction: float = 0.15
    in_plane_factor: tuple[float, float] = (1.5, 3.0)
    head_fraction: float = 0.2  # images that keep a band of the head around the brain
    head_band_vox: tuple[int, int] = (1, 12)
    lesions: TrainingLesionConfig = field(default_factory=TrainingLesionConfig)
    normalisation: NormalisationConfig = field(default_factory=NormalisationConfig)


def batch_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    """The one random generator of a batch, determined by (seed, step)."""
    state = np.random.SeedSequence([seed, step]).generate_state(1, np.uint64)[0]
    generator = torch.Generator(device=device)
    generator.manual_seed(int(state) & (2**63 - 1))
    return generator


def _smooth_field_2d(batch: int, size: tuple[int, int], control_points: int, generator, device) -> torch.Tensor:
    """Zero-mean random fields ``[B, 1, H, W]`` with features about ``1 / control_points`` of the image wide."""
    coarse = torch.randn((batch, 1, control_points, control_points), generator=generator, device=device)
    return F.interpolate(coarse, size=size, mode="bicubic", align_corners=True)


def _gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Each image ``[B, 1, H, W]`` blurred with its own Gaussian ``sigma`` ``[B]`` (voxels; 0: unchanged)."""
    radius = max(1, int(math.ceil(3 * float(sigma.max()))))
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (offsets[None] / sigma.clamp(min=1e-3)[:, None]) ** 2)
    kernel = kernel / kernel.sum(1, keepdim=True)
    batch = images.shape[0]
    x = images.reshape(1, batch, *images.shape[2:])
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kernel[:, None, None, :], groups=batch)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), kernel[:, None, :, None], groups=batch)
    return x.reshape(images.shape)


class SliceSynthesiser:
    """Draws training batches from a label bank; holds the bank and the priors on the training device."""

    def __init__(self, bank: LabelBank, atlas: Atlas, config: SynthesisConfig = SynthesisConfig(),
                 device: str | torch.device = "cpu", deep_grey_matter: bool = False):
        self.config = config
        self.device = torch.device(device)
        self.atlas_shape = atlas.config.shape_zyx
        self.atlas_spacing = atlas.config.spacing_mm
        self.bank_spacing = bank.config.spacing_mm
        self.bank_shape = bank.shape_zyx
        self._bank_shape_tensor = torch.tensor(self.bank_shape, dtype=torch.float32, device=self.device)
        self.n_subjects = len(bank.subjects)
        self.structures = torch.from_numpy(bank.structures).to(self.device).reshape(-1)
        self.tissue_table = torch.from_numpy(tissue_class_table(deep_grey_matter)).to(self.device)
        self.priors = torch.from_numpy(atlas.priors).to(self.device)
        self.presets = torch.from_numpy(np.stack([preset_means(m) for m in MODALITY_PRESETS])).to(self.device)
        self.head = torch.zeros(N_STRUCTURES, dtype=torch.bool, device=self.device)
        self.head[list(HEAD)] = True
        brain_area = atlas.brain_mask.mean((1, 2))
        self.slices = torch.from_numpy(np.flatnonzero(brain_area >= config.min_brain_fraction)).to(self.device)
        self.fine_offsets = self._fine_grid()

    def _fine_grid(self) -> torch.Tensor:
        """In-plane sub-voxel centres ``[H*f, W*f, 2]`` in mm from the working grid's centre (y, x)."""
        f = self.config.fine
        _, ny, nx = self.atlas_shape
        axes = [((torch.arange(n * f, device=self.device) + 0.5) / f - 0.5 - (n - 1) / 2) * self.atlas_spacing
                for n in (ny, nx)]
        return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)

    # -- geometry ---------------------------------------------------------------------------------------------

    def _points(self, slice_index: torch.Tensor, thickness_mm: torch.Tensor) -> torch.Tensor:
        """Sub-voxel positions ``[B, P, H*f, W*f, 3]`` (z, y, x mm from the working grid's centre)."""
        batch, planes = slice_index.shape[0], self.config.sub_planes
        z_centre = (slice_index.float() - (self.atlas_shape[0] - 1) / 2) * self.atlas_spacing
        fractions = (torch.arange(planes, device=self.device) + 0.5) / planes - 0.5
        z = z_centre[:, None] + fractions[None] * thickness_mm[:, None]  # [B, P]
        in_plane = self.fine_offsets[None, None].expand(batch, planes, -1, -1, -1)
        z = z[:, :, None, None, None].expand(-1, -1, *in_plane.shape[2:4], 1)
        return torch.cat([z, in_plane], -1)

    def _deform(self, points: torch.Tensor, generator) -> torch.Tensor:
        """Subject-space positions of ``points``: a random affine about the centre plus a smooth elastic field."""
        c, batch, device = self.config, points.shape[0], self.device
        angles = torch.deg2rad(uniform((batch, 3), (-c.max_rotation_deg, c.max_rotation_deg), generator, device))
        matrix = torch.diag_embed(1 + uniform((batch, 3), (-c.max_scale, c.max_scale), generator, device))
        for index, (a, b) in enumerate(((0, 1), (0, 2), (1, 2))):
            rotation = torch.eye(3, device=device).repeat(batch, 1, 1)
            cos, sin = torch.cos(angles[:, index]), torch.sin(angles[:, index])
            rotation[:, a, a], rotation[:, b, b], rotation[:, a, b], rotation[:, b, a] = cos, cos, -sin, sin
            matrix = rotation @ matrix
        shift = uniform((batch, 3), (-c.max_translation_mm, c.max_translation_mm), generator, device)
        flat = points.reshape(batch, -1, 3)
        moved = flat @ matrix.transpose(1, 2) + shift[:, None]
        control = torch.randn((batch, 3, *c.elastic_control_points), generator=generator, device=device)
        half_extent = torch.tensor([(n - 1) / 2 * self.atlas_spacing for n in self.atlas_shape], device=device)
        # the field is smooth: sampled at voxel centres and interpolated to the sub-voxels
        centres = self._voxel_centres(points)
        grid = (centres / half_extent).flip(-1)  # grid_sample wants (x, y, z) in [-1, 1]
        elastic = F.grid_sample(control, grid, mode="bilinear", padding_mode="border", align_corners=True)
        elastic = F.interpolate(elastic.flatten(1, 2), scale_factor=c.fine, mode="bilinear", align_corners=False)
        elastic = elastic.reshape(batch, 3, *points.shape[1:4]).permute(0, 2, 3, 4, 1)
        return moved.reshape(points.shape) + c.elastic_mm * elastic

    def _lookup(self, subject: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Structures of the bank at subject-space ``points`` (nearest voxel; outside the bank: air)."""
        shape = self._bank_shape_tensor
        index = torch.round(points / self.bank_spacing + (shape - 1) / 2)
        inside = ((index >= 0) & (index <= shape - 1)).all(-1)
        index = torch.clamp(index, torch.zeros_like(shape), shape - 1).int()
        nz, ny, nx = self.bank_shape
        subject = subject.int().reshape((-1,) + (1,) * (index.dim() - 2))
        flat = ((subject * nz + index[..., 0]) * ny + index[..., 1]) * nx + index[..., 2]
        return torch.where(inside, self.structures[flat], 0).long()

    # -- contrast ---------------------------------------------------------------------------------------------

    def _means(self, batch: int, generator, modality: str | None) -> torch.Tensor:
        """Intensity per structure ``[B, N_STRUCTURES]``: a jittered preset or (SynthSeg-style) random."""
        c, device = self.config, self.device
        random_means = uniform((batch, N_STRUCTURES), (0.05, 1.0), generator, device)
        choice = torch.randint(0, len(MODALITY_PRESETS), (batch,), generator=generator, device=device)
        if modality is not None:
            choice = torch.full_like(choice, MODALITY_PRESETS.index(modality))
        jitter = uniform((batch, N_STRUCTURES), (-c.preset_jitter, c.preset_jitter), generator, device)
        presets = (self.presets[choice] + jitter).clamp(0.02, 1.1)
        use_preset = torch.rand(batch, generator=generator, device=device) < c.preset_fraction
        if modality is not None:
            use_preset[:] = True
        means = torch.where(use_preset[:, None], presets, random_means)
        means[:, 0] = 0.0
        return means

    def _imaging_effects(self, batch: int, generator) -> dict[str, torch.Tensor]:
        c, device = self.config, self.device
        size = self.atlas_shape[1:]
        return {
            "texture": 1 + uniform((batch, 1, 1, 1), c.texture_std, generator, device)
            * _smooth_field_2d(batch, size, c.texture_control_points, generator, device),
            "blur": uniform((batch,), c.blur_sigma_vox, generator, device),
            "bias": torch.exp(uniform((batch, 1, 1, 1), c.bias_strength, generator, device)
                              * _smooth_field_2d(batch, size, c.bias_control_points, generator, device)),
            "gamma": uniform((batch, 1, 1, 1), c.gamma, generator, device),
            "in_plane_loss": torch.rand(batch, generator=generator, device=device) < c.in_plane_loss_fraction,
            "in_plane_axis": torch.randint(2, 4, (batch,), generator=generator, device=device),
            "in_plane_factor": uniform((batch,), c.in_plane_factor, generator, device),
            "noise": uniform((batch, 1, 1, 1), c.noise_std, generator, device)
            * torch.randn((2, batch, 1, *size), generator=generator, device=device),
        }

    def _render(self, structures: torch.Tensor, means: torch.Tensor, visible: torch.Tensor,
                effects: dict[str, torch.Tensor], scale: torch.Tensor | None = None) -> torch.Tensor:
        """Image ``[B, 1, H, W]`` of sub-voxel ``structures`` ``[B, P, Hf, Wf]``, zero where not ``visible``,
        normalised as at inference (or divided by a given ``scale`` ``[B, 1]``)."""
        image = self._acquire(structures, means, effects) * visible
        return self._normalise(image, visible, self._scale(image, visible) if scale is None else scale)

    def _acquire(self, structures: torch.Tensor, means: torch.Tensor,
                 effects: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the scanner measures of sub-voxel ``structures``, before normalisation ``[B, 1, H, W]``."""
        batch = structures.shape[0]
        values = torch.gather(means, 1, structures.reshape(batch, -1)).reshape(structures.shape)
        image = self._to_voxels(values)  # partial volume
        image = _gaussian_blur(image * effects["texture"], effects["blur"])
        image = (image * effects["bias"]).clamp(min=0) ** effects["gamma"]
        image = self._lose_resolution(image, effects)
        return torch.sqrt((image + effects["noise"][0]) ** 2 + effects["noise"][1] ** 2)  # Rician

    def _lose_resolution(self, image: torch.Tensor, effects: dict[str, torch.Tensor]) -> torch.Tensor:
        """Thick voxels along one in-plane axis, for the samples drawn to lose resolution."""
        out = image
        for axis in (2, 3):
            chosen = effects["in_plane_loss"] & (effects["in_plane_axis"] == axis)
            if not bool(chosen.any()):
                continue
            factor = float(effects["in_plane_factor"][chosen].mean())
            size = list(image.shape[2:])
            small = size.copy()
            small[axis - 2] = max(2, int(round(size[axis - 2] / factor)))
            coarse = F.interpolate(F.adaptive_avg_pool2d(image, small), size=size, mode="bilinear",
                                   align_corners=False)
            out = torch.where(chosen[:, None, None, None], coarse, out)
        return out

    def _scale(self, image: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """The inference normalisation's scale: a high percentile of the visible voxels (per slice) ``[B, 1]``."""
        n = self.config.normalisation
        flat = torch.where(visible, image, torch.full_like(image, -1.0)).flatten(1)
        count = visible.flatten(1).sum(1)
        ordered = flat.sort(1, descending=True).values
        rank = ((1 - n.percentile / 100) * (count - 1).clamp(min=0)).long()
        return torch.gather(ordered, 1, rank[:, None]).clamp(min=1e-6)

    def _normalise(self, image: torch.Tensor, visible: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return torch.where(visible, (image / scale[:, :, None, None]).clamp(0, self.config.normalisation.clip_max),
                           0.0)

    def _to_voxels(self, values: torch.Tensor) -> torch.Tensor:
        """Mean of sub-voxel ``values`` ``[B, P, Hf, Wf]`` over each working-grid voxel -> ``[B, 1, H, W]``."""
        fine = self.config.fine
        return F.avg_pool3d(values[:, None].float(), (values.shape[1], fine, fine))[:, :, 0]

    def _tissue(self, structures: torch.Tensor) -> torch.Tensor:
        """Majority tissue class per working-grid voxel ``[B, H, W]`` of sub-voxel structures."""
        tissue = self.tissue_table[structures]
        classes = range(int(self.tissue_table.max()) + 1)
        fractions = torch.cat([self._to_voxels(tissue == k) for k in classes], 1)
        return fractions.max(1).indices

    # -- the batch --------------------------------------------------------------------------------------------

    @torch.no_grad()
    def batch(self, seed: int, step: int, modality: str | None = None, lesions: bool = True,
              subjects: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The batch of (seed, step). Tensors on the device:

        ``image_a``, ``image_b``, ``image_lesioned`` and ``image_displaced`` (the lesioned image without its lesion:
        what its PHI should be) ``[B, 1, H, W]`` (normalised as at inference); ``labels``
        (healthy tissue classes) and ``labels_lesioned`` (the healthy anatomy under the lesion's mass effect)
        ``[B, H, W]`` int64; ``lesion`` ``[B, H, W]`` bool; ``priors`` ``[B, K, H, W]`` (the atlas at the slice,
        undeformed: what registration provides). ``modality`` forces one preset contrast for every image;
        ``lesions=False`` leaves the lesioned image healthy.
        """
        c, device = self.config, self.device
        generator = batch_generator(seed, step, device)
        batch = c.batch_size
        if subjects is None:
            subjects = torch.randint(0, self.n_subjects, (batch,), generator=generator, device=device)
        slice_index = self.slices[torch.randint(0, len(self.slices), (batch,), generator=generator, device=device)]
        thick = torch.rand(batch, generator=generator, device=device) < c.thick_slice_fraction
        thickness = torch.where(thick, uniform((batch,), c.slice_thickness_mm, generator, device),
                                torch.full((batch,), self.atlas_spacing, device=device))
        points = self._deform(self._points(slice_index, thickness), generator)
        atrophy = torch.randint(c.atrophy_subvoxels[0], c.atrophy_subvoxels[1] + 1, (batch,), generator=generator,
                                device=device)
        atrophy = atrophy * (torch.rand(batch, generator=generator, device=device) < c.atrophy_fraction)
        healthy = self._atrophied(self._lookup(subjects, points), atrophy)

        labels = self._tissue(healthy)
        centres = self._voxel_centres(points)
        draw = draw_lesions(centres[:, c.sub_planes // 2], labels, generator, c.lesions,
                            None if lesions else "none")
        displaced = healthy.clone()
        moved, moved_points = mass_effect(points, draw)
        if moved.numel():
            displaced[moved] = self._atrophied(self._lookup(subjects[moved], moved_points), atrophy[moved])
        distance = F.interpolate(lesion_distances(centres, draw, c.lesions), scale_factor=c.fine, mode="bilinear",
                                 align_corners=False)  # smooth: computed at voxel centres, interpolated
        lesioned = paint_lesions(displaced, self.tissue_table[displaced], distance, draw)
        labels_lesioned = self._tissue(displaced)
        brain = (labels > 0)[:, None]
        band = torch.randint(c.head_band_vox[0], c.head_band_vox[1] + 1, (batch,), generator=generator,
                             device=device)
        keep_head = torch.rand(batch, generator=generator, device=device) < c.head_fraction
        visible = self._visible(brain, band * keep_head)
        visible_lesioned = self._visible((labels_lesioned > 0)[:, None], band * keep_head)

        means_a, means_b = self._means(batch, generator, modality), self._means(batch, generator, modality)
        effects_a, effects_b = self._imaging_effects(batch, generator), self._imaging_effects(batch, generator)
        lesion = self._to_voxels(lesioned != displaced)[:, 0] > 0.5
        # the lesioned image without its lesion is normalised as the lesioned image is: it is that image's PHI
        lesioned_scan = self._acquire(lesioned, means_a, effects_a) * visible_lesioned
        lesioned_scale = self._scale(lesioned_scan, visible_lesioned)
        return {
            "image_a": self._render(healthy, means_a, visible, effects_a),
            "image_b": self._render(healthy, means_b, visible, effects_b),
            "image_lesioned": self._normalise(lesioned_scan, visible_lesioned, lesioned_scale),
            "image_displaced": self._render(displaced, means_a, visible_lesioned, effects_a, lesioned_scale),
            "labels": labels,
            "labels_lesioned": labels_lesioned,
            "lesion": lesion,
            "lesion_kind": draw.kind,
            "priors": self.priors[:, slice_index].transpose(0, 1).contiguous(),
        }

    @staticmethod
    def _atrophied(structures: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
        """Sub-voxel ``structures`` ``[B, P, Hf, Wf]`` whose CSF has grown by ``width`` ``[B]`` sub-voxels into the
        cortex and white matter next to it: wider sulci and ventricles, as in ageing and atrophy."""
        out = structures
        for grow in torch.unique(width).tolist():
            if grow == 0:
                continue
            csf = (structures == Structure.CSF).flatten(0, 1)[:, None].float()
            grown = (F.max_pool2d(csf, 2 * grow + 1, stride=1, padding=grow) > 0).reshape(structures.shape)
            tissue = (structures == Structure.CORTEX) | (structures == Structure.WHITE_MATTER)
            chosen = (width == grow).reshape(-1, 1, 1, 1)
            out = torch.where(chosen & grown & tissue, int(Structure.CSF), out)
        return out

    def _voxel_centres(self, points: torch.Tensor) -> torch.Tensor:
        """Subject-space centre of each working voxel of each sub-plane ``[B, P, H, W, 3]``."""
        batch, planes, fine = points.shape[0], points.shape[1], self.config.fine
        _, ny, nx = self.atlas_shape
        return points.reshape(batch, planes, ny, fine, nx, fine, 3).mean((3, 5))

    @staticmethod
    def _visible(brain: torch.Tensor, band_vox: torch.Tensor) -> torch.Tensor:
        """The brain plus, per sample, the head within ``band_vox`` voxels of it (0: brain only)."""
        visible = brain.clone()
        for width in torch.unique(band_vox).tolist():
            if width == 0:
                continue
            dilated = F.max_pool2d(brain.float(), 2 * width + 1, stride=1, padding=width) > 0
            visible = torch.where((band_vox == width)[:, None, None, None], dilated, visible)
        return visible
