"""The module's logic: a scan node in, pseudo-healthy volume, anomaly map, lesion segmentation and table out.

The model never runs in Slicer's own process: :meth:`DisAnatDetectLogic.startDetection` writes a copy of the input
to a temporary file and starts ``python -m disanatdetect detect ... --progress json`` with Slicer's Python as a child
process (:class:`.process.DetectionProcess`), which returns at once. The GUI polls it from a timer; a script waits for
it (:meth:`DisAnatDetectLogic.process`). Only when the child has finished does
:meth:`DisAnatDetectLogic.finishDetection` read its output files and write them into output nodes, so a cancelled or
failed run leaves the scene as it was; nodes it created are removed again if writing fails half-way.

:meth:`DisAnatDetectLogic.setThreshold` re-thresholds the stored anomaly map without calling the model.

This class does not derive from Slicer's ``ScriptedLoadableModuleLogic``: that class lives in a module that imports
Qt, and this adapter must run on a bare MRML scene. It implements the same parameter-node contract instead, and the
GUI module's ``DisAnatDetectLogic`` combines both.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import slicer

from disanatdetect.errors import InputError

from . import nodes
from .parameters import MODULE_NAME, coreDevice, coreModality
from .process import ComputedResult, DetectionFailed, DetectionProcess

ProgressCallback = Callable[[str, float], None]

# Results kept in memory for instant re-thresholding (each holds a few volumes); older ones are rebuilt from their
# anomaly-map node when needed, so a batch over many scans does not accumulate memory.
RESULTS_KEPT = 4
# Ties an in-memory result to its latest write into the anomaly-map node: renewed on every write, so a result is
# trusted only while no one else (another logic, a cleared scene reusing node IDs) has written there since.
RESULT_TOKEN_ATTRIBUTE = nodes.RESULT_ATTRIBUTE_PREFIX + "ResultToken"
# Pause between looks at the child while a script waits for it.
WAIT_POLL_SECONDS = 0.1


@dataclass
class DetectionOutputs:
    """The output nodes of one input, and the result they show."""

    pseudoHealthyVolume: object
    anomalyMapVolume: object
    lesionSegmentation: object
    statisticsTable: object
    result: object
    modelThreshold: float

    def nodes(self) -> tuple:
        return (self.pseudoHealthyVolume, self.anomalyMapVolume, self.lesionSegmentation, self.statisticsTable)

    @property
    def lesionSegmentId(self) -> str:
        return nodes.LESION_SEGMENT_ID


class DisAnatDetectLogic:
    """Runs DisAnatDetect on volume nodes and keeps the results in the scene. Usable without the GUI.

    ``modelPath``: manifest.json of another model bundle for every run (default: the shipped model). ``python``: the
    interpreter for the child process (default: Slicer's Python, see :func:`.process.pythonExecutable`).
    ``temporaryRoot``: where each run's temporary folder goes (default: the system's temporary folder).
    """

    moduleName = MODULE_NAME

    def __init__(self, modelPath: str | os.PathLike | None = None, python: str | None = None,
                 temporaryRoot: str | os.PathLike | None = None):
        self.modelPath = modelPath
        self.python = python
        self.temporaryRoot = temporaryRoot
        self.processesStarted = 0  # child processes this logic has started (each one is a model run)
        # Latest result per input node ID, for re-thresholding without a model call: (token, result, model threshold).
        self._results: OrderedDict[str, tuple[str, object, float]] = OrderedDict()

    # --- parameter node (the contract of Slicer's ScriptedLoadableModuleLogic) ----------------------------------------

    def getParameterNode(self):
        """The module's singleton parameter node in the scene, created on first use."""
        scene = slicer.mrmlScene
        parameterNode = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if parameterNode is None:
            parameterNode = slicer.vtkMRMLScriptedModuleNode()
            parameterNode.SetSingletonTag(self.moduleName)
            parameterNode.SetName(scene.GenerateUniqueName(self.moduleName))
            parameterNode = scene.AddNode(parameterNode)
        if parameterNode.GetAttribute("ModuleName") != self.moduleName:
            # Closing the scene may drop the attribute; Slicer finds module parameter nodes by it.
            parameterNode.SetAttribute("ModuleName", self.moduleName)
        return parameterNode

    # --- results into the scene (main thread) -------------------------------------------------------------------------

    def applyResult(self, inputVolume, computed: ComputedResult, pseudoHealthyVolume=None, anomalyMapVolume=None,
                    lesionSegmentation=None, statisticsTable=None) -> DetectionOutputs:
        """Write a finished result into output nodes: the ones given, else this input's earlier ones, else new ones.

        Outputs lie on the input's grid with its exact IJK-to-RAS matrix and parent transform. If writing fails,
        nodes created here are removed again and the error is raised.
        """
        result = computed.result
        self._checkInput(inputVolume)
        inputShape = tuple(slicer.util.arrayFromVolume(inputVolume).shape)
        if tuple(result.anomaly_map.shape) != inputShape:
            raise InputError("the input volume changed while the detection ran; run it again.")
        given = {"pseudoHealthyVolume": pseudoHealthyVolume, "anomalyMapVolume": anomalyMapVolume,
                 "lesionSegmentation": lesionSegmentation, "statisticsTable": statisticsTable}
        for kind, node in given.items():
            if node is not None and node.GetID() == inputVolume.GetID():
                raise InputError(f"the {kind} output cannot be the input volume; choose another node or none.")
        previous = nodes.findOutputs(inputVolume)
        created = []
        try:
            outputs = {}
            for kind, node in given.items():
                if node is None:
                    node = previous.get(kind)
                if node is None:
                    node = nodes.createOutputNode(kind, inputVolume)
                    created.append(node)
                nodes.markAsOutput(node, kind, inputVolume)
                outputs[kind] = node
            nodes.setVolumeContent(outputs["pseudoHealthyVolume"], result.pseudo_healthy.array, inputVolume)
            nodes.showLikeReference(outputs["pseudoHealthyVolume"], inputVolume)
            nodes.setVolumeContent(outputs["anomalyMapVolume"], result.anomaly_map.array, inputVolume)
            nodes.showAsAnomalyMap(outputs["anomalyMapVolume"], result.anomaly_map.array, result.threshold)
            self._writeResultAttributes(outputs["anomalyMapVolume"], result, computed.modelThreshold)
            nodes.updateLesionSegmentation(outputs["lesionSegmentation"], result.lesion_mask.array, inputVolume)
            nodes.updateStatisticsTable(outputs["statisticsTable"], result.lesions, inputVolume)
        except BaseException:
            for node in created:
                slicer.mrmlScene.RemoveNode(node)
            raise
        self._remember(inputVolume, outputs["anomalyMapVolume"], result, computed.modelThreshold)
        return DetectionOutputs(**outputs, result=result, modelThreshold=computed.modelThreshold)

    # --- detection in a child process ---------------------------------------------------------------------------------

    def startDetection(self, inputVolume, modality: str = "auto", device: str = "auto",
                       threshold: float | None = None) -> DetectionProcess:
        """Start a detection in a child process and return at once; poll it with its ``poll()`` (the GUI's timer)
        or ``wait()``, then finish it with :meth:`finishDetection`. Cancel with its ``cancel()``."""
        self._checkInput(inputVolume)
        # Refuse bad choices now, in one sentence, rather than as an error of the child.
        modality, device = coreModality(modality), coreDevice(device)
        volume = nodes.volumeFromNode(inputVolume)  # a copy: the input node is never modified
        task = DetectionProcess(inputVolume.GetID(), volume, modality, device, threshold, self.modelPath,
                                self.python, self.temporaryRoot)
        task.start()
        self.processesStarted += 1
        return task

    def finishDetection(self, task: DetectionProcess, timeout: float | None = None,
                        **outputNodes) -> DetectionOutputs:
        """Put a finished task's result into the scene; raises :class:`.process.DetectionCancelled` when it was
        cancelled and :class:`.process.DetectionFailed` (one sentence, the child's stderr in ``details``) when it
        failed.

        A task still running is waited for, at most ``timeout`` seconds (then it is ended and DetectionFailed
        raised). ``outputNodes``: optional ``pseudoHealthyVolume``, ``anomalyMapVolume``, ``lesionSegmentation``,
        ``statisticsTable`` as for :meth:`applyResult`.
        """
        if not task.wait(timeout):
            task.cancel()
            raise DetectionFailed(f"the detection did not finish within {timeout:g} s and was stopped.")
        if task.error is not None:
            raise task.error
        inputVolume = slicer.mrmlScene.GetNodeByID(task.inputVolumeID)
        if inputVolume is None:
            raise InputError("the input volume was removed while the detection ran.")
        return self.applyResult(inputVolume, task.computed, **outputNodes)

    def process(self, inputVolume, modality: str = "auto", device: str = "auto", threshold: float | None = None,
                waitForCompletion: bool = True, pseudoHealthyVolume=None, anomalyMapVolume=None,
                lesionSegmentation=None, statisticsTable=None, progress: ProgressCallback | None = None,
                timeout: float | None = None):
        """Detect anomalies in ``inputVolume``; for scripts and batch runs. Uses the same child process as the GUI.

        :param modality: "auto" (guessed from the tissue intensities), "T1", "T1c", "T2", "FLAIR" or "PD".
        :param device: "auto" (GPU when present), "CPU" or "GPU".
        :param threshold: anomaly-score threshold of the lesion mask; None uses the model's label-free threshold.
        :param waitForCompletion: True runs to the end and returns the :class:`DetectionOutputs`; False starts the
            :class:`.process.DetectionProcess` and returns it (finish it with :meth:`finishDetection`).
        :param pseudoHealthyVolume, anomalyMapVolume, lesionSegmentation, statisticsTable: output nodes to fill;
            None reuses this input's outputs from an earlier run, or creates new ones.
        :param progress: optional callback ``(stage, fraction)``, called for each progress report of the child.
        :param timeout: seconds to wait at most (None: no limit); a run that takes longer is ended and raises.
        """
        outputNodes = {"pseudoHealthyVolume": pseudoHealthyVolume, "anomalyMapVolume": anomalyMapVolume,
                       "lesionSegmentation": lesionSegmentation, "statisticsTable": statisticsTable}
        task = self.startDetection(inputVolume, modality, device, threshold)
        if not waitForCompletion:
            return task
        deadline = None if timeout is None else time.monotonic() + timeout
        reported = 0
        try:
            while not task.poll():
                if progress is not None:
                    for report in task.reports[reported:]:
                        progress(report.stage, report.fraction)
                    reported = len(task.reports)
                if deadline is not None and time.monotonic() >= deadline:
                    task.cancel()
                    raise DetectionFailed(f"the detection did not finish within {timeout:g} s and was stopped.")
                time.sleep(WAIT_POLL_SECONDS)
        except BaseException:
            task.cancel()  # an interrupted script must not leave the child running
            raise
        if progress is not None:
            for report in task.reports[reported:]:
                progress(report.stage, report.fraction)
        outputs = self.finishDetection(task, **outputNodes)
        logging.info(f"{MODULE_NAME}: {inputVolume.GetName()}: {self.resultSummary(outputs.result)} "
                     f"in {task.computed.seconds:.1f} s")
        return outputs

    # --- re-thresholding (no model call) ------------------------------------------------------------------------------

    def setThreshold(self, inputVolume, threshold: float | None):
        """Re-threshold the stored anomaly map of ``inputVolume``; updates the segment and the table at once.

        ``threshold`` None returns to the model's label-free threshold. Returns the new result.
        """
        stored = self._storedResult(inputVolume)
        if stored is None:
            raise InputError(f"{inputVolume.GetName()} has no {MODULE_NAME} result yet; run the detection first.")
        result, modelThreshold = stored
        threshold = modelThreshold if threshold is None else float(threshold)
        if threshold == result.threshold:
            return result
        outputs = nodes.findOutputs(inputVolume)
        result = result.rethreshold(threshold)
        if "lesionSegmentation" in outputs:
            nodes.updateLesionSegmentation(outputs["lesionSegmentation"], result.lesion_mask.array, inputVolume)
        if "statisticsTable" in outputs:
            nodes.updateStatisticsTable(outputs["statisticsTable"], result.lesions, inputVolume)
        if "anomalyMapVolume" in outputs:
            nodes.updateAnomalyMapThreshold(outputs["anomalyMapVolume"], threshold)
            self._writeResultAttributes(outputs["anomalyMapVolume"], result, modelThreshold)
            self._remember(inputVolume, outputs["anomalyMapVolume"], result, modelThreshold)
        return result

    @staticmethod
    def outputsFor(inputVolume) -> dict:
        """The output nodes of ``inputVolume``'s earlier run, by keyword (``pseudoHealthyVolume``, ...)."""
        return nodes.findOutputs(inputVolume)

    def resultFor(self, inputVolume):
        """The latest result of ``inputVolume`` (from memory, or rebuilt from its output nodes), or None."""
        stored = self._storedResult(inputVolume)
        return stored[0] if stored else None

    def modelThresholdFor(self, inputVolume) -> float | None:
        """The model's label-free threshold used for ``inputVolume``'s latest result, or None without a result."""
        stored = self._storedResult(inputVolume)
        return stored[1] if stored else None

    @staticmethod
    def resultSummary(result) -> str:
        """One line for the user: modality, lesion count and volume, threshold."""
        count = len(result.lesions)
        return (f"{result.modality.upper()}: {count} lesion{'s' if count != 1 else ''}, "
                f"{result.lesion_volume_ml:.1f} mL at threshold {result.threshold:.3f}")

    # --- display ------------------------------------------------------------------------------------------------------

    def showResults(self, inputVolume, outputs: DetectionOutputs, overlayOpacity: float) -> None:
        """Slice views: the input with the anomaly map over it; the lesion segment is shown by its display node."""
        slicer.util.setSliceViewerLayers(background=inputVolume, foreground=outputs.anomalyMapVolume,
                                         foregroundOpacity=overlayOpacity)
        outputs.lesionSegmentation.GetDisplayNode().SetVisibility(True)

    @staticmethod
    def setShow3D(lesionSegmentation, show: bool) -> None:
        """Show or hide the lesion segmentation as a surface in the 3D view."""
        nodes.setShow3D(lesionSegmentation, show)

    # --- helpers ------------------------------------------------------------------------------------------------------

    @staticmethod
    def _checkInput(inputVolume) -> None:
        if inputVolume is None or not inputVolume.IsA("vtkMRMLScalarVolumeNode") \
                or inputVolume.IsA("vtkMRMLLabelMapVolumeNode"):
            raise InputError("choose a scalar MRI volume as input (not a label map, segmentation or vector volume).")
        if inputVolume.GetImageData() is None:
            raise InputError(f"{inputVolume.GetName()} holds no image data; load a scan first.")

    @staticmethod
    def _writeResultAttributes(anomalyMapVolume, result, modelThreshold: float) -> None:
        prefix = nodes.RESULT_ATTRIBUTE_PREFIX
        for name, value in (("Threshold", result.threshold), ("ModelThreshold", modelThreshold),
                            ("Modality", result.modality), ("ModelVersion", result.model_version),
                            ("MinLesionMl", result.postprocess.min_lesion_ml),
                            ("GrowFraction", result.postprocess.grow_fraction),
                            ("GrowReachMm", result.postprocess.grow_reach_mm)):
            anomalyMapVolume.SetAttribute(prefix + name, str(value))
        anomalyMapVolume.SetAttribute(RESULT_TOKEN_ATTRIBUTE, uuid.uuid4().hex)

    def _remember(self, inputVolume, anomalyMapVolume, result, modelThreshold: float) -> None:
        key = inputVolume.GetID()
        self._results[key] = (anomalyMapVolume.GetAttribute(RESULT_TOKEN_ATTRIBUTE) or "", result, modelThreshold)
        self._results.move_to_end(key)
        while len(self._results) > RESULTS_KEPT:
            self._results.popitem(last=False)

    def _storedResult(self, inputVolume):
        """(result, model threshold) from memory, else rebuilt from the output nodes of an earlier session."""
        if inputVolume is None or inputVolume.GetID() is None:
            return None
        outputs = nodes.findOutputs(inputVolume)
        anomalyMapVolume = outputs.get("anomalyMapVolume")
        prefix = nodes.RESULT_ATTRIBUTE_PREFIX
        if anomalyMapVolume is None or anomalyMapVolume.GetAttribute(prefix + "Threshold") is None:
            return None
        remembered = self._results.get(inputVolume.GetID())
        if remembered is not None and remembered[0] == (anomalyMapVolume.GetAttribute(RESULT_TOKEN_ATTRIBUTE) or ""):
            return remembered[1], remembered[2]
        from disanatdetect.pipeline import DetectionResult
        from disanatdetect.postprocess import PostprocessConfig

        anomaly = nodes.volumeFromNode(anomalyMapVolume)
        phiNode = outputs.get("pseudoHealthyVolume")
        pseudoHealthy = nodes.volumeFromNode(phiNode) if phiNode is not None else anomaly
        threshold = float(anomalyMapVolume.GetAttribute(prefix + "Threshold"))
        # As the pipeline made the mask; a result saved before lesion growth existed has no GrowFraction, one
        # saved before the growth had a reach has no GrowReachMm (and "None" means no limit).
        reach = anomalyMapVolume.GetAttribute(prefix + "GrowReachMm")
        postprocess = PostprocessConfig(
            min_lesion_ml=float(anomalyMapVolume.GetAttribute(prefix + "MinLesionMl") or 0.0),
            grow_fraction=float(anomalyMapVolume.GetAttribute(prefix + "GrowFraction") or 1.0),
            grow_reach_mm=None if reach in (None, "", "None") else float(reach))
        result = DetectionResult(pseudoHealthy, anomaly, anomaly.with_array(np.zeros(anomaly.shape, np.uint8)),
                                 threshold, anomalyMapVolume.GetAttribute(prefix + "Modality") or "auto", [], {},
                                 anomalyMapVolume.GetAttribute(prefix + "ModelVersion") or "", postprocess)
        # The mask and components come from the anomaly map, exactly as the pipeline made them.
        result = result.rethreshold(threshold)
        modelThreshold = float(anomalyMapVolume.GetAttribute(prefix + "ModelThreshold") or threshold)
        self._remember(inputVolume, anomalyMapVolume, result, modelThreshold)
        return result, modelThreshold
