"""The benchmark command's measurements: stages that add up, and a peak memory of each method's own."""

import sys

import numpy as np
import pytest

from disanatdetect import benchmark


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak-memory reset needs Linux's /proc")
def test_peak_memory_is_measured_from_the_last_reset():
    assert benchmark._reset_peak_rss()
    before = benchmark._peak_rss_mb()
    block = np.ones(300 * 2**20 // 8)  # 300 MB, touched
    during = benchmark._peak_rss_mb()
    del block
    assert during - before > 250
    assert benchmark._reset_peak_rss()
    assert benchmark._peak_rss_mb() < during - 250  # the freed block no longer counts


@pytest.mark.slow
def test_benchmark_reports_every_stage_for_every_method():
    from disanatdetect.baselines import ThresholdMethod

    report = benchmark.benchmark([ThresholdMethod()], runs=2, warmup=0)
    entry = report["methods"]["Threshold"]
    stages = entry["stages"]
    assert list(stages) == ["read", "prepare", "register", "normalise", "reconstruct", "resample_back", "write",
                            "total"]
    for timing in stages.values():
        assert 0 <= timing["min_s"] <= timing["median_s"] <= timing["max_s"]
    parts = sum(stages[name]["median_s"] for name in stages if name != "total")
    assert stages["total"]["median_s"] == pytest.approx(parts, rel=0.25)  # medians of sums vs sums of medians
    assert entry["volumes_per_hour"] == pytest.approx(3600 / stages["total"]["median_s"], rel=0.01)
    assert entry["peak_rss_mb"] > 100 and report["input_shape"] == [240, 240, 155]
    assert "| Threshold |" in benchmark.benchmark_table(report)


def _compare_devices_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "Resources" / "compare_devices.py"
    spec = importlib.util.spec_from_file_location("compare_devices", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_device_comparison_measures_maps_and_masks():
    from types import SimpleNamespace

    def detection(anomaly, mask, phi):
        return SimpleNamespace(anomaly_map=SimpleNamespace(array=np.array(anomaly, np.float32)),
                               lesion_mask=SimpleNamespace(array=np.array(mask, np.uint8)),
                               pseudo_healthy=SimpleNamespace(array=np.array(phi, np.float32)))

    first = detection([0.1, 0.5, 0.9], [0, 1, 1], [1.0, 2.0, 3.0])
    second = detection([0.1, 0.25, 0.9], [0, 0, 1], [1.0, 2.0, 3.5])
    assert _compare_devices_script().difference(first, second) == {
        "max_anomaly_difference": 0.25, "max_pseudo_healthy_difference": 0.5, "mask_voxels": [2, 1],
        "mask_voxels_differing": 1}


def test_device_comparison_runs_on_one_device_twice(tiny_bundle, atlas, tmp_path):
    """The script a GPU machine runs (cpu,cuda), smoke-tested on the CPU against itself: same numbers."""
    import json

    from disanatdetect.io import write_volume
    from disanatdetect.synth.cases import synthetic_case

    scan = write_volume(synthetic_case(atlas, 92, "flair", "tumour").image, tmp_path / "flair.nii.gz")
    out = tmp_path / "devices.json"
    assert _compare_devices_script().main(["--scan", f"flair:{scan}", "--devices", "cpu,cpu", "--runs", "1",
                                           "--model", str(tiny_bundle), "--out", str(out)]) == 0
    [row] = json.loads(out.read_text())
    assert row["cpu_seconds"] > 0 and row["mask_voxels"][0] == row["mask_voxels"][1]
    assert row["max_anomaly_difference"] == row["mask_voxels_differing"] == 0


def test_benchmark_times_the_bundle_it_is_given(tiny_bundle, atlas, tmp_path):
    """A candidate is timed before it ships: ``--model`` replaces the shipped DAL, and the report names it."""
    import json

    from disanatdetect.cli import main
    from disanatdetect.io import write_volume
    from disanatdetect.synth.cases import synthetic_case

    scan = write_volume(synthetic_case(atlas, 93, "flair", "tumour").image, tmp_path / "flair.nii.gz")
    out = tmp_path / "benchmark.json"
    assert main(["benchmark", str(scan), "--methods", "dal", "--model", str(tiny_bundle), "--runs", "1",
                 "--warmup", "0", "--device", "cpu", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["methods"]["DAL"]["version"] == "0.0.0-test"
