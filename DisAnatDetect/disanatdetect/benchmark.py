"""Speed and memory (``disanatdetect benchmark``): seconds per stage over repeated runs, peak memory, throughput.

Every method runs on the same prepared scan in the same process, so DAL's figures stand beside the baselines'
measured together. Without an input, a synthetic FLAIR case resampled to the BraTS grid (240 x 240 x 155, 1 mm)
stands in for a real scan.
"""

from __future__ import annotations

import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import SimpleITK as sitk
import torch

from disanatdetect.atlas import load_atlas
from disanatdetect.io import Volume, read_volume, write_volume
from disanatdetect.detection import Stopwatch
from disanatdetect.pipeline import DetectionConfig, analyse_prepared, prepare_scan
from disanatdetect.synth.cases import synthetic_case


def brats_like_volume(seed: int = 3) -> Volume:
    """A synthetic FLAIR tumour case on a 240 x 240 x 155 grid of 1 mm voxels."""
    case = synthetic_case(load_atlas(), seed, "flair", "tumour")
    reference = sitk.Image(240, 240, 155, sitk.sitkFloat32)
    reference.SetOrigin((-120.0, -120.0, -72.0))  # LPS, covering the atlas brain
    resampled = sitk.Resample(case.image.to_sitk(), reference, sitk.Transform(), sitk.sitkLinear, 0.0)
    return Volume.from_sitk(sitk.Cast(resampled * 1000, sitk.sitkInt16))


def resampled_to_size(volume: Volume, size: tuple[int, int, int]) -> Volume:
    """The same field of view on ``size`` (i, j, k) voxels, linearly interpolated: a large scan from a small one."""
    image = volume.to_sitk()
    reference = sitk.Image([int(n) for n in size], image.GetPixelID())
    reference.SetSpacing([n * s / m for n, s, m in zip(image.GetSize(), image.GetSpacing(), size)])
    reference.SetOrigin(image.GetOrigin())
    reference.SetDirection(image.GetDirection())
    return Volume.from_sitk(sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0,
                                          image.GetPixelID()))


def _reset_peak_rss() -> bool:
    """Start a new peak-memory measurement (Linux: reset VmHWM); False where the system cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    """Peak resident memory since the last reset (Linux), else since the process started."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports kB


def _time_method(method, volume_path: Path, config: DetectionConfig, atlas, out_dir: Path) -> dict[str, float]:
    """One full run: every stage from reading the file to writing the outputs."""
    laps = Stopwatch()
    volume = read_volume(volume_path)
    laps.lap("read")
    detection = analyse_prepared(method, prepare_scan(volume, atlas, config, laps), atlas, config, stopwatch=laps)
    for name in ("pseudo_healthy", "anomaly_map", "lesion_mask"):
        write_volume(getattr(detection, name), out_dir / f"{name}.nii.gz")
    laps.lap("write")
    return {**laps.timings, "total": round(sum(laps.timings.values()), 3)}


def benchmark(methods: list, volume: Volume | None = None, runs: int = 5, warmup: int = 1,
              config: DetectionConfig = DetectionConfig(modality="flair")) -> dict:
    """Median and spread of each stage per method, peak memory and volumes per hour."""
    atlas = load_atlas()
    volume = volume if volume is not None else brats_like_volume()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        input_path = write_volume(volume, folder / "input.nii.gz")
        for method in methods:
            # Each method's own peak; where it cannot be reset, later methods report the process's peak so far.
            per_method_peak = _reset_peak_rss()
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            samples = [_time_method(method, input_path, config, atlas, folder) for _ in range(warmup + runs)]
            samples = samples[warmup:]
            stages = {stage: {"median_s": round(statistics.median(s[stage] for s in samples), 3),
                              "min_s": round(min(s[stage] for s in samples), 3),
                              "max_s": round(max(s[stage] for s in samples), 3)} for stage in samples[0]}
            results[method.name] = {
                "version": getattr(method, "version", None),  # a model's, so that a report names what it timed
                "stages": stages,
                "volumes_per_hour": round(3600.0 / stages["total"]["median_s"], 1),
                "peak_rss_mb": round(_peak_rss_mb(), 1),
                "peak_rss_scope": "method" if per_method_peak else "process",
                "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available()
                else None,
            }
    return {
        "input_shape": list(volume.shape[::-1]),
        "runs": runs,
        "warmup": warmup,
        "device": str(getattr(methods[0], "device", "cpu")),
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {torch.get_num_threads()} threads",
        "date": time.strftime("%Y-%m-%d"),
        "methods": results,
    }


def benchmark_table(report: dict) -> str:
    """Markdown: one row per method, median seconds per stage."""
    methods = report["methods"]
    stages = list(next(iter(methods.values()))["stages"])
    lines = ["| method | " + " | ".join(stages) + " | volumes/hour | peak RSS (MB) |",
             "| --- | " + " | ".join("---" for _ in stages) + " | --- | --- |"]
    for name, entry in methods.items():
        cells = [f"{entry['stages'][s]['median_s']:.2f}" for s in stages]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {entry['volumes_per_hour']} | {entry['peak_rss_mb']} |")
    return "\n".join(lines)
