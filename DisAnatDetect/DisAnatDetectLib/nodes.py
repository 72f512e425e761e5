"""Between MRML nodes and the core's :class:`~disanatdetect.io.Volume`, and what the output nodes hold and show.

Geometry: a volume node keeps its voxel-to-world mapping as an IJK-to-RAS matrix; the core keeps spacing, origin and
direction in ITK's LPS convention. The conversion only flips the signs of the first two world axes, and outputs
copy the input node's orientation (``CopyOrientation``) instead of converting back, so their geometry equals the
input's exactly. Voxel arrays are copied on the way in: the input node is never modified.

MRML and ``slicer.util`` only; no Qt, so that all of it runs on a bare MRML scene (and in batch scripts).
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk
import vtk.util.numpy_support

from disanatdetect.errors import InputError
from disanatdetect.io import Volume

# RAS <-> LPS: the same diagonal matrix in both directions.
_FLIP_RAS_LPS = np.diag([-1.0, -1.0, 1.0])

# Output nodes: keyword in the logic's API -> (MRML class, suffix of the default name after the input's name).
OUTPUT_KINDS = {
    "pseudoHealthyVolume": ("vtkMRMLScalarVolumeNode", "pseudo-healthy"),
    "anomalyMapVolume": ("vtkMRMLScalarVolumeNode", "anomaly map"),
    "lesionSegmentation": ("vtkMRMLSegmentationNode", "lesions"),
    "statisticsTable": ("vtkMRMLTableNode", "lesion statistics"),
}
# Each output points back at its input (a node reference, saved with the scene) and says what it is, so that a
# re-run, a re-threshold or another logic instance finds and reuses it instead of piling up duplicates.
INPUT_REFERENCE_ROLE = "DisAnatDetectInput"
OUTPUT_KIND_ATTRIBUTE = "DisAnatDetect.Output"
# Facts about the result, kept on the anomaly-map node so that re-thresholding works after a scene is reloaded.
RESULT_ATTRIBUTE_PREFIX = "DisAnatDetect."

LESION_SEGMENT_ID = "Lesion"
LESION_SEGMENT_NAME = "Lesion"
# Cyan-green: stands out against both a grey scan and the black-red-yellow anomaly colours.
LESION_COLOR = (0.1, 0.9, 0.6)
# DICOM terminology "Morphologically altered structure / Lesion" in the brain (SNOMED CT codes), so that Segment
# Editor and DICOM SEG export label the segment correctly.
LESION_TERMINOLOGY = (
    "Segmentation category and type - DICOM master list"
    "~SCT^49755003^Morphologically Altered Structure~SCT^52988006^Lesion~^^"
    "~Anatomic codes - DICOM master list~SCT^12738006^Brain~^^"
)

# Colour maps for the anomaly map, best first: Slicer's file-based perceptual maps when the Colors module has loaded
# them, else the built-in procedural heat map that every MRML scene has.
ANOMALY_COLOR_NODE_IDS = (
    "vtkMRMLColorTableNodeFileInferno.txt",
    "vtkMRMLColorTableNodeFileColdToHotRainbow.txt",
    "vtkMRMLPETProceduralColorNodePET-Heat",
    "vtkMRMLColorTableNodeRainbow",
)
# The colour window spans 0 to this percentile of the positive scores: a few extreme voxels would otherwise wash the
# map out.
ANOMALY_WINDOW_PERCENTILE = 99.5
# Scores below this fraction of the lesion threshold are drawn transparent, so the scan stays readable under the
# overlay while near-threshold regions stay visible.
ANOMALY_VISIBLE_FRACTION_OF_THRESHOLD = 0.5

STATISTICS_COLUMNS = (
    # name, unit, description, VTK array class
    ("Lesion", "", "Lesion number, largest first", "vtkIntArray"),
    ("Volume (mL)", "mL", "Volume of the connected lesion component", "vtkDoubleArray"),
    ("Peak score", "", "Highest anomaly score inside the lesion", "vtkDoubleArray"),
    ("Centroid R", "mm", "Centre of the lesion, right (RAS)", "vtkDoubleArray"),
    ("Centroid A", "mm", "Centre of the lesion, anterior (RAS)", "vtkDoubleArray"),
    ("Centroid S", "mm", "Centre of the lesion, superior (RAS)", "vtkDoubleArray"),
)


# --- geometry and voxels ----------------------------------------------------------------------------------------------

def ijkToRasArray(volumeNode) -> np.ndarray:
    """The node's 4x4 IJK-to-RAS matrix as a numpy array."""
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def volumeFromNode(volumeNode) -> Volume:
    """A copy of a scalar volume node's voxels with its geometry, for the core pipeline."""
    if volumeNode is None or volumeNode.GetImageData() is None:
        raise InputError("the input volume holds no image data; load a scan first.")
    array = np.array(slicer.util.arrayFromVolume(volumeNode), copy=True)
    directions = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASDirectionMatrix(directions)
    directionsRas = slicer.util.arrayFromVTKMatrix(directions)[:3, :3]
    return Volume(array, spacing=volumeNode.GetSpacing(),
                  origin=_FLIP_RAS_LPS @ np.asarray(volumeNode.GetOrigin(), dtype=float),
                  direction=_FLIP_RAS_LPS @ directionsRas)


