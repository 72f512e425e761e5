"""DisAnatDetectLib on a real MRML scene (slicer-core), with the shipped model, on a real FLAIR scan.

The detection runs as it does in Slicer: in a child process (``python -m disanatdetect detect ... --progress json``)
that the main thread polls. One polled run (the GUI's path), one scripted run on the input under a rotation and a
translation (``process(..., waitForCompletion=True)``) and one run of the command line on the file are shared by the
tests of this module; everything else works on their results.

The model's label-free threshold may find little or nothing on this scan, and the model is retrained from time to
time. The tests therefore work at a threshold taken from the run's own anomaly map (:data:`WORKING_PERCENTILE`), which always gives
lesions to compare, and check the model's default threshold separately.
"""

from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

from slicer_scene import loadVolumeNode

pytest_plugins = ["conftest_slicer"]

# Re-thresholding must feel immediate; a model run on this volume takes tens of seconds on the test machine.
RETHRESHOLD_SECONDS_MAX = 5.0
# The working threshold: this percentile of the positive anomaly scores (the top 1% of the brain's scores).
WORKING_PERCENTILE = 99.0
# How long a detection may take here before the test gives up waiting (a loaded 2-core machine is slow).
RUN_TIMEOUT_SECONDS = 600.0
# Pause between polls of the child, as the GUI's timer does (shorter, so the test sees every stage).
POLL_SECONDS = 0.05
# The input of the transformed run: a rotation about an oblique axis and a translation (mm).
ROTATION_DEGREES = 23.0
ROTATION_AXIS = (0.3, -0.5, 0.8)
TRANSLATION_MM = (12.0, -7.5, 30.0)


def ijkToRas(volumeNode) -> np.ndarray:
    from DisAnatDetectLib import nodes

    return nodes.ijkToRasArray(volumeNode)


def segmentArray(outputs, referenceVolume) -> np.ndarray:
    import slicer

    return slicer.util.arrayFromSegmentBinaryLabelmap(outputs.lesionSegmentation, outputs.lesionSegmentId,
                                                      referenceVolume)


def dataNodeIDs() -> set[str]:
    """IDs of the scene's data nodes (volumes, segmentations, models, tables), without display and storage nodes."""
    import slicer

    scene = slicer.mrmlScene
    found = set()
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        if node.IsA("vtkMRMLDisplayableNode") or node.IsA("vtkMRMLTableNode"):
            found.add(node.GetID())
    return found


def tableColumns(tableNode) -> dict:
    table = tableNode.GetTable()
    return {table.GetColumn(index).GetName(): [table.GetValue(row, index).ToDouble()
                                              for row in range(table.GetNumberOfRows())]
            for index in range(table.GetNumberOfColumns())}


def workingThreshold(anomaly: np.ndarray) -> float:
    """Half-way between two neighbouring scores at :data:`WORKING_PERCENTILE`: no voxel lies near it, so runs that
    differ in the last bits of floating point still agree on every voxel."""
    scores = np.unique(anomaly[anomaly > 0])
    index = int(len(scores) * WORKING_PERCENTILE / 100.0)
    return float((scores[index] + scores[index + 1]) / 2.0)


def rotationMatrix(degrees: float, axis) -> np.ndarray:
    """A 4x4 rotation about ``axis`` (Rodrigues' formula)."""
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    angle = np.deg2rad(degrees)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    matrix = np.eye(4)
    matrix[:3, :3] = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross
    return matrix


def linearTransformNode(name: str):
    import slicer

    matrix = rotationMatrix(ROTATION_DEGREES, ROTATION_AXIS)
    matrix[:3, 3] = TRANSLATION_MM
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
    node.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(matrix))
    return node


def copyOf(inputVolume, name: str):
    """A new volume node with the input's voxels and geometry (and no outputs yet)."""
    from DisAnatDetectLib import nodes

    return nodes.addVolumeNode(nodes.volumeFromNode(inputVolume), name)


