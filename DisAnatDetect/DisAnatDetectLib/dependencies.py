"""Which Python packages the detection needs that this Slicer's Python lacks (checked without importing them).

Slicer ships numpy and SimpleITK (its own build, which must never be replaced). PyTorch comes from the PyTorch
extension (``PyTorchUtils``), which picks the build that matches the computer's GPU, so it is checked separately.
"""

from __future__ import annotations

import importlib.util

# Import name -> pip requirement, for what the pipeline imports at run time besides numpy, SimpleITK and torch.
# nilearn (with nibabel) provides the offline MNI152 atlas files, read once to build the atlas cache.
PIP_REQUIREMENTS = {
    "scipy": "scipy>=1.10",
    "nibabel": "nibabel>=5",
    "nilearn": "nilearn>=0.10",
}
TORCH_REQUIREMENT = ">=2.1"


def isImportable(moduleName: str) -> bool:
    """True when ``moduleName`` can be imported (found on the path), without importing it."""
    try:
        return importlib.util.find_spec(moduleName) is not None
    except (ImportError, ValueError):
        return False


def missingPipRequirements() -> list[str]:
    """Pip requirements of the packages that are not installed, in a stable order."""
    return [requirement for moduleName, requirement in PIP_REQUIREMENTS.items() if not isImportable(moduleName)]


def torchInstalled() -> bool:
    return isImportable("torch")
