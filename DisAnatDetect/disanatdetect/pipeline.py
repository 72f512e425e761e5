"""Inference: a scan in, pseudo-healthy image, anomaly map and lesion mask out, all on the scan's own grid.

Stages: register the scan to the atlas (affine, mutual information), resample it onto the working grid, normalise,
reconstruct the pseudo-healthy image slice by slice, score the residual, post-process, resample back.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import SimpleITK as sitk
import torch
from torch.nn import functional as F

from disanatdetect.atlas import CSF, GREY_MATTER, WHITE_MATTER, Atlas, AtlasConfig, load_atlas
from disanatdetect.brain_extraction import extract_brain, has_skull
from disanatdetect.bundle import Bundle, load_bundle
from disanatdetect.errors import InputError
from disanatdetect.io import Volume, check_volume_size
from disanatdetect.postprocess import PostprocessConfig, anomaly_map, lesion_components, lesion_mask
from disanatdetect.preprocess import (NormalisationConfig, RegistrationConfig, brain_mask, coarsened,
                                      intensity_scale, normalise_intensity, register_to_atlas, resample_to)
from disanatdetect.synth.contrast import MODALITIES

# Which way lesions depart from the pseudo-healthy image: +1 brighter (T2, FLAIR, PD), 0 either way (T1 family:
# oedema is dark, an enhancing rim bright).
LESION_SIGN = {"t1": 0, "t1c": 0, "t2": 1, "flair": 1, "pd": 1}
MAX_LABEL_VALUES = 16  # an MRI has hundreds of grey values; a segmentation a handful
MIN_VOXELS_PER_AXIS = 4  # the coarsest registration level smooths across at least this many
STAGES = ("preparing", "registering", "reconstructing", "post-processing")

ProgressCallback = Callable[[str, float], None]


class Cancelled(Exception):
    """Raised inside :meth:`Detector.detect` when its ``should_cancel`` callback answers True."""


@dataclass(frozen=True)
class DetectionConfig:
    """Settings of one detection; the defaults are the released ones."""

    modality: str = "auto"
    threshold: float | None = None  # None: the bundle's label-free threshold for the modality
    batch_size: int = 16
    anatomy_weight: float = 0.0
    explain_csf: bool = True  # no score where scan and restored anatomy agree on CSF
    score_missing_tissue: bool = True  # darker than the PHI counts where the restored anatomy expects tissue
    min_atlas_overlap: float = 0.8  # share of the registered brain inside the atlas brain; below: failure
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    normalisation: NormalisationConfig = field(default_factory=NormalisationConfig)


@dataclass
class AtlasSpaceResult:
    """Everything on the working grid: inputs, reconstruction and scores."""

    image: np.ndarray
    brain: np.ndarray
    pseudo_healthy: np.ndarray | None  # None for methods without a reconstruction (thresholding)
    modality: str
    score: np.ndarray  # raw
    anomaly: np.ndarray  # post-processed
    encoded: np.ndarray | None = None  # tissue class per voxel (DAL only)
    restored: np.ndarray | None = None  # tissue class per voxel (DAL only)
    intensities: np.ndarray | None = None  # per tissue class (DAL only)


@dataclass
class Reconstruction:
    """What DAL makes of a normalised image on the working grid, before any scoring."""

    probabilities: np.ndarray  # encoded tissue probabilities [K, ...]
    encoded: np.ndarray  # tissue class per voxel
    restored: np.ndarray  # tissue class per voxel
    intensities: np.ndarray  # per tissue class: the imaging information
    pseudo_healthy: np.ndarray
    disagreement: np.ndarray  # 1 - agreement of encoded and restored anatomy
    field: np.ndarray  # the imaging information's multiplicative field (ones without one)


@dataclass
class DetectionResult:
    """Outputs on the input grid, plus what the report needs."""

    pseudo_healthy: Volume
    anomaly_map: Volume
    lesion_mask: Volume
    threshold: float
    modality: str
    lesions: list[dict]
    timings: dict[str, float]
    model_version: str
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)

    def rethreshold(self, threshold: float) -> DetectionResult:
        """The same result with another threshold: no model call, only the mask and its components change."""
        mask, lesions = _mask_and_lesions(self.anomaly_map, threshold, self.postprocess)
        return replace(self, lesion_mask=mask, lesions=lesions, threshold=float(threshold))

    @property
    def min_lesion_ml(self) -> float:
        return self.postprocess.min_lesion_ml

    @property
    def lesion_volume_ml(self) -> float:
        return float(sum(lesion["volume_ml"] for lesion in self.lesions))


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" is CUDA when present, else CPU; "gpu" is an alias of "cuda"."""
    device = {"gpu": "cuda"}.get(device.lower(), device.lower())
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto.")
    if device not in ("cpu", "cuda"):
        raise InputError(f"unknown device {device!r}; use auto, cpu or cuda.")
    return torch.device(device)