@pytest.fixture(scope="module")
def temporaryRootOfModule(tmp_path_factory):
    return tmp_path_factory.mktemp("detection-temporary")


@pytest.fixture(scope="module")
def run(slicerApp, flairPath, temporaryRootOfModule):
    """The FLAIR scan loaded as Slicer loads it, filed under a study, and detected once by a polled child process."""
    import slicer

    from DisAnatDetectLib import DisAnatDetectLogic

    inputVolume = loadVolumeNode(flairPath, "TCGA-DU-7294 FLAIR")
    shNode = slicer.mrmlScene.GetSubjectHierarchyNode()
    patientItem = shNode.CreateSubjectItem(shNode.GetSceneItemID(), "TCGA-DU-7294")
    studyItem = shNode.CreateStudyItem(patientItem, "MR brain")
    if shNode.GetItemByDataNode(inputVolume):
        shNode.SetItemParent(shNode.GetItemByDataNode(inputVolume), studyItem)
    else:
        shNode.CreateItem(studyItem, inputVolume)
    state = SimpleNamespace(
        inputVolume=inputVolume, studyItem=studyItem,
        voxelsBefore=slicer.util.arrayFromVolume(inputVolume).copy(), ijkToRasBefore=ijkToRas(inputVolume),
        attributesBefore=list(inputVolume.GetAttributeNames()), nodeCountBefore=slicer.mrmlScene.GetNumberOfNodes())

    logic = DisAnatDetectLogic(temporaryRoot=temporaryRootOfModule)
    task = logic.startDetection(inputVolume, modality="FLAIR", device="CPU")
    state.nodeCountWhileRunning = slicer.mrmlScene.GetNumberOfNodes()
    progress = []
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while not task.poll() and time.monotonic() < deadline:
        progress.append((task.stage, task.percent))
        state.nodeCountWhileRunning = max(state.nodeCountWhileRunning, slicer.mrmlScene.GetNumberOfNodes())
        time.sleep(POLL_SECONDS)
    assert task.done, "the detection did not finish in time"
    progress.append((task.stage, task.percent))
    state.temporaryLeft = list(temporaryRootOfModule.iterdir())
    state.outputs = logic.finishDetection(task)
    state.progress = progress
    state.task = task
    state.logic = logic
    state.defaultResult = state.outputs.result  # at the model's label-free threshold
    state.segmentAtDefault = segmentArray(state.outputs, inputVolume)
    state.workingThreshold = workingThreshold(state.defaultResult.anomaly_map.array)
    state.workingResult = logic.setThreshold(inputVolume, state.workingThreshold)
    state.segment = segmentArray(state.outputs, inputVolume)
    return state


@pytest.fixture(scope="module")
def cliOutputs(run, flairPath, tmp_path_factory):
    """The command line's outputs for the same file at the run's working threshold."""
    from disanatdetect.cli import main
    from disanatdetect.io import read_volume

    out = tmp_path_factory.mktemp("cli") / "outputs"
    assert main(["detect", str(flairPath), "--out", str(out), "--device", "cpu",
                 "--modality", "flair", "--threshold", repr(run.workingThreshold), "--quiet"]) == 0
    return {name: read_volume(out / f"{name}.nii.gz") for name in ("pseudo_healthy", "anomaly_map", "lesion_mask")}


@pytest.fixture(scope="module")
def transformedRun(run, temporaryRootOfModule):
    """A copy of the input under a rotation and a translation, detected by a script: ``process()`` waits for the
    same child process."""
    from DisAnatDetectLib import DisAnatDetectLogic

    inputVolume = copyOf(run.inputVolume, "FLAIR under a linear transform")
    transform = linearTransformNode("rotation and translation")
    inputVolume.SetAndObserveTransformNodeID(transform.GetID())
    logic = DisAnatDetectLogic(temporaryRoot=temporaryRootOfModule)
    reports = []
    outputs = logic.process(inputVolume, modality="FLAIR", device="CPU", threshold=run.workingThreshold,
                            progress=lambda stage, fraction: reports.append((stage, fraction)),
                            timeout=RUN_TIMEOUT_SECONDS)
    return SimpleNamespace(inputVolume=inputVolume, transform=transform, outputs=outputs, logic=logic,
                           reports=reports, temporaryLeft=list(temporaryRootOfModule.iterdir()))


