"""The label bank: real label maps registered to the atlas, on a 1 mm grid around the working grid, built once.

Each SynthSeg label map is mapped to :class:`~disanatdetect.synth.structures.Structure`, its subarachnoid CSF split
by the brain outline (inside: brain CSF; outside: extra-cerebral CSF), registered affinely to the atlas template
(the project's own registration, on a T1 rendering of the brain) and resampled, nearest neighbour, onto a 1 mm grid
that shares the working grid's centre and axes and reaches ``margin_mm`` beyond it. Training then samples these maps
at any position, deformation and resolution without touching a file. Each subject is cached by the checksum of its
file and the settings, so a bank is built once per machine.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from disanatdetect.atlas import Atlas, _cache_dir
from disanatdetect.preprocess import largest_component_filled, register_to_atlas
from disanatdetect.synth.structures import (HEAD, SUBARACHNOID_CSF_LABEL, Structure, freesurfer_lookup,
                                            preset_means, tissue_class_table)

LABEL_MAP_PATTERN = "*.nii*"


@dataclass(frozen=True)
class BankConfig:
    """The bank's grid and how the brain outline is drawn."""

    spacing_mm: float = 1.0
    margin_mm: float = 16.0  # room for deformations that pull in anatomy from outside the working grid
    outline_closing_mm: float = 5.0  # closing of the brain tissue that separates sulcal from extra-cerebral CSF


@dataclass
class LabelBank:
    """Structure maps ``[S, z, y, x]`` (uint8) on a 1 mm grid centred on the working grid, same axes."""

    structures: np.ndarray
    subjects: tuple[str, ...]
    config: BankConfig

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return tuple(self.structures.shape[1:])


def bank_shape(atlas: Atlas, config: BankConfig) -> tuple[int, int, int]:
    """Voxels per axis (z, y, x) of the bank grid: the working grid's extent plus the margin on each side."""
    extent = np.array(atlas.config.shape_zyx) * atlas.config.spacing_mm + 2 * config.margin_mm
    return tuple(int(n) for n in np.ceil(extent / config.spacing_mm))


def bank_grid(atlas: Atlas, config: BankConfig) -> sitk.Image:
    """An empty image on the bank grid: the working grid's direction and centre, ``spacing_mm`` voxels."""
    reference = atlas.template.to_sitk()
    nz, ny, nx = bank_shape(atlas, config)
    direction = np.array(reference.GetDirection()).reshape(3, 3)
    size_working = np.array(reference.GetSize())
    centre = np.array(reference.GetOrigin()) + direction @ ((size_working - 1) * np.array(reference.GetSpacing()) / 2)
    origin = centre - direction @ ((np.array([nx, ny, nz]) - 1) * config.spacing_mm / 2)
    image = sitk.Image(nx, ny, nz, sitk.sitkUInt8)
    image.SetSpacing((config.spacing_mm,) * 3)
    image.SetOrigin(tuple(origin))
    image.SetDirection(tuple(direction.ravel()))
    return image


def split_subarachnoid_csf(labels: np.ndarray, structures: np.ndarray, spacing_mm: float,
                           closing_mm: float) -> np.ndarray:
    """Structures with label-24 CSF outside the closed brain outline made extra-cerebral (a copy)."""
    tissue_class = tissue_class_table()[structures]
    tissue = (tissue_class > 0) & (labels != SUBARACHNOID_CSF_LABEL)
    radius = max(1, int(round(closing_mm / spacing_mm)))
    ball = ndimage.iterate_structure(ndimage.generate_binary_structure(3, 1), radius)
    outline = largest_component_filled(ndimage.binary_closing(tissue, ball, border_value=0) | tissue)
    out = structures.copy()
    out[(labels == SUBARACHNOID_CSF_LABEL) & ~outline] = Structure.EXTRACEREBRAL_CSF
    return out


def _t1_rendering(structures: np.ndarray) -> np.ndarray:
    """The brain of a structure map as a T1 image: what the atlas template looks like, for registration."""
    means = preset_means("t1")
    means[list(HEAD)] = 0.0
    return means[structures]


def register_subject(path: Path, atlas: Atlas, config: BankConfig) -> np.ndarray:
    """One label map as structures on the bank grid (uint8 ``[z, y, x]``)."""
    image = sitk.ReadImage(str(path))
    labels = sitk.GetArrayFromImage(image).astype(np.int64)
    structures = freesurfer_lookup(labels)
    structures = split_subarachnoid_csf(labels, structures, min(image.GetSpacing()), config.outline_closing_mm)
    rendered = sitk.GetImageFromArray(_t1_rendering(structures))
    rendered.CopyInformation(image)
    transform = register_to_atlas(rendered, atlas.template.to_sitk())
    native = sitk.GetImageFromArray(structures)
    native.CopyInformation(image)
    resampled = sitk.Resample(native, bank_grid(atlas, config), transform, sitk.sitkNearestNeighbor,
                              int(Structure.AIR), sitk.sitkUInt8)
    return sitk.GetArrayFromImage(resampled)


def _cache_key(path: Path, atlas: Atlas, config: BankConfig) -> str:
    digest = hashlib.sha1(path.read_bytes())
    digest.update(json.dumps([asdict(config), atlas.config.key()], sort_keys=True).encode())
    return digest.hexdigest()[:16]


def label_map_paths(folder: str | os.PathLike) -> list[Path]:
    """The label maps of a folder, sorted by name; ``FileNotFoundError`` when there are none."""
    paths = sorted(Path(folder).glob(LABEL_MAP_PATTERN))
    if not paths:
        raise FileNotFoundError(f"no label maps ({LABEL_MAP_PATTERN}) in {folder}")
    return paths


def split_subjects(label_maps: str | Path, holdout: int) -> tuple[list[Path], list[Path]]:
    """Training and held-out label maps: the last ``holdout`` by name are held out."""
    paths = label_map_paths(label_maps)
    if holdout >= len(paths):
        raise ValueError(f"{len(paths)} label maps in {label_maps}: too few to hold out {holdout}")
    return paths[:len(paths) - holdout], paths[len(paths) - holdout:]


def subject_name(path: Path) -> str:
    return path.name.split(".")[0]


def load_bank(paths: list[Path], atlas: Atlas, config: BankConfig = BankConfig(), log=None) -> LabelBank:
    """The bank of ``paths``: each subject read from the cache, or registered and cached on first use."""
    maps = []
    for path in paths:
        cached = _cache_dir() / "label-bank" / f"{subject_name(path)}-{_cache_key(path, atlas, config)}.npz"
        if cached.exists():
            maps.append(np.load(cached)["structures"])
            continue
        if log:
            log(f"registering {path.name} to the atlas (once; cached in {cached.parent})")
        structures = register_subject(path, atlas, config)
        cached.parent.mkdir(parents=True, exist_ok=True)
        temporary = cached.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez_compressed(temporary, structures=structures)
        os.replace(temporary, cached)
        maps.append(structures)
    return LabelBank(np.stack(maps), tuple(subject_name(p) for p in paths), config)
