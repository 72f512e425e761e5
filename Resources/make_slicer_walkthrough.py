#!/usr/bin/env python3
"""Draw the README's 3D Slicer walkthrough figure from the module's own output nodes.

It is a rendering of MRML nodes, not a screenshot of Slicer: the module's adapter (``DisAnatDetectLib``) runs on a
real scan in a Qt-free MRML scene (the ``slicer-core`` package), exactly as the module does when "Detect anomalies"
is pressed, and the figure is drawn from what it left in the scene:

1. the input volume, with its display node's window/level;
2. the pseudo-healthy volume, with its display node's window/level;
3. the input with the anomaly-map volume over it as the slice views show it (the display node's colour window, and
   transparent below its display threshold), and the outline of the "Lesion" segment in the segment's colour;
4. the statistics table node, as text.

The slice is the axial slice through the centroid of the largest lesion in the table. Usage (from the repository
root; ``--model`` picks a model bundle other than the shipped one):

    python3 Resources/make_slicer_walkthrough.py --scan ../shared/data/real/TCGA-DU-7294/flair.nii.gz \
        --modality FLAIR --out Resources/slicer-walkthrough.png [--model path/to/manifest.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
TABLE_ROWS_SHOWN = 6
FIGURE_DPI = 110


def slicerScene():
    """The Qt-free Slicer application (scene and module logics) that the adapter tests also use."""
    sys.path.insert(0, str(REPOSITORY / "Testing"))
    from slicer_scene import addModulePath, createSlicerApplication

    addModulePath()
    return createSlicerApplication()


def loadVolumeNode(path: Path, name: str):
    """Read a scan the way Slicer does (its ITK-based volume storage node)."""
    import slicer

    volumeNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    storageNode = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storageNode.SetFileName(str(path))
    if not storageNode.ReadData(volumeNode):
        raise SystemExit(f"error: cannot read {path}")
    volumeNode.CreateDefaultDisplayNodes()
    return volumeNode


def axialView(volumeNode, array: np.ndarray, k: int) -> np.ndarray:
    """Slice ``k`` of an array ``[k, j, i]`` turned to the radiological view Slicer's axial view shows: anterior up,
    the patient's right on the left of the screen (exact for axis-aligned volumes)."""
    from DisAnatDetectLib import nodes

    directions = nodes.ijkToRasArray(volumeNode)[:3, :3]
    image = array[k]
    # Columns (i) should run towards the patient's left (-R), rows (j) towards posterior (-A).
    if directions[0, 0] > 0:
        image = image[:, ::-1]
    if directions[1, 1] > 0:
        image = image[::-1, :]
    return image


def windowLimits(volumeNode) -> tuple[float, float]:
    display = volumeNode.GetDisplayNode()
    return display.GetWindowLevelMin(), display.GetWindowLevelMax()


def tableText(tableNode, limit: int) -> str:
    table = tableNode.GetTable()
    names = [table.GetColumn(index).GetName() for index in range(table.GetNumberOfColumns())]
    rows = [[table.GetValue(row, index).ToString() for index in range(len(names))]
            for row in range(min(limit, table.GetNumberOfRows()))]
    widths = [max(len(name), *(len(row[index]) for row in rows)) if rows else len(name)
              for index, name in enumerate(names)]
    lines = ["  ".join(name.rjust(width) for name, width in zip(names, widths))]
    lines += ["  ".join(value.rjust(width) for value, width in zip(row, widths)) for row in rows]
    if table.GetNumberOfRows() > limit:
        lines.append(f"... {table.GetNumberOfRows() - limit} more")
    return "\n".join(lines)


