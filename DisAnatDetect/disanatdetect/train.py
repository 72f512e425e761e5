"""Training DAL, and the learned baselines, on slices synthesised from real anatomy (``disanatdetect train``).

Every batch comes from :class:`~disanatdetect.synth.slice_synthesis.SliceSynthesiser` on the training device: real
label maps (all subjects but the held-out ones), deformed and rendered in random and preset contrasts, each
anatomy twice healthy and once with a training lesion. One step optimises four terms together:

- anatomy: cross-entropy + Dice of both healthy contrasts' encodings against the true tissue classes;
- invariance: the two contrasts of one brain must give one anatomy;
- restoration: rebuild the healthy anatomy from the edges of what the encoder makes of the lesioned image, and of
  the true anatomy with the lesion filled by a wrong tissue, so that abnormal structures are dropped;
- rendering: the decoder reproduces the image from anatomy + imaging information (per-class intensities and a
  smooth field), from the true labels, through the differentiable one-hot from the encoded anatomy, and from the
  restored anatomy of the lesioned image, whose target is that image without its lesion (the inference path).

The autoencoder baselines see the same healthy images and minimise their reconstruction error (of the clean image
from a coarse-noise-corrupted one, for the denoising autoencoder). Each step's data depends only on (seed, step),
so a run resumed from its checkpoint ends with the weights an uninterrupted run would have had.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import subprocess
import time
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.nn import functional as F

from disanatdetect.atlas import AtlasConfig, load_atlas
from disanatdetect.figures import training_curves
from disanatdetect.models import DALConfig, build_model
from disanatdetect.data_paths import DEFAULT_LABEL_MAPS
from disanatdetect.synth.label_bank import BankConfig, load_bank, split_subjects, subject_name
from disanatdetect.synth.slice_synthesis import SliceSynthesiser, SynthesisConfig
from disanatdetect.synth.structures import MODALITY_PRESETS

CHECKPOINT = "last.pt"
LOG = "log.jsonl"
VALIDATION_LOG = "validation.jsonl"
CURVES = "training_curves.png"


@dataclass
class ValidationConfig:
    """What is measured every ``every`` steps on the held-out subjects (never trained on)."""

    every: int = 250
    batches_per_contrast: int = 4
    modalities: tuple[str, ...] = MODALITY_PRESETS
    seed: int = 20_000  # its own seed stream: validation images are never training images
    healthy_volumes: tuple[str, ...] = ("t2", "flair")  # full-scan false-positive check; () to skip
    healthy_seed: int = 10_000  # the calibration's seed stream of held-out scans
    healthy_every: int = 1000  # the false-positive check runs whole scans through registration: less often


@dataclass
class LoopConfig:
    """Settings of the optimisation loop shared by DAL and the learned baselines."""

    out_dir: str = "runs/dal"
    label_maps: str = DEFAULT_LABEL_MAPS
    holdout_subjects: int = 4  # the last ones by name: validation and calibration only
    steps: int = 1000
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 0  # 0: torch's default
    device: str = "cpu"
    precision: str = "bf16"  # autocast of the networks' forward passes ("bf16" or "fp32"); losses stay fp32
    channels_last: bool = True
    max_minutes: float = 0.0  # stop (with a checkpoint) after this wall time; 0: no limit
    checkpoint_every: int = 100
    log_every: int = 25
    export_bundle: bool = True  # calibrate and write a bundle after the last step (a resumed run remembers it)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    bank: BankConfig = field(default_factory=BankConfig)
    atlas: AtlasConfig = field(default_factory=AtlasConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainConfig(LoopConfig):
    """Every DAL training setting; the defaults are the released model's (see the model card)."""

    weight_anatomy: float = 1.0
    weight_invariance: float = 0.5
    weight_restoration: float = 1.0
    weight_rendering: float = 1.0
    # 3.0.0: soft anatomy and no atlas priors (the dev-set comparison with 2.0.0 is in the model card)
    model: DALConfig = field(default_factory=lambda: DALConfig(encoder_channels=12, restoration_channels=12,
                                                               decoder_channels=8, bias_degree=3,
                                                               use_priors=False, hard_one_hot=False))


