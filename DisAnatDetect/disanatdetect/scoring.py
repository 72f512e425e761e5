"""Scoring: from a scan and its reconstruction to the raw anomaly score and the post-processed anomaly map."""

from __future__ import annotations

import numpy as np

from disanatdetect.atlas import CSF, GREY_MATTER, WHITE_MATTER, Atlas
from disanatdetect.detection import AtlasSpaceResult, DetectionConfig, Reconstruction
from disanatdetect.postprocess import anomaly_map

# Which way lesions depart from the pseudo-healthy image: +1 brighter (T2, FLAIR, PD), 0 either way (T1 family:
# oedema is dark, an enhancing rim bright).
LESION_SIGN = {"t1": 0, "t1c": 0, "t2": 1, "flair": 1, "pd": 1}
# White matter against grey: on T1 clearly brighter (typically 1.2 to 1.4 times), on FLAIR a little darker (0.8 to
# 0.95). The boundary lies between the two, not at equality: partial volume in thick slices evens grey and white
# matter out, and must not turn a FLAIR into a T1.
T1_WHITE_TO_GREY = 1.05


def infer_modality(intensities: np.ndarray) -> str:
    """Guess the contrast from the order of CSF, grey- and white-matter intensities."""
    csf, grey, white = intensities[CSF], intensities[GREY_MATTER], intensities[WHITE_MATTER]
    if csf > grey and csf > white:
        return "t2" if csf > 1.25 * grey else "pd"
    if white > T1_WHITE_TO_GREY * grey:
        return "t1"
    return "flair"


def anomaly_score(image: np.ndarray, pseudo_healthy: np.ndarray, modality: str,
                  anatomy_disagreement: np.ndarray | None = None, anatomy_weight: float = 0.0,
                  explained: np.ndarray | None = None) -> np.ndarray:
    """Residual between scan and pseudo-healthy image, signed by the modality, plus optional anatomy disagreement.

    ``explained`` marks voxels the anatomy accounts for as healthy CSF (the scan's anatomy and the restored
    anatomy both say CSF): their residual is partial volume and CSF's wide intensity range, not a lesion, and it
    is what blinds intensity-based detection on T2.
    """
    residual = image - pseudo_healthy
    score = np.maximum(residual, 0) if LESION_SIGN[modality] > 0 else np.abs(residual)
    if anatomy_disagreement is not None and anatomy_weight:
        score = score + anatomy_weight * anatomy_disagreement
    if explained is not None:
        score = np.where(explained, 0, score)
    return score.astype(np.float32)


def score_reconstruction(image: np.ndarray, brain: np.ndarray, reconstruction: Reconstruction, atlas: Atlas,
                         config: DetectionConfig = DetectionConfig()) -> AtlasSpaceResult:
    """Raw and post-processed anomaly scores of ``image`` against its reconstruction."""
    r = reconstruction
    modality = infer_modality(r.intensities) if config.modality == "auto" else config.modality
    explained = (r.encoded == CSF) & (r.restored == CSF) if config.explain_csf else None
    score = anomaly_score(image, r.pseudo_healthy, modality, r.disagreement, config.anatomy_weight, explained)
    score = np.where(brain, score, 0)
    anomaly = anomaly_map(score, brain, atlas.config.spacing_mm, config.postprocess)
    return AtlasSpaceResult(image, brain, r.pseudo_healthy, modality, score, anomaly, r.encoded, r.restored,
                            r.intensities)