# --- geometry conversion (no model) -----------------------------------------------------------------------------------

def test_node_geometry_matches_the_file_reader_for_an_oblique_volume(slicerApp, tmp_path, rng):
    """A tilted, anisotropic NIfTI read by Slicer converts to the same Volume as the core reads from the file."""
    import slicer

    from disanatdetect.io import Volume, read_volume, write_volume
    from DisAnatDetectLib import nodes

    angle = np.deg2rad(17.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    tilt = np.array([[1, 0, 0], [0, np.cos(angle / 2), -np.sin(angle / 2)], [0, np.sin(angle / 2), np.cos(angle / 2)]])
    volume = Volume(rng.normal(100, 20, (12, 20, 16)).astype(np.float32), spacing=(0.9, 1.2, 3.5),
                    origin=(12.5, -30.0, 7.25), direction=rotation @ tilt)
    path = write_volume(volume, tmp_path / "oblique.nii.gz")

    volumeNode = loadVolumeNode(path, "oblique")
    fromNode = nodes.volumeFromNode(volumeNode)
    fromFile = read_volume(path)
    np.testing.assert_array_equal(fromNode.array, fromFile.array)
    np.testing.assert_allclose(fromNode.affine, fromFile.affine, atol=1e-5)
    np.testing.assert_allclose(fromNode.affine, ijkToRas(volumeNode), atol=1e-12)
    # And back: a node made from the Volume has the same voxels and geometry.
    again = nodes.addVolumeNode(fromNode, "again")
    np.testing.assert_allclose(ijkToRas(again), ijkToRas(volumeNode), atol=1e-12)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(again), fromFile.array)
    for node in (volumeNode, again):
        slicer.mrmlScene.RemoveNode(node)


def test_volume_from_node_copies_the_voxels(slicerApp):
    import slicer

    from disanatdetect.io import Volume
    from DisAnatDetectLib import nodes

    volumeNode = nodes.addVolumeNode(Volume(np.arange(60, dtype=np.float32).reshape(3, 4, 5)), "small")
    volume = nodes.volumeFromNode(volumeNode)
    volume.array[:] = -1
    assert slicer.util.arrayFromVolume(volumeNode).min() == 0
    slicer.mrmlScene.RemoveNode(volumeNode)


# --- the detection's outputs ------------------------------------------------------------------------------------------

def test_child_progress_arrives_in_order_and_reaches_100_percent(run):
    from DisAnatDetectLib import STAGES

    reported = [report.stage for report in run.task.reports]
    assert reported[0] == "preparing" and reported[-1] == "done", reported
    order = [*STAGES, "done"]
    assert [order.index(stage) for stage in reported] == sorted(order.index(stage) for stage in reported)
    assert set(STAGES) <= set(reported), "every pipeline stage is reported"
    for stage in STAGES:  # within a stage, the fraction never goes back
        fractions = [report.fraction for report in run.task.reports if report.stage == stage]
        assert fractions == sorted(fractions), (stage, fractions)
    percents = [percent for _, percent in run.progress]
    assert percents == sorted(percents) and percents[0] >= 0 and percents[-1] == 100
    assert len(set(percents)) > 3, "the progress bar moves during the run, not only at its end"
    assert run.logic.processesStarted == 1


def test_scene_is_touched_only_when_the_child_has_finished(run):
    assert run.nodeCountWhileRunning == run.nodeCountBefore
    assert run.temporaryLeft == [], "the temporary input, outputs and logs are removed"


