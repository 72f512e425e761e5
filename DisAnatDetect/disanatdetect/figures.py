"""Figures made from the project's own outputs (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: str | Path, dpi: int = 110, title: str = "") -> Path:
    """Title, tight layout, write (creating the folder), close: the end of every figure here."""
    plt = _pyplot()
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return path


def synthesis_overview(path: str | Path, seed: int = 0) -> Path:
    """One synthetic brain in T1, T2, FLAIR and PD, and the three lesion types (FLAIR, mask outlined)."""
    from disanatdetect.atlas import load_atlas
    from disanatdetect.synth import LESION_TYPES, add_lesion, render, sample_anatomy, sample_contrast

    plt = _pyplot()
    atlas = load_atlas()
    rng = np.random.default_rng(seed)
    labels = sample_anatomy(atlas.priors, rng)
    spacing = atlas.config.spacing_mm
    panels = []
    for modality in ("t1", "t2", "flair", "pd"):
        panels.append((modality.upper(), render(labels, sample_contrast(rng, modality)), None))
    for kind in LESION_TYPES:
        lesioned, mask = add_lesion(labels, kind, rng, spacing)
        panels.append((f"{kind} (FLAIR)", render(lesioned, sample_contrast(rng, "flair")), mask))
    figure, axes = plt.subplots(1, len(panels), figsize=(2.4 * len(panels), 3.0))
    for axis, (title, image, mask) in zip(axes, panels):
        z = int(np.argmax(mask.sum((1, 2)))) if mask is not None else image.shape[0] // 2 + 8
        axis.imshow(image[z][::-1], cmap="gray", vmin=0, vmax=np.percentile(image[image > 0], 99.5))
        if mask is not None:
            axis.contour(mask[z][::-1], levels=[0.5], colors="orangered", linewidths=0.8)
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    return _save(figure, path, 110, f"Synthetic brain from the MNI152 priors (seed {seed}); lesions outlined")


def _display_steps(volume) -> tuple[int, int]:
    """Steps for the rows and the columns of a slice ``array[k]`` that show it as the scanner console and Slicer do:
    anterior (or superior) up, the patient's right on the viewer's left, whatever the file's axis directions."""
    direction = getattr(volume, "direction", None)
    if direction is None:
        return -1, 1
    direction = np.asarray(direction, dtype=float).reshape(3, 3)  # column c: the LPS direction of index axis c
    rows = 1 if direction[:, 1] @ np.array([0.0, 1.0, -1.0]) >= 0 else -1  # down the page: posterior, inferior
    columns = 1 if direction[:, 0] @ np.array([1.0, 1.0, 0.0]) >= 0 else -1  # rightwards: patient's left
    return rows, columns


def detection_panel(path: str | Path, scan, pseudo_healthy, anomaly, mask, reference=None, title: str = "",
                    slice_index: int | None = None) -> Path:
    """Scan, pseudo-healthy image, anomaly map, lesion mask (and reference) on the axial slice of most lesion.

    The slice is shown in radiological orientation (anterior up, the patient's right on the left) from the scan's
    direction matrix, so that files stored with different axis directions look alike."""
    plt = _pyplot()
    rows, columns = _display_steps(scan)
    arrays = [v.array[:, ::rows, ::columns] if v is not None else None
              for v in (scan, pseudo_healthy, anomaly, mask, reference)]
    focus = arrays[4] if arrays[4] is not None and arrays[4].any() else arrays[3]
    if slice_index is None:
        slice_index = int(np.argmax((focus > 0).sum((1, 2)))) if focus.any() else arrays[0].shape[0] // 2
    image = arrays[0][slice_index].astype(np.float32)
    brain = image[image > 0]
    vmax = float(np.percentile(brain, 99.5)) if brain.size else 1.0
    names = ["scan", "pseudo-healthy", "anomaly map", "lesion mask", "reference"]
    count = 5 if arrays[4] is not None else 4
    figure, axes = plt.subplots(1, count, figsize=(2.6 * count, 3.0))
    for index, axis in enumerate(axes):
        if index < 2:
            axis.imshow(arrays[index][slice_index], cmap="gray", vmin=0, vmax=vmax)
        elif index == 2:
            axis.imshow(image, cmap="gray", vmin=0, vmax=vmax)
            overlay = np.ma.masked_less_equal(arrays[2][slice_index], 0)
            axis.imshow(overlay, cmap="hot", alpha=0.7)
        else:
            axis.imshow(image, cmap="gray", vmin=0, vmax=vmax)
            axis.contour((arrays[index][slice_index] > 0).astype(float), levels=[0.5],
                         colors="orangered" if index == 3 else "deepskyblue", linewidths=0.9)
        axis.set_title(names[index], fontsize=9)
        axis.axis("off")
    return _save(figure, path, 110, title)


