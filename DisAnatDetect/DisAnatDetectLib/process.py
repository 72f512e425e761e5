"""The detection in a child process: ``<Slicer's Python> -m disanatdetect detect ... --progress json``.

Why a child process and not a thread: Slicer's main thread holds Python's global interpreter lock while the Qt event
loop idles, so a Python thread advances only in the slivers when main-thread Python runs. A child process runs at
full speed, can be ended at once (with everything it started) by the operating system, and gives its GPU memory back
when it ends. SlicerTotalSegmentator, MONAIAuto3DSeg and SlicerNNUNet run their models the same way.

:class:`DetectionProcess` is driven from the main thread and never blocks it: :meth:`DetectionProcess.poll` (the GUI
calls it from a timer) reads the progress lines the child has written so far and, once the child has ended, reads
its output files. Nothing here touches the MRML scene; the logic writes the finished result into nodes.

The child's stdout and stderr go to files in the run's temporary folder rather than pipes: a pipe that nobody reads
while the main thread is busy fills up and stalls the child, a file does not, and reading a file needs no thread.
The temporary folder (input, outputs, logs) is removed in every case once the child has ended.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import disanatdetect
from disanatdetect.errors import InputError
from disanatdetect.io import Volume, read_volume, write_volume

from .parameters import STAGES, overallProgress

# The stage the child reports once every output file is written (see ``disanatdetect.cli.JsonProgress``).
DONE_STAGE = "done"
OUTPUT_FILES = {
    "pseudoHealthy": "pseudo_healthy.nii.gz",
    "anomalyMap": "anomaly_map.nii.gz",
    "lesionMask": "lesion_mask.nii.gz",
    "report": "report.json",
}
# The input goes to the child uncompressed: compressing a temporary file would only cost time.
INPUT_FILE_NAME = "input.nrrd"
PROGRESS_FILE_NAME = "progress.jsonl"
STDERR_FILE_NAME = "stderr.txt"
TEMPORARY_PREFIX = "DisAnatDetect-"
# After a kill, how long to wait for the operating system to reap the child before reporting it as gone anyway.
KILL_WAIT_SECONDS = 5.0
# Pause between checks while a script waits for a detection (short against a run of tens of seconds).
WAIT_POLL_SECONDS = 0.05
# How much of a bad progress line to quote in the one-sentence error.
QUOTED_LINE_CHARACTERS = 80
SHIPPED_MANIFEST = Path(disanatdetect.__file__).resolve().parent / "weights" / "manifest.json"


class DetectionCancelled(Exception):
    """The user cancelled the detection; the scene was left as it was."""


class DetectionFailed(RuntimeError):
    """The detection process failed; the message is one sentence for the user, ``details`` holds the child's stderr."""

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class ProgressReport:
    """One line of the child's progress protocol."""

    stage: str
    fraction: float
    message: str


@dataclass
class ComputedResult:
    """A finished detection, read back from the child's files, not yet in the scene."""

    result: object  # disanatdetect.pipeline.DetectionResult
    modelThreshold: float  # the model's label-free threshold for the detected modality
    seconds: float


def pythonExecutable() -> str:
    """The Python to start the child with: Slicer's ``PythonSlicer`` inside Slicer, else this interpreter.

    Inside the Slicer application ``sys.executable`` may name the application itself; Slicer puts ``PythonSlicer``
    on the PATH (``slicer.util`` finds it the same way for pip).
    """
    if getattr(sys.modules.get("slicer"), "app", None) is not None:
        found = shutil.which("PythonSlicer")
        if found:
            return found
    return sys.executable


def parseProgressLine(line: str) -> ProgressReport:
    """A progress line of the child as a :class:`ProgressReport`; anything else raises ``ValueError``."""
    try:
        report = json.loads(line)
    except json.JSONDecodeError:
        raise ValueError("not JSON") from None
    if not isinstance(report, dict):
        raise ValueError("not a JSON object")
    stage, fraction, message = report.get("stage"), report.get("fraction"), report.get("message", "")
    if stage not in STAGES and stage != DONE_STAGE:
        raise ValueError(f"unknown stage {stage!r}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction {fraction!r} is not a number from 0 to 1")
    return ProgressReport(stage, float(fraction), str(message))


def modelThresholdFor(manifestPath: str | os.PathLike | None, modality: str) -> float:
    """The bundle's label-free threshold for ``modality`` (read from its manifest, without loading the model)."""
    manifest = json.loads(Path(manifestPath or SHIPPED_MANIFEST).read_text())
    thresholds = manifest.get("thresholds", {})
    return float(thresholds.get(modality, thresholds["default"]))