def infer_modality(intensities: np.ndarray) -> str:
    """Guess the contrast from the order of CSF, grey- and white-matter intensities."""
    csf, grey, white = intensities[CSF], intensities[GREY_MATTER], intensities[WHITE_MATTER]
    if csf > grey and csf > white:
        return "t2" if csf > 1.25 * grey else "pd"
    if white > grey:
        return "t1"
    return "flair"


def anomaly_score(image: np.ndarray, pseudo_healthy: np.ndarray, modality: str,
                  anatomy_disagreement: np.ndarray | None = None, anatomy_weight: float = 0.0,
                  explained: np.ndarray | None = None, unexpected: np.ndarray | None = None) -> np.ndarray:
    """Residual between scan and pseudo-healthy image, signed by the modality, plus optional anatomy disagreement.

    ``explained`` marks voxels the anatomy accounts for as healthy CSF (the scan's anatomy and the restored
    anatomy both say CSF): their residual is partial volume and CSF's wide intensity range, not a lesion, and it
    is what blinds intensity-based detection on T2. ``unexpected`` marks voxels where the restored anatomy puts
    tissue that the scan's anatomy does not show: there a residual counts in both directions, so that the dark
    necrotic core of a tumour on FLAIR or T2 (which reads as CSF inside white matter) is part of the lesion.
    """
    residual = image - pseudo_healthy
    score = np.maximum(residual, 0) if LESION_SIGN[modality] > 0 else np.abs(residual)
    if unexpected is not None and LESION_SIGN[modality] > 0:
        score = np.where(unexpected, np.abs(residual), score)
    if anatomy_disagreement is not None and anatomy_weight:
        score = score + anatomy_weight * anatomy_disagreement
    if explained is not None:
        score = np.where(explained, 0, score)
    return score.astype(np.float32)


def _slices_with_brain(brain: np.ndarray) -> np.ndarray:
    return np.flatnonzero(brain.any((1, 2)))


def _batches(indices: np.ndarray, size: int):
    for start in range(0, len(indices), size):
        yield indices[start:start + size]


def analyse_atlas_space(model: torch.nn.Module, image: np.ndarray, brain: np.ndarray, atlas: Atlas,
                        config: DetectionConfig = DetectionConfig(), device: torch.device = torch.device("cpu"),
                        progress: ProgressCallback | None = None,
                        should_cancel: Callable[[], bool] | None = None) -> AtlasSpaceResult:
    """Reconstruct and score a normalised image on the working grid."""
    reconstruction = reconstruct(model, image, brain, atlas, config, device, progress, should_cancel)
    return score_reconstruction(image, brain, reconstruction, atlas, config)


@torch.inference_mode()
def reconstruct(model: torch.nn.Module, image: np.ndarray, brain: np.ndarray, atlas: Atlas,
                config: DetectionConfig = DetectionConfig(), device: torch.device = torch.device("cpu"),
                progress: ProgressCallback | None = None, should_cancel: Callable[[], bool] | None = None,
                encoded_probabilities: np.ndarray | None = None) -> Reconstruction:
    """The pseudo-healthy image of a normalised image on the working grid, in three passes over the slices.

    Pass 1 encodes the anatomy of every slice, pass 2 restores it; the imaging information (per-class intensities
    and the field) is then measured over the whole brain in 3D, which is more robust than per slice. Pass 3
    renders. ``encoded_probabilities``, pass 1's result for this image by the same encoder, skips pass 1.
    """
    slices = _slices_with_brain(brain)
    k = atlas.priors.shape[0]
    priors = torch.from_numpy(atlas.priors).to(device)
    image_t = torch.from_numpy(image).to(device)
    disagreement = np.zeros(image.shape, dtype=np.float32)
    pseudo_healthy = np.zeros(image.shape, dtype=np.float32)
    passes = 1 + (encoded_probabilities is None) + bool(model.config.use_restoration)
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

    if encoded_probabilities is None:
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
    volume_anatomy = model.one_hot(torch.log(torch.from_numpy(restored_probabilities).to(device) + 1e-8))[None]
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
    return Reconstruction(encoded_probabilities, encoded, restored, intensities_t.cpu().numpy(), pseudo_healthy,
                          disagreement, field.cpu().numpy())