def test_outputs_lie_on_the_input_grid(run):
    outputs, inputVolume = run.outputs, run.inputVolume
    assert outputs.pseudoHealthyVolume.IsA("vtkMRMLScalarVolumeNode")
    assert outputs.anomalyMapVolume.IsA("vtkMRMLScalarVolumeNode")
    assert outputs.lesionSegmentation.IsA("vtkMRMLSegmentationNode")
    assert outputs.statisticsTable.IsA("vtkMRMLTableNode")
    for volumeNode in (outputs.pseudoHealthyVolume, outputs.anomalyMapVolume):
        assert volumeNode.GetImageData().GetDimensions() == inputVolume.GetImageData().GetDimensions()
        np.testing.assert_array_equal(ijkToRas(volumeNode), ijkToRas(inputVolume))
    segmentation = outputs.lesionSegmentation
    assert segmentation.GetNodeReference(segmentation.GetReferenceImageGeometryReferenceRole()) is inputVolume
    assert segmentArray(outputs, inputVolume).shape == run.voxelsBefore.shape


def test_output_voxels_are_the_result(run):
    import slicer

    result = run.defaultResult
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(run.outputs.pseudoHealthyVolume),
                                  result.pseudo_healthy.array)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(run.outputs.anomalyMapVolume), result.anomaly_map.array)
    np.testing.assert_array_equal(run.segmentAtDefault, result.lesion_mask.array)
    np.testing.assert_array_equal(run.segment, run.workingResult.lesion_mask.array)
    assert run.defaultResult.threshold == pytest.approx(run.outputs.modelThreshold)


def test_outputs_equal_the_cli_outputs_for_the_same_file(run, cliOutputs):
    """The module (child process on the node's voxels) and the command line (on the file) give the same results."""
    import slicer

    assert cliOutputs["lesion_mask"].array.sum() > 0, "the test needs a non-empty mask to mean anything"
    np.testing.assert_array_equal(segmentArray(run.outputs, run.inputVolume), cliOutputs["lesion_mask"].array)
    # Equal up to the last bits of float32 (two runs of the model may sum in a different order).
    for name, node in (("anomaly_map", run.outputs.anomalyMapVolume),
                       ("pseudo_healthy", run.outputs.pseudoHealthyVolume)):
        np.testing.assert_allclose(slicer.util.arrayFromVolume(node), cliOutputs[name].array, rtol=0,
                                   atol=1e-6 * max(1.0, float(np.abs(cliOutputs[name].array).max())), err_msg=name)


def test_input_node_is_unchanged(run):
    import slicer

    np.testing.assert_array_equal(slicer.util.arrayFromVolume(run.inputVolume), run.voxelsBefore)
    np.testing.assert_array_equal(ijkToRas(run.inputVolume), run.ijkToRasBefore)
    assert list(run.inputVolume.GetAttributeNames()) == run.attributesBefore


def test_statistics_table_lists_each_lesion(run):
    result = run.workingResult
    columns = tableColumns(run.outputs.statisticsTable)
    assert list(columns) == ["Lesion", "Volume (mL)", "Peak score", "Centroid R", "Centroid A", "Centroid S"]
    assert len(result.lesions) > 0
    assert columns["Lesion"] == list(range(1, len(result.lesions) + 1))
    np.testing.assert_allclose(columns["Volume (mL)"], [lesion["volume_ml"] for lesion in result.lesions])
    np.testing.assert_allclose(columns["Peak score"], [lesion["peak_score"] for lesion in result.lesions])
    centroids = np.array([lesion["centroid_ras_mm"] for lesion in result.lesions])
    np.testing.assert_allclose(np.array([columns[f"Centroid {axis}"] for axis in "RAS"]).T, centroids)
    assert run.outputs.statisticsTable.GetColumnUnitLabel("Volume (mL)") == "mL"
    # The largest lesion's volume agrees with its voxels in the segment.
    voxelMl = np.prod(run.inputVolume.GetSpacing()) / 1000.0
    assert abs(sum(columns["Volume (mL)"]) - run.segment.sum() * voxelMl) < 1e-3 * len(result.lesions)


