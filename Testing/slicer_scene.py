"""A Qt-free Slicer application for tests: a real MRML scene and the module logics the adapter relies on.

3D Slicer itself exposes the scene as ``slicer.mrmlScene`` and the logics of its loadable modules as
``slicer.modules.<name>.logic()``; ``slicer.util`` (``addVolumeFromArray``, ``updateSegmentBinaryLabelmapFromArray``,
...) finds them there. The PyPI package ``slicer-core`` ships Slicer's MRML and logic libraries and ``slicer.util``,
but not the application, so this helper builds the same names on a fresh ``vtkMRMLScene``:

- a ``vtkSlicerApplicationLogic`` whose colour logic has added the default colour nodes (as Slicer does at start),
- the Colors, Volumes, Segmentations and SubjectHierarchy module logics, given the scene and the application logic
  and registered with ``SetModuleLogic`` under their module names,
- ``slicer.mrmlScene`` and ``slicer.modules.<name>.logic()`` pointing at them.

Nothing here imports Qt, and ``slicer.app`` stays undefined, as it is in ``slicer-core``: code that needs the Qt
application (``slicer.util.saveNode``, dialogs) fails loudly in tests instead of passing by accident.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[1] / "DisAnatDetect"

# Module name in Slicer -> (class name in slicer-core, attribute name under slicer.modules).
MODULE_LOGICS = {
    "Colors": ("vtkSlicerColorLogic", "colors"),
    "Volumes": ("vtkSlicerVolumesLogic", "volumes"),
    "Segmentations": ("vtkSlicerSegmentationsModuleLogic", "segmentations"),
    "SubjectHierarchy": ("vtkSlicerSubjectHierarchyModuleLogic", "subjecthierarchy"),
}


def addModulePath() -> None:
    """Make ``DisAnatDetectLib`` and ``disanatdetect`` importable, as Slicer does for a scripted module's folder."""
    if str(MODULE_DIR) not in sys.path:
        sys.path.insert(0, str(MODULE_DIR))


@dataclass
class SlicerApplication:
    """The scene and logics of one Qt-free Slicer application (see the module docstring)."""

    scene: object
    applicationLogic: object
    moduleLogics: dict = field(default_factory=dict)

    def clear(self) -> None:
        """Empty the scene the way File > Close Scene does (default colour nodes are kept)."""
        self.scene.Clear(0)


def createSlicerApplication() -> SlicerApplication:
    """Build a fresh scene with its logics and install it as ``slicer.mrmlScene`` / ``slicer.modules``."""
    import slicer

    scene = slicer.vtkMRMLScene()
    applicationLogic = slicer.vtkSlicerApplicationLogic()
    applicationLogic.SetMRMLScene(scene)
    colorLogic = applicationLogic.GetColorLogic()
    colorLogic.SetMRMLScene(scene)
    colorLogic.AddDefaultColorNodes()

    logics = {}
    for moduleName, (className, _) in MODULE_LOGICS.items():
        if moduleName == "Colors":
            logic = colorLogic  # Slicer's Colors module logic is the application's colour logic
        else:
            logic = getattr(slicer, className)()
            logic.SetMRMLApplicationLogic(applicationLogic)
            logic.SetMRMLScene(scene)
        applicationLogic.SetModuleLogic(moduleName, logic)
        logics[moduleName] = logic

    slicer.mrmlScene = scene
    modules = types.SimpleNamespace()
    for moduleName, (_, attribute) in MODULE_LOGICS.items():
        # Bind the logic now: a lambda in a loop would otherwise see the last one.
        setattr(modules, attribute, types.SimpleNamespace(logic=(lambda logic=logics[moduleName]: logic)))
    slicer.modules = modules
    return SlicerApplication(scene, applicationLogic, logics)


def loadVolumeNode(path, name: str):
    """A scalar volume node read from ``path`` by Slicer's own volume storage node (ITK readers), as File > Add Data
    would load it, with default display (auto window/level)."""
    import slicer

    volumeNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    storageNode = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storageNode.SetFileName(str(path))
    if not storageNode.ReadData(volumeNode):
        slicer.mrmlScene.RemoveNode(volumeNode)
        raise RuntimeError(f"Slicer could not read {path}")
    volumeNode.CreateDefaultDisplayNodes()
    return volumeNode