def score_reconstruction(image: np.ndarray, brain: np.ndarray, reconstruction: Reconstruction, atlas: Atlas,
                         config: DetectionConfig = DetectionConfig()) -> AtlasSpaceResult:
    """Raw and post-processed anomaly scores of ``image`` against its reconstruction."""
    r = reconstruction
    modality = infer_modality(r.intensities) if config.modality == "auto" else config.modality
    explained = (r.encoded == CSF) & (r.restored == CSF) if config.explain_csf else None
    unexpected = ((r.encoded != r.restored) & np.isin(r.restored, (GREY_MATTER, WHITE_MATTER))
                  if config.score_missing_tissue else None)
    score = anomaly_score(image, r.pseudo_healthy, modality, r.disagreement, config.anatomy_weight, explained,
                          unexpected)
    score = np.where(brain, score, 0)
    anomaly = anomaly_map(score, brain, atlas.config.spacing_mm, config.postprocess)
    return AtlasSpaceResult(image, brain, r.pseudo_healthy, modality, score, anomaly, r.encoded, r.restored,
                            r.intensities)


class AnomalyMethod(Protocol):
    """What the pipeline and the benchmark harness need of a detector: DAL and the baselines alike.

    ``analyse`` works on the working grid with a normalised image; registration, normalisation and the way back
    to the input grid are the pipeline's job, shared by every method.
    """

    name: str
    version: str

    def analyse(self, image: np.ndarray, brain: np.ndarray, config: DetectionConfig,
                progress: ProgressCallback | None = None,
                should_cancel: Callable[[], bool] | None = None) -> AtlasSpaceResult: ...

    def threshold_for(self, modality: str) -> float: ...


def with_overrides(config: DetectionConfig, method: AnomalyMethod) -> DetectionConfig:
    """``config`` with the settings a method changes for itself (``detection_overrides``, if it has any)."""
    return replace(config, **getattr(method, "detection_overrides", {}))


class _LastImage:
    """What DAL made of the last image it saw: its encoding per anatomy encoder, its reconstruction per model.

    The harness's ablation variants are copies of one DALMethod that share this object and the network weights,
    so a scan is encoded once for all of them and reconstructed once for those that differ only in scoring. It
    keeps the image alive, so identity is a safe key (images are not modified in place after normalisation).
    """

    def __init__(self) -> None:
        self.image: np.ndarray | None = None
        self.brain: np.ndarray | None = None
        self.encodings: dict = {}  # anatomy encoder -> encoded probabilities
        self.reconstructions: dict = {}  # (model config, its networks) -> Reconstruction

    def select(self, image: np.ndarray, brain: np.ndarray) -> None:
        """Start afresh unless ``image`` and ``brain`` are the last ones."""
        if self.image is not image or self.brain is not brain:
            self.image, self.brain = image, brain
            self.encodings.clear()
            self.reconstructions.clear()


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
        self.last_image = _LastImage()

    def analyse(self, image, brain, config, progress=None, should_cancel=None) -> AtlasSpaceResult:
        config = replace(config, **self.detection_overrides)
        model, known = self.bundle.model, self.last_image
        known.select(image, brain)
        key = (model.config, model.anatomy_encoder, model.restoration, model.decoder)
        if key not in known.reconstructions:
            known.reconstructions[key] = reconstruct(model, image, brain, self.atlas, config, self.device, progress,
                                                     should_cancel, known.encodings.get(model.anatomy_encoder))
            known.encodings[model.anatomy_encoder] = known.reconstructions[key].probabilities
        return score_reconstruction(image, brain, known.reconstructions[key], self.atlas, config)

    def threshold_for(self, modality: str) -> float:
        return self.bundle.threshold_for(modality)


def _mask_and_lesions(anomaly: Volume, threshold: float,
                      config: PostprocessConfig = PostprocessConfig()) -> tuple[Volume, list[dict]]:
    mask = lesion_mask(anomaly.array, threshold, anomaly.spacing[::-1], config)
    return anomaly.with_array(mask), lesion_components(mask, anomaly.array, anomaly.affine)


