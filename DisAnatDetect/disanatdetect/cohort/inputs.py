"""Finding a cohort's scans: a folder of scans, a CSV list, or a BIDS dataset (through pybids).

Every source gives a list of :class:`Scan`, each with a key unique in the cohort that names its outputs. Nothing
here reads voxels or modifies an input; a scan that cannot be read fails later, on its own, with its own error.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from disanatdetect.errors import InputError
from disanatdetect.io import READABLE_SUFFIXES
from disanatdetect.synth.contrast import MODALITIES

# BIDS anatomical suffixes the model reads, and the modality each one is; a T1w with a contrast-agent entity (ce-)
# is the post-contrast T1 (t1c).
BIDS_MODALITIES = {"FLAIR": "flair", "T2w": "t2", "T1w": "t1", "PDw": "pd"}
CONTRAST_AGENT_MODALITY = "t1c"
# Words in a file name that say its contrast (folder and CSV inputs); anything else is left to the model ("auto").
FILENAME_MODALITIES = {
    "t1": "t1", "t1w": "t1", "mprage": "t1",
    "t1c": "t1c", "t1ce": "t1c", "t1gd": "t1c", "t1post": "t1c",
    "t2": "t2", "t2w": "t2",
    "flair": "flair", "t2flair": "flair",
    "pd": "pd", "pdw": "pd",
}
# Words that mark an annotation beside the scans (a reference segmentation, a brain mask), not a scan to analyse.
ANNOTATION_WORDS = frozenset({"mask", "seg", "segmentation", "reference", "label", "labels", "roi"})
# A folder with files of these suffixes, or without suffix, and no other image is read as one DICOM series.
DICOM_SUFFIXES = (".dcm", ".ima")


@dataclass
class Scan:
    """One scan of a cohort: where it is, its contrast, and the key that names its outputs."""

    key: str  # unique in the cohort: a relative path without suffix (folder, CSV) or the BIDS file's stem
    path: Path
    modality: str = "auto"
    subject: str = ""
    session: str = ""
    entities: dict[str, str] = field(default_factory=dict)  # BIDS entities of the source (BIDS inputs only)
    relpath: str = ""  # the file's path inside its dataset (BIDS inputs only)


def _words(name: str) -> list[str]:
    return [word for word in re.split(r"[^a-z0-9]+", name.lower()) if word]


def _stem(path: Path) -> str:
    """The file name without its image suffix (``.nii.gz`` counts as one)."""
    name = path.name
    for suffix in sorted(READABLE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def modality_from_name(name: str) -> str:
    """The contrast a file name announces (``flair.nii.gz``, ``sub1_T2w.nii``), or ``"auto"``."""
    for word in reversed(_words(name)):  # the last word is usually the contrast: "case_t1_flair" is a FLAIR
        if word in FILENAME_MODALITIES:
            return FILENAME_MODALITIES[word]
    return "auto"


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(READABLE_SUFFIXES)


def _is_annotation(name: str) -> bool:
    return bool(ANNOTATION_WORDS.intersection(_words(_stem(Path(name)))))


def _is_dicom_folder(files: Iterable[str]) -> bool:
    visible = [name for name in files if not name.startswith(".")]
    return bool(visible) and all(name.lower().endswith(DICOM_SUFFIXES) or "." not in name for name in visible)


def _inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def scans_from_folder(folder: str | os.PathLike, exclude: str | os.PathLike | None = None) -> list[Scan]:
    """The scans of a folder: image files anywhere below it (one subfolder per case, or flat), and DICOM folders.

    A folder that holds one scan gives it the folder's name as key; otherwise each file's path, without suffix,
    relative to ``folder`` is its key. Annotations (file names with a word such as ``reference``, ``seg`` or
    ``mask``), hidden files and anything inside ``exclude`` (the output folder) are left out. The contrast comes
    from the file name (``flair.nii.gz``, ``sub01_T2w.nii``), else ``"auto"``.
    """
    root = Path(folder).absolute()  # absolute: workers on other machines resolve paths without our folder
    if not root.is_dir():
        raise InputError(f"{folder} is not a folder; pass a folder of scans or a CSV list.")
    if (root / "dataset_description.json").exists():
        raise InputError(f"{root} is a BIDS dataset; run 'disanatdetect bids {root} OUTPUT_DIR participant' "
                         "instead.")
    excluded = Path(exclude) if exclude is not None else None
    found: list[tuple[Path, Path]] = []  # (scan path, folder it was found in)
    for directory, subfolders, files in os.walk(root):
        here = Path(directory)
        subfolders[:] = sorted(name for name in subfolders
                               if not name.startswith(".") and not _inside(here / name, excluded))
        images = sorted(name for name in files if _is_image(name) and not _is_annotation(name))
        if images:
            found += [(here / name, here) for name in images]
        elif here != root and not subfolders and _is_dicom_folder(files):
            found.append((here, here.parent))
    per_folder: dict[Path, int] = {}
    for _, where in found:
        per_folder[where] = per_folder.get(where, 0) + 1
    scans = []
    for path, where in found:
        if path.is_dir():
            key = path.relative_to(root).as_posix()
        elif where != root and per_folder[where] == 1:
            key = where.relative_to(root).as_posix()
        else:
            key = path.with_name(_stem(path)).relative_to(root).as_posix()
        scans.append(Scan(key, path, modality_from_name(path.name)))
    if not scans:
        raise InputError(f"{root} holds no scans (NIfTI, NRRD, MHA or DICOM folders); check the path.")
    return _unique(scans, str(root))


def scans_from_csv(path: str | os.PathLike) -> list[Scan]:
    """The scans of a CSV list with the columns ``path,modality[,subject,session]`` (a header row is optional).

    Relative paths are relative to the CSV file's folder; an empty modality is ``"auto"``. The key is
    ``subject/session/name`` from the columns given, or the path relative to the CSV's folder.
    """
    path = Path(path).absolute()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path} cannot be read as a CSV list ({getattr(error, 'strerror', None) or error}).") \
            from None
    scans = []
    lines: dict[str, int] = {}
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if number == 1 and cells[0].lower() == "path":  # a header
            continue
        if len(cells) < 2 or len(cells) > 4 or not cells[0]:
            raise InputError(f"{path} line {number}: expected 'path,modality[,subject,session]', got {row!r}.")
        cells += [""] * (4 - len(cells))
        scan_path, modality, subject, session = cells
        modality = modality.lower() or "auto"
        if modality not in ("auto",) + MODALITIES:
            raise InputError(f"{path} line {number}: modality {cells[1]!r} is not one of auto, "
                             f"{', '.join(MODALITIES)}.")
        file = Path(os.path.normpath(path.parent / scan_path))  # an absolute scan_path stays as it is
        name = _stem(file)
        if subject:
            key = "/".join(part for part in (subject, session, name) if part)
        elif _inside(file, path.parent):
            key = Path(os.path.relpath(file.parent / name, path.parent)).as_posix()
        else:
            key = name
        if key in lines:
            raise InputError(f"{path} lines {lines[key]} and {number} would share the outputs {key!r}; give them "
                             "distinct subject or session columns.")
        lines[key] = number
        scans.append(Scan(key, file, modality, subject, session))
    if not scans:
        raise InputError(f"{path} lists no scans; write one 'path,modality[,subject,session]' line per scan.")
    return scans


def _labels(values: Sequence[str] | None, prefix: str) -> list[str]:
    """BIDS-App labels may be given with or without their prefix (``sub-01`` or ``01``)."""
    return [value[len(prefix):] if value.startswith(prefix) else value for value in values or ()]


def scans_from_bids(bids_dir: str | os.PathLike, participant_labels: Sequence[str] | None = None,
                    session_labels: Sequence[str] | None = None,
                    suffixes: Sequence[str] = tuple(BIDS_MODALITIES)) -> list[Scan]:
    """The anatomical scans of a BIDS dataset, found by pybids, with their BIDS entities.

    ``suffixes`` chooses the contrasts (FLAIR, T2w, T1w, PDw); a T1w with a ``ce-`` entity is read as T1c. Only the
    raw dataset is indexed (pybids leaves ``derivatives/`` out), and pybids writes nothing into it.
    """
    from bids import BIDSLayout
    from bids.exceptions import BIDSValidationError

    root = Path(bids_dir)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder; pass the root of a BIDS dataset.")
    unknown = [suffix for suffix in suffixes if suffix not in BIDS_MODALITIES]
    if unknown:
        raise InputError(f"--suffix {' '.join(unknown)} is not an anatomical contrast the model reads; choose from "
                         f"{' '.join(BIDS_MODALITIES)}.")
    try:
        layout = BIDSLayout(root, validate=True, derivatives=False)
    except (BIDSValidationError, ValueError) as error:
        reason = str(error).strip().splitlines()[0].rstrip(".")
        raise InputError(f"{root} is not a BIDS dataset ({reason}).") from None
    filters: dict[str, list[str]] = {}
    for entity, labels, available in (("subject", _labels(participant_labels, "sub-"), layout.get_subjects()),
                                      ("session", _labels(session_labels, "ses-"), layout.get_sessions())):
        missing = sorted(set(labels) - set(available))
        if missing:
            raise InputError(f"{root} has no {entity} {', '.join(missing)}; it has "
                             f"{', '.join(sorted(available)) or 'none'}.")
        if labels:
            filters[entity] = labels
    files = layout.get(datatype="anat", suffix=list(suffixes), extension=[".nii", ".nii.gz"],
                       return_type="object", **filters)
    scans = []
    for file in sorted(files, key=lambda f: f.relpath):
        entities = {key: str(value) for key, value in file.get_entities().items()
                    if key not in ("suffix", "extension", "datatype")}
        suffix = file.entities["suffix"]
        modality = CONTRAST_AGENT_MODALITY if suffix == "T1w" and "ceagent" in entities else BIDS_MODALITIES[suffix]
        scans.append(Scan(_stem(Path(file.path)), Path(file.path), modality, entities.get("subject", ""),
                          entities.get("session", ""), entities, Path(file.relpath).as_posix()))
    if not scans:
        raise InputError(f"{root} holds no {'/'.join(suffixes)} images (NIfTI, in anat/) for the participants and "
                         "sessions chosen.")
    return _unique(scans, str(root))


def _unique(scans: list[Scan], where: str) -> list[Scan]:
    seen: dict[str, Scan] = {}
    for scan in scans:
        if scan.key in seen:
            raise InputError(f"{where} holds {seen[scan.key].path.name} and {scan.path.name} in one place, and their "
                             f"outputs would share the name {scan.key!r}; keep one of them.")
        seen[scan.key] = scan
    return scans
