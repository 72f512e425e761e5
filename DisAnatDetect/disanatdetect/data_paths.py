"""Where the project's data are expected by default: beside the repository (relative to its root), as the
development machines and CI have them. Every command takes another folder as an argument."""

DEFAULT_LABEL_MAPS = "../shared/data/anatomy/synthseg"  # real label maps of healthy heads: training anatomy
DEFAULT_HEALTHY_SCANS = "../shared/data/healthy"  # real healthy scans: calibration and false positives