def validate_input(volume: Volume) -> None:
    """Refuse volumes that cannot be a brain MRI, with one sentence saying why."""
    array = volume.array
    if array.ndim != 3:
        raise InputError(f"the image has shape {array.shape}; a 3D brain MRI volume is needed.")
    if min(array.shape) < MIN_VOXELS_PER_AXIS:
        raise InputError(f"the image is {' x '.join(map(str, array.shape[::-1]))} voxels; a 3D brain MRI volume "
                         f"needs at least {MIN_VOXELS_PER_AXIS} along each axis.")
    check_volume_size(array.shape)
    spacing = np.asarray(volume.spacing)
    if not (np.isfinite(spacing).all() and (spacing > 0).all()):
        raise InputError(f"the image's voxel spacing {tuple(spacing)} is not positive and finite; fix its header.")
    if not np.isfinite(volume.direction).all() or abs(np.linalg.det(volume.direction)) < 1e-3:
        raise InputError("the image's direction matrix is not a rotation (singular or not finite); fix its header.")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise InputError(f"the image has voxel type {array.dtype}; a real-valued MRI volume is needed.")
    finite = np.isfinite(array)
    if not finite.all():
        raise InputError(f"the image contains {int((~finite).sum())} NaN or infinite voxels; fix or mask them first.")
    if float(array.max()) <= float(array.min()):
        raise InputError("the image is constant (every voxel has the same value); it holds no MRI data.")
    distinct = np.unique(array[:: max(1, array.shape[0] // 16)])  # a sample of slices is enough to tell
    if distinct.size <= MAX_LABEL_VALUES:
        raise InputError(f"the image has only {distinct.size} distinct values, so it looks like a label map or "
                         "mask, not an MRI scan; pass the scan itself.")


class Detector:
    """A loaded method ready to process volumes; reuse it for many volumes to load the weights once.

    ``Detector()`` is DAL with the shipped model; ``Detector(bundle)`` another DAL bundle; ``Detector(method=...)``
    any :class:`AnomalyMethod` (the baselines), run through the same registration and resampling.
    """

    def __init__(self, bundle: Bundle | None = None, device: str = "auto", method: AnomalyMethod | None = None):
        self.method = method or DALMethod(bundle, device)
        self.atlas = getattr(self.method, "atlas", None) or load_atlas()

    @property
    def bundle(self) -> Bundle:
        return self.method.bundle

    def threshold_for(self, modality: str) -> float:
        return self.method.threshold_for(modality)

    def detect(self, volume: Volume, config: DetectionConfig = DetectionConfig(),
               progress: ProgressCallback | None = None,
               should_cancel: Callable[[], bool] | None = None) -> DetectionResult:
        """Run the whole pipeline on ``volume``; outputs lie on its grid. The input is not modified."""
        config = with_overrides(config, self.method)
        stopwatch = _Stopwatch(progress, should_cancel)
        prepared = prepare_scan(volume, self.atlas, config, stopwatch)
        stopwatch.stage("reconstructing")
        result = self.method.analyse(prepared.image, prepared.brain, config, progress, should_cancel)
        stopwatch.lap("reconstruct")
        stopwatch.stage("post-processing")
        threshold = config.threshold if config.threshold is not None else self.threshold_for(result.modality)
        detection = to_input_grid(prepared, result, self.atlas, threshold, config, self.method.version)
        stopwatch.lap("resample_back")
        stopwatch.stage("post-processing", 1.0)
        detection.timings = {**prepared.timings, **stopwatch.timings}
        return detection


class _Stopwatch:
    """Stage reports (progress and cancellation) and seconds per stage for the report."""

    def __init__(self, progress: ProgressCallback | None = None, should_cancel: Callable[[], bool] | None = None):
        self.progress, self.should_cancel = progress, should_cancel
        self.timings: dict[str, float] = {}
        self._clock = time.perf_counter()

    def stage(self, name: str, fraction: float = 0.0) -> None:
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled()
        if self.progress is not None:
            self.progress(name, fraction)

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._clock, 3)
        self._clock = now


@dataclass
class PreparedScan:
    """A scan registered to the atlas: what every method needs, computed once."""

    volume: Volume
    input_brain: np.ndarray  # on the input grid
    transform: sitk.AffineTransform  # atlas points -> scan points
    image: np.ndarray  # normalised, on the working grid
    brain: np.ndarray  # on the working grid
    scale: float  # the intensity that normalisation mapped to 1
    timings: dict[str, float]


def prepare_scan(volume: Volume, atlas: Atlas, config: DetectionConfig = DetectionConfig(),
                 stopwatch: _Stopwatch | None = None) -> PreparedScan:
    """Check the input, find the brain, register it to the atlas and bring it, normalised, onto the working grid."""
    stopwatch = stopwatch or _Stopwatch()
    if config.modality not in ("auto",) + MODALITIES:
        raise InputError(f"unknown modality {config.modality!r}; use auto, {', '.join(MODALITIES)}.")
    stopwatch.stage("preparing")
    validate_input(volume)
    input_brain = extract_brain(volume) if has_skull(volume) else brain_mask(volume.array)
    if input_brain.sum() < 1000:
        raise InputError("the image has almost no voxels above zero; a brain MRI is expected.")
    masked = volume.array.astype(np.float32)
    masked[~input_brain] = 0
    reference = atlas.template.to_sitk()
    # Block averages down to about the working spacing: anti-aliased, and registration of a 0.5 mm scan as fast
    # as that of a 1.5 mm one. The copy in the image is freed with it; a 512 x 512 x 400 scan makes it 400 MB.
    masked_scan = coarsened(_like(volume, masked), min(reference.GetSpacing()))
    del masked
    stopwatch.lap("prepare")
    stopwatch.stage("registering")
    try:
        transform = register_to_atlas(masked_scan, reference, config.registration)
    except RuntimeError as error:  # ITK gives up on images it cannot sample (too thin, too small)
        reason = re.sub(r"^.*ITK ERROR: [^:]*: ", "", str(error).strip().splitlines()[-1]).split(". ")[0]
        raise InputError(f"registration to the brain atlas failed ({reason}); check that the image is a whole "
                         "brain MRI.") from None
    stopwatch.lap("register")
    image = sitk.GetArrayFromImage(resample_to(masked_scan, reference, transform))
    brain = sitk.GetArrayFromImage(resample_to(_like(volume, input_brain.astype(np.uint8)), reference,
                                               transform)) > 0.5
    inside_atlas = float((brain & atlas.brain_mask).sum()) / max(1, int(brain.sum()))
    if brain.sum() < 1000 or inside_atlas < config.min_atlas_overlap:
        raise InputError(f"registration to the brain atlas failed (only {inside_atlas:.0%} of the registered brain "
                         "lies in the atlas brain); check that the image is a brain MRI.")
    scale = intensity_scale(image, brain, config.normalisation)
    normalised = normalise_intensity(image, brain, config.normalisation)
    stopwatch.lap("normalise")
    return PreparedScan(volume, input_brain, transform, normalised, brain, scale, dict(stopwatch.timings))


def to_input_grid(prepared: PreparedScan, result: AtlasSpaceResult, atlas: Atlas, threshold: float,
                  config: DetectionConfig = DetectionConfig(), version: str = "") -> DetectionResult:
    """Resample a working-grid result back onto the scan's grid and threshold it there."""
    volume = prepared.volume
    inverse = prepared.transform.GetInverse()

    def back(array: np.ndarray) -> np.ndarray:  # onto the scan's grid, which lends only its geometry
        return sitk.GetArrayFromImage(resample_to(atlas.template.with_array(array).to_sitk(), volume, inverse))

    # Filled in place: a 512 x 512 x 400 scan makes every full-size float copy 400 MB.
    anomaly = back(result.anomaly)
    anomaly[~prepared.input_brain] = 0
    outside = ~(prepared.input_brain & (back(prepared.brain.astype(np.float32)) > 0.5))
    phi = back(_or_image(result) * prepared.scale)
    phi[outside] = volume.array[outside]
    del outside
    anomaly, pseudo_healthy = volume.with_array(anomaly), volume.with_array(phi)
    mask, lesions = _mask_and_lesions(anomaly, threshold, config.postprocess)
    return DetectionResult(pseudo_healthy, anomaly, mask, float(threshold), result.modality, lesions, {}, version,
                           config.postprocess)


def _or_image(result: AtlasSpaceResult) -> np.ndarray:
    """The pseudo-healthy image, or the scan itself for methods that do not reconstruct one."""
    return result.pseudo_healthy if result.pseudo_healthy is not None else result.image


def _like(volume: Volume, array: np.ndarray) -> sitk.Image:
    return volume.with_array(array).to_sitk()


def _tuples(config: dict) -> dict:
    """JSON turns tuples into lists; frozen dataclasses want them back as tuples."""
    return {key: tuple(value) if isinstance(value, list) else value for key, value in config.items()}
