"""What runs on a Dask worker: the model loaded once per worker, and one scan at a time through it.

:class:`DetectorPlugin` is registered with the cluster; Dask sets it up on every worker, those that join later or
replace a dead one included, so each worker loads and verifies the model once and keeps it. :func:`process_scan`,
the unit of work, takes a whole scan (never slices): read, detect, write its outputs atomically, and return its
row for the cohort table. A scan's failure is its row's error; it never stops the other scans.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from distributed import WorkerPlugin, get_worker

from disanatdetect.cohort.inputs import Scan
from disanatdetect.cohort.outputs import (Provenance, ScanOutputs, completed_report, input_fingerprint,
                                          row_from_report, write_scan_outputs)
from disanatdetect.errors import InputError, ModelError

PLUGIN_NAME = "disanatdetect-detector"
# Test hook: "<scan key>=<marker file>" kills the worker processing that scan once (when the marker does not exist
# yet), after its outputs are staged and before they are moved into place: the worst moment to die.
KILL_HOOK_VARIABLE = "DISANATDETECT_TEST_KILL_WORKER"

# Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, and setting it freezes glibc's mmap threshold at
# its 128 KiB start: every large tensor is then a fresh mmap and page faults, and reconstruction took twice as long
# (`disanatdetect benchmark` on a 240 x 240 x 155 FLAIR: 2.96 s, 6.13 s with the variable set). Workers restore what
# glibc's dynamic rule reaches:
GLIBC_MMAP_THRESHOLD = 32 * 2 ** 20  # its largest dynamic mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
GLIBC_TRIM_THRESHOLD = 2 * GLIBC_MMAP_THRESHOLD  # it keeps the trim threshold at twice the mmap threshold
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)

logger = logging.getLogger(__name__)


def restore_allocator() -> bool:
    """Undo the fixed malloc thresholds Dask's nanny gives a worker (glibc only); True when it did."""
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to undo there
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, GLIBC_MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, GLIBC_TRIM_THRESHOLD))


class DetectorPlugin(WorkerPlugin):
    """Loads the model on a worker and keeps it, with the worker's thread settings."""

    def __init__(self, model: str | None, device: str, threads: int):
        self.model, self.device, self.threads = model, device, threads  # what travels to the workers

    def setup(self, worker) -> None:
        import SimpleITK as sitk
        import torch

        from disanatdetect.bundle import load_bundle
        from disanatdetect.devices import resolve_device
        from disanatdetect.pipeline import Detector

        restore_allocator()
        # Each worker gets its share of the cores: torch and ITK would otherwise each take them all, in every worker.
        threads = self.threads or worker.state.nthreads  # 0: a remote worker's own thread count
        torch.set_num_threads(threads)
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
        device = resolve_device(self.device)
        if device.type == "cuda" and torch.cuda.device_count() > 1 and isinstance(worker.name, int):
            device = torch.device("cuda", worker.name % torch.cuda.device_count())  # local workers: one GPU each
        self.detector = Detector(load_bundle(self.model, device=device), device=str(device))
        self.lock = threading.Lock()


def _plugin() -> DetectorPlugin:
    return get_worker().plugins[PLUGIN_NAME]


def _kill_hook(key: str) -> None:
    hook = os.environ.get(KILL_HOOK_VARIABLE, "")
    target, _, marker = hook.partition("=")
    if hook and target == key and not Path(marker).exists():
        Path(marker).write_text(f"{os.getpid()}\n")
        os.kill(os.getpid(), signal.SIGKILL)


def one_line(error: BaseException) -> str:
    """An error as one line: the message of our own errors, type and first line of any other."""
    text = str(error).strip().splitlines()
    if isinstance(error, (InputError, ModelError)) and text:
        return text[0]
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def process_scan(scan: Scan, outputs: ScanOutputs, staging_root: Path, provenance: Provenance, extra_report: dict,
                 thumbnails: bool = True, verify_inputs: bool = False) -> dict:
    """Detect on one scan with this worker's model and write its outputs; return its row (status and figures).

    Scans on one worker run one at a time (a GPU worker holds one scan in memory, a CPU worker uses its threads).
    """
    plugin = _plugin()
    if getattr(plugin, "detector", None) is None:  # its setup failed on this worker (Dask logs why)
        raise ModelError(f"the worker {get_worker().address} could not load the model; check that disanatdetect and "
                         "the model bundle are installed there.")
    with plugin.lock:
        # Dask reruns a finished task whose worker died before its result was fetched; the outputs are then
        # complete already, and the scan is not processed twice.
        report = completed_report(scan, outputs, provenance, verify_inputs)
        if report is not None:
            row = row_from_report(report)
        else:
            row = _process(plugin.detector, scan, outputs, staging_root, provenance, extra_report, thumbnails)
    row["worker"] = get_worker().address
    return row


def _process(detector, scan: Scan, outputs: ScanOutputs, staging_root: Path, provenance: Provenance,
             extra_report: dict, thumbnails: bool) -> dict:
    from disanatdetect.outputs import detection_report
    from disanatdetect.figures import detection_panel
    from disanatdetect.io import read_volume
    from disanatdetect.pipeline import DetectionConfig

    started = time.perf_counter()
    processed_at = time.strftime("%Y-%m-%dT%H:%M:%S")
    try:
        volume = read_volume(scan.path)
        seconds_read = time.perf_counter() - started
        fingerprint = input_fingerprint(scan.path)
        result = detector.detect(volume, DetectionConfig(modality=provenance.modality, threshold=provenance.threshold))
        report = detection_report(result, str(scan.path), volume, seconds_read)
        report["cohort"] = {"scan": scan.key, **fingerprint, **asdict(provenance), "processed_at": processed_at,
                            "seconds": 0.0}
        report.update(extra_report)

        def thumbnail(path: Path) -> None:
            try:
                detection_panel(path, volume, result.pseudo_healthy, result.anomaly_map, result.lesion_mask,
                                title=scan.key)
            except Exception as error:  # noqa: BLE001 - a missing picture must not cost the scan its results
                logger.warning("no thumbnail for %s: %s", scan.key, one_line(error))

        report["cohort"]["seconds"] = round(time.perf_counter() - started, 3)  # reading to detection
        write_scan_outputs(outputs, result, report, staging_root, thumbnail if thumbnails else None,
                           lambda: _kill_hook(scan.key))
        return row_from_report(report)
    except Exception as error:  # noqa: BLE001 - a scan's failure is its row, never the cohort's end
        row = {"status": "failed", "model_version": provenance.model_version,
               "seconds": round(time.perf_counter() - started, 3), "processed_at": processed_at,
               "error": one_line(error)}
        if not isinstance(error, (InputError, ModelError)):  # unexpected: its traceback goes to the failure record
            row["traceback"] = traceback.format_exc()
        return row