def addVolumeNode(volume: Volume, name: str):
    """A new scalar volume node holding a core :class:`~disanatdetect.io.Volume` (voxels and geometry)."""
    volumeNode = slicer.util.addVolumeFromArray(volume.array, volume.affine, name=name)
    volumeNode.CreateDefaultDisplayNodes()
    return volumeNode


def setVolumeContent(volumeNode, array: np.ndarray, referenceVolumeNode) -> None:
    """Fill ``volumeNode`` with ``array`` on the reference's grid: same orientation, same parent transform."""
    slicer.util.updateVolumeFromArray(volumeNode, array)
    volumeNode.CopyOrientation(referenceVolumeNode)
    volumeNode.SetAndObserveTransformNodeID(referenceVolumeNode.GetTransformNodeID())


# --- output nodes -----------------------------------------------------------------------------------------------------

def findOutputs(inputVolumeNode) -> dict:
    """Output nodes that an earlier run made for this input, by kind (keys of :data:`OUTPUT_KINDS`)."""
    found = {}
    if inputVolumeNode is None or inputVolumeNode.GetID() is None:
        return found
    for kind, (className, _) in OUTPUT_KINDS.items():
        for node in _nodesByClass(className):
            if (node.GetAttribute(OUTPUT_KIND_ATTRIBUTE) == kind
                    and node.GetNodeReferenceID(INPUT_REFERENCE_ROLE) == inputVolumeNode.GetID()):
                found[kind] = node
                break
    return found


def createOutputNode(kind: str, inputVolumeNode):
    """A new, empty output node of ``kind`` named after the input, placed beside it in the subject hierarchy."""
    className, suffix = OUTPUT_KINDS[kind]
    scene = slicer.mrmlScene
    node = scene.AddNewNodeByClass(className, scene.GenerateUniqueName(f"{inputVolumeNode.GetName()} {suffix}"))
    placeBeside(node, inputVolumeNode)
    return node


def markAsOutput(node, kind: str, inputVolumeNode) -> None:
    """Record which input ``node`` belongs to and what it is (see :data:`INPUT_REFERENCE_ROLE`)."""
    node.SetAttribute(OUTPUT_KIND_ATTRIBUTE, kind)
    node.SetNodeReferenceID(INPUT_REFERENCE_ROLE, inputVolumeNode.GetID())


def placeBeside(node, referenceNode) -> None:
    """Put ``node`` under the same subject-hierarchy parent (patient, study or folder) as ``referenceNode``."""
    shNode = slicer.mrmlScene.GetSubjectHierarchyNode()
    if shNode is None:
        return
    referenceItem = shNode.GetItemByDataNode(referenceNode)
    parentItem = shNode.GetItemParent(referenceItem) if referenceItem else shNode.GetSceneItemID()
    item = shNode.GetItemByDataNode(node)
    if item:
        shNode.SetItemParent(item, parentItem)
    else:
        # Slicer's application creates an item for each new node; a bare MRML scene does not.
        shNode.CreateItem(parentItem, node)