def draw(args) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import slicer

    slicerScene()
    from DisAnatDetectLib import DisAnatDetectLogic, nodes

    # Named as a user would see it in the Data module: case folder and file name.
    inputVolume = loadVolumeNode(args.scan, f"{args.scan.parent.name} {args.scan.name.split('.')[0]}")
    outputs = DisAnatDetectLogic(modelPath=args.model).process(inputVolume, modality=args.modality, device=args.device)
    result = outputs.result

    scan = slicer.util.arrayFromVolume(inputVolume)
    phi = slicer.util.arrayFromVolume(outputs.pseudoHealthyVolume)
    anomaly = slicer.util.arrayFromVolume(outputs.anomalyMapVolume)
    lesion = slicer.util.arrayFromSegmentBinaryLabelmap(outputs.lesionSegmentation, outputs.lesionSegmentId,
                                                        inputVolume)
    table = outputs.statisticsTable.GetTable()
    if table.GetNumberOfRows():
        # The table's first row is the largest lesion: cut through its centroid.
        centroidRas = [table.GetValue(0, table.GetNumberOfColumns() - 3 + axis).ToDouble() for axis in range(3)]
        ijk = np.linalg.inv(nodes.ijkToRasArray(inputVolume)) @ np.array([*centroidRas, 1.0])
        k = int(round(ijk[2]))
    else:
        k = int(np.argmax((scan > 0).sum((1, 2))))

    anomalyDisplay = outputs.anomalyMapVolume.GetDisplayNode()
    visibleFrom = anomalyDisplay.GetLowerThreshold()
    segment = outputs.lesionSegmentation.GetSegmentation().GetSegment(outputs.lesionSegmentId)

    figure = plt.figure(figsize=(12, 5.8), dpi=FIGURE_DPI)
    grid = figure.add_gridspec(2, 3, height_ratios=(4.2, 1.1), hspace=0.12, wspace=0.04)
    panels = [figure.add_subplot(grid[0, column]) for column in range(3)]
    low, high = windowLimits(inputVolume)
    panels[0].imshow(axialView(inputVolume, scan, k), cmap="gray", vmin=low, vmax=high)
    panels[0].set_title(f"{inputVolume.GetName()}\n(input, axial slice {k})", fontsize=10)
    low, high = windowLimits(outputs.pseudoHealthyVolume)
    panels[1].imshow(axialView(inputVolume, phi, k), cmap="gray", vmin=low, vmax=high)
    panels[1].set_title(f"{outputs.pseudoHealthyVolume.GetName()}\n(pseudo-healthy volume)", fontsize=10)
    low, high = windowLimits(inputVolume)
    panels[2].imshow(axialView(inputVolume, scan, k), cmap="gray", vmin=low, vmax=high)
    shown = np.ma.masked_less(axialView(inputVolume, anomaly, k), visibleFrom)
    panels[2].imshow(shown, cmap="inferno", vmin=anomalyDisplay.GetWindowLevelMin(),
                     vmax=anomalyDisplay.GetWindowLevelMax(), alpha=args.opacity)
    panels[2].contour(axialView(inputVolume, lesion, k), levels=[0.5], colors=[segment.GetColor()], linewidths=1.2)
    panels[2].set_title(f"{outputs.anomalyMapVolume.GetName()}\nover the input, "
                        f"\"{segment.GetName()}\" segment outlined", fontsize=10)
    for panel in panels:
        panel.set_axis_off()

    text = figure.add_subplot(grid[1, :])
    text.set_axis_off()
    summary = (f"{outputs.statisticsTable.GetName()}  |  {DisAnatDetectLogic.resultSummary(result)}  |  "
               f"model {result.model_version}")
    text.text(0.0, 1.0, summary + "\n\n" + tableText(outputs.statisticsTable, TABLE_ROWS_SHOWN),
              family="monospace", fontsize=9, va="top", ha="left")
    figure.suptitle("DisAnatDetect in 3D Slicer: the module's output nodes (rendered from the MRML scene)",
                    fontsize=12)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, bbox_inches="tight")
    plt.close(figure)
    print(f"{args.out}: {DisAnatDetectLogic.resultSummary(result)}, model {result.model_version}")
    return args.out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", type=Path,
                        default=REPOSITORY.parent / "shared" / "data" / "real" / "TCGA-DU-7294" / "flair.nii.gz")
    parser.add_argument("--modality", default="FLAIR")
    parser.add_argument("--model", type=Path, default=None, help="manifest.json of a model bundle (default: shipped)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--opacity", type=float, default=0.6, help="opacity of the anomaly map over the input")
    parser.add_argument("--out", type=Path, default=REPOSITORY / "Resources" / "slicer-walkthrough.png")
    draw(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
