"""DisAnatDetect: unsupervised detection of brain lesions in MRI of any contrast, as a 3D Slicer module.

This file is the GUI only: the module description, the widget (wiring of ``Resources/UI/DisAnatDetect.ui`` to a
parameter node, a detection child process polled by a timer, progress and cancel) and the self-test. Everything that touches
the scene lives in ``DisAnatDetectLib`` (no Qt), the method in the ``disanatdetect`` package (no Slicer).
"""

import logging
import time
import traceback
from typing import Annotated, Optional

import qt
import vtk

import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

import DisAnatDetectLib
from DisAnatDetectLib import (DEFAULT_OVERLAY_OPACITY, DEVICE_CHOICES, INITIAL_THRESHOLD, MODALITY_CHOICES,
                              THRESHOLD_RANGE)
from DisAnatDetectLib import dependencies

README_URL = "https://github.com/disanatdetect/SlicerDisAnatDetect#readme"
CITATION = ("Yang et al., Unsupervised Anomaly Detection in Brain MRI via Disentangled Anatomy Learning, "
            "Medical Image Analysis 109 (2026) 103922")

# How often the widget looks at the running detection's child process (reads its progress lines); often enough for a
# smooth progress bar, rare enough to cost nothing.
POLL_INTERVAL_MS = 200
# A dragged threshold slider sends many values; re-threshold once it rests this long.
RETHRESHOLD_DELAY_MS = 150

# Packages of this module besides this file; a developer reload re-imports them.
RELOADED_PACKAGES = ("DisAnatDetectLib", "disanatdetect")

STAGE_LABELS = {
    "preparing": _("Preparing"),
    "registering": _("Registering to the atlas"),
    "reconstructing": _("Reconstructing the healthy brain"),
    "post-processing": _("Post-processing"),
}


#
# DisAnatDetect
#


class DisAnatDetect(ScriptedLoadableModule):
    """Module description shown in Slicer (see ``ScriptedLoadableModule``)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DisAnatDetect")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["DisAnatDetect developers"]
        self.parent.helpText = _("""
Finds lesions in a brain MRI of any contrast (T1, T1c, T2, FLAIR, PD) without having seen lesions in training.
The module reconstructs a <b>pseudo-healthy</b> image of the scan, shows where the scan departs from it as an
<b>anomaly map</b>, and thresholds that into an editable <b>lesion segmentation</b> with a statistics table.
Choose the input volume and press <b>Detect anomalies</b>; move the threshold afterwards to re-threshold at once.
Research software, not for clinical decisions.
See the <a href="{readme}">documentation</a> for the walkthrough, batch scripting and troubleshooting.
""").format(readme=README_URL)
        self.parent.acknowledgementText = _("""
Developed by the DisAnatDetect developers. The method follows the paper by Yang et al. (an independent
implementation). If you use DisAnatDetect in your work, please cite: {citation}.
The brain atlas priors are derived from the MNI ICBM152 2009a template,
(C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill University.
""").format(citation=CITATION)
        # Sample Data's module may not be loaded yet: register the sample scan once Slicer has started.
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData() -> None:
    """Offer the walkthrough's skull-stripped FLAIR with a glioma in the Sample Data module (checked by SHA-256)."""
    import os

    import SampleData

    from DisAnatDetectLib import sampledata

    resources = os.path.join(os.path.dirname(__file__), "Resources")
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category=sampledata.SAMPLE_CATEGORY,
        sampleName=sampledata.SAMPLE_NAME,
        thumbnailFileName=os.path.join(resources, sampledata.SAMPLE_THUMBNAIL),
        uris=sampledata.SAMPLE_URL,
        fileNames=sampledata.SAMPLE_FILE_NAME,
        checksums=sampledata.SAMPLE_CHECKSUM,
        nodeNames=sampledata.SAMPLE_NODE_NAME,
    )


#
# DisAnatDetectParameterNode
#