def _label_cell(axis, row: int, column: int, column_name: str, row_name: str, fontsize: int = 9) -> None:
    """A cell of a grid of images: no ticks, the column's name on the first row, the row's on the first column."""
    axis.set_xticks([])
    axis.set_yticks([])
    if row == 0:
        axis.set_title(column_name, fontsize=9)
    if column == 0:
        axis.set_ylabel(row_name, fontsize=fontsize)


def pseudo_healthy_rows(path: str | Path, rows: list[tuple[str, object, object, np.ndarray | None]],
                        title: str = "") -> Path:
    """One row per scan: the scan, its pseudo-healthy image and their difference, on one axial slice (the one with
    most reference lesion, else the one with most brain), in radiological orientation. ``rows`` holds
    (label, scan, pseudo_healthy, reference or None); the volumes share their grid."""
    plt = _pyplot()
    figure, axes = plt.subplots(len(rows), 3, figsize=(7.2, 2.5 * len(rows)), squeeze=False)
    for row, (label, scan, pseudo_healthy, reference) in enumerate(rows):
        steps = _display_steps(scan)
        image, phi = (v.array[:, ::steps[0], ::steps[1]].astype(np.float32) for v in (scan, pseudo_healthy))
        focus = reference[:, ::steps[0], ::steps[1]] > 0 if reference is not None and reference.any() else image > 0
        z = int(np.argmax(focus.sum((1, 2))))
        vmax = float(np.percentile(image[z][image[z] > 0], 99.5)) if (image[z] > 0).any() else 1.0
        difference = image[z] - phi[z]
        for column, (name, shown, options) in enumerate((
                ("scan", image[z], {"cmap": "gray", "vmin": 0, "vmax": vmax}),
                ("pseudo-healthy", phi[z], {"cmap": "gray", "vmin": 0, "vmax": vmax}),
                ("scan - pseudo-healthy", difference, {"cmap": "RdBu_r", "vmin": -vmax / 2, "vmax": vmax / 2}))):
            axis = axes[row, column]
            axis.imshow(shown, **options)
            _label_cell(axis, row, column, name, label, fontsize=8)
    return _save(figure, path, 100, title)


def method_panels(path: str | Path, panel: dict, methods: list[str], title: str = "") -> Path:
    """One row per method: scan, its pseudo-healthy image (or the scan), anomaly map, mask against the reference,
    on one axial slice (``panel``: 2D arrays, as :class:`~disanatdetect.evaluate.Evaluation` keeps them)."""
    plt = _pyplot()
    scan, reference = panel["scan"][::-1], panel["reference"][::-1] > 0
    brain = scan[scan > 0]
    vmax = float(np.percentile(brain, 99.5)) if brain.size else 1.0
    rows = [m for m in methods if m in panel]
    figure, axes = plt.subplots(len(rows), 4, figsize=(9.6, 2.5 * len(rows)), squeeze=False)
    for row, method in enumerate(rows):
        phi, anomaly, mask = (array[::-1] for array in panel[method])
        for column, (name, image) in enumerate((("scan", scan), ("pseudo-healthy", phi), ("anomaly map", None),
                                                 ("mask vs reference", None))):
            axis = axes[row, column]
            axis.imshow(image if image is not None else scan, cmap="gray", vmin=0, vmax=vmax)
            if name == "anomaly map":
                positive = anomaly[anomaly > 0]
                axis.imshow(np.ma.masked_less_equal(anomaly, 0), cmap="hot", alpha=0.75,
                            vmax=max(float(np.percentile(positive, 99.5)), 1e-6) if positive.size else 1.0)
            if name == "mask vs reference":
                axis.contour(reference.astype(float), levels=[0.5], colors="deepskyblue", linewidths=0.8)
                if mask.any():
                    axis.contour((mask > 0).astype(float), levels=[0.5], colors="orangered", linewidths=0.8)
            _label_cell(axis, row, column, name, method)
    return _save(figure, path, 90, title)