@dataclass
class BaselineTrainConfig(LoopConfig):
    """A learned baseline ("ae" or "dae") on the same synthetic healthy slices and step budget as DAL.

    Its batch holds both healthy contrasts of each anatomy, so it sees as many images per step as DAL's encoder.
    """

    out_dir: str = "runs/dae"
    model_name: str = "dae"
    model: dict = field(default_factory=dict)


def dice_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """1 - mean soft Dice over the foreground classes."""
    probabilities = F.softmax(logits, 1)
    target = F.one_hot(labels, logits.shape[1]).permute(0, 3, 1, 2).float()
    dims = (0, 2, 3)
    overlap = (probabilities * target).sum(dims)
    total = probabilities.sum(dims) + target.sum(dims)
    return 1.0 - ((2 * overlap + 1.0) / (total + 1.0))[1:].mean()


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels) + dice_loss(logits, labels)


def training_losses(model, batch: dict[str, torch.Tensor], config: TrainConfig,
                    generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The four loss terms of one batch (see the module docstring)."""
    labels, priors = batch["labels"], batch["priors"]
    k = model.config.n_classes
    with _autocast(config, labels.device):
        with torch.no_grad():  # the restoration learns from the encoder's own reading of a lesion
            encoded_lesioned = model.encode(batch["image_lesioned"], priors).max(1).indices
        logits = model.encode(torch.cat([batch["image_a"], batch["image_b"]]), torch.cat([priors, priors]))
    logits = logits.float()
    logits_a, logits_b = logits.chunk(2)
    anatomy = segmentation_loss(logits, torch.cat([labels, labels]))
    invariance = (F.softmax(logits_a, 1) - F.softmax(logits_b, 1)).abs().mean()

    # the true anatomy with each lesion filled by one wrong tissue: what a perfect encoder would make of it
    wrong_tissue = torch.randint(1, k, (labels.shape[0], 1, 1), generator=generator, device=labels.device)
    filled = torch.where(batch["lesion"], wrong_tissue, batch["labels_lesioned"])
    corrupted = F.one_hot(torch.cat([encoded_lesioned, filled]), k).permute(0, 3, 1, 2).float()
    with _autocast(config, labels.device):
        restored = model.restore(corrupted, torch.cat([priors, priors]))
    restoration = segmentation_loss(restored.float(), torch.cat([batch["labels_lesioned"]] * 2))

    # rendering: of the true and the encoded anatomy of a healthy image, and, as at inference, of the restored
    # anatomy of the lesioned image with imaging information read where encoder and restoration agree; the last
    # one's target is the same image without its lesion
    true_one_hot = F.one_hot(labels, k).permute(0, 3, 1, 2).float()
    intensities, field = model.imaging_information(batch["image_a"], true_one_hot)
    if model.config.use_restoration:
        lesioned_logits = restored[:labels.shape[0]].detach().float()
    else:  # the ablation renders the encoded anatomy (its one-hot as logits)
        lesioned_logits = F.one_hot(encoded_lesioned, k).permute(0, 3, 1, 2).float()
    agree = (lesioned_logits.max(1, keepdim=True).indices == encoded_lesioned[:, None])
    restored_lesioned = model.one_hot(lesioned_logits)
    lesioned_intensities, lesioned_field = model.imaging_information(batch["image_lesioned"], restored_lesioned,
                                                                     agree)
    with _autocast(config, labels.device):
        rendered = model.render(torch.cat([true_one_hot, model.one_hot(logits_a), restored_lesioned]),
                                torch.cat([intensities, intensities, lesioned_intensities]),
                                torch.cat([field, field, lesioned_field]))
    target = torch.cat([batch["image_a"], batch["image_a"], batch["image_displaced"]])
    rendering = (rendered.float() - target).abs().mean() * 10.0  # image errors ~0.05; to the others' scale

    return {"anatomy": anatomy, "invariance": invariance, "restoration": restoration, "rendering": rendering}


def _autocast(config: LoopConfig, device: torch.device):
    """bfloat16 autocast of the networks where asked (CPUs with AVX-512 BF16, and GPUs); else a no-op."""
    if config.precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _learning_rate(step: int, config: TrainConfig) -> float:
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))


def _dal_step(model, batch, generator, config: TrainConfig) -> dict[str, torch.Tensor]:
    losses = training_losses(model, batch, config, generator)
    weights = {"anatomy": config.weight_anatomy, "invariance": config.weight_invariance,
               "restoration": config.weight_restoration, "rendering": config.weight_rendering}
    losses["total"] = sum(weights[name] * value for name, value in losses.items())
    return losses


def _reconstruction_step(model, batch, generator, config: BaselineTrainConfig) -> dict[str, torch.Tensor]:
    images = torch.cat([batch["image_a"], batch["image_b"]])
    with _autocast(config, images.device):
        reconstructed = model(model.corrupt(images))
    error = (reconstructed.float() - images).abs() * (images > 0)
    loss = error.mean() * 10.0
    return {"reconstruction": loss, "total": loss}


def build_synthesisers(config: LoopConfig, device: torch.device, log=print) -> tuple[SliceSynthesiser,
                                                                                      SliceSynthesiser]:
    """Synthesisers of the training subjects and of the held-out ones (banks built or read from the cache)."""
    atlas = load_atlas(config.atlas)
    training, held_out = split_subjects(config.label_maps, config.holdout_subjects)
    deep = getattr(config, "model", None)
    deep = isinstance(deep, DALConfig) and deep.n_classes == 5
    make = [SliceSynthesiser(load_bank(paths, atlas, config.bank, log), atlas, config.synthesis, device, deep)
            for paths in (training, held_out)]
    return make[0], make[1]


def _from_dict(cls, data: dict):
    """A (nested) configuration dataclass from its ``asdict`` form, lists back to tuples."""
    hints = typing.get_type_hints(cls)
    values = {}
    for item in dataclasses.fields(cls):
        if item.name not in data:
            continue
        value, kind = data[item.name], hints[item.name]
        if dataclasses.is_dataclass(kind):
            value = _from_dict(kind, value)
        elif isinstance(value, list):
            value = tuple(value)
        values[item.name] = value
    return cls(**values)


def load_run_config(out_dir: str | Path) -> TrainConfig | BaselineTrainConfig:
    """The settings a run in ``out_dir`` was started with (its ``config.json``), to continue it anywhere.

    The time limit is not among them: it belonged to the piece that stopped, so the continuation has none
    (``max_minutes = 0``) until its caller sets one.
    """
    path = Path(out_dir) / "config.json"
    if not path.exists() or not (Path(out_dir) / CHECKPOINT).exists():
        raise FileNotFoundError(f"no run to resume in {out_dir} (it needs {CHECKPOINT} and config.json)")
    data = json.loads(path.read_text())
    config = _from_dict(BaselineTrainConfig if "model_name" in data else TrainConfig, data)
    config.out_dir = str(out_dir)
    config.max_minutes = 0.0
    return config


def batch_for_memory(bytes_per_anatomy: float, free_bytes: float, fraction: float = 0.6, multiple: int = 8,
                     largest: int = 512) -> int:
    """Anatomies per step that fill ``fraction`` of the free memory, a multiple of ``multiple`` (at least one)."""
    fitting = int(free_bytes * fraction / max(bytes_per_anatomy, 1.0))
    return max(multiple, min(largest, fitting // multiple * multiple))


def fit_batch_size(config: LoopConfig, probe: int = 8) -> int:
    """The batch for a CUDA device: one probe step's peak memory per anatomy, scaled to the free memory."""
    device = torch.device(config.device)
    probe_config = dataclasses.replace(config, synthesis=dataclasses.replace(config.synthesis, batch_size=probe))
    synthesiser, _ = build_synthesisers(probe_config, device, log=lambda message: None)
    model, step_losses = _build(config)
    model.to(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    generator = torch.Generator(device=device)
    step_losses(model, synthesiser.batch(config.seed, 0), generator, config)["total"].backward()
    per_anatomy = (torch.cuda.max_memory_allocated(device) - before) / probe
    free, _ = torch.cuda.mem_get_info(device)
    del model, synthesiser
    torch.cuda.empty_cache()
    return batch_for_memory(per_anatomy, free)


def _build(config: LoopConfig):
    if isinstance(config, BaselineTrainConfig):
        return build_model(config.model_name, config.model), _reconstruction_step
    return build_model("dal", config.model.to_dict()), _dal_step


def train(config: TrainConfig | BaselineTrainConfig, resume: bool = True, progress: bool = True,
          log=None) -> Path:
    """Train DAL (or a baseline) and return the checkpoint. Resumes from ``out_dir/last.pt`` if present.

    Stops after ``config.steps`` steps, or earlier at ``config.max_minutes`` of wall time (with a checkpoint that
    a later call continues from).
    """
    from tqdm.auto import tqdm

    # Everything validation uses is imported now: a run lasts hours, and a module first imported late would be
    # read from whatever the source tree holds by then.
    import disanatdetect.calibration  # noqa: F401
    import disanatdetect.evaluate  # noqa: F401  (calibration reads real healthy scans with its case finder)

    log = log or (lambda message: None)
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    synthesiser, held_out = build_synthesisers(config, device, log)
    model, step_losses = _build(config)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    start = 0
    checkpoint_path = out / CHECKPOINT
    if resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        start = int(state["step"])
        log(f"resumed from {checkpoint_path} at step {start}")
        for name in (LOG, VALIDATION_LOG):  # records after the checkpoint are made again
            _drop_records_after(out / name, start)
    else:  # a new run: the logs of any run it replaces go with it
        for name in (LOG, VALIDATION_LOG, CURVES):
            (out / name).unlink(missing_ok=True)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, disable=not progress, desc="train")
    running: dict[str, float] = {}
    began = time.time()
    cpu_began = time.process_time()
    model.train()
    step = start
    with (out / LOG).open("a") as log_file:
        for step in bar:
            generator = torch.Generator(device=device)
            generator.manual_seed(config.seed * 1_000_003 + step)
            batch = synthesiser.batch(config.seed, step)
            if config.channels_last:
                batch = {name: _channels_last(value) for name, value in batch.items()}
            for group in optimiser.param_groups:
                group["lr"] = _learning_rate(step, config)
            losses = step_losses(model, batch, generator, config)
            optimiser.zero_grad(set_to_none=True)
            losses["total"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimiser.step()
            done = step + 1
            if done % config.log_every == 0 or done == config.steps:
                values = {name: round(float(value.detach()), 5) for name, value in losses.items()}
                for name, value in values.items():
                    running[name] = 0.9 * running.get(name, value) + 0.1 * value
                bar.set_postfix({name: f"{value:.3f}" for name, value in running.items()})
                record = {"step": done, "seconds": round(time.time() - began, 1),
                          "cpu_seconds": round(time.process_time() - cpu_began, 1),
                          "images": done * 2 * config.synthesis.batch_size,
                          "lr": _learning_rate(step, config), **values}
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
            out_of_time = config.max_minutes and time.time() - began > config.max_minutes * 60
            if done % config.checkpoint_every == 0 or done == config.steps or out_of_time:
                _save_checkpoint(checkpoint_path, model, optimiser, done)
            if not isinstance(config, BaselineTrainConfig) and config.validation.every and (
                    done % config.validation.every == 0 or done == config.steps or out_of_time):
                healthy = done % config.validation.healthy_every == 0 or done == config.steps or out_of_time
                record = {"step": done, **validate(model, held_out, config, device, healthy)}
                with (out / VALIDATION_LOG).open("a") as validation_file:
                    validation_file.write(json.dumps(record) + "\n")
                log(f"validation at step {done}: {record}")
                training_curves(out)
                model.train()
            if out_of_time:
                log(f"stopped at step {done} after {config.max_minutes} minutes; resume to continue")
                break
    return checkpoint_path


def _drop_records_after(path: Path, step: int) -> None:
    """Keep only the records of a JSON-lines log up to ``step``."""
    if path.exists():
        lines = path.read_text().splitlines()
        path.write_text("".join(line + "\n" for line in lines if line and json.loads(line)["step"] <= step))


def _channels_last(value: torch.Tensor) -> torch.Tensor:
    return value.contiguous(memory_format=torch.channels_last) if value.dim() == 4 else value


def _save_checkpoint(path: Path, model, optimiser, step: int) -> None:
    temporary = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(), "step": step}, temporary)
    temporary.replace(path)