@parameterNodeWrapper
class DisAnatDetectParameterNode:
    """The module's state, saved with the scene; each field is bound to the widget whose SlicerParameterName is the
    field's name in ``Resources/UI/DisAnatDetect.ui``. Output nodes left empty are created on the first run and then
    reused."""

    inputVolume: vtkMRMLScalarVolumeNode
    modality: Annotated[str, Choice(MODALITY_CHOICES)] = "auto"
    device: Annotated[str, Choice(DEVICE_CHOICES)] = "auto"
    threshold: Annotated[float, WithinRange(*THRESHOLD_RANGE)] = INITIAL_THRESHOLD
    useModelThreshold: bool = True
    overlayOpacity: Annotated[float, WithinRange(0.0, 1.0)] = DEFAULT_OVERLAY_OPACITY
    pseudoHealthyVolume: vtkMRMLScalarVolumeNode
    anomalyMapVolume: vtkMRMLScalarVolumeNode
    lesionSegmentation: vtkMRMLSegmentationNode
    statisticsTable: vtkMRMLTableNode


OUTPUT_PARAMETERS = ("pseudoHealthyVolume", "anomalyMapVolume", "lesionSegmentation", "statisticsTable")


def _sliderValue(threshold: float) -> float:
    """A threshold clipped to the slider's range (the parameter node refuses values outside it)."""
    return min(max(float(threshold), THRESHOLD_RANGE[0]), THRESHOLD_RANGE[1])


#
# DisAnatDetectWidget
#


class DisAnatDetectWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: binds the .ui to the parameter node and runs detections without blocking Slicer."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._task = None
        self._taskOutputNodes = {}
        self._discardTask = False
        self._lastInputVolumeID = None
        self._pollTimer = None
        self._rethresholdTimer = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DisAnatDetect.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        # The node selectors get the scene through the .ui's mrmlSceneChanged connections.
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.ui.statisticsTableView.setMRMLScene(slicer.mrmlScene)
        self.ui.progressBar.hide()
        self.ui.cancelButton.hide()

        self.logic = DisAnatDetectLogic()

        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(POLL_INTERVAL_MS)
        self._pollTimer.connect("timeout()", self._onPoll)
        self._rethresholdTimer = qt.QTimer()
        self._rethresholdTimer.setSingleShot(True)
        self._rethresholdTimer.setInterval(RETHRESHOLD_DELAY_MS)
        self._rethresholdTimer.connect("timeout()", self._applyThreshold)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.checkDependenciesButton.connect("clicked(bool)", self.onCheckDependenciesButton)
        # Typed slots: connected here rather than in the .ui (Python converts the node argument).
        self.ui.lesionSegmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)",
                                                   self.ui.segmentationShow3DButton.setSegmentationNode)
        self.ui.statisticsTableSelector.connect("currentNodeChanged(vtkMRMLNode*)",
                                                self.ui.statisticsTableView.setMRMLTableNode)

        self.initializeParameterNode()

    def onReload(self) -> None:
        """Developer reload: the adapter (``DisAnatDetectLib``) and the core (``disanatdetect``) packages are
        reloaded too, so that edits to any of them take effect without restarting Slicer. Their modules are dropped
        from ``sys.modules``; reloading this file imports them afresh, each after what it imports."""
        import sys

        self._stopRun()
        for name in list(sys.modules):
            if name.split(".")[0] in RELOADED_PACKAGES:
                del sys.modules[name]
        ScriptedLoadableModuleWidget.onReload(self)

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self._stopRun()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        # A running detection goes on (its timer belongs to this widget); only the GUI binding is released.
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event) -> None:
        self._stopRun()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    # --- parameter node -----------------------------------------------------------------------------------------------

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode and not firstVolumeNode.IsA("vtkMRMLLabelMapVolumeNode"):
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode: Optional[DisAnatDetectParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        # The outputs saved with this parameter node belong to its input: keep them (see _onInputVolumeChanged).
        inputVolume = self._parameterNode.inputVolume if self._parameterNode else None
        self._lastInputVolumeID = inputVolume.GetID() if inputVolume else None
        if self._parameterNode:
            # connectGui binds every widget that has a SlicerParameterName property.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        parameterNode = self._parameterNode
        inputVolume = parameterNode.inputVolume if parameterNode else None
        inputVolumeID = inputVolume.GetID() if inputVolume else None
        if inputVolumeID != self._lastInputVolumeID:
            self._lastInputVolumeID = inputVolumeID
            self._onInputVolumeChanged(inputVolume)
        self._updateButtons()
        if parameterNode and self._task is None:
            self._rethresholdTimer.start()  # no-op for the logic when the threshold did not change

    def _onInputVolumeChanged(self, inputVolume) -> None:
        """Show the outputs of the new input's earlier run, or "create new": never another input's outputs."""
        parameterNode = self._parameterNode
        if parameterNode is None or self._task is not None:
            return
        previous = self.logic.outputsFor(inputVolume)
        with slicer.util.NodeModify(parameterNode):
            for name in OUTPUT_PARAMETERS:
                setattr(parameterNode, name, previous.get(name))
        result = self.logic.resultFor(inputVolume)
        self.ui.statusLabel.text = self.logic.resultSummary(result) if result else ""
        self.ui.statisticsTableView.setMRMLTableNode(previous.get("statisticsTable"))
        self.ui.segmentationShow3DButton.setSegmentationNode(previous.get("lesionSegmentation"))

    def _updateButtons(self) -> None:
        parameterNode = self._parameterNode
        running = self._task is not None
        hasInput = bool(parameterNode and parameterNode.inputVolume)
        self.ui.applyButton.enabled = hasInput and not running
        if running:
            self.ui.applyButton.toolTip = _("A detection is running.")
        elif hasInput:
            self.ui.applyButton.toolTip = _("Reconstruct the healthy brain and detect anomalies in the input.")
        else:
            self.ui.applyButton.toolTip = _("Select an input volume first.")
        self.ui.thresholdSliderWidget.enabled = bool(parameterNode) and not parameterNode.useModelThreshold
        # Inputs and outputs stay as they were when the run started.
        self.ui.inputsCollapsibleButton.enabled = not running
        self.ui.outputsCollapsibleButton.enabled = not running

    # --- dependencies -------------------------------------------------------------------------------------------------

    def ensureDependencies(self) -> bool:
        """PyTorch through the PyTorch extension, the rest with pip, after naming every package and asking once;
        True when all are present. Never installs while Slicer runs its tests."""
        missing = dependencies.missingPackagesDescription()
        if not missing:
            return True
        if slicer.app.testingEnabled():
            logging.warning(f"DisAnatDetect: not installing {', '.join(missing)} while testing.")
            return False
        question = _("DisAnatDetect needs these Python packages, which are not installed yet:\n\n{packages}\n\n"
                     "Install them now (this needs the internet once)?").format(
            packages="\n".join(f"  {package}" for package in missing))
        if not slicer.util.confirmOkCancelDisplay(question, _("Install Python packages")):
            return False
        with slicer.util.tryWithErrorDisplay(_("Failed to install the Python packages DisAnatDetect needs."),
                                             waitCursor=True):
            self._installDependencies()
        still = dependencies.missingPackagesDescription()
        if still:
            slicer.util.errorDisplay(_("DisAnatDetect still lacks: {packages}.").format(packages=", ".join(still)))
        return not still

    @staticmethod
    def _installDependencies() -> None:
        """Install what :func:`dependencies.missingPackagesDescription` named; the user has agreed to all of it."""
        if not dependencies.torchMeetsRequirement():
            try:
                import PyTorchUtils
            except ModuleNotFoundError:
                raise RuntimeError(_("DisAnatDetect needs the PyTorch extension. Install \"PyTorch\" from the "
                                     "Extensions Manager, restart Slicer and try again.")) from None
            # PyTorchUtils installs (or upgrades to) the build that fits this computer's GPU, or the CPU one.
            torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
                askConfirmation=False, torchVersionRequirement=dependencies.TORCH_REQUIREMENT)
            if torch is None:
                raise RuntimeError(_("PyTorch {requirement} could not be installed.").format(
                    requirement=dependencies.TORCH_REQUIREMENT))
        missing = dependencies.missingPipRequirements()
        if missing:
            slicer.util.pip_install(missing)

    def onCheckDependenciesButton(self) -> None:
        if self.ensureDependencies():
            slicer.util.infoDisplay(_("PyTorch and all other Python packages DisAnatDetect needs are installed."))

    # --- running ------------------------------------------------------------------------------------------------------

    def onApplyButton(self) -> None:
        """Start a detection in a child process; the poll timer shows its progress and applies the result."""
        parameterNode = self._parameterNode
        if self._task is not None or parameterNode is None or not parameterNode.inputVolume:
            return
        if not self.ensureDependencies():
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to start the detection."), waitCursor=True):
            threshold = None if parameterNode.useModelThreshold else parameterNode.threshold
            self._task = self.logic.startDetection(parameterNode.inputVolume, parameterNode.modality,
                                                   parameterNode.device, threshold)
            self._taskOutputNodes = {name: getattr(parameterNode, name) for name in OUTPUT_PARAMETERS}
            self._discardTask = False
            self.ui.statusLabel.text = ""
            self.ui.progressBar.value = 0
            self.ui.progressBar.show()
            self.ui.cancelButton.enabled = True
            self.ui.cancelButton.show()
            self._updateButtons()
            self._pollTimer.start()

    def onCancelButton(self) -> None:
        """End the child process (and its children) at once; the next poll reports the cancellation."""
        if self._task is not None:
            self._task.cancel()
            self.ui.cancelButton.enabled = False
            self.ui.progressBar.setFormat(_("Cancelling..."))

    def _stopRun(self) -> None:
        """Cancel a running detection and drop its result silently (scene closing, module reloading)."""
        if self._task is not None:
            self._discardTask = True
            self._task.cancel()

    def _onPoll(self) -> None:
        task = self._task
        if task is None:
            self._pollTimer.stop()
            return
        task.poll()  # reads the child's new progress lines; once it has ended, its output files
        if not task.cancelRequested:
            self.ui.progressBar.value = task.percent
            self.ui.progressBar.setFormat(f"{STAGE_LABELS.get(task.stage, task.stage)}: %p%")
        if not task.done:
            return
        self._pollTimer.stop()
        self._task = None
        self.ui.progressBar.hide()
        self.ui.cancelButton.hide()
        self._updateButtons()
        if not self._discardTask:
            self._finishRun(task)

    def _finishRun(self, task) -> None:
        """Put the finished child's result into the scene, or report why there is none (one sentence, the child's
        stderr under "Show details")."""
        try:
            outputs = self.logic.finishDetection(task, **self._taskOutputNodes)
        except DisAnatDetectLib.DetectionCancelled:
            self.ui.statusLabel.text = _("Cancelled; the scene was left as it was.")
            return
        except Exception as error:  # noqa: BLE001 - every failure is shown to the user with its details
            details = getattr(error, "details", "") or task.errorDetails or traceback.format_exc()
            logging.error(details)
            self.ui.statusLabel.text = _("Failed: {error}").format(error=error)
            slicer.util.errorDisplay(_("The detection failed: {error}").format(error=error), detailedText=details)
            return
        parameterNode = self._parameterNode
        inputVolume = slicer.mrmlScene.GetNodeByID(task.inputVolumeID)
        currentInput = parameterNode.inputVolume if parameterNode is not None else None
        if currentInput is not None and currentInput.GetID() == task.inputVolumeID:
            # Record the outputs so that the next run reuses them, and show the threshold used. (If a script chose
            # another input meanwhile, its selectors are left alone: they must not point at this input's nodes.)
            with slicer.util.NodeModify(parameterNode):
                for name, node in zip(OUTPUT_PARAMETERS, outputs.nodes()):
                    setattr(parameterNode, name, node)
                if parameterNode.useModelThreshold:
                    parameterNode.threshold = _sliderValue(outputs.result.threshold)
        opacity = parameterNode.overlayOpacity if parameterNode else DEFAULT_OVERLAY_OPACITY
        self.logic.showResults(inputVolume, outputs, opacity)
        self.ui.segmentationShow3DButton.setSegmentationNode(outputs.lesionSegmentation)
        self.ui.statisticsTableView.setMRMLTableNode(outputs.statisticsTable)
        self.ui.modelInfoLabel.text = _("version {version}").format(version=outputs.result.model_version)
        self.ui.statusLabel.text = _("{summary}; {seconds:.0f} s.").format(
            summary=self.logic.resultSummary(outputs.result), seconds=task.computed.seconds)

    # --- threshold ----------------------------------------------------------------------------------------------------

    def _applyThreshold(self) -> None:
        """Re-threshold the current input's stored anomaly map (no model call) when the threshold settings changed."""
        parameterNode = self._parameterNode
        if parameterNode is None or self._task is not None or not parameterNode.inputVolume:
            return
        inputVolume = parameterNode.inputVolume
        modelThreshold = self.logic.modelThresholdFor(inputVolume)
        if modelThreshold is None:
            return  # no result yet: the slider sets the threshold of the next run
        wanted = modelThreshold if parameterNode.useModelThreshold else parameterNode.threshold
        if self.logic.resultFor(inputVolume).threshold != wanted:
            with slicer.util.tryWithErrorDisplay(_("Failed to re-threshold the anomaly map."), waitCursor=True):
                result = self.logic.setThreshold(inputVolume, wanted)
                self.ui.statusLabel.text = self.logic.resultSummary(result)
        if parameterNode.useModelThreshold:
            parameterNode.threshold = _sliderValue(wanted)  # show the model's threshold on the (disabled) slider


