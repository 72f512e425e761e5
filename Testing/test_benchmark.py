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