def test_display_subject_hierarchy_and_terminology(run):
    import slicer
    import vtk

    from DisAnatDetectLib import nodes

    outputs, inputVolume = run.outputs, run.inputVolume
    inputDisplay = inputVolume.GetDisplayNode()
    phiDisplay = outputs.pseudoHealthyVolume.GetDisplayNode()
    assert (phiDisplay.GetWindow(), phiDisplay.GetLevel()) == (inputDisplay.GetWindow(), inputDisplay.GetLevel())
    assert phiDisplay.GetColorNodeID() == inputDisplay.GetColorNodeID()
    anomalyDisplay = outputs.anomalyMapVolume.GetDisplayNode()
    assert anomalyDisplay.GetColorNodeID() in nodes.ANOMALY_COLOR_NODE_IDS
    assert slicer.mrmlScene.GetNodeByID(anomalyDisplay.GetColorNodeID()) is not None
    assert anomalyDisplay.GetWindowLevelMin() == 0.0
    assert anomalyDisplay.GetWindowLevelMax() >= run.defaultResult.threshold
    # Scores well under the current threshold are transparent (the threshold follows re-thresholding).
    assert anomalyDisplay.GetLowerThreshold() == pytest.approx(nodes.ANOMALY_VISIBLE_FRACTION_OF_THRESHOLD
                                                               * run.workingThreshold)
    assert anomalyDisplay.GetApplyThreshold()

    segment = outputs.lesionSegmentation.GetSegmentation().GetSegment(outputs.lesionSegmentId)
    assert segment.GetName() == "Lesion"
    terminology = vtk.reference("")
    assert segment.GetTag(segment.GetTerminologyEntryTagName(), terminology)
    assert "SCT^52988006^Lesion" in str(terminology)

    shNode = slicer.mrmlScene.GetSubjectHierarchyNode()
    for node in outputs.nodes():
        assert shNode.GetItemParent(shNode.GetItemByDataNode(node)) == run.studyItem, node.GetName()


def test_rethreshold_updates_segment_and_table_without_the_model(run, monkeypatch):
    from DisAnatDetectLib import DetectionProcess

    def noChild(self):
        raise AssertionError("re-thresholding started a detection process")

    monkeypatch.setattr(DetectionProcess, "start", noChild)
    working = run.workingResult
    inside = working.anomaly_map.array[working.lesion_mask.array > 0]
    stricter = float(np.percentile(inside, 75))  # keeps only the most anomalous quarter of the lesion voxels
    started = time.perf_counter()
    new = run.logic.setThreshold(run.inputVolume, stricter)
    seconds = time.perf_counter() - started
    assert seconds < RETHRESHOLD_SECONDS_MAX
    segment = segmentArray(run.outputs, run.inputVolume)
    np.testing.assert_array_equal(segment, new.lesion_mask.array)
    assert 0 < segment.sum() < run.segment.sum()
    # every lesion voxel lies above the growth level, and every lesion reaches above the new threshold
    assert not np.any((segment > 0) & (working.anomaly_map.array <= stricter * working.postprocess.grow_fraction))
    assert all(lesion["peak_score"] >= round(stricter, 4) for lesion in new.lesions)  # scores kept to 4 places
    assert run.outputs.statisticsTable.GetNumberOfRows() == len(new.lesions)

    # A fresh logic (as after reloading the scene) re-thresholds from the stored anomaly-map node alone.
    from DisAnatDetectLib import DisAnatDetectLogic

    other = DisAnatDetectLogic()
    assert other.resultFor(run.inputVolume).threshold == pytest.approx(stricter)
    other.setThreshold(run.inputVolume, run.workingThreshold)
    np.testing.assert_array_equal(segmentArray(run.outputs, run.inputVolume), run.segment)
    back = other.setThreshold(run.inputVolume, None)  # the model's own threshold again
    assert back.threshold == pytest.approx(run.defaultResult.threshold)
    np.testing.assert_array_equal(segmentArray(run.outputs, run.inputVolume), run.segmentAtDefault)

    # The first logic notices that another one has written since, and works from the node, not its memory.
    assert run.logic.resultFor(run.inputVolume).threshold == pytest.approx(run.defaultResult.threshold)
    run.logic.setThreshold(run.inputVolume, run.workingThreshold)  # as the other tests expect
    np.testing.assert_array_equal(segmentArray(run.outputs, run.inputVolume), run.segment)