#
# DisAnatDetectLogic
#


class DisAnatDetectLogic(DisAnatDetectLib.DisAnatDetectLogic, ScriptedLoadableModuleLogic):
    """The adapter's logic (``DisAnatDetectLib.DisAnatDetectLogic``; all computation and scene updates) as a Slicer
    module logic, with the typed parameter node. Use it from scripts::

        import DisAnatDetect
        outputs = DisAnatDetect.DisAnatDetectLogic().process(volumeNode, modality="FLAIR")
    """

    def __init__(self, **options) -> None:
        """``options``: ``modelPath``, ``python``, ``temporaryRoot`` as for ``DisAnatDetectLib.DisAnatDetectLogic``."""
        ScriptedLoadableModuleLogic.__init__(self)
        DisAnatDetectLib.DisAnatDetectLogic.__init__(self, **options)

    def getParameterNode(self) -> DisAnatDetectParameterNode:
        return DisAnatDetectParameterNode(super().getParameterNode())


#
# DisAnatDetectTest
#


class DisAnatDetectTest(ScriptedLoadableModuleTest):
    """Self-test in Slicer (Reload and Test, or ctest): the logic on a synthetic case with an exact lesion mask, the
    module panel end to end, and the logic on the MRBrainTumor1 sample when skull-on scans can be processed."""

    # A synthetic FLAIR with a tumour (deterministic for this seed; no download).
    SYNTHETIC_SEED = 1
    # The lesion found must overlap the painted one and be of a comparable size (the model is unsupervised and the
    # threshold label-free, so the bounds are loose).
    MIN_DICE = 0.3
    VOLUME_RATIO_RANGE = (0.25, 4.0)
    # The longest a detection may take here before the test stops it and fails (a CPU-only build machine is slow).
    RUN_TIMEOUT_SECONDS = 900.0

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        # Extension build machines have no PyTorch (and the self-test must never install it): skip with the reason.
        reason = dependencies.detectionUnavailableReason()
        if reason:
            self.skipTest(reason)
        self.setUp()
        self.test_SyntheticCase()
        self.setUp()
        self.test_Widget()
        self.setUp()
        self.test_MRBrainTumor1()

    def _syntheticCase(self):
        """A synthetic FLAIR with a tumour as a volume node, and the case (with its exact lesion mask)."""
        from disanatdetect.atlas import load_atlas
        from disanatdetect.synth.cases import synthetic_case
        from DisAnatDetectLib import nodes

        case = synthetic_case(load_atlas(), self.SYNTHETIC_SEED, "flair", "tumour")
        return nodes.addVolumeNode(case.image, "SyntheticFLAIR"), case

    def _assertOutputs(self, inputVolume, outputs):
        import numpy as np

        from DisAnatDetectLib import nodes

        self.assertTrue(outputs.pseudoHealthyVolume.IsA("vtkMRMLScalarVolumeNode"))
        self.assertTrue(outputs.anomalyMapVolume.IsA("vtkMRMLScalarVolumeNode"))
        self.assertTrue(outputs.lesionSegmentation.IsA("vtkMRMLSegmentationNode"))
        self.assertTrue(outputs.statisticsTable.IsA("vtkMRMLTableNode"))
        for volumeNode in (outputs.pseudoHealthyVolume, outputs.anomalyMapVolume):
            self.assertEqual(volumeNode.GetImageData().GetDimensions(), inputVolume.GetImageData().GetDimensions())
            np.testing.assert_array_equal(nodes.ijkToRasArray(volumeNode), nodes.ijkToRasArray(inputVolume))
        segmentation = outputs.lesionSegmentation.GetSegmentation()
        self.assertIsNotNone(segmentation.GetSegment(outputs.lesionSegmentId))
        self.assertEqual(outputs.statisticsTable.GetNumberOfRows(), len(outputs.result.lesions))

    def test_SyntheticCase(self):
        import numpy as np

        self.delayDisplay("Synthetic FLAIR with a tumour")
        inputVolume, case = self._syntheticCase()
        before = slicer.util.arrayFromVolume(inputVolume).copy()
        logic = DisAnatDetectLogic()
        outputs = logic.process(inputVolume, modality="FLAIR", device="auto", timeout=self.RUN_TIMEOUT_SECONDS)
        self._assertOutputs(inputVolume, outputs)
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(inputVolume), before)

        found = slicer.util.arrayFromSegmentBinaryLabelmap(outputs.lesionSegmentation, outputs.lesionSegmentId,
                                                           inputVolume) > 0
        truth = case.lesion_mask.array > 0
        dice = 2.0 * (found & truth).sum() / max(1, found.sum() + truth.sum())
        ratio = found.sum() / max(1, truth.sum())
        self.assertGreaterEqual(dice, self.MIN_DICE)
        self.assertTrue(self.VOLUME_RATIO_RANGE[0] <= ratio <= self.VOLUME_RATIO_RANGE[1], ratio)

        # Re-running reuses the nodes; a stricter threshold shrinks the lesion without a model call.
        nodeIDs = [node.GetID() for node in outputs.nodes()]
        again = logic.process(inputVolume, modality="FLAIR", timeout=self.RUN_TIMEOUT_SECONDS)
        self.assertEqual([node.GetID() for node in again.nodes()], nodeIDs)
        stricter = logic.setThreshold(inputVolume, again.result.threshold * 1.5)
        self.assertLessEqual(stricter.lesion_volume_ml, again.result.lesion_volume_ml)
        self.delayDisplay(f"Dice {dice:.2f}, volume ratio {ratio:.2f}: test passed")

    def test_Widget(self):
        self.delayDisplay("The module panel, end to end")
        inputVolume, _ = self._syntheticCase()
        slicer.util.selectModule("DisAnatDetect")
        widget = slicer.util.getModuleWidget("DisAnatDetect")
        parameterNode = widget.logic.getParameterNode()
        parameterNode.inputVolume = inputVolume
        parameterNode.modality = "FLAIR"
        self.assertTrue(widget.ui.applyButton.enabled)
        widget.onApplyButton()
        self.assertFalse(widget.ui.applyButton.enabled)
        deadline = time.monotonic() + self.RUN_TIMEOUT_SECONDS
        while widget._task is not None and time.monotonic() < deadline:
            slicer.app.processEvents()  # the poll timer reads the child's progress and finishes the run
            time.sleep(POLL_INTERVAL_MS / 1000.0)
        if widget._task is not None:
            widget.onCancelButton()
            self.fail(f"the detection did not finish within {self.RUN_TIMEOUT_SECONDS:.0f} s")
        self.assertIsNotNone(parameterNode.lesionSegmentation)
        self.assertIsNotNone(parameterNode.statisticsTable)
        self.assertIsNotNone(parameterNode.lesionSegmentation.GetSegmentation().GetSegment("Lesion"))
        self.assertTrue(widget.ui.applyButton.enabled)
        self.delayDisplay("Test passed")

    def test_MRBrainTumor1(self):
        import numpy as np
        import SampleData

        self.delayDisplay("MRBrainTumor1 sample (downloaded on first use)")
        inputVolume = SampleData.downloadSample("MRBrainTumor1")
        before = slicer.util.arrayFromVolume(inputVolume).copy()
        outputs = DisAnatDetectLogic().process(inputVolume, modality="T1c", timeout=self.RUN_TIMEOUT_SECONDS)
        self._assertOutputs(inputVolume, outputs)
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(inputVolume), before)
        # Between nothing and the whole head: only sanity is asserted on this sample (no reference mask).
        headMl = (before > 0).sum() * np.prod(inputVolume.GetSpacing()) / 1000.0
        self.assertGreater(outputs.result.lesion_volume_ml, 0.0)
        self.assertLess(outputs.result.lesion_volume_ml, headMl)
        self.delayDisplay("Test passed")
