"""Cohort throughput: scans per hour of ``batch`` with 1 and 2 workers beside N sequential ``detect`` calls.

``python -m disanatdetect.cohort.benchmark [--input FOLDER_OR_CSV] [--scans N] [--setups 1x1 2x1] [--out DIR]``
runs, in one process and one after the other on the same N scans: a shell loop's way (one ``disanatdetect detect``
process per scan, the model loaded each time) and one cohort run per setup (WORKERSxTHREADS, cluster start and model
loading included). Without ``--input``, N synthetic FLAIR cases on the BraTS grid (240 x 240 x 155, 1 mm) are the
scans. It prints a Markdown table and the machine's load average, since other work on the machine slows every row.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SECONDS_PER_HOUR = 3600.0
# One detect process per scan, as a shell loop runs it (the console script is this call).
DETECT_CALL = "import sys; from disanatdetect.cli import main; sys.exit(main(sys.argv[1:]))"


@dataclass(frozen=True)
class BenchmarkConfig:
    """What the benchmark measures; the defaults are the figures the README gives."""

    scans: int = 6
    setups: tuple[tuple[int, int], ...] = ((1, 1), (2, 1), (1, 2))  # (workers, threads per worker)
    device: str = "cpu"
    model: str | None = None


def _scans(source: str | None, count: int, folder: Path) -> list:
    from disanatdetect.benchmark import brats_like_volume
    from disanatdetect.cohort.inputs import scans_from_csv, scans_from_folder
    from disanatdetect.errors import InputError
    from disanatdetect.io import write_volume

    if source is None:
        for seed in range(count):
            write_volume(brats_like_volume(seed), folder / "inputs" / f"synthetic_{seed:03d}_flair.nii.gz")
        return scans_from_folder(folder / "inputs")
    found = scans_from_folder(source) if Path(source).is_dir() else scans_from_csv(source)
    if len(found) < count:
        raise InputError(f"{source} holds {len(found)} scans, fewer than the {count} asked for.")
    return found[:count]


def _sequential(scans: list, out: Path, config: BenchmarkConfig) -> float:
    started = time.perf_counter()
    for scan in scans:
        command = [sys.executable, "-c", DETECT_CALL, "detect", str(scan.path), "--out",
                   str(out / scan.key), "--device", config.device, "--quiet", "--modality", scan.modality]
        if config.model:
            command += ["--model", config.model]
        subprocess.run(command, check=True)
    return time.perf_counter() - started


def run_benchmark(source: str | None, out: Path, config: BenchmarkConfig = BenchmarkConfig()) -> dict:
    """Time the sequential calls and each cohort setup on the same scans; every row of one run, one machine."""
    from disanatdetect.cohort.outputs import CaseFolders
    from disanatdetect.cohort.run import ClusterConfig, CohortConfig, run_cohort, usable_cores

    scans = _scans(source, config.scans, out)
    load_before = os.getloadavg()
    rows = []
    seconds = _sequential(scans, out / "sequential", config)
    rows.append({"setup": f"{len(scans)} sequential detect calls", "workers": 1, "threads": 0, "seconds": seconds,
                 "scans_per_hour": SECONDS_PER_HOUR * len(scans) / seconds})
    for workers, threads in config.setups:
        cohort = CohortConfig(model=config.model, device=config.device, progress=False,
                              cluster=ClusterConfig(workers=workers, threads_per_worker=threads))
        summary = run_cohort(scans, CaseFolders(out / f"batch-{workers}x{threads}"), cohort, log=lambda _: None)
        failed = summary.count("failed")
        if failed:
            print(f"warning: {failed} scans failed in the {workers}x{threads} run", file=sys.stderr)
        rows.append({"setup": f"batch, {workers} worker(s) x {threads} thread(s)", "workers": workers,
                     "threads": threads, "seconds": summary.seconds, "scans_per_hour": summary.scans_per_hour})
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "scans": len(scans), "device": config.device,
            "cores": usable_cores(), "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "inputs": [str(scan.path) for scan in scans], "rows": rows}


def table(result: dict) -> str:
    lines = ["| how | seconds | scans/hour |", "| --- | --- | --- |"]
    lines += [f"| {row['setup']} | {row['seconds']:.0f} | {row['scans_per_hour']:.0f} |" for row in result["rows"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m disanatdetect.cohort.benchmark",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--input", default=None,
                        help="folder of scans or CSV list (default: synthetic BraTS-grid FLAIR)")
    parser.add_argument("--scans", type=int, default=BenchmarkConfig.scans)
    parser.add_argument("--setups", nargs="+", default=[f"{w}x{t}" for w, t in BenchmarkConfig.setups],
                        help="WORKERSxTHREADS of each cohort run")
    parser.add_argument("--device", default=BenchmarkConfig.device, choices=("cpu", "cuda"))
    parser.add_argument("--model", default=None)
    parser.add_argument("--out", default=None,
                        help="keep the outputs and result.json here (default: a temporary folder)")
    args = parser.parse_args(argv)
    setups = tuple(tuple(int(n) for n in setup.lower().split("x")) for setup in args.setups)
    config = BenchmarkConfig(args.scans, setups, args.device, args.model)
    with tempfile.TemporaryDirectory() as temporary:
        out = Path(args.out or temporary)
        result = run_benchmark(args.input, out, config)
        if args.out:
            (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['scans']} scans, {result['device']}, {result['cores']} cores, {result['date']}; load average "
          f"{result['load_average_before'][0]} before, {result['load_average_after'][0]} after")
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
