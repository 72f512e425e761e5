"""Which Python packages the detection needs that this Slicer's Python lacks (checked without importing them).

Slicer ships numpy and SimpleITK (its own build, which must never be replaced). PyTorch comes from the PyTorch
extension (``PyTorchUtils``), which picks the build that matches the computer's GPU, so it is checked separately,
version included. The brain atlas ships prebuilt with the package, so nilearn and nibabel (which only build it) are
not needed in Slicer.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from pathlib import Path

# Import name -> pip requirement, for what the child process imports to detect besides numpy, SimpleITK and torch.
PIP_REQUIREMENTS = {
    "scipy": "scipy>=1.10",
}
# The oldest PyTorch the model code runs on, as a pip requirement and as a comparable version.
MINIMUM_TORCH_VERSION = (2, 1)
TORCH_REQUIREMENT = ">=" + ".".join(str(part) for part in MINIMUM_TORCH_VERSION)


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
    """True when torch can be imported (whatever its version)."""
    return isImportable("torch")


def installedTorchVersion() -> str | None:
    """The installed torch's version string (from its metadata, without importing it), or None."""
    if not torchInstalled():
        return None
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def versionTuple(version: str) -> tuple[int, ...]:
    """The leading release numbers of a version string: "2.1.0+cu121" -> (2, 1, 0)."""
    match = re.match(r"\d+(\.\d+)*", version.strip())
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()


def torchMeetsRequirement() -> bool:
    """True when torch is installed in version :data:`TORCH_REQUIREMENT` or newer."""
    version = installedTorchVersion()
    return version is not None and versionTuple(version)[:len(MINIMUM_TORCH_VERSION)] >= MINIMUM_TORCH_VERSION


def missingPackagesDescription() -> list[str]:
    """What must be installed before a detection can run, one entry per package, for the user to read first."""
    needed = []
    version = installedTorchVersion()
    if version is None:
        needed.append(f"PyTorch {TORCH_REQUIREMENT} (through the PyTorch extension)")
    elif not torchMeetsRequirement():
        needed.append(f"PyTorch {TORCH_REQUIREMENT} (installed: {version}; through the PyTorch extension)")
    return needed + missingPipRequirements()


def detectionUnavailableReason() -> str | None:
    """Why a detection cannot run in this Python (one sentence), or None when it can.

    Used by the module's self-test to skip on machines without PyTorch or the model, such as the extension build
    machines: the test must never install anything.
    """
    missing = missingPackagesDescription()
    if missing:
        return f"DisAnatDetect needs {', '.join(missing)}, which this Python lacks; nothing is installed while testing."
    spec = importlib.util.find_spec("disanatdetect")
    manifest = Path(spec.origin).parent / "weights" / "manifest.json" if spec and spec.origin else None
    if manifest is None or not manifest.exists():
        return "the DisAnatDetect model bundle (disanatdetect/weights/manifest.json) is not installed."
    return None