def _nodesByClass(className: str) -> list:
    scene = slicer.mrmlScene
    return [scene.GetNthNodeByClass(index, className) for index in range(scene.GetNumberOfNodesByClass(className))]


# --- content and display of each output -------------------------------------------------------------------------------

def showLikeReference(volumeNode, referenceVolumeNode) -> None:
    """Display ``volumeNode`` with the reference's colour map and window/level, so both read the same."""
    volumeNode.CreateDefaultDisplayNodes()
    display = volumeNode.GetDisplayNode()
    reference = referenceVolumeNode.GetDisplayNode()
    if reference is None or reference.GetWindow() <= 0:
        display.SetAutoWindowLevel(True)
        return
    if reference.GetColorNodeID():
        display.SetAndObserveColorNodeID(reference.GetColorNodeID())
    display.SetAutoWindowLevel(False)
    display.SetWindowLevel(reference.GetWindow(), reference.GetLevel())


def anomalyColorNodeID() -> str:
    """The first colour node of :data:`ANOMALY_COLOR_NODE_IDS` present in the scene."""
    for nodeID in ANOMALY_COLOR_NODE_IDS:
        if slicer.mrmlScene.GetNodeByID(nodeID) is not None:
            return nodeID
    raise RuntimeError("no colour map for the anomaly map is loaded (the Colors module's default colours are missing).")


def showAsAnomalyMap(volumeNode, anomaly: np.ndarray, threshold: float) -> None:
    """Colour the anomaly map from 0 to a high percentile; scores well under the threshold are transparent."""
    volumeNode.CreateDefaultDisplayNodes()
    display = volumeNode.GetDisplayNode()
    display.SetAndObserveColorNodeID(anomalyColorNodeID())
    positive = anomaly[anomaly > 0]
    upper = float(np.percentile(positive, ANOMALY_WINDOW_PERCENTILE)) if positive.size else 0.0
    # The threshold must lie inside the colour range, and a window needs a width.
    upper = max(upper, float(threshold), np.finfo(np.float32).eps)
    display.SetAutoWindowLevel(False)
    display.SetWindowLevelMinMax(0.0, upper)
    display.SetAutoThreshold(False)
    display.SetApplyThreshold(True)
    display.SetThreshold(ANOMALY_VISIBLE_FRACTION_OF_THRESHOLD * float(threshold),
                         max(upper, float(anomaly.max()) if anomaly.size else upper))


def updateAnomalyMapThreshold(volumeNode, threshold: float) -> None:
    """Follow a new lesion threshold with the transparency threshold of the anomaly map's display."""
    display = volumeNode.GetDisplayNode()
    if display is not None:
        display.SetThreshold(ANOMALY_VISIBLE_FRACTION_OF_THRESHOLD * float(threshold), display.GetUpperThreshold())