def test_rerun_reuses_the_output_nodes(run):
    """A new logic, as a batch script would make, finds the input's outputs through their reference and refills them."""
    from DisAnatDetectLib import DisAnatDetectLogic

    nodesBefore = dataNodeIDs()
    again = DisAnatDetectLogic().applyResult(run.inputVolume, run.task.computed)
    assert [node.GetID() for node in again.nodes()] == [node.GetID() for node in run.outputs.nodes()]
    assert dataNodeIDs() == nodesBefore
    np.testing.assert_array_equal(segmentArray(again, run.inputVolume), run.segmentAtDefault)
    run.logic.setThreshold(run.inputVolume, run.workingThreshold)  # as the other tests expect
    np.testing.assert_array_equal(segmentArray(run.outputs, run.inputVolume), run.segment)


# --- transforms -------------------------------------------------------------------------------------------------------

def assertUnderTransformWithSegmentEqualTo(outputs, inputVolume, expectedMask):
    """Every output sits under the input's transform, on its grid; the segment, read in the input's own frame,
    holds exactly ``expectedMask``."""
    import slicer
    import vtk

    transformID = inputVolume.GetTransformNodeID()
    assert transformID is not None
    for node in (outputs.pseudoHealthyVolume, outputs.anomalyMapVolume, outputs.lesionSegmentation):
        assert node.GetTransformNodeID() == transformID, node.GetName()
    for node in (outputs.pseudoHealthyVolume, outputs.anomalyMapVolume):
        np.testing.assert_array_equal(ijkToRas(node), ijkToRas(inputVolume))
    segmentation = outputs.lesionSegmentation
    # The internal labelmap: the segment's own voxels and geometry, with no resampling by a reader.
    internal = slicer.vtkOrientedImageData()
    segmentation.GetBinaryLabelmapRepresentation(outputs.lesionSegmentId, internal)
    matrix = vtk.vtkMatrix4x4()
    internal.GetImageToWorldMatrix(matrix)
    np.testing.assert_allclose(slicer.util.arrayFromVTKMatrix(matrix), ijkToRas(inputVolume), atol=1e-9)
    np.testing.assert_array_equal(segmentArray(outputs, inputVolume), expectedMask)
    # The reference geometry is the input's grid in the segmentation's own frame (the two share the transform).
    geometry = segmentation.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    reference = slicer.vtkOrientedImageData()
    slicer.vtkSegmentationConverter.DeserializeImageGeometry(geometry, reference, False)
    reference.GetImageToWorldMatrix(matrix)
    np.testing.assert_allclose(slicer.util.arrayFromVTKMatrix(matrix), ijkToRas(inputVolume), atol=1e-6)


def test_linear_transform_child_run_matches_the_cli_on_the_untransformed_file(run, transformedRun, cliOutputs):
    """Input under a rotation and a translation, detected by process(waitForCompletion=True): the segment in the
    input's frame is the CLI's mask of the untransformed file, and every output follows the transform."""
    from DisAnatDetectLib import STAGES

    outputs = transformedRun.outputs
    assertUnderTransformWithSegmentEqualTo(outputs, transformedRun.inputVolume, cliOutputs["lesion_mask"].array)
    assert transformedRun.logic.processesStarted == 1
    assert [stage for stage in STAGES if stage in {stage for stage, _ in transformedRun.reports}] == list(STAGES)
    assert transformedRun.reports[-1] == ("done", 1.0)
    assert transformedRun.temporaryLeft == []


