"""Training DAL, and the learned baselines, on synthetic healthy slices (``disanatdetect train``).

One step draws a batch of healthy anatomy in two contrasts and optimises four terms together:

- anatomy: cross-entropy + Dice of both contrasts' encodings against the synthetic labels;
- invariance: the two contrasts of one brain must give one anatomy;
- restoration: rebuild the clean labels from the edges of a corrupted anatomy (true labels with implausible
  blobs, or the encoder's own output with blobs), so that abnormal structures are dropped;
- rendering: the decoder reproduces the image from anatomy + imaging information (from the true labels and,
  through the differentiable one-hot, from the encoded anatomy).

The autoencoder baselines see the same batches and minimise their reconstruction error (of the clean image from
a coarse-noise-corrupted one, for the denoising autoencoder). Each step's data depends only on (seed, step), so a
resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from disanatdetect.atlas import AtlasConfig, load_atlas
from disanatdetect.models import DALConfig, build_model, class_intensities
from disanatdetect.synth.batches import BatchConfig, corrupt_anatomy, healthy_slice_batch


@dataclass
class LoopConfig:
    """Settings of the optimisation loop shared by DAL and the learned baselines."""

    out_dir: str = "runs/dal"
    steps: int = 1000
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 0  # 0: torch's default
    device: str = "cpu"
    checkpoint_every: int = 200
    log_every: int = 25
    batch: BatchConfig = field(default_factory=BatchConfig)
    atlas: AtlasConfig = field(default_factory=AtlasConfig)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainConfig(LoopConfig):
    """Every DAL training setting; the defaults are the released model's (see the model card)."""

    weight_anatomy: float = 1.0
    weight_invariance: float = 0.5
    weight_restoration: float = 1.0
    weight_rendering: float = 1.0
    model: DALConfig = field(default_factory=lambda: DALConfig(encoder_channels=12, restoration_channels=12,
                                                               decoder_channels=8))


