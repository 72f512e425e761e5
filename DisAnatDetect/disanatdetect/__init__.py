"""DisAnatDetect: unsupervised lesion detection in brain MRI of any contrast.

Disentangled anatomy learning (DAL): the scan is split into a contrast-free anatomical image and its imaging
information, healthy anatomy is restored from the anatomy's edges alone, and rendered back in the scan's contrast
as a pseudo-healthy image. Where the scan departs from it is the anomaly map.

This package is the core: it never imports Slicer, VTK or Qt.
"""

__version__ = "0.1.0"

from disanatdetect.errors import InputError  # noqa: E402

__all__ = ["InputError", "__version__"]
