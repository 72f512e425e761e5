"""The sample scan the module registers with Slicer's Sample Data module, for the walkthrough and tutorials.

A skull-stripped FLAIR with a glioma: case TCGA-DU-7294 of The Cancer Genome Atlas low-grade glioma collection
(TCGA-LGG), as co-registered and skull-stripped in the SRI24 space (240 x 240 x 155 voxels of 1 mm) for the
BrainLesion tutorials. Only plain data lives here (no Qt); ``DisAnatDetect.py`` registers it when Slicer has started.
"""

from __future__ import annotations

SAMPLE_CATEGORY = "DisAnatDetect"
SAMPLE_NAME = "DisAnatDetectFLAIRGlioma"
SAMPLE_NODE_NAME = "TCGA-DU-7294 FLAIR"
SAMPLE_FILE_NAME = "TCGA-DU-7294-flair.nii.gz"
SAMPLE_URL = ("https://github.com/disanatdetect/SlicerDisAnatDetect/releases/download/sample-data/"
              "TCGA-DU-7294-flair.nii.gz")
# Checked by Sample Data after every download (and by the tests against the file itself).
SAMPLE_SHA256 = "4744857f4abfc950098391d9dc3bc71e52c8c80d122b67b12c36d8edfe880ab5"
SAMPLE_CHECKSUM = f"SHA256:{SAMPLE_SHA256}"
# Relative to the module's Resources folder.
SAMPLE_THUMBNAIL = "Icons/DisAnatDetectSampleFLAIR.png"
SAMPLE_SOURCE = ("The Cancer Imaging Archive (TCIA), TCGA-LGG collection, case TCGA-DU-7294; skull-stripped and "
                 "co-registered to SRI24 as in the BrainLesion tutorials (Apache-2.0).")
SAMPLE_LICENCE = "CC BY 3.0 (TCIA data usage policy); cite the TCGA-LGG collection and Clark et al., J Digit Imaging 2013."
SAMPLE_MODALITY = "FLAIR"