CURVE_VERTICES = 2000  # a drawn curve needs no more vertices than its panel has pixels


def thinned(x: np.ndarray, y: np.ndarray, vertices: int = CURVE_VERTICES) -> tuple[np.ndarray, np.ndarray]:
    """At most ``vertices`` points of the curve (x, y), evenly spaced along it, its two ends kept.

    A pooled precision-recall curve has a point per distinct score, millions of them; matplotlib spends minutes
    on such a line for a figure that shows a few hundred pixels of it.
    """
    if len(x) <= vertices:
        return x, y
    index = np.unique(np.linspace(0, len(x) - 1, vertices).round().astype(int))
    return x[index], y[index]


def pooled_precision_recall(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, float]:
    """Precision, recall and average precision of (scores, labels) pairs pooled into one set of voxels.

    The average precision is scikit-learn's step sum taken over the curve already computed, so the voxels,
    millions of them, are sorted once.
    """
    from sklearn.metrics import precision_recall_curve

    scores = np.concatenate([p[0] for p in pairs])
    labels = np.concatenate([p[1] for p in pairs])
    precision, recall, _ = precision_recall_curve(labels, scores)
    return precision, recall, float(-np.sum(np.diff(recall) * precision[:-1]))


def precision_recall_curves(path: str | Path, curves: dict) -> Path:
    """Pooled precision-recall curves, one panel per (source, modality), one line per method."""
    plt = _pyplot()
    panels = sorted({(source, modality) for source, modality, _ in curves})
    figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2), squeeze=False)
    for axis, (source, modality) in zip(axes[0], panels):
        for (s, m, method), pairs in sorted(curves.items()):
            if (s, m) != (source, modality):
                continue
            precision, recall, average_precision = pooled_precision_recall(pairs)
            axis.plot(*thinned(recall, precision), label=f"{method} ({average_precision:.2f})", linewidth=1)
        axis.set_title(f"{source} {modality.upper()}", fontsize=9)
        axis.set_xlabel("recall", fontsize=8)
        axis.set_ylabel("precision", fontsize=8)
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1.02)
        axis.legend(fontsize=6, loc="upper right")
    return _save(figure, path, 100)


def training_curves(run_dir: str | Path, path: str | Path | None = None) -> Path:
    """Curves of a training run (its ``log.jsonl`` and ``validation.jsonl``): the losses, the held-out encoder
    tissue Dice per contrast and class, and the healthy false positives; written to ``run_dir/training_curves.png``."""
    import json

    run_dir = Path(run_dir)

    def records(name: str) -> list[dict]:
        file = run_dir / name
        return [json.loads(line) for line in file.read_text().splitlines() if line.strip()] if file.exists() else []

    losses, validation = records("log.jsonl"), records("validation.jsonl")
    plt = _pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name in (losses[0] if losses else {}):
        if name not in ("step", "seconds", "cpu_seconds", "images", "lr"):
            axes[0].plot([r["step"] for r in losses], [r[name] for r in losses], label=name)
    axes[0].set(xlabel="step", ylabel="loss", yscale="log", title="training losses")
    class_styles = (("CSF", ":"), ("GM", "--"), ("WM", "-"), ("deep GM", "-."))  # a colour per contrast
    dice_keys = sorted(k for k in (validation[0] if validation else {}) if k.startswith("dice_"))
    for colour, key in enumerate(dice_keys):
        for index, (name, style) in enumerate(class_styles[:len(validation[0][key])]):
            axes[1].plot([r["step"] for r in validation], [r[key][index] for r in validation], marker=".",
                         color=f"C{colour}", linestyle=style, label=f"{key[5:]} {name}")
    axes[1].axhline(0.8, color="grey", linestyle=":", linewidth=1)
    axes[1].set(xlabel="step", ylabel="Dice", ylim=(0, 1), title="encoder tissue Dice, held-out subjects")
    for key in sorted({k for r in validation for k in r if k.startswith("healthy_fp_ml_")}):
        measured = [r for r in validation if key in r]  # the false-positive check runs less often than the Dice
        axes[2].plot([r["step"] for r in measured], [r[key] for r in measured], marker="o", label=key[14:])
    axes[2].set(xlabel="step", ylabel="false lesion volume (mL)",
                title="healthy held-out scan, threshold from another")
    for axis in axes:
        if axis.lines:
            axis.legend(fontsize=6, ncol=2)
    return _save(figure, path or run_dir / "training_curves.png")