def test_linear_transform_moves_the_lesion_centroids_into_world(transformedRun):
    """The table's centroids are world positions: the input-frame centroids carried by the transform."""
    lesions = transformedRun.outputs.result.lesions
    assert lesions
    matrix = rotationMatrix(ROTATION_DEGREES, ROTATION_AXIS)
    matrix[:3, 3] = TRANSLATION_MM
    local = np.array([lesion["centroid_ras_mm"] for lesion in lesions])
    expected = (matrix[:3, :3] @ local.T).T + matrix[:3, 3]
    columns = tableColumns(transformedRun.outputs.statisticsTable)
    world = np.array([columns[f"Centroid {axis}"] for axis in "RAS"]).T
    np.testing.assert_allclose(world, expected, atol=1e-6)


def test_grid_transform_segment_lands_on_the_cli_mask(run, cliOutputs):
    """Input under a non-linear (grid) transform: the child sees the same voxels and geometry as without it, and
    the result lands on the same voxels in the input's frame, under the same transform."""
    import slicer
    import vtk
    import vtk.util.numpy_support

    from DisAnatDetectLib import DisAnatDetectLogic, nodes

    inputVolume = copyOf(run.inputVolume, "FLAIR under a grid transform")
    grid = slicer.vtkOrientedGridTransform()
    field = vtk.vtkImageData()
    field.SetDimensions(6, 6, 6)
    field.SetSpacing(60.0, 60.0, 60.0)
    field.SetOrigin(-150.0, -150.0, -150.0)
    displacements = np.random.default_rng(7).normal(0.0, 6.0, (6 * 6 * 6, 3))  # mm, smooth between nodes
    field.AllocateScalars(vtk.VTK_DOUBLE, 3)
    vtk.util.numpy_support.vtk_to_numpy(field.GetPointData().GetScalars())[:] = displacements
    grid.SetDisplacementGridData(field)
    transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLGridTransformNode", "grid")
    transform.SetAndObserveTransformFromParent(grid)
    inputVolume.SetAndObserveTransformNodeID(transform.GetID())
    assert not transform.IsLinear()

    # What the child would read: the node's own voxels and geometry, whatever its transform.
    fromNode, original = nodes.volumeFromNode(inputVolume), nodes.volumeFromNode(run.inputVolume)
    np.testing.assert_array_equal(fromNode.array, original.array)
    np.testing.assert_allclose(fromNode.affine, original.affine, atol=1e-12)

    logic = DisAnatDetectLogic()
    computed = run.task.computed
    working = type(computed)(computed.result.rethreshold(run.workingThreshold), computed.modelThreshold,
                             computed.seconds)
    outputs = logic.applyResult(inputVolume, working)
    assertUnderTransformWithSegmentEqualTo(outputs, inputVolume, cliOutputs["lesion_mask"].array)
    for node in (*outputs.nodes(), inputVolume, transform):
        slicer.mrmlScene.RemoveNode(node)


def test_failed_apply_removes_the_nodes_it_created(run):
    """A failure half-way through writing outputs leaves no half-made nodes behind."""
    import slicer

    from DisAnatDetectLib import DisAnatDetectLogic, nodes

    copy = nodes.addVolumeNode(nodes.volumeFromNode(run.inputVolume), "copy for a failing write")
    computed = run.task.computed
    wrongTable = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "not a table")
    nodesBefore = dataNodeIDs()
    with pytest.raises(AttributeError):
        DisAnatDetectLogic().applyResult(copy, computed, statisticsTable=wrongTable)
    assert dataNodeIDs() == nodesBefore
    slicer.mrmlScene.RemoveNode(wrongTable)
    assert DisAnatDetectLogic.outputsFor(copy) == {}
    slicer.mrmlScene.RemoveNode(copy)


