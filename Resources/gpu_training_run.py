"""Train DAL on a GPU for a fixed wall time and leave everything in one folder: the first command on a GPU machine.

    python3 Resources/gpu_training_run.py OUT_DIR [--minutes 7.5] [--label-maps DIR]
    python3 Resources/gpu_training_run.py OUT_DIR --smoke --device cpu      # the suite's check, tiny and on CPU

OUT_DIR receives the run (``last.pt``, ``config.json``, ``log.jsonl``, ``validation.jsonl``,
``training_curves.png``), ``environment.json`` (device, torch and CUDA versions) and ``throughput.json`` (images
per second, anatomies per step, and the steps that 8 minutes buy). The run uses bfloat16 autocast, a batch sized
to the GPU's free memory and data synthesised on the GPU; ``disanatdetect train --resume --out OUT_DIR`` continues
it on any machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import torch

from disanatdetect.models import DALConfig
from disanatdetect.data_paths import DEFAULT_LABEL_MAPS
from disanatdetect.train import TrainConfig, ValidationConfig, fit_batch_size, train

BUDGET_MINUTES = 8.0


def smoke_config(config: TrainConfig) -> TrainConfig:
    """Tiny sizes and a few steps: proves the script end to end in seconds on any device."""
    return dataclasses.replace(
        config, steps=3, checkpoint_every=2, log_every=1, holdout_subjects=1,
        model=DALConfig(encoder_channels=4, restoration_channels=4, decoder_channels=4, depth=3),
        synthesis=dataclasses.replace(config.synthesis, batch_size=2),
        validation=ValidationConfig(every=3, batches_per_contrast=1, modalities=("t1", "flair"),
                                    healthy_volumes=()))


def throughput(run_dir: Path, anatomies_per_step: int) -> dict:
    """Images per second over the logged steps after the first record (which pays for warm-up)."""
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    first, last = (records[0], records[-1]) if len(records) > 1 else ({"step": 0, "seconds": 0.0, "images": 0},
                                                                      records[-1])
    seconds = max(last["seconds"] - first["seconds"], 1e-9)
    steps_per_second = (last["step"] - first["step"]) / seconds
    return {
        "steps": last["step"], "seconds": last["seconds"], "anatomies_per_step": anatomies_per_step,
        "images_per_second": round((last["images"] - first["images"]) / seconds, 2),
        "steps_per_second": round(steps_per_second, 3),
        "steps_in_8_minutes": int(steps_per_second * BUDGET_MINUTES * 60),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--minutes", type=float, default=7.5, help=f"wall time of training (at most {BUDGET_MINUTES})")
    parser.add_argument("--steps", type=int, default=100_000, help="schedule length (the run stops at --minutes)")
    parser.add_argument("--label-maps", default=DEFAULT_LABEL_MAPS)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few steps (the suite's check)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device visible to PyTorch; use --device cpu (with --smoke) to check the script", file=sys.stderr)
        return 2
    config = TrainConfig(out_dir=str(args.out), label_maps=args.label_maps, device=args.device, steps=args.steps,
                         max_minutes=min(args.minutes, BUDGET_MINUTES), checkpoint_every=500, log_every=50,
                         validation=ValidationConfig(every=2000))
    if args.smoke:
        config = smoke_config(config)
    elif args.device == "cuda":
        config.synthesis = dataclasses.replace(config.synthesis, batch_size=fit_batch_size(config))
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    environment = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device),
                   "cuda": torch.version.cuda, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if device.type == "cuda":
        environment["gpu"] = torch.cuda.get_device_name(device)
    (args.out / "environment.json").write_text(json.dumps(environment, indent=2) + "\n")
    train(config, resume=True, progress=False, log=lambda message: print(message, flush=True))
    result = throughput(args.out, config.synthesis.batch_size)
    (args.out / "throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