@dataclass
class BaselineTrainConfig(LoopConfig):
    """A learned baseline ("ae" or "dae") on the same synthetic healthy slices and step budget as DAL.

    Its batch holds both contrasts of each anatomy, so it sees as many images per step as DAL's encoder.
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
                    corrupted_encoding: torch.Tensor) -> dict[str, torch.Tensor]:
    """The four loss terms of one batch (see the module docstring)."""
    labels, priors = batch["labels"], batch["priors"]
    k = model.config.n_classes
    images = torch.cat([batch["image_a"], batch["image_b"]])
    logits = model.encode(images, torch.cat([priors, priors]))
    logits_a, logits_b = logits.chunk(2)
    anatomy = segmentation_loss(logits, torch.cat([labels, labels]))
    invariance = (F.softmax(logits_a, 1) - F.softmax(logits_b, 1)).abs().mean()

    corrupted = torch.cat([batch["corrupted"], corrupted_encoding])
    corrupted_one_hot = F.one_hot(corrupted, k).permute(0, 3, 1, 2).float()
    restoration = segmentation_loss(model.restore(corrupted_one_hot, torch.cat([priors, priors])),
                                    torch.cat([labels, labels]))

    true_one_hot = F.one_hot(labels, k).permute(0, 3, 1, 2).float()
    encoded_a = model.one_hot(logits_a)
    intensities = class_intensities(batch["image_a"], true_one_hot)
    rendered = model.render(torch.cat([true_one_hot, encoded_a]), torch.cat([intensities, intensities]))
    target = torch.cat([batch["image_a"], batch["image_a"]])
    rendering = (rendered - target).abs().mean() * 10.0  # image errors are ~0.05; bring them to the others' scale

    return {"anatomy": anatomy, "invariance": invariance, "restoration": restoration, "rendering": rendering}


def _learning_rate(step: int, config: TrainConfig) -> float:
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))


def _dal_step(model, batch, rng, config: TrainConfig, atlas) -> dict[str, torch.Tensor]:
    with torch.no_grad():  # the restoration also learns from the encoder's own (imperfect) anatomy
        encoded = model.encode(batch["image_a"], batch["priors"]).max(1).indices.cpu().numpy().astype(np.uint8)
    corrupted_encoding = np.stack([corrupt_anatomy(e, rng, atlas.config.spacing_mm, config.batch)
                                   for e in encoded]).astype(np.int64)
    losses = training_losses(model, batch, config, torch.from_numpy(corrupted_encoding).to(batch["labels"].device))
    weights = {"anatomy": config.weight_anatomy, "invariance": config.weight_invariance,
               "restoration": config.weight_restoration, "rendering": config.weight_rendering}
    losses["total"] = sum(weights[name] * value for name, value in losses.items())
    return losses


def _reconstruction_step(model, batch, rng, config: BaselineTrainConfig, atlas) -> dict[str, torch.Tensor]:
    images = torch.cat([batch["image_a"], batch["image_b"]])
    error = (model(model.corrupt(images)) - images).abs() * (images > 0)
    loss = error.mean() * 10.0
    return {"reconstruction": loss, "total": loss}


def train(config: TrainConfig | BaselineTrainConfig, resume: bool = True, progress: bool = True) -> Path:
    """Train DAL (or a baseline) and return the final checkpoint. Resumes from ``out_dir/last.pt`` if present."""
    from tqdm.auto import tqdm

    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    atlas = load_atlas(config.atlas)
    if isinstance(config, BaselineTrainConfig):
        model, step_losses = build_model(config.model_name, config.model), _reconstruction_step
    else:
        model, step_losses = build_model("dal", config.model.to_dict()), _dal_step
    model.to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    start = 0
    checkpoint_path = out / "last.pt"
    if resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        start = int(state["step"])
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, disable=not progress, desc="train")
    running: dict[str, float] = {}
    began = time.time()
    model.train()
    with (out / "log.jsonl").open("a") as log:
        for step in bar:
            rng = np.random.default_rng([config.seed, step])
            batch = {name: torch.from_numpy(value).to(device)
                     for name, value in healthy_slice_batch(atlas, rng, config.batch).items()}
            for group in optimiser.param_groups:
                group["lr"] = _learning_rate(step, config)
            losses = step_losses(model, batch, rng, config, atlas)
            optimiser.zero_grad(set_to_none=True)
            losses["total"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimiser.step()
            values = {name: float(value.detach()) for name, value in losses.items()}
            for name, value in values.items():
                running[name] = 0.9 * running.get(name, value) + 0.1 * value
            bar.set_postfix({name: f"{value:.3f}" for name, value in running.items()})
            if (step + 1) % config.log_every == 0:
                record = {"step": step + 1, "seconds": round(time.time() - began, 1),
                          "lr": _learning_rate(step, config), **{k: round(v, 5) for k, v in values.items()}}
                log.write(json.dumps(record) + "\n")
                log.flush()
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
                _save_checkpoint(checkpoint_path, model, optimiser, step + 1)
    return checkpoint_path


def _save_checkpoint(path: Path, model, optimiser, step: int) -> None:
    temporary = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(), "step": step}, temporary)
    temporary.replace(path)


def export_bundle(checkpoint: str | Path, config: TrainConfig | BaselineTrainConfig, out_dir: str | Path,
                  version: str, command: str = "", calibration=None) -> Path:
    """Calibrate the label-free thresholds of a trained checkpoint and write the model bundle."""
    from disanatdetect.bundle import Bundle, write_bundle
    from disanatdetect.calibration import CalibrationConfig, calibrate_thresholds, method_for

    calibration = calibration or CalibrationConfig()
    baseline = isinstance(config, BaselineTrainConfig)
    name, model_config = (config.model_name, config.model) if baseline else ("dal", config.model.to_dict())
    model = build_model(name, model_config)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["model"])
    model.eval()
    bundle = Bundle(model, name, version, {}, {"atlas_config": asdict(config.atlas)})
    method = method_for(bundle)
    extra = {
        "atlas_config": asdict(config.atlas),
        "thresholds": calibrate_thresholds(method, calibration),
        "calibration": asdict(calibration),
        "training": {"command": command, "seed": config.seed, "steps": config.steps, "config": config.to_dict()},
    }
    return write_bundle(model, name, model_config, out_dir, version, extra)
