"""The model bundle: versioned weights shipped as package data, a manifest with their checksum, a model card.

Weights are only ever loaded with ``torch.load(..., weights_only=True)``, after their SHA-256 matched the manifest.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from disanatdetect.errors import ModelError
from disanatdetect.models import build_model

BUNDLE_FORMAT = 1
DEFAULT_BUNDLE = Path(__file__).parent / "weights" / "manifest.json"


@dataclass
class Bundle:
    """A loaded model with what the pipeline needs to use it."""

    model: torch.nn.Module
    name: str
    version: str
    thresholds: dict[str, float]
    manifest: dict = field(default_factory=dict)

    def threshold_for(self, modality: str) -> float:
        """The calibrated label-free threshold of ``modality``, or the bundle's default one."""
        return float(self.thresholds.get(modality, self.thresholds["default"]))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_bundle(manifest_path: str | Path | None = None, device: str | torch.device = "cpu") -> Bundle:
    """Load and verify a model bundle (the shipped one by default). Raises :class:`ModelError` when it is unusable."""
    manifest_path = Path(manifest_path or DEFAULT_BUNDLE)
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as error:
        raise ModelError(f"the model manifest {manifest_path} cannot be read ({error}); reinstall disanatdetect.") \
            from None
    if manifest.get("format") != BUNDLE_FORMAT:
        raise ModelError(f"the model bundle {manifest_path} has format {manifest.get('format')!r}, this version of "
                         f"disanatdetect reads format {BUNDLE_FORMAT}; use a matching model or disanatdetect.")
    weights = manifest_path.parent / manifest["weights"]
    if not weights.exists():
        raise ModelError(f"the model weights {weights} are missing; reinstall disanatdetect.")
    if sha256(weights) != manifest["sha256"]:
        raise ModelError(f"the model weights {weights} do not match their checksum (damaged or altered); "
                         "reinstall disanatdetect.")
    try:
        state = torch.load(weights, map_location=device, weights_only=True)
        model = build_model(manifest["model"], manifest["model_config"])
        model.load_state_dict(state)
    except Exception as error:  # noqa: BLE001 - any failure here means the same thing to the user
        raise ModelError(f"the model weights {weights} cannot be loaded ({type(error).__name__}); "
                         "reinstall disanatdetect.") from None
    model.to(device).eval()
    return Bundle(model, manifest["model"], manifest["version"], manifest.get("thresholds", {}), manifest)


def write_bundle(model: torch.nn.Module, name: str, model_config: dict, out_dir: str | Path, version: str,
                 extra: dict | None = None) -> Path:
    """Save weights (float32 state dict) and a manifest with their checksum; returns the manifest path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{name}-{version}.pt"
    torch.save({key: value.detach().cpu().float() for key, value in model.state_dict().items()}, weights)
    manifest = {"format": BUNDLE_FORMAT, "model": name, "version": version, "weights": weights.name,
                "sha256": sha256(weights), "model_config": model_config, **(extra or {})}
    path = out_dir / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path
