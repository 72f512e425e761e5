"""Faults cannot hurt the user's data: interruptions and failures leave no partial output, results are repeatable."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from disanatdetect import cli
from disanatdetect.cli import OUTPUT_NAMES, main
from disanatdetect.io import Volume, write_volume
from disanatdetect.synth.cases import synthetic_case


@pytest.fixture(scope="module")
def scan(tmp_path_factory, atlas):
    case = synthetic_case(atlas, 11, "flair", "tumour")
    image = Volume((case.image.array * 1000).astype(np.int16), case.image.spacing, case.image.origin,
                   case.image.direction)
    return write_volume(image, tmp_path_factory.mktemp("scan") / "flair.nii.gz")


def wait_for(process: subprocess.Popen, text: bytes, timeout_s: float = 180.0) -> bytes:
    """Read the process's stderr until ``text`` appears (the progress bar names each stage)."""
    seen, deadline = b"", time.monotonic() + timeout_s
    while text not in seen:
        assert time.monotonic() < deadline and process.poll() is None, seen.decode(errors="replace")
        ready, _, _ = select.select([process.stderr], [], [], 0.5)
        if ready:
            seen += os.read(process.stderr.fileno(), 4096)
    return seen


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_writes_nothing(tmp_path, tiny_bundle, scan, signum):
    out = tmp_path / "out"
    before = scan.read_bytes()
    process = subprocess.Popen([sys.executable, "-m", "disanatdetect.cli", "detect", str(scan), "--out", str(out),
                                "--model", str(tiny_bundle), "--device", "cpu"], stderr=subprocess.PIPE)
    try:
        wait_for(process, b"registering")
        process.send_signal(signum)
        _, rest = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == cli.EXIT_INTERRUPTED
    assert b"interrupted: no output was written." in rest
    assert not out.exists()
    assert scan.read_bytes() == before


def test_interruption_while_writing_keeps_the_previous_outputs(tmp_path, tiny_bundle, scan, monkeypatch):
    """--overwrite replaces the old outputs only when every new one is complete."""
    out = tmp_path / "out"
    assert main(["detect", str(scan), "--out", str(out), "--model", str(tiny_bundle), "--quiet"]) == 0
    previous = {name: (out / name).read_bytes() for name in OUTPUT_NAMES}
    import disanatdetect.io as volume_io

    real_write, calls = volume_io.write_volume, []

    def interrupted_on_the_third_file(volume, path):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_write(volume, path)

    monkeypatch.setattr(volume_io, "write_volume", interrupted_on_the_third_file)
    code = main(["detect", str(scan), "--out", str(out), "--model", str(tiny_bundle), "--threshold", "0.01",
                 "--overwrite", "--quiet"])
    assert code == cli.EXIT_INTERRUPTED and len(calls) == 3
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_NAMES)  # no temporary left behind
    assert {name: (out / name).read_bytes() for name in OUTPUT_NAMES} == previous


def test_full_disk_is_one_sentence_and_leaves_no_folder(tmp_path, tiny_bundle, scan, monkeypatch, capsys):
    import disanatdetect.io as volume_io

    def disk_full(volume, path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(volume_io, "write_volume", disk_full)
    code = main(["detect", str(scan), "--out", str(tmp_path / "new" / "out"), "--model", str(tiny_bundle), "--quiet"])
    error = capsys.readouterr().err.strip()
    assert code == cli.EXIT_SYSTEM
    assert error.startswith("error: No space left on device") and len(error.splitlines()) == 1
    assert not (tmp_path / "new" / "out").exists()


def test_same_input_gives_bit_identical_outputs(tiny_bundle, scan):
    """Determinism on the CPU: two detectors (weights loaded twice) give the same bits."""
    from disanatdetect.bundle import load_bundle
    from disanatdetect.io import read_volume
    from disanatdetect.pipeline import Detector

    volume = read_volume(scan)
    first, second = (Detector(load_bundle(tiny_bundle), device="cpu").detect(volume) for _ in range(2))
    for name in ("lesion_mask", "anomaly_map", "pseudo_healthy"):
        assert np.array_equal(getattr(first, name).array, getattr(second, name).array), name
    assert first.lesions == second.lesions
