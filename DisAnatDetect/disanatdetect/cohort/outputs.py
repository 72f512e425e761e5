"""Where a cohort's outputs go, how they are written, and when they are complete.

Two layouts: :class:`CaseFolders` (folder and CSV inputs: the command line's four files in one folder per scan) and
:class:`BidsDerivatives` (BIDS inputs: a BIDS-derivatives dataset named with the source's entities). Each scan's
outputs are written as ``detect`` writes them (the same function), into a staging folder, then moved to their
names with the report last: outputs count as complete only when their report is there and records the input's
checksum and the model that made them. A run holds a lock on its output folder, so two runs never write into it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from disanatdetect import __version__
from disanatdetect.outputs import signals_held
from disanatdetect.cohort.inputs import Scan
from disanatdetect.errors import InputError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so runs into one folder are not guarded against each other there
    fcntl = None

PROJECT_NAME = "DisAnatDetect"
CODE_URL = "https://github.com/disanatdetect/SlicerDisAnatDetect"
BIDS_VERSION = "1.10.0"
INTERNAL_FOLDER = ".disanatdetect"  # lock and staging area: hidden, so BIDS tools and folder listings skip it
FIGURES_FOLDER = "figures"  # thumbnails and the report's plot
FAILURES_FOLDER = "logs/failed"  # one JSON record per failed scan, kept until the scan succeeds
TABLE_NAME, REPORT_NAME = "lesions.tsv", "report.html"
HASH_CHUNK_BYTES = 1 << 22


@dataclass(frozen=True)
class Provenance:
    """What outputs must have been made from to count as current (besides the input's checksum)."""

    model_version: str
    model_sha256: str  # of the weights: two bundles may carry one version string
    modality: str  # asked for: the forced one, else the scan's own ("auto": the model tells)
    threshold: float | None  # None: the model's label-free threshold

    def matches(self, recorded: dict) -> bool:
        return all(recorded.get(name) == value for name, value in asdict(self).items())


@dataclass(frozen=True)
class ScanOutputs:
    """The files of one scan's outputs (the report last: its presence marks the set complete)."""

    pseudo_healthy: Path
    anomaly_map: Path
    lesion_mask: Path
    report: Path
    thumbnail: Path

    @property
    def required(self) -> tuple[Path, Path, Path, Path]:
        """In the order of ``detect``'s outputs (``cli.OUTPUT_NAMES``)."""
        return self.pseudo_healthy, self.anomaly_map, self.lesion_mask, self.report


def _figure_name(key: str) -> str:
    return key.replace("/", "_") + ".png"


class CaseFolders:
    """The command line's layout: ``ROOT/<scan key>/`` holds ``detect``'s four files."""

    reserved = (INTERNAL_FOLDER, FIGURES_FOLDER, FAILURES_FOLDER.split("/")[0], TABLE_NAME, REPORT_NAME)

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).absolute()  # workers elsewhere write to the same (shared) path

    def outputs(self, scan: Scan) -> ScanOutputs:
        from disanatdetect.outputs import OUTPUT_NAMES

        folder = self.root / scan.key
        return ScanOutputs(*(folder / name for name in OUTPUT_NAMES),
                           thumbnail=self.root / FIGURES_FOLDER / _figure_name(scan.key))

    def check(self, scans: list[Scan]) -> None:
        """Refuse keys whose folder would be one of the cohort's own files or folders."""
        for scan in scans:
            if scan.key.split("/")[0] in self.reserved:
                raise InputError(f"the scan {scan.path} would write into {self.root / scan.key}, which the cohort "
                                 "uses for itself; rename it or give it a subject in a CSV list.")

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def extra_report(self, scan: Scan) -> dict:
        return {}