def updateLesionSegmentation(segmentationNode, mask: np.ndarray, referenceVolumeNode) -> str:
    """Put ``mask`` (on the reference's voxel grid) into the segmentation's "Lesion" segment (created when missing);
    returns the segment ID.

    The segmentation is put under the reference's parent transform first, so both share one coordinate frame, and
    the mask goes into the segment on the reference's own grid in that frame: nothing is resampled, so the segment
    covers exactly the mask's voxels whatever the transform (linear or not). The segment keeps its ID, so a name or
    colour the user gave it in Segment Editor survives a re-threshold; its voxels are replaced.
    """
    segmentationNode.CreateDefaultDisplayNodes()
    # The transform before the reference geometry: the geometry is expressed in the segmentation's own frame, and
    # computing it while the two sat in different frames would bake the transform into it.
    segmentationNode.SetAndObserveTransformNodeID(referenceVolumeNode.GetTransformNodeID())
    segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolumeNode)
    segmentation = segmentationNode.GetSegmentation()
    if segmentation.GetSegment(LESION_SEGMENT_ID) is None:
        segmentation.AddEmptySegment(LESION_SEGMENT_ID, LESION_SEGMENT_NAME, LESION_COLOR)
        segment = segmentation.GetSegment(LESION_SEGMENT_ID)
        # Not auto-generated: Slicer would otherwise rename and recolour it from the terminology.
        segment.SetNameAutoGenerated(False)
        segment.SetColorAutoGenerated(False)
        segment.SetTag(segment.GetTerminologyEntryTagName(), LESION_TERMINOLOGY)
    # An oriented image with the reference's IJK-to-RAS matrix: voxels in the reference's (and now the
    # segmentation's) own frame. Importing through a labelmap node instead would resample it from world coordinates
    # into that frame, by the inverse of the parent transform.
    labelmap = slicer.vtkOrientedImageData()
    labelmap.SetDimensions(referenceVolumeNode.GetImageData().GetDimensions())
    ijkToRas = vtk.vtkMatrix4x4()
    referenceVolumeNode.GetIJKToRASMatrix(ijkToRas)
    labelmap.SetImageToWorldMatrix(ijkToRas)
    labelmap.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    voxels = vtk.util.numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars())
    voxels[:] = (np.asarray(mask) > 0).astype(np.uint8).ravel()
    labelmap.Modified()
    if not slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            labelmap, segmentationNode, LESION_SEGMENT_ID, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE,
            labelmap.GetExtent()):
        raise RuntimeError("the lesion mask could not be written into the segmentation.")
    return LESION_SEGMENT_ID


def toWorld(pointsRas, referenceNode) -> np.ndarray:
    """Points (N x 3, RAS mm) in ``referenceNode``'s own frame, carried into world coordinates by its parent
    transform (linear or not); unchanged when it has none."""
    points = np.asarray(pointsRas, dtype=float).reshape(-1, 3)
    transformNode = referenceNode.GetParentTransformNode() if referenceNode is not None else None
    if transformNode is None:
        return points
    toWorldTransform = vtk.vtkGeneralTransform()
    transformNode.GetTransformToWorld(toWorldTransform)
    return np.array([toWorldTransform.TransformPoint(point) for point in points]).reshape(-1, 3)


def setShow3D(segmentationNode, show: bool) -> None:
    """Show the lesion segmentation as a surface in the 3D view (built on demand), or hide it there."""
    segmentationNode.CreateDefaultDisplayNodes()
    if show:
        segmentationNode.CreateClosedSurfaceRepresentation()
    segmentationNode.GetDisplayNode().SetVisibility3D(bool(show))


def updateStatisticsTable(tableNode, lesions: list[dict], referenceVolumeNode=None) -> None:
    """One row per lesion component: number, volume (mL), peak score and centroid (RAS, mm).

    The centroids are in world coordinates: the core gives them in the input's own frame, and a table has no
    transform of its own, so the input's parent transform (``referenceVolumeNode``'s) is applied to them.
    """
    centroids = toWorld([lesion["centroid_ras_mm"] for lesion in lesions], referenceVolumeNode)
    columns = []
    for name, unit, description, arrayClass in STATISTICS_COLUMNS:
        column = getattr(vtk, arrayClass)()
        column.SetName(name)
        columns.append((column, unit, description))
    for number, (lesion, centroid) in enumerate(zip(lesions, centroids), start=1):
        values = (number, lesion["volume_ml"], lesion["peak_score"], *centroid)
        for (column, _, _), value in zip(columns, values):
            column.InsertNextValue(value)
    wasModified = tableNode.StartModify()
    tableNode.RemoveAllColumns()
    for column, unit, description in columns:
        tableNode.AddColumn(column)
        tableNode.SetColumnUnitLabel(column.GetName(), unit)
        tableNode.SetColumnDescription(column.GetName(), description)
    if hasattr(tableNode, "SetUseColumnTitleAsColumnHeader"):  # newer Slicer: column titles head the columns
        for column, _, _ in columns:
            tableNode.SetColumnTitle(column.GetName(), column.GetName())
        tableNode.SetUseColumnTitleAsColumnHeader(True)
    else:
        tableNode.SetUseColumnNameAsColumnHeader(True)
    tableNode.EndModify(wasModified)
