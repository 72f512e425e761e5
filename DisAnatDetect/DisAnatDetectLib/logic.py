"""The module's logic: a scan node in, pseudo-healthy volume, anomaly map, lesion segmentation and table out.

Work is split so that the slow part never touches the scene and the scene is only touched on the main thread:

1. :meth:`DisAnatDetectLogic.computeResult` runs the core pipeline on a copy of the input's voxels. It reads and
   writes no MRML, so the GUI can run it in a worker thread (:class:`DetectionTask`) and poll its progress.
2. :meth:`DisAnatDetectLogic.applyResult` writes a finished result into output nodes (main thread). Nodes are only
   created at this point, so a cancelled or failed run leaves the scene as it was; nodes it created are removed
   again if writing fails half-way.

:meth:`DisAnatDetectLogic.process` does both for scripts; :meth:`DisAnatDetectLogic.setThreshold` re-thresholds the
stored anomaly map without calling the model.

This class does not derive from Slicer's ``ScriptedLoadableModuleLogic``: that class lives in a module that imports
Qt, and this adapter must run on a bare MRML scene. It implements the same parameter-node contract instead, and the
GUI module's ``DisAnatDetectLogic`` combines both.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import slicer

from disanatdetect.errors import InputError

from . import nodes
from .parameters import MODULE_NAME, STAGES, coreDevice, coreModality, overallProgress

ProgressCallback = Callable[[str, float], None]

# Results kept in memory for instant re-thresholding (each holds a few volumes); older ones are rebuilt from their
# anomaly-map node when needed, so a batch over many scans does not accumulate memory.
RESULTS_KEPT = 4
# Ties an in-memory result to its latest write into the anomaly-map node: renewed on every write, so a result is
# trusted only while no one else (another logic, a cleared scene reusing node IDs) has written there since.
RESULT_TOKEN_ATTRIBUTE = nodes.RESULT_ATTRIBUTE_PREFIX + "ResultToken"


@dataclass
class ComputedResult:
    """A finished detection, not yet in the scene."""

    result: object  # disanatdetect.pipeline.DetectionResult (not imported here: that module imports torch)
    modelThreshold: float  # the model's label-free threshold for the detected modality
    seconds: float


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


class DetectionTask:
    """One detection running in a worker thread; the main thread polls it (the GUI with a timer).

    The worker only computes (no MRML). Progress and cancellation go through plain attributes and an event, which
    are safe to share between threads.
    """

    def __init__(self, inputVolumeID: str, work: Callable[[ProgressCallback, Callable[[], bool]], ComputedResult]):
        self.inputVolumeID = inputVolumeID
        self.computed: ComputedResult | None = None
        self.error: BaseException | None = None
        self.errorDetails = ""
        self._work = work
        self._state = (STAGES[0], 0.0)  # replaced as a whole, so a reader never sees a half-updated pair
        self._cancelRequested = threading.Event()
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{MODULE_NAME} detection", daemon=True)

    def start(self) -> DetectionTask:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.computed = self._work(self._onProgress, self._cancelRequested.is_set)
        except BaseException as error:  # noqa: BLE001 - handed to the main thread, which reports or re-raises it
            self.error = error
            self.errorDetails = traceback.format_exc()
        finally:
            self._finished.set()

    def _onProgress(self, stage: str, fraction: float) -> None:
        self._state = (stage, fraction)

    def cancel(self) -> None:
        """Ask the worker to stop at its next check (within a stage's batch of slices)."""
        self._cancelRequested.set()

    @property
    def cancelRequested(self) -> bool:
        return self._cancelRequested.is_set()

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    @property
    def stage(self) -> str:
        return self._state[0]

    @property
    def percent(self) -> int:
        return overallProgress(*self._state)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker ends (or ``timeout`` seconds pass); True when it has ended."""
        return self._finished.wait(timeout)


class DisAnatDetectLogic:
    """Runs DisAnatDetect on volume nodes and keeps the results in the scene. Usable without the GUI.

    ``detector``: a ready :class:`disanatdetect.pipeline.Detector` to use for every run (for example one built from
    another model bundle); by default the shipped model is loaded on first use, once per device.
    """

    moduleName = MODULE_NAME

    def __init__(self, detector=None):
        self.detector = detector
        self._detectors: dict[str, object] = {}
        self._detectorLock = threading.Lock()
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

    # --- computation (no MRML; safe in a worker thread) ---------------------------------------------------------------

    def getDetector(self, device: str = "auto"):
        """The detector for ``device`` ("auto", "CPU", "GPU"): the one given at construction, else the shipped model."""
        if self.detector is not None:
            return self.detector
        key = coreDevice(device)
        with self._detectorLock:
            if key not in self._detectors:
                from disanatdetect.pipeline import Detector

                self._detectors[key] = Detector(device=key)
            return self._detectors[key]

    def computeResult(self, volume, modality: str = "auto", device: str = "auto", threshold: float | None = None,
                      progress: ProgressCallback | None = None,
                      shouldCancel: Callable[[], bool] | None = None) -> ComputedResult:
        """Run the pipeline on a :class:`~disanatdetect.io.Volume`. Pure: reads and writes no MRML.

        ``threshold`` None uses the model's label-free threshold for the (detected) modality. Raises
        ``disanatdetect.pipeline.Cancelled`` when ``shouldCancel`` answers True, ``InputError``/``ModelError`` with a
        one-sentence message for bad input or a broken model.
        """
        from disanatdetect.pipeline import Cancelled, DetectionConfig

        started = time.perf_counter()
        config = DetectionConfig(modality=coreModality(modality), threshold=threshold)
        if progress is not None:
            progress(STAGES[0], 0.0)
        detector = self.getDetector(device)  # the first call loads the model: part of "preparing"
        if shouldCancel is not None and shouldCancel():
            raise Cancelled()
        result = detector.detect(volume, config, progress=progress, should_cancel=shouldCancel)
        return ComputedResult(result, detector.threshold_for(result.modality), time.perf_counter() - started)

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
            nodes.updateStatisticsTable(outputs["statisticsTable"], result.lesions)
        except BaseException:
            for node in created:
                slicer.mrmlScene.RemoveNode(node)
            raise
        self._remember(inputVolume, outputs["anomalyMapVolume"], result, computed.modelThreshold)
        return DetectionOutputs(**outputs, result=result, modelThreshold=computed.modelThreshold)

    def startDetection(self, inputVolume, modality: str = "auto", device: str = "auto",
                       threshold: float | None = None) -> DetectionTask:
        """Start a detection in a worker thread and return at once; finish it with :meth:`finishDetection`."""
        self._checkInput(inputVolume)
        coreModality(modality), coreDevice(device)  # refuse bad choices now rather than in the worker
        volume = nodes.volumeFromNode(inputVolume)  # read on the main thread: MRML is not thread-safe

        def work(progress, shouldCancel):
            return self.computeResult(volume, modality, device, threshold, progress, shouldCancel)

        return DetectionTask(inputVolume.GetID(), work).start()

    def finishDetection(self, task: DetectionTask, **outputNodes) -> DetectionOutputs:
        """Put a finished task's result into the scene (main thread); re-raises its error or cancellation.

        ``outputNodes``: optional ``pseudoHealthyVolume``, ``anomalyMapVolume``, ``lesionSegmentation``,
        ``statisticsTable`` as for :meth:`applyResult`.
        """
        task.wait()
        if task.error is not None:
            raise task.error
        inputVolume = slicer.mrmlScene.GetNodeByID(task.inputVolumeID)
        if inputVolume is None:
            raise InputError("the input volume was removed while the detection ran.")
        return self.applyResult(inputVolume, task.computed, **outputNodes)

    def process(self, inputVolume, modality: str = "auto", device: str = "auto", threshold: float | None = None,
                waitForCompletion: bool = True, pseudoHealthyVolume=None, anomalyMapVolume=None,
                lesionSegmentation=None, statisticsTable=None, progress: ProgressCallback | None = None):
        """Detect anomalies in ``inputVolume``; for scripts and batch runs.

        :param modality: "auto" (guessed from the tissue intensities), "T1", "T1c", "T2", "FLAIR" or "PD".
        :param device: "auto" (GPU when present), "CPU" or "GPU".
        :param threshold: anomaly-score threshold of the lesion mask; None uses the model's label-free threshold.
        :param waitForCompletion: True runs to the end and returns the :class:`DetectionOutputs`; False starts a
            :class:`DetectionTask` in the background and returns it (finish it with :meth:`finishDetection`).
        :param pseudoHealthyVolume, anomalyMapVolume, lesionSegmentation, statisticsTable: output nodes to fill;
            None reuses this input's outputs from an earlier run, or creates new ones.
        :param progress: optional callback ``(stage, fraction)``.
        """
        outputNodes = {"pseudoHealthyVolume": pseudoHealthyVolume, "anomalyMapVolume": anomalyMapVolume,
                       "lesionSegmentation": lesionSegmentation, "statisticsTable": statisticsTable}
        if not waitForCompletion:
            return self.startDetection(inputVolume, modality, device, threshold)
        self._checkInput(inputVolume)
        computed = self.computeResult(nodes.volumeFromNode(inputVolume), modality, device, threshold, progress)
        outputs = self.applyResult(inputVolume, computed, **outputNodes)
        logging.info(f"{MODULE_NAME}: {inputVolume.GetName()}: {self.resultSummary(outputs.result)} "
                     f"in {computed.seconds:.1f} s")
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
            nodes.updateStatisticsTable(outputs["statisticsTable"], result.lesions)
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