class BidsDerivatives:
    """A BIDS-derivatives dataset: outputs beside the source's path, named with its entities.

    For ``sub-01/ses-1/anat/sub-01_ses-1_FLAIR.nii.gz``: ``sub-01_ses-1_desc-pseudohealthy_FLAIR.nii.gz``,
    ``sub-01_ses-1_desc-anomaly_FLAIR.nii.gz``, ``sub-01_ses-1_label-lesion_desc-FLAIR_mask.nii.gz`` and the mask's
    JSON sidecar holding the report. The source's contrast stays the suffix of the images in its contrast and is the
    mask's ``desc``, so the outputs of a FLAIR and a T2w of one session do not collide.
    """

    reserved = ()

    def __init__(self, root: str | os.PathLike, source_root: str | os.PathLike):
        self.root = Path(root).absolute()  # workers elsewhere write to the same (shared) path
        self.source_root = Path(source_root).absolute()

    def outputs(self, scan: Scan) -> ScanOutputs:
        prefix, suffix = scan.key.rsplit("_", 1)
        folder = self.root / Path(scan.relpath).parent
        mask = f"{prefix}_label-lesion_desc-{suffix}_mask"
        return ScanOutputs(folder / f"{prefix}_desc-pseudohealthy_{suffix}.nii.gz",
                           folder / f"{prefix}_desc-anomaly_{suffix}.nii.gz",
                           folder / f"{mask}.nii.gz", folder / f"{mask}.json",
                           self.root / FIGURES_FOLDER / _figure_name(scan.key))

    def check(self, scans: list[Scan]) -> None:
        """Refuse to write into the raw dataset, or into another pipeline's derivatives."""
        if self.root.resolve() == self.source_root.resolve():
            raise InputError("the output folder is the BIDS dataset itself; write derivatives elsewhere, for "
                             f"example {self.source_root / 'derivatives' / 'disanatdetect'}.")
        path = self.root / "dataset_description.json"
        if path.exists():
            description = read_json(path) or {}
            generated = description.get("GeneratedBy", [])
            names = [entry.get("Name") for entry in generated if isinstance(entry, dict)] \
                if isinstance(generated, list) else []
            if PROJECT_NAME not in names:
                raise InputError(f"{self.root} already holds another dataset ({path.name} names no {PROJECT_NAME}); "
                                 "choose an empty folder.")

    def prepare(self) -> None:
        """Create the dataset with its ``dataset_description.json``."""
        self.root.mkdir(parents=True, exist_ok=True)
        description = {
            "Name": f"{PROJECT_NAME} lesion detection",
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": PROJECT_NAME, "Version": __version__, "CodeURL": CODE_URL,
                             "Description": "pseudo-healthy image, anomaly map and lesion mask per anatomical scan"}],
            "DatasetLinks": {"raw": self.source_root.resolve().as_uri()},
        }
        atomic_write_text(self.root / "dataset_description.json", json.dumps(description, indent=2) + "\n")

    def extra_report(self, scan: Scan) -> dict:
        """BIDS fields of the sidecar: the source file as a BIDS URI."""
        return {"Sources": [f"bids:raw:{scan.relpath}"]}


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file in ``path``'s folder and rename it: readers see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def input_fingerprint(path: Path) -> dict:
    """SHA-256 of the input (of every file, in name order, for a DICOM folder), its size and modification time."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(HASH_CHUNK_BYTES), b""):
                digest.update(chunk)
    return {"input_sha256": digest.hexdigest(), **_stat(path)}


def _stat(path: Path) -> dict:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stats = [file.stat() for file in files]
    return {"input_bytes": sum(s.st_size for s in stats), "input_mtime_ns": max((s.st_mtime_ns for s in stats),
                                                                                default=0)}


def input_unchanged(path: Path, recorded: dict, verify: bool = False) -> bool:
    """Whether ``path`` still holds the input ``recorded`` describes.

    Its checksum decides; it is recomputed only when the size or modification time differ from the recorded ones
    (as make and rsync do), or always with ``verify``, so resuming a large cohort does not read every scan again.
    """
    try:
        if not verify and all(recorded.get(name) == value for name, value in _stat(path).items()):
            return bool(recorded.get("input_sha256"))
        return input_fingerprint(path)["input_sha256"] == recorded.get("input_sha256")
    except OSError:
        return False


def read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def completed_report(scan: Scan, outputs: ScanOutputs, provenance: Provenance, verify: bool = False) -> dict | None:
    """The report of the scan's outputs when they are complete and current, else None (the scan is to be done)."""
    report = read_json(outputs.report)
    if report is None or not all(path.exists() for path in outputs.required):
        return None
    recorded = report.get("cohort", {})
    if report.get("model_version") != provenance.model_version or not provenance.matches(recorded):
        return None
    return report if input_unchanged(scan.path, recorded, verify) else None