def test_bad_inputs_are_refused_with_a_sentence(run):
    import slicer

    from disanatdetect.errors import InputError
    from DisAnatDetectLib import DisAnatDetectLogic

    logic = DisAnatDetectLogic()
    labelmap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    slicer.util.updateVolumeFromArray(labelmap, np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(InputError, match="label map"):
        logic.startDetection(labelmap)
    with pytest.raises(InputError, match="modality"):
        logic.startDetection(run.inputVolume, modality="DWI")
    with pytest.raises(InputError, match="device"):
        logic.startDetection(run.inputVolume, device="TPU")
    with pytest.raises(InputError, match="cannot be the input"):
        logic.applyResult(run.inputVolume, run.task.computed, pseudoHealthyVolume=run.inputVolume)
    with pytest.raises(InputError, match="no DisAnatDetect result"):
        logic.setThreshold(labelmap, 0.5)
    slicer.mrmlScene.RemoveNode(labelmap)


def test_show_results_and_3d(run):
    import slicer

    sliceComposite = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
    run.logic.showResults(run.inputVolume, run.outputs, overlayOpacity=0.4)
    assert sliceComposite.GetBackgroundVolumeID() == run.inputVolume.GetID()
    assert sliceComposite.GetForegroundVolumeID() == run.outputs.anomalyMapVolume.GetID()
    assert sliceComposite.GetForegroundOpacity() == pytest.approx(0.4)
    slicer.mrmlScene.RemoveNode(sliceComposite)

    segmentation = run.outputs.lesionSegmentation
    run.logic.setShow3D(segmentation, True)
    assert segmentation.GetSegmentation().ContainsRepresentation("Closed surface")
    assert segmentation.GetDisplayNode().GetVisibility3D()
    surface = segmentation.GetClosedSurfaceInternalRepresentation(run.outputs.lesionSegmentId)
    assert surface is not None and surface.GetNumberOfPoints() > 0
    run.logic.setShow3D(segmentation, False)
    assert not segmentation.GetDisplayNode().GetVisibility3D()


def test_parameter_node_is_a_scene_singleton(slicerApp):
    from DisAnatDetectLib import MODULE_NAME, DisAnatDetectLogic

    first = DisAnatDetectLogic().getParameterNode()
    second = DisAnatDetectLogic().getParameterNode()
    assert first is not None and first.GetID() == second.GetID()
    assert first.GetAttribute("ModuleName") == MODULE_NAME
    assert first.IsA("vtkMRMLScriptedModuleNode")


def test_choices_and_stages_agree_with_the_core():
    from disanatdetect.pipeline import STAGES
    from disanatdetect.synth.contrast import MODALITIES
    from DisAnatDetectLib import parameters

    assert parameters.STAGES == STAGES
    assert len(parameters.STAGE_WEIGHTS) == len(STAGES)
    assert [parameters.coreModality(choice) for choice in parameters.MODALITY_CHOICES] == ["auto", *MODALITIES]
    assert [parameters.coreDevice(choice) for choice in parameters.DEVICE_CHOICES] == ["auto", "cpu", "cuda"]
    assert parameters.overallProgress("preparing", 0.0) == 0
    assert parameters.overallProgress("post-processing", 1.0) == 100


def test_adapter_imports_neither_qt_nor_torch():
    """The adapter loads on a bare MRML install: no Qt at all, and torch only once a detection runs."""
    from slicer_scene import MODULE_DIR

    code = (
        "import sys\n"
        "for blocked in ('qt', 'ctk', 'PythonQt', 'torch'):\n"
        "    sys.modules[blocked] = None  # importing a blocked name raises ImportError\n"
        f"sys.path.insert(0, {str(MODULE_DIR)!r})\n"
        "import DisAnatDetectLib, DisAnatDetectLib.nodes, DisAnatDetectLib.dependencies, DisAnatDetectLib.process\n"
        "print('ok')\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().endswith("ok")
