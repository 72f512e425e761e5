"""Label ids of synthetic label maps: the four tissue classes, then lesion compartments."""

from enum import IntEnum


class Label(IntEnum):
    BACKGROUND = 0
    CSF = 1
    GREY_MATTER = 2
    WHITE_MATTER = 3
    OEDEMA = 4
    NECROSIS = 5
    ENHANCING = 6
    WM_LESION = 7
    INFARCT = 8


N_LABELS = len(Label)
N_TISSUES = 4
LESION_CLASSES = tuple(label for label in Label if label >= N_TISSUES)