def row_from_report(report: dict) -> dict:
    """A done scan's figures for the cohort table, from its report (the same whether made now or earlier)."""
    cohort = report.get("cohort", {})
    return {"status": "done", "modality": report.get("modality"), "lesion_count": report.get("lesion_count"),
            "lesion_volume_ml": report.get("lesion_volume_ml"), "threshold": report.get("threshold"),
            "model_version": report.get("model_version"), "seconds": cohort.get("seconds"),
            "processed_at": cohort.get("processed_at", ""), "error": ""}


def write_scan_outputs(outputs: ScanOutputs, result, report: dict, staging_root: Path,
                       thumbnail: Callable[[Path], object] | None = None,
                       before_commit: Callable[[], None] | None = None) -> None:
    """Write one scan's outputs with ``detect``'s own writer into a staging folder, then move them into place.

    The old report goes first and the new one last, with SIGINT and SIGTERM held back, so at every moment a report
    beside the outputs describes them. A failure, or a process killed before the moves, leaves only the staging
    folder, which the run removes. ``before_commit`` runs between the two (a test hook).
    """
    from disanatdetect.outputs import OUTPUT_NAMES, write_outputs

    # Not created here: once the run has removed it (interrupted), a task still running can stage nothing more.
    staging = Path(tempfile.mkdtemp(prefix="scan-", dir=staging_root))
    try:
        write_outputs(staging, result, report, overwrite=False)
        staged = [staging / name for name in OUTPUT_NAMES]
        if thumbnail is not None:
            thumbnail(staging / "thumbnail.png")
        if before_commit is not None:
            before_commit()
        moves = list(zip(staged[:3], outputs.required[:3]))
        if (staging / "thumbnail.png").exists():
            moves.append((staging / "thumbnail.png", outputs.thumbnail))
        moves.append((staged[3], outputs.report))
        for _, target in moves:
            target.parent.mkdir(parents=True, exist_ok=True)
        with signals_held():
            outputs.report.unlink(missing_ok=True)
            for source, target in moves:
                os.replace(source, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_outputs(outputs: ScanOutputs) -> None:
    """Remove a scan's outputs, the report first: after a failed redo they describe an input or model no longer used."""
    with signals_held():
        for path in (outputs.report, *outputs.required[:3], outputs.thumbnail):
            path.unlink(missing_ok=True)


def failure_record_path(root: Path, scan: Scan) -> Path:
    return root / FAILURES_FOLDER / (scan.key.replace("/", "_") + ".json")


def record_failure(root: Path, scan: Scan, row: dict, provenance: Provenance) -> None:
    """Remember a failed scan with its error, the input it failed on and the model, until it succeeds."""
    record = {"scan": scan.key, "input": str(scan.path), "error": row.get("error", ""),
              "seconds": row.get("seconds"), "processed_at": row.get("processed_at", ""), **asdict(provenance)}
    if row.get("traceback"):  # an unexpected failure: the details a bug report needs
        record["traceback"] = row["traceback"]
    try:
        record.update(input_fingerprint(scan.path))
    except OSError:  # a missing input is one of the failures worth recording
        pass
    atomic_write_text(failure_record_path(root, scan), json.dumps(record, indent=2) + "\n")


def recorded_failure(root: Path, scan: Scan, provenance: Provenance, verify: bool = False) -> dict | None:
    """The failure record of a scan that failed on this very input with this model, else None (to be tried)."""
    record = read_json(failure_record_path(root, scan))
    if record is None or not provenance.matches(record):
        return None
    if "input_sha256" not in record:  # the input was missing then: try again once it is there
        return None if scan.path.exists() else record
    return record if input_unchanged(scan.path, record, verify) else None


def clear_failure(root: Path, scan: Scan) -> None:
    failure_record_path(root, scan).unlink(missing_ok=True)


@contextlib.contextmanager
def run_lock(root: Path) -> Iterator[Path]:
    """Hold the output folder for one run; yield its staging folder, emptied before and after the run.

    Whatever a killed worker or an interrupted run left in staging is removed here, never moved into place.
    """
    internal = root / INTERNAL_FOLDER
    internal.mkdir(parents=True, exist_ok=True)
    handle = open(internal / "lock", "w")
    try:
        try:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"another run is writing into {root}; wait for it to finish or choose another "
                             "output folder.") from None
        except OSError:  # a file system without locks (some network mounts): run unguarded rather than not at all
            pass
        handle.write(f"{os.getpid()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
        handle.flush()
        staging = internal / "staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        handle.close()
