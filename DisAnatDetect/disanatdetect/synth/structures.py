"""Structures of real anatomy: SynthSeg's label maps grouped for rendering, and their tissue classes.

SynthSeg's training label maps (FreeSurfer label ids for the brain, 5xx ids for the tissues around it) are mapped
to :class:`Structure`: groups that share an appearance in MRI (thalamus and pallidum are brighter than cortex on
T1, for instance), each drawn with its own intensity. Lesion compartments come after the healthy structures, so a
lesion generator paints them into the same maps and the same contrast model renders them.

Each structure belongs to one tissue class of the model (the anatomical image it learns to produce). With
``deep_grey_matter`` the nuclei are a class of their own; without it they count as grey matter, as in the MNI
priors.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from disanatdetect.atlas import BACKGROUND, CSF, GREY_MATTER, TISSUE_CLASSES, WHITE_MATTER


class Structure(IntEnum):
    AIR = 0
    CSF = 1  # ventricles, and the subarachnoid CSF inside the brain outline
    CORTEX = 2
    WHITE_MATTER = 3
    CEREBELLAR_CORTEX = 4
    CEREBELLAR_WHITE_MATTER = 5
    BRAINSTEM = 6
    THALAMUS = 7
    CAUDATE = 8
    PUTAMEN = 9
    PALLIDUM = 10
    HIPPOCAMPUS_AMYGDALA = 11
    VENTRAL_NUCLEI = 12  # accumbens, ventral diencephalon
    VESSEL = 13
    CHOROID_PLEXUS = 14
    # around the brain: shown only when an image keeps (part of) the head
    EXTRACEREBRAL_CSF = 15
    BONE = 16
    MARROW = 17
    SOFT_TISSUE = 18
    SCALP = 19
    EYE = 20
    OTHER_HEAD = 21
    # lesion compartments, painted by the lesion generators
    OEDEMA = 22
    NECROSIS = 23
    ENHANCING = 24
    WM_LESION = 25
    INFARCT = 26


N_STRUCTURES = len(Structure)
FIRST_LESION = Structure.OEDEMA
HEAD = (Structure.EXTRACEREBRAL_CSF, Structure.BONE, Structure.MARROW, Structure.SOFT_TISSUE, Structure.SCALP,
        Structure.EYE, Structure.OTHER_HEAD)
DEEP_GREY = (Structure.THALAMUS, Structure.CAUDATE, Structure.PUTAMEN, Structure.PALLIDUM, Structure.VENTRAL_NUCLEI)

# FreeSurfer / SynthSeg label id -> structure. SynthSeg does not name its 5xx labels; they are grouped by where
# they lie (the outermost layer next to air is scalp, the layer next to extra-cerebral CSF is bone, ...).
# Label 24 is all CSF outside the ventricles; the label bank splits it by the brain outline.
FREESURFER_LABELS: dict[int, Structure] = {
    0: Structure.AIR,
    2: Structure.WHITE_MATTER, 41: Structure.WHITE_MATTER,
    25: Structure.WHITE_MATTER, 57: Structure.WHITE_MATTER,  # FreeSurfer's "lesion": WM hypointensities of ageing
    85: Structure.WHITE_MATTER,  # optic chiasm
    3: Structure.CORTEX, 42: Structure.CORTEX,
    4: Structure.CSF, 5: Structure.CSF, 43: Structure.CSF, 44: Structure.CSF, 14: Structure.CSF,
    15: Structure.CSF, 72: Structure.CSF, 24: Structure.CSF,
    7: Structure.CEREBELLAR_WHITE_MATTER, 46: Structure.CEREBELLAR_WHITE_MATTER,
    8: Structure.CEREBELLAR_CORTEX, 47: Structure.CEREBELLAR_CORTEX,
    16: Structure.BRAINSTEM,
    10: Structure.THALAMUS, 49: Structure.THALAMUS,
    11: Structure.CAUDATE, 50: Structure.CAUDATE,
    12: Structure.PUTAMEN, 51: Structure.PUTAMEN,
    13: Structure.PALLIDUM, 52: Structure.PALLIDUM,
    17: Structure.HIPPOCAMPUS_AMYGDALA, 53: Structure.HIPPOCAMPUS_AMYGDALA,
    18: Structure.HIPPOCAMPUS_AMYGDALA, 54: Structure.HIPPOCAMPUS_AMYGDALA,
    26: Structure.VENTRAL_NUCLEI, 58: Structure.VENTRAL_NUCLEI, 28: Structure.VENTRAL_NUCLEI,
    60: Structure.VENTRAL_NUCLEI,
    30: Structure.VESSEL, 62: Structure.VESSEL,
    136: Structure.CHOROID_PLEXUS, 137: Structure.CHOROID_PLEXUS, 163: Structure.CHOROID_PLEXUS,
    164: Structure.CHOROID_PLEXUS,
    515: Structure.BONE, 516: Structure.MARROW, 507: Structure.SOFT_TISSUE, 511: Structure.SCALP,
    506: Structure.EYE, 502: Structure.OTHER_HEAD, 508: Structure.OTHER_HEAD, 509: Structure.OTHER_HEAD,
    512: Structure.OTHER_HEAD, 514: Structure.OTHER_HEAD, 530: Structure.OTHER_HEAD,
}
SUBARACHNOID_CSF_LABEL = 24

_GREY = (Structure.CORTEX, Structure.CEREBELLAR_CORTEX, Structure.HIPPOCAMPUS_AMYGDALA, Structure.VESSEL)
_WHITE = (Structure.WHITE_MATTER, Structure.CEREBELLAR_WHITE_MATTER, Structure.BRAINSTEM)
_CSF = (Structure.CSF, Structure.CHOROID_PLEXUS)
DEEP_GREY_MATTER = len(TISSUE_CLASSES)  # the fifth class, when the nuclei have one


def tissue_class_table(deep_grey_matter: bool = False) -> np.ndarray:
    """Tissue class of every healthy structure (``[N_STRUCTURES]``, int64); lesion entries are -1.

    Classes are the atlas's (background, CSF, grey matter, white matter), plus deep grey matter when asked.
    Structures around the brain are background: the model sees the brain only.
    """
    table = np.full(N_STRUCTURES, -1, np.int64)
    table[[Structure.AIR, *HEAD]] = BACKGROUND
    table[list(_CSF)] = CSF
    table[list(_GREY)] = GREY_MATTER
    table[list(_WHITE)] = WHITE_MATTER
    table[list(DEEP_GREY)] = DEEP_GREY_MATTER if deep_grey_matter else GREY_MATTER
    return table


def freesurfer_lookup(labels: np.ndarray) -> np.ndarray:
    """Map a FreeSurfer / SynthSeg label map to structures (uint8); unknown label ids raise ``ValueError``."""
    ids = np.unique(labels)
    unknown = sorted(int(i) for i in ids if int(i) not in FREESURFER_LABELS)
    if unknown:
        raise ValueError(f"label ids without a structure: {unknown}; add them to FREESURFER_LABELS")
    table = np.zeros(int(ids.max()) + 1, np.uint8)
    for label, structure in FREESURFER_LABELS.items():
        if label < table.size:
            table[label] = structure
    return table[labels]


# Mean intensity per structure and modality (relative; the brightest brain tissue near 1), from typical 1.5-3 T
# appearances. Lesions are bright on T2/FLAIR/PD, dark on T1, the enhancing rim and vessels bright on T1c.
_PRESETS: dict[str, dict[Structure, float]] = {
    "t1": {
        Structure.CSF: 0.22, Structure.CORTEX: 0.55, Structure.WHITE_MATTER: 0.80, Structure.CEREBELLAR_CORTEX: 0.55,
        Structure.CEREBELLAR_WHITE_MATTER: 0.78, Structure.BRAINSTEM: 0.72, Structure.THALAMUS: 0.68,
        Structure.CAUDATE: 0.60, Structure.PUTAMEN: 0.63, Structure.PALLIDUM: 0.72,
        Structure.HIPPOCAMPUS_AMYGDALA: 0.52, Structure.VENTRAL_NUCLEI: 0.66, Structure.VESSEL: 0.40,
        Structure.CHOROID_PLEXUS: 0.40, Structure.EXTRACEREBRAL_CSF: 0.20, Structure.BONE: 0.05,
        Structure.MARROW: 0.85, Structure.SOFT_TISSUE: 0.55, Structure.SCALP: 0.90, Structure.EYE: 0.18,
        Structure.OTHER_HEAD: 0.40, Structure.OEDEMA: 0.45, Structure.NECROSIS: 0.25, Structure.ENHANCING: 0.50,
        Structure.WM_LESION: 0.45, Structure.INFARCT: 0.35,
    },
    "t2": {
        Structure.CSF: 1.00, Structure.CORTEX: 0.55, Structure.WHITE_MATTER: 0.40, Structure.CEREBELLAR_CORTEX: 0.58,
        Structure.CEREBELLAR_WHITE_MATTER: 0.40, Structure.BRAINSTEM: 0.45, Structure.THALAMUS: 0.48,
        Structure.CAUDATE: 0.55, Structure.PUTAMEN: 0.50, Structure.PALLIDUM: 0.38,
        Structure.HIPPOCAMPUS_AMYGDALA: 0.60, Structure.VENTRAL_NUCLEI: 0.47, Structure.VESSEL: 0.15,
        Structure.CHOROID_PLEXUS: 0.70, Structure.EXTRACEREBRAL_CSF: 1.00, Structure.BONE: 0.05,
        Structure.MARROW: 0.60, Structure.SOFT_TISSUE: 0.45, Structure.SCALP: 0.75, Structure.EYE: 0.95,
        Structure.OTHER_HEAD: 0.40, Structure.OEDEMA: 0.80, Structure.NECROSIS: 0.95, Structure.ENHANCING: 0.65,
        Structure.WM_LESION: 0.75, Structure.INFARCT: 0.82,
    },
    "flair": {
        Structure.CSF: 0.12, Structure.CORTEX: 0.62, Structure.WHITE_MATTER: 0.48, Structure.CEREBELLAR_CORTEX: 0.60,
        Structure.CEREBELLAR_WHITE_MATTER: 0.46, Structure.BRAINSTEM: 0.52, Structure.THALAMUS: 0.55,
        Structure.CAUDATE: 0.60, Structure.PUTAMEN: 0.57, Structure.PALLIDUM: 0.47,
        Structure.HIPPOCAMPUS_AMYGDALA: 0.68, Structure.VENTRAL_NUCLEI: 0.55, Structure.VESSEL: 0.20,
        Structure.CHOROID_PLEXUS: 0.35, Structure.EXTRACEREBRAL_CSF: 0.12, Structure.BONE: 0.05,
        Structure.MARROW: 0.55, Structure.SOFT_TISSUE: 0.45, Structure.SCALP: 0.70, Structure.EYE: 0.10,
        Structure.OTHER_HEAD: 0.40, Structure.OEDEMA: 0.95, Structure.NECROSIS: 0.45, Structure.ENHANCING: 0.85,
        Structure.WM_LESION: 0.92, Structure.INFARCT: 0.88,
    },
    "pd": {
        Structure.CSF: 0.85, Structure.CORTEX: 0.78, Structure.WHITE_MATTER: 0.62, Structure.CEREBELLAR_CORTEX: 0.78,
        Structure.CEREBELLAR_WHITE_MATTER: 0.62, Structure.BRAINSTEM: 0.66, Structure.THALAMUS: 0.70,
        Structure.CAUDATE: 0.76, Structure.PUTAMEN: 0.74, Structure.PALLIDUM: 0.64,
        Structure.HIPPOCAMPUS_AMYGDALA: 0.80, Structure.VENTRAL_NUCLEI: 0.70, Structure.VESSEL: 0.20,
        Structure.CHOROID_PLEXUS: 0.75, Structure.EXTRACEREBRAL_CSF: 0.85, Structure.BONE: 0.05,
        Structure.MARROW: 0.70, Structure.SOFT_TISSUE: 0.60, Structure.SCALP: 0.80, Structure.EYE: 0.85,
        Structure.OTHER_HEAD: 0.50, Structure.OEDEMA: 0.92, Structure.NECROSIS: 0.90, Structure.ENHANCING: 0.85,
        Structure.WM_LESION: 0.90, Structure.INFARCT: 0.90,
    },
}
# T1c is T1 with contrast agent: vessels, choroid plexus and the tumour rim enhance.
_PRESETS["t1c"] = {**_PRESETS["t1"], Structure.VESSEL: 0.90, Structure.CHOROID_PLEXUS: 0.85,
                   Structure.ENHANCING: 1.00, Structure.WHITE_MATTER: 0.78}
MODALITY_PRESETS = ("t1", "t1c", "t2", "flair", "pd")


def preset_means(modality: str) -> np.ndarray:
    """Mean intensity of every structure in ``modality`` (``[N_STRUCTURES]``, float32; air is 0)."""
    if modality not in _PRESETS:
        raise ValueError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITY_PRESETS)}")
    means = np.zeros(N_STRUCTURES, np.float32)
    for structure, mean in _PRESETS[modality].items():
        means[structure] = mean
    return means
