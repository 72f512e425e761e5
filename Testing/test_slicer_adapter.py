"""DisAnatDetectLib on a real MRML scene (slicer-core), with a really trained small model, on a real FLAIR scan.

One background run (the GUI's path) and one scripted re-run of the whole pipeline are shared by the tests of this
module; the CLI runs once more for the equality check. Everything else works on their results.

The small test model is barely trained, so its label-free threshold may find nothing on this scan. The tests
therefore work at a threshold taken from the run's own anomaly map (:data:`WORKING_PERCENTILE`), which always gives
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
# How long a background run may take here before the test gives up waiting (a loaded 2-core machine is slow).
RUN_TIMEOUT_SECONDS = 600.0


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


@pytest.fixture(scope="module")
def run(slicerApp, countingDetector, flairPath):
    """The FLAIR scan loaded as Slicer loads it, filed under a study, and detected once in the background."""
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

    logic = DisAnatDetectLogic(detector=countingDetector)
    callsBefore = countingDetector.calls
    task = logic.startDetection(inputVolume, modality="FLAIR", device="CPU")
    progress = []
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while not task.done and time.monotonic() < deadline:
        progress.append((task.stage, task.percent))
        time.sleep(0.05)
    assert task.done, "the background detection did not finish in time"
    state.outputs = logic.finishDetection(task)
    state.progress = progress
    state.task = task
    state.logic = logic
    state.modelCalls = countingDetector.calls - callsBefore
    state.defaultResult = state.outputs.result  # at the model's label-free threshold
    state.segmentAtDefault = segmentArray(state.outputs, inputVolume)
    state.workingThreshold = workingThreshold(state.defaultResult.anomaly_map.array)
    state.workingResult = logic.setThreshold(inputVolume, state.workingThreshold)
    state.segment = segmentArray(state.outputs, inputVolume)
    return state


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

def test_background_run_reports_the_pipeline_stages(run):
    stages = [stage for stage, _ in run.progress]
    from DisAnatDetectLib import STAGES

    seen = [stage for stage in STAGES if stage in stages]
    assert seen[:1] == ["preparing"] and "reconstructing" in seen, stages
    assert [STAGES.index(stage) for stage in stages] == sorted(STAGES.index(stage) for stage in stages)
    percents = [percent for _, percent in run.progress]
    assert percents == sorted(percents) and 0 <= percents[0] and percents[-1] <= 100
    assert run.modelCalls == 1


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


def test_segmentation_equals_the_cli_lesion_mask(run, flairPath, tiny_bundle, tmp_path):
    """The module and the command line give the same lesion mask for the same file (file vs node geometry)."""
    from disanatdetect.cli import main
    from disanatdetect.io import read_volume

    out = tmp_path / "cli"
    assert main(["detect", str(flairPath), "--out", str(out), "--model", str(tiny_bundle), "--device", "cpu",
                 "--modality", "flair", "--threshold", repr(run.workingThreshold), "--quiet"]) == 0
    cliMask = read_volume(out / "lesion_mask.nii.gz")
    assert cliMask.array.sum() > 0, "the test needs a non-empty mask to mean anything"
    np.testing.assert_array_equal(segmentArray(run.outputs, run.inputVolume), cliMask.array)
    # Equal up to the last bits of float32 (two runs of the model may sum in a different order).
    np.testing.assert_allclose(run.defaultResult.anomaly_map.array, read_volume(out / "anomaly_map.nii.gz").array,
                               rtol=0, atol=1e-6)


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


def test_rethreshold_updates_segment_and_table_without_the_model(run, countingDetector):
    working = run.workingResult
    callsBefore = countingDetector.calls
    inside = working.anomaly_map.array[working.lesion_mask.array > 0]
    stricter = float(np.percentile(inside, 75))  # keeps only the most anomalous quarter of the lesion voxels
    started = time.perf_counter()
    new = run.logic.setThreshold(run.inputVolume, stricter)
    seconds = time.perf_counter() - started
    assert countingDetector.calls == callsBefore
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

    other = DisAnatDetectLogic(detector=countingDetector)
    assert other.resultFor(run.inputVolume).threshold == pytest.approx(stricter)
    other.setThreshold(run.inputVolume, run.workingThreshold)
    np.testing.assert_array_equal(segmentArray(run.outputs, run.inputVolume), run.segment)
    back = other.setThreshold(run.inputVolume, None)  # the model's own threshold again
    assert back.threshold == pytest.approx(run.defaultResult.threshold)
    np.testing.assert_array_equal(segmentArray(run.outputs, run.inputVolume), run.segmentAtDefault)
    assert countingDetector.calls == callsBefore

    # The first logic notices that another one has written since, and works from the node, not its memory.
    assert run.logic.resultFor(run.inputVolume).threshold == pytest.approx(run.defaultResult.threshold)
    run.logic.setThreshold(run.inputVolume, run.workingThreshold)  # as the other tests expect
    np.testing.assert_array_equal(segmentArray(run.outputs, run.inputVolume), run.segment)
    assert countingDetector.calls == callsBefore


def test_rerun_reuses_the_output_nodes(run, countingDetector):
    from DisAnatDetectLib import DisAnatDetectLogic

    nodesBefore = dataNodeIDs()
    callsBefore = countingDetector.calls
    # A new logic, as a batch script would make: the outputs are found through their reference to the input.
    again = DisAnatDetectLogic(detector=countingDetector).process(run.inputVolume, modality="FLAIR", device="CPU",
                                                                  threshold=run.workingThreshold)
    assert countingDetector.calls == callsBefore + 1
    assert [node.GetID() for node in again.nodes()] == [node.GetID() for node in run.outputs.nodes()]
    assert dataNodeIDs() == nodesBefore
    np.testing.assert_array_equal(segmentArray(again, run.inputVolume), run.segment)


def test_cancel_leaves_the_scene_as_it_was(run, countingDetector):
    import slicer

    from disanatdetect.pipeline import Cancelled
    from DisAnatDetectLib import DisAnatDetectLogic, nodes

    copy = nodes.addVolumeNode(nodes.volumeFromNode(run.inputVolume), "copy without outputs")
    nodesBefore = dataNodeIDs()
    task = DisAnatDetectLogic(detector=countingDetector).startDetection(copy, modality="FLAIR")
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while task.stage != "reconstructing" and not task.done and time.monotonic() < deadline:
        time.sleep(0.02)
    assert task.stage == "reconstructing" and not task.done
    task.cancel()
    assert task.wait(RUN_TIMEOUT_SECONDS)
    assert isinstance(task.error, Cancelled)
    with pytest.raises(Cancelled):
        DisAnatDetectLogic(detector=countingDetector).finishDetection(task)
    assert dataNodeIDs() == nodesBefore
    assert DisAnatDetectLogic.outputsFor(copy) == {}
    np.testing.assert_array_equal(segmentArray(run.outputs, run.inputVolume), run.segment)
    slicer.mrmlScene.RemoveNode(copy)


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
        "import DisAnatDetectLib, DisAnatDetectLib.nodes, DisAnatDetectLib.dependencies\n"
        "print('ok')\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().endswith("ok")
