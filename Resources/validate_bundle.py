"""A model bundle measured as training validates: encoder tissue Dice on the held-out subjects, healthy false
positives. Prints one JSON line, comparable with a run's ``validation.jsonl``.

    python3 Resources/validate_bundle.py [--model path/to/manifest.json] [--label-maps DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import torch

from disanatdetect.bundle import load_bundle
from disanatdetect.data_paths import DEFAULT_LABEL_MAPS
from disanatdetect.train import TrainConfig, build_synthesisers, validate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="manifest.json of the bundle (default: the shipped one)")
    parser.add_argument("--label-maps", default=DEFAULT_LABEL_MAPS)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundle = load_bundle(args.model)
    config = dataclasses.replace(TrainConfig(label_maps=args.label_maps), model=bundle.model.config)
    device = torch.device("cpu")
    _, held_out = build_synthesisers(config, device, log=lambda message: None)
    print(json.dumps({"model": bundle.version, **validate(bundle.model, held_out, config, device)}))


if __name__ == "__main__":
    main()