def tissue_dice(predicted: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Overlap counts per class ``[K, 2]`` (intersection, sum of sizes), to pool over batches into a Dice."""
    counts = []
    for k in range(n_classes):
        p, t = predicted == k, labels == k
        counts.append(torch.stack([(p & t).sum(), p.sum() + t.sum()]))
    return torch.stack(counts).double()


@torch.no_grad()
def validate(model, held_out: SliceSynthesiser, config: TrainConfig, device: torch.device,
             healthy: bool = True) -> dict:
    """Encoder tissue Dice per preset contrast and class on renders of the held-out subjects (fixed images), and,
    if ``healthy``, the healthy false positives on whole held-out scans (:func:`healthy_false_positives`)."""
    model.eval()
    v = config.validation
    k = model.config.n_classes
    result: dict = {}
    for modality in v.modalities:
        counts = torch.zeros((k, 2), dtype=torch.float64, device=device)
        for index in range(v.batches_per_contrast):
            batch = held_out.batch(v.seed, index, modality=modality, lesions=False)
            logits = model.encode(batch["image_a"], batch["priors"])
            counts += tissue_dice(logits.max(1).indices, batch["labels"], k)
        dice = (2 * counts[:, 0] / counts[:, 1].clamp(min=1)).tolist()
        result[f"dice_{modality}"] = [round(d, 4) for d in dice[1:]]
    if v.healthy_volumes and healthy:
        result.update(healthy_false_positives(model, config, device))
    return result


def healthy_false_positives(model, config: TrainConfig, device: torch.device) -> dict:
    """Healthy false positives as the product makes them, per modality: the threshold that calibration gives on one
    held-out healthy scan, and the lesion volume (mL) it marks on another; both through ``detect``'s path."""
    from disanatdetect.bundle import Bundle
    from disanatdetect.calibration import (CalibrationConfig, calibrate_thresholds, false_positive_ml, healthy_maps,
                                           method_for)

    bundle = Bundle(model, "dal", "in-training", {}, {"atlas_config": asdict(config.atlas)})
    method = method_for(bundle, device)
    v = config.validation
    calibration = CalibrationConfig(volumes_per_modality=1, modalities=v.healthy_volumes, seed=v.healthy_seed,
                                    label_maps=config.label_maps, holdout_subjects=config.holdout_subjects,
                                    real_scans=())
    thresholds = calibrate_thresholds(method, calibration)
    measured = healthy_maps(method, dataclasses.replace(calibration, seed=v.healthy_seed + 1))
    result = {}
    for modality in v.healthy_volumes:
        result[f"healthy_threshold_{modality}"] = round(thresholds[modality], 4)
        result[f"healthy_fp_ml_{modality}"] = round(false_positive_ml(measured[modality][0], thresholds[modality]),
                                                    2)
    return result


def source_commit(folder: str | Path) -> str:
    """The git commit of the repository holding ``folder`` (its code at training time), or "unknown"."""
    try:
        return subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def checkpoint_model(checkpoint: str | Path, config: TrainConfig | BaselineTrainConfig
                     ) -> tuple[str, dict, torch.nn.Module, int]:
    """The network a run's checkpoint holds, in eval mode: its registry name, architecture settings, the model and
    the step it was saved at."""
    baseline = isinstance(config, BaselineTrainConfig)
    name, model_config = (config.model_name, config.model) if baseline else ("dal", config.model.to_dict())
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = build_model(name, model_config)
    model.load_state_dict(state["model"])
    return name, model_config, model.eval(), int(state["step"])


def export_bundle(checkpoint: str | Path, config: TrainConfig | BaselineTrainConfig, out_dir: str | Path,
                  version: str, command: str = "", calibration=None) -> Path:
    """Calibrate the label-free thresholds of a trained checkpoint and write the model bundle."""
    from disanatdetect.bundle import Bundle, write_bundle
    from disanatdetect.calibration import CalibrationConfig, calibrate_thresholds, method_for

    # the thresholds come from this run's own held-out subjects
    calibration = dataclasses.replace(calibration or CalibrationConfig(), label_maps=config.label_maps,
                                      holdout_subjects=config.holdout_subjects)
    name, model_config, model, _ = checkpoint_model(checkpoint, config)
    bundle = Bundle(model, name, version, {}, {"atlas_config": asdict(config.atlas)})
    method = method_for(bundle)
    extra = {
        "atlas_config": asdict(config.atlas),
        "thresholds": calibrate_thresholds(method, calibration),
        "calibration": asdict(calibration),
        "training": {"command": command, "seed": config.seed, "steps": config.steps, "config": config.to_dict(),
                     "held_out_subjects": [subject_name(p) for p in
                                           split_subjects(config.label_maps, config.holdout_subjects)[1]],
                     "code_commit": source_commit(Path(__file__).parent)},
    }
    return write_bundle(model, name, model_config, out_dir, version, extra)
