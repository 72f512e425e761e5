"""A bundle from a run's checkpoint without calibrating it, so that ``disanatdetect evaluate --model`` can measure a
run while it trains. Its thresholds are the shipped model's, marked as borrowed: AP and best Dice do not depend on
them, Dice at the threshold and false positives do, so only the first two mean anything for such a bundle.

    python3 Resources/checkpoint_bundle.py training/ablations/reference runs/snapshot
    disanatdetect evaluate --model runs/snapshot/manifest.json --cases ../shared/data/real --methods dal,threshold \
        --no-ablations --out runs/snapshot-eval
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from disanatdetect.bundle import DEFAULT_BUNDLE, load_bundle, write_bundle
from disanatdetect.train import CHECKPOINT, checkpoint_model, load_run_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a training run's folder (config.json and last.pt)")
    parser.add_argument("out", help="where to write the bundle")
    args = parser.parse_args()
    config = load_run_config(args.run)
    name, model_config, model, step = checkpoint_model(Path(args.run) / CHECKPOINT, config)
    shipped = load_bundle(DEFAULT_BUNDLE)
    version = f"step-{step}"
    manifest = write_bundle(model, name, model_config, args.out, version, {
        "atlas_config": asdict(config.atlas), "thresholds": shipped.thresholds,
        "calibration": {"borrowed_from": shipped.version},
        "training": {"run": str(args.run), "steps": step, "seed": config.seed,
                     "config": config.to_dict()}})
    print(f"{manifest}: {version}, thresholds borrowed from {shipped.version}")


if __name__ == "__main__":
    main()
