"""Seconds per training step, and synthesis alone, for the loop's settings: prints one JSON line per setting.

    python3 Resources/benchmark_training.py [--steps 20] [--threads 2] [--label-maps DIR] [--device cpu]

Each setting trains the released architecture from scratch for ``--steps`` measured steps (after 3 warm-up steps)
on the same batches; a step is synthesis + forward + backward + optimiser. ``images_per_cpu_second`` counts the
healthy images (2 per anatomy, as 1.0.0's loop had) per second of this process's CPU time; the lesioned image of
each anatomy is extra.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import torch

from disanatdetect.data_paths import DEFAULT_LABEL_MAPS
from disanatdetect.train import TrainConfig, _build, _channels_last, build_synthesisers

SETTINGS = {
    "fp32, contiguous": dict(precision="fp32", channels_last=False),
    "bf16, contiguous": dict(precision="bf16", channels_last=False),
    "bf16, channels-last (released)": dict(precision="bf16", channels_last=True),
}


def measure(config: TrainConfig, steps: int, warmup: int = 3) -> dict:
    device = torch.device(config.device)
    synthesiser, _ = build_synthesisers(config, device, log=lambda message: None)
    model, step_losses = _build(config)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    wall, cpu, synthesis = [], [], []
    for step in range(warmup + steps):
        began, cpu_began = time.perf_counter(), time.process_time()
        batch = synthesiser.batch(config.seed, step)
        if config.channels_last:
            batch = {name: _channels_last(value) for name, value in batch.items()}
        synthesised = time.perf_counter()
        generator = torch.Generator(device=device)
        generator.manual_seed(step)
        losses = step_losses(model, batch, generator, config)
        optimiser.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimiser.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step >= warmup:
            wall.append(time.perf_counter() - began)
            cpu.append(time.process_time() - cpu_began)
            synthesis.append(synthesised - began)
    images = 2 * config.synthesis.batch_size
    return {"median_step_s": round(statistics.median(wall), 3), "median_cpu_s": round(statistics.median(cpu), 3),
            "median_synthesis_s": round(statistics.median(synthesis), 3),
            "synthesis_anatomies_per_s": round(config.synthesis.batch_size / statistics.median(synthesis), 1),
            "images_per_cpu_second": round(images / statistics.median(cpu), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--label-maps", default=DEFAULT_LABEL_MAPS)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name, setting in SETTINGS.items():
        config = dataclasses.replace(TrainConfig(label_maps=args.label_maps, device=args.device), **setting)
        print(json.dumps({"setting": name, "threads": args.threads, **measure(config, args.steps)}), flush=True)


if __name__ == "__main__":
    main()