class DetectionProcess:
    """One detection running in a child process; the main thread polls it (the GUI with a timer).

    ``volume`` is a copy of the input node's voxels and geometry (:func:`.nodes.volumeFromNode`); ``modality`` and
    ``device`` are in the core's spelling. ``modelPath``: manifest.json of another model bundle, or None for the
    shipped one. ``temporaryRoot``: where the run's temporary folder goes (default: the system's temporary folder).
    """

    def __init__(self, inputVolumeID: str, volume: Volume, modality: str = "auto", device: str = "auto",
                 threshold: float | None = None, modelPath: str | os.PathLike | None = None,
                 python: str | None = None, temporaryRoot: str | os.PathLike | None = None):
        self.inputVolumeID = inputVolumeID
        self.inputShape = tuple(volume.shape)
        self.modelPath = modelPath
        self.python = python or pythonExecutable()
        self.computed: ComputedResult | None = None
        self.error: BaseException | None = None
        self.errorDetails = ""
        self.reports: list[ProgressReport] = []
        self._volume = volume
        self._arguments = ["--modality", modality, "--device", device]
        if threshold is not None:
            self._arguments += ["--threshold", repr(float(threshold))]
        if modelPath is not None:
            self._arguments += ["--model", str(modelPath)]
        self._temporaryRoot = temporaryRoot
        self.workDirectory: Path | None = None
        self._process: subprocess.Popen | None = None
        self._progressFile = None
        self._stderrFile = None
        self._pending = b""  # the start of a line whose end the child has not written yet
        self._position = 0  # bytes of the progress file read so far
        self._cancelRequested = False
        self._finished = False
        self._started = 0.0

    # --- life cycle ---------------------------------------------------------------------------------------------------

    def start(self) -> DetectionProcess:
        """Write the input to a temporary folder and start the child; returns at once."""
        self._started = time.perf_counter()
        self.workDirectory = Path(tempfile.mkdtemp(prefix=TEMPORARY_PREFIX, dir=self._temporaryRoot))
        try:
            inputPath = write_volume(self._volume, self.workDirectory / INPUT_FILE_NAME)
            self._volume = None  # the child reads the file; the copy need not stay in Slicer's memory
            command = [self.python, "-m", "disanatdetect", "detect", str(inputPath),
                       "--out", str(self.workDirectory / "outputs"), "--progress", "json", *self._arguments]
            progressPath, stderrPath = self.workDirectory / PROGRESS_FILE_NAME, self.workDirectory / STDERR_FILE_NAME
            # The child writes through handles of its own; reading through separate ones keeps the file offsets
            # apart (an inherited handle shares its offset, so a seek here would move the child's writes).
            with open(progressPath, "wb") as childStdout, open(stderrPath, "wb") as childStderr:
                try:
                    self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=childStdout,
                                                     stderr=childStderr, env=self._childEnvironment(),
                                                     **_newProcessGroup())
                except OSError as error:
                    raise DetectionFailed(f"the detection process could not be started ({error.strerror or error}: "
                                          f"{self.python}).", " ".join(command)) from None
            self._progressFile = open(progressPath, "rb")
            self._stderrFile = open(stderrPath, "rb")
        except BaseException:
            self._release()
            raise
        return self

    def poll(self) -> bool:
        """Read what the child reported since the last call; once it has ended, read its outputs. True when done."""
        if self._finished:
            return True
        try:
            self._readProgress()
            if self._process.poll() is None:
                return False
            self._readProgress()
            if self._pending.strip():  # a last line without its newline
                self._accept(self._pending.decode("utf-8", "replace"))
                self._pending = b""
            if self._cancelRequested:
                raise DetectionCancelled()
            self._checkExit()
            self.computed = self._readOutputs()
        except BaseException as error:  # noqa: BLE001 - kept for the main thread, which reports or re-raises it
            self._fail(error)
        self._finish()
        return True

    def cancel(self) -> None:
        """End the child and everything it started, now; the folder is removed and the task reports cancellation."""
        if self._finished:
            return
        self._cancelRequested = True
        self._kill()
        self.error = DetectionCancelled()
        self._finish()

    def wait(self, timeout: float | None = None) -> bool:
        """Poll until the child ends or ``timeout`` seconds pass; True when done. Blocks: for scripts and tests."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.poll():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(WAIT_POLL_SECONDS)
        return True

    # --- state --------------------------------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._finished

    @property
    def cancelRequested(self) -> bool:
        return self._cancelRequested

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def stage(self) -> str:
        return self.reports[-1].stage if self.reports else STAGES[0]

    @property
    def message(self) -> str:
        return self.reports[-1].message if self.reports else ""

    @property
    def percent(self) -> int:
        if not self.reports:
            return 0
        last = self.reports[-1]
        return 100 if last.stage == DONE_STAGE else overallProgress(last.stage, last.fraction)

    # --- internals ----------------------------------------------------------------------------------------------------

    def _childEnvironment(self) -> dict:
        environment = dict(os.environ)
        # The core package sits in the module's folder, which is on Slicer's path but not on PythonSlicer's.
        packageParent = str(Path(disanatdetect.__file__).resolve().parents[1])
        paths = [packageParent] + [path for path in environment.get("PYTHONPATH", "").split(os.pathsep) if path]
        environment["PYTHONPATH"] = os.pathsep.join(paths)
        environment["PYTHONUNBUFFERED"] = "1"
        return environment

    def _readProgress(self) -> None:
        self._progressFile.seek(0, os.SEEK_END)
        end = self._progressFile.tell()
        if end <= self._position:
            return
        self._progressFile.seek(self._position)
        data = self._progressFile.read(end - self._position)
        self._position += len(data)
        lines = (self._pending + data).split(b"\n")
        self._pending = lines.pop()  # an incomplete last line waits for the rest
        for line in lines:
            if line.strip():
                self._accept(line.decode("utf-8", "replace"))

    def _accept(self, line: str) -> None:
        try:
            report = parseProgressLine(line)
        except ValueError as why:
            self._kill()
            quoted = line.strip()[:QUOTED_LINE_CHARACTERS]
            raise DetectionFailed(f"the detection process sent output that is not a progress report ({why}): "
                                  f"{quoted!r}.", details=f"stdout line: {line}\n\nstderr:\n{self._stderr()}") from None
        self.reports.append(report)

    def _checkExit(self) -> None:
        code = self._process.returncode
        stderr = self._stderr()
        if code != 0:
            errorLines = [line[len("error: "):] for line in stderr.splitlines() if line.startswith("error: ")]
            if errorLines:  # the CLI's own one-sentence reason
                raise DetectionFailed(errorLines[-1], stderr)
            if code < 0:
                name = _signalName(-code)
                raise DetectionFailed(f"the detection process stopped unexpectedly ({name}); see the details.",
                                      stderr)
            raise DetectionFailed(f"the detection process failed (exit code {code}); see the details.", stderr)
        if not self.reports or self.reports[-1].stage != DONE_STAGE:
            raise DetectionFailed("the detection process ended without reporting its outputs; see the details.",
                                  stderr)

    def _readOutputs(self) -> ComputedResult:
        from disanatdetect.pipeline import DetectionResult  # the model's own module; imports torch
        from disanatdetect.postprocess import PostprocessConfig

        outputs = self.workDirectory / "outputs"
        try:
            report = json.loads((outputs / OUTPUT_FILES["report"]).read_text())
            volumes = {kind: read_volume(outputs / OUTPUT_FILES[kind])
                       for kind in ("pseudoHealthy", "anomalyMap", "lesionMask")}
            modality = report["modality"]
            threshold = float(report["threshold"])
            lesions, modelVersion = report["lesions"], report["model_version"]
        except (OSError, ValueError, KeyError, TypeError, InputError) as error:
            raise DetectionFailed("the detection process left incomplete or unreadable outputs; see the details.",
                                  f"{type(error).__name__}: {error}\n\nstderr:\n{self._stderr()}") from None
        for kind, volume in volumes.items():
            if tuple(volume.shape) != self.inputShape:
                raise DetectionFailed(f"the detection process wrote a {kind} of shape {volume.shape}, not the "
                                      f"input's {self.inputShape}.", self._stderr())
        # The command line post-processes with the released settings; re-thresholding must use the same.
        result = DetectionResult(volumes["pseudoHealthy"], volumes["anomalyMap"], volumes["lesionMask"], threshold,
                                 modality, lesions, report.get("timings_s", {}), modelVersion, PostprocessConfig())
        return ComputedResult(result, modelThresholdFor(self.modelPath, modality),
                              time.perf_counter() - self._started)

    def _stderr(self) -> str:
        if self._stderrFile is None or self._stderrFile.closed:
            return self.errorDetails
        self._stderrFile.seek(0)
        return self._stderrFile.read().decode("utf-8", "replace")

    def _fail(self, error: BaseException) -> None:
        self.error = error
        self.errorDetails = getattr(error, "details", "") or self._stderr()

    def _kill(self) -> None:
        """End the child and its whole process group; wait until the system has reaped it."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        if os.name == "nt":
            # /T ends the children too, /F at once; the process object is killed as well in case taskkill is missing.
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False, **_newProcessGroup())
            process.kill()
        else:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # the child leads its own group (start_new_session)
            except ProcessLookupError:
                pass
        try:
            process.wait(KILL_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            pass

    def _finish(self) -> None:
        if not self.errorDetails and self.error is not None:
            self.errorDetails = self._stderr()
        self._finished = True
        self._release()

    def _release(self) -> None:
        """Close the log files and remove the temporary folder (the child has ended, or never started)."""
        self._kill()
        for handle in (self._progressFile, self._stderrFile):
            if handle is not None and not handle.closed:
                handle.close()
        if self.workDirectory is not None:
            shutil.rmtree(self.workDirectory, ignore_errors=True)


def _newProcessGroup() -> dict:
    """Popen arguments that give the child its own process group (so it and its children end together) and, on
    Windows, no console window."""
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW}
    return {"start_new_session": True}


def _signalName(number: int) -> str:
    try:
        return f"signal {number}, {signal.Signals(number).name}"
    except ValueError:
        return f"signal {number}"


__all__ = ["ComputedResult", "DetectionCancelled", "DetectionFailed", "DetectionProcess", "ProgressReport",
           "modelThresholdFor", "parseProgressLine", "pythonExecutable"]
