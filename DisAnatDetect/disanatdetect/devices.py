"""The compute device a detection runs on."""

from __future__ import annotations

import torch

from disanatdetect.errors import InputError


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
