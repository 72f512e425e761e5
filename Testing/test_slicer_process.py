"""The detection's child process on a real MRML scene: cancel, crashes, garbage, errors, and its progress protocol.

Every child here is a real process. The cancel tests run the real command line on a real FLAIR scan with the shipped
model and end it in a given stage; the failure tests start stand-in interpreters that crash, print garbage or
start children of their own, as a broken Python environment would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from slicer_scene import loadVolumeNode

pytest_plugins = ["conftest_slicer"]

# The bound: Cancel ends the child (and its children) within this many seconds.
CANCEL_SECONDS_MAX = 1.0
# How long a stage may take to be reached on a loaded 2-core machine before the test gives up.
STAGE_TIMEOUT_SECONDS = 300.0
POLL_SECONDS = 0.02
# A stand-in child that misbehaves is stopped as soon as the next poll reads its output, well before this.
MISBEHAVING_CHILD_SLEEP_SECONDS = 60


def dataNodeIDs() -> set[str]:
    import slicer

    scene = slicer.mrmlScene
    return {scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())
            if scene.GetNthNode(index).IsA("vtkMRMLDisplayableNode") or scene.GetNthNode(index).IsA("vtkMRMLTableNode")}


def processGone(pid: int) -> bool:
    """True when ``pid`` no longer runs (ended, or a zombie waiting for a parent to reap it)."""
    stat = Path(f"/proc/{pid}/stat")
    if stat.parent.parent.exists() and Path("/proc/self").exists():
        try:
            # The state follows the parenthesised command name, which may itself contain spaces.
            return stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except (FileNotFoundError, ProcessLookupError):
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module")
def flairVolume(slicerApp, flairPath):
    import slicer

    node = loadVolumeNode(flairPath, "FLAIR for the child-process tests")
    yield node
    slicer.mrmlScene.RemoveNode(node)


def waitForStage(task, stage: str) -> None:
    deadline = time.monotonic() + STAGE_TIMEOUT_SECONDS
    while not task.poll() and task.stage != stage and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    assert task.stage == stage and not task.done, (task.stage, task.error, task.errorDetails[-2000:])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads process states from /proc")
@pytest.mark.parametrize("stage", ["registering", "reconstructing"])
def test_cancel_ends_the_child_and_its_children_at_once(stage, flairVolume, temporaryRoot, fakePython, tmp_path):
    """Cancel in a given stage ends the child and a grandchild within a second; no node, no temporary file."""
    import slicer

    from DisAnatDetectLib import DetectionCancelled, DisAnatDetectLogic

    grandchildFile = tmp_path / "grandchild.pid"
    # Slicer's Python as a launcher that leaves a child of its own running, then becomes the real interpreter.
    launcher = fakePython("python-with-a-child", f"#!/bin/sh\nsleep {MISBEHAVING_CHILD_SLEEP_SECONDS} &\n"
                                                  f"echo $! > {grandchildFile}\nexec {sys.executable} \"$@\"\n")
    voxelsBefore = slicer.util.arrayFromVolume(flairVolume).copy()
    nodesBefore = dataNodeIDs()
    logic = DisAnatDetectLogic(python=launcher, temporaryRoot=temporaryRoot)
    task = logic.startDetection(flairVolume, modality="FLAIR", device="CPU")
    waitForStage(task, stage)
    grandchild = int(grandchildFile.read_text())
    assert not processGone(task.pid) and not processGone(grandchild)

    started = time.perf_counter()
    task.cancel()
    while not (processGone(task.pid) and processGone(grandchild)) and time.perf_counter() - started < 10:
        time.sleep(0.001)
    seconds = time.perf_counter() - started
    print(f"cancel during {stage}: child and grandchild gone after {seconds * 1000:.0f} ms")
    assert processGone(task.pid) and processGone(grandchild)
    assert seconds < CANCEL_SECONDS_MAX

    assert task.done and isinstance(task.error, DetectionCancelled)
    with pytest.raises(DetectionCancelled):
        logic.finishDetection(task)
    assert dataNodeIDs() == nodesBefore
    assert DisAnatDetectLogic.outputsFor(flairVolume) == {}
    assert list(temporaryRoot.iterdir()) == []
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(flairVolume), voxelsBefore)


def assertFailsCleanly(logic, inputVolume, temporaryRoot, match: str):
    """The run fails with one sentence (no traceback in the message), the scene and the input unchanged, no
    temporary file left; returns the error."""
    import slicer

    from DisAnatDetectLib import DetectionFailed

    voxelsBefore = slicer.util.arrayFromVolume(inputVolume).copy()
    nodesBefore = dataNodeIDs()
    started = time.perf_counter()
    with pytest.raises(DetectionFailed, match=match) as caught:
        logic.process(inputVolume, modality="FLAIR", device="CPU", timeout=STAGE_TIMEOUT_SECONDS)
    seconds = time.perf_counter() - started
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message, message
    assert dataNodeIDs() == nodesBefore
    assert logic.outputsFor(inputVolume) == {}
    assert list(temporaryRoot.iterdir()) == []
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(inputVolume), voxelsBefore)
    return caught.value, seconds


def test_crashing_child_gives_one_clear_error_with_its_stderr(flairVolume, temporaryRoot, fakePython):
    from DisAnatDetectLib import DisAnatDetectLogic

    crashing = fakePython("crashing-python", (
        "import json, os, signal, sys\n"
        "print(json.dumps({'stage': 'preparing', 'fraction': 0.0, 'message': 'starting'}), flush=True)\n"
        "sys.stderr.write('Fatal Python error: Segmentation fault\\n'); sys.stderr.flush()\n"
        "os.kill(os.getpid(), signal.SIGSEGV)\n"))
    logic = DisAnatDetectLogic(python=crashing, temporaryRoot=temporaryRoot)
    error, _ = assertFailsCleanly(logic, flairVolume, temporaryRoot, "stopped unexpectedly.*SIGSEGV")
    assert "Fatal Python error: Segmentation fault" in error.details


def test_child_printing_garbage_is_stopped_with_one_clear_error(flairVolume, temporaryRoot, fakePython):
    from DisAnatDetectLib import DisAnatDetectLogic

    garbage = fakePython("garbage-python", (
        "import sys, time\n"
        "print('Loading weights ... done', flush=True)\n"
        "sys.stderr.write('some warning\\n'); sys.stderr.flush()\n"
        f"time.sleep({MISBEHAVING_CHILD_SLEEP_SECONDS})\n"))
    logic = DisAnatDetectLogic(python=garbage, temporaryRoot=temporaryRoot)
    error, seconds = assertFailsCleanly(logic, flairVolume, temporaryRoot, "not a progress report.*Loading weights")
    assert seconds < MISBEHAVING_CHILD_SLEEP_SECONDS / 2, "the child was stopped, not waited for"
    assert "some warning" in error.details


def test_child_that_ends_without_outputs_is_an_error(flairVolume, temporaryRoot, fakePython):
    from DisAnatDetectLib import DisAnatDetectLogic

    silent = fakePython("silent-python", "import json\nprint(json.dumps({'stage': 'preparing', 'fraction': 0}))\n")
    logic = DisAnatDetectLogic(python=silent, temporaryRoot=temporaryRoot)
    assertFailsCleanly(logic, flairVolume, temporaryRoot, "ended without reporting its outputs")


def test_cli_error_reaches_the_user_as_its_own_sentence(flairVolume, temporaryRoot, tmp_path):
    """The real command line refusing a broken model bundle: its one-line reason is the error, exit code aside."""
    from DisAnatDetectLib import DisAnatDetectLogic

    broken = tmp_path / "manifest.json"
    broken.write_text("{not json")
    logic = DisAnatDetectLogic(modelPath=broken, temporaryRoot=temporaryRoot)
    error, _ = assertFailsCleanly(logic, flairVolume, temporaryRoot, "model manifest .* cannot be read")
    assert "error:" in error.details


def test_missing_interpreter_is_one_clear_error(flairVolume, temporaryRoot, tmp_path):
    from DisAnatDetectLib import DisAnatDetectLogic

    logic = DisAnatDetectLogic(python=str(tmp_path / "no-such-python"), temporaryRoot=temporaryRoot)
    assertFailsCleanly(logic, flairVolume, temporaryRoot, "could not be started")


def test_timeout_stops_the_child(flairVolume, temporaryRoot, fakePython):
    from DisAnatDetectLib import DetectionFailed, DisAnatDetectLogic

    slow = fakePython("slow-python", f"import time\ntime.sleep({MISBEHAVING_CHILD_SLEEP_SECONDS})\n")
    logic = DisAnatDetectLogic(python=slow, temporaryRoot=temporaryRoot)
    started = time.perf_counter()
    with pytest.raises(DetectionFailed, match="did not finish within 1 s"):
        logic.process(flairVolume, timeout=1.0)
    assert time.perf_counter() - started < MISBEHAVING_CHILD_SLEEP_SECONDS / 2
    assert list(temporaryRoot.iterdir()) == []


# --- the protocol -----------------------------------------------------------------------------------------------------

def test_progress_lines_are_parsed_strictly():
    from DisAnatDetectLib.process import ProgressReport, parseProgressLine

    assert parseProgressLine('{"stage": "registering", "fraction": 0.5, "message": "Registering"}') == \
        ProgressReport("registering", 0.5, "Registering")
    assert parseProgressLine('{"stage": "done", "fraction": 1, "message": ""}').fraction == 1.0
    for bad in ("Loading weights", "[1, 2]", '{"stage": "training", "fraction": 0.1}',
                '{"stage": "registering", "fraction": 1.5}', '{"stage": "registering", "fraction": "half"}',
                '{"stage": "registering", "fraction": true}', '{"fraction": 0.2}'):
        with pytest.raises(ValueError):
            parseProgressLine(bad)


def test_cli_json_progress_failure_prints_nothing_on_stdout_and_one_line_on_stderr(tmp_path):
    """``detect --progress json`` on a file that is not a scan: no "done" line, one error line, exit 2."""
    bad = tmp_path / "scan.nii.gz"
    bad.write_bytes(b"not an image")
    completed = subprocess.run([sys.executable, "-m", "disanatdetect", "detect", str(bad), "--out",
                                str(tmp_path / "out"), "--progress", "json"], capture_output=True, text=True,
                               timeout=STAGE_TIMEOUT_SECONDS)
    assert completed.returncode == 2
    lines = completed.stdout.splitlines()
    assert all(json.loads(line)["stage"] != "done" for line in lines), lines
    assert [json.loads(line)["stage"] for line in lines] == ["preparing"]
    assert completed.stderr.strip().startswith("error: ") and len(completed.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_cli_help_documents_the_json_protocol():
    completed = subprocess.run([sys.executable, "-m", "disanatdetect", "detect", "--help"], capture_output=True,
                               text=True, timeout=STAGE_TIMEOUT_SECONDS)
    assert completed.returncode == 0
    text = " ".join(completed.stdout.split())
    assert "--progress {bar,json}" in text and "one JSON object per line" in text and "'fraction'" in text
