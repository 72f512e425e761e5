"""A detection's files: ``report.json`` and the three volumes, written all or none (``detect``, ``batch``)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

from disanatdetect import __version__
from disanatdetect.errors import InputError

OUTPUT_NAMES = ("pseudo_healthy.nii.gz", "anomaly_map.nii.gz", "lesion_mask.nii.gz", "report.json")


def write_outputs(out_dir: Path, result, report: dict, overwrite: bool) -> None:
    """Write the four outputs as temporary files, then rename them all; on failure remove every temporary.

    The renames run with SIGINT and SIGTERM held back, so an interruption yields all four outputs or none; a
    folder this call created is removed again when nothing was written into it.
    """
    from disanatdetect.io import write_volume

    targets = [out_dir / name for name in OUTPUT_NAMES]
    existing = [path.name for path in targets if path.exists()]
    if existing and not overwrite:
        raise InputError(f"{out_dir} already holds {', '.join(existing)}; pass --overwrite or choose another --out.")
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    started = time.perf_counter()
    try:
        for volume, target in zip((result.pseudo_healthy, result.anomaly_map, result.lesion_mask), targets):
            temporary = target.with_name(f".{target.name}.{os.getpid()}.partial.nii.gz")
            staged.append((temporary, target))
            write_volume(volume, temporary)
        report["timings_s"]["write"] = round(time.perf_counter() - started, 3)
        temporary = targets[3].with_name(f".report.json.{os.getpid()}.partial")
        staged.append((temporary, targets[3]))
        temporary.write_text(json.dumps(report, indent=2) + "\n")
        with signals_held():
            for temporary, target in staged:
                os.replace(temporary, target)
    finally:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()


@contextlib.contextmanager
def signals_held():
    """Defer SIGINT and SIGTERM to the end of the block (main thread only; elsewhere a no-op)."""
    held = {signal.SIGINT, signal.SIGTERM}
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, ValueError, OSError):  # no POSIX signals here
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


def detection_report(result, input_path: str, volume, seconds_read: float) -> dict:
    """``report.json``: the input, the threshold, the lesions, the timings and the versions of one detection."""
    return {
        "input": str(input_path),
        "input_shape": list(volume.shape[::-1]),
        "input_spacing_mm": [round(s, 4) for s in volume.spacing],
        "modality": result.modality,
        "threshold": round(result.threshold, 5),
        "lesion_count": len(result.lesions),
        "lesion_volume_ml": round(result.lesion_volume_ml, 3),
        "lesions": result.lesions,
        "timings_s": {"read": round(seconds_read, 3), **result.timings},
        "model_version": result.model_version,
        "software_version": __version__,
    }
