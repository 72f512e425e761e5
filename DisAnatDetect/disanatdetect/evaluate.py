"""Benchmark harness (``disanatdetect evaluate``): every method on every case and modality, in one run.

Cases come from a BraTS-style folder (``<case>/<modality>.nii.gz`` + ``reference.nii.gz``, or the BraTS 2021 and
2023 file names) and from a fixed-seed synthetic suite (each lesion type in T1, T2, FLAIR and PD, plus healthy
volumes for false positives), and from healthy scans. Every case takes the detector's own path (registration
included); a scan is prepared once and every method scores that same preparation. Metrics are pooled over the
brain voxels of each case (and then averaged over cases): AP, best Dice (threshold searched on the case, for
comparison with papers only), Dice at the method's own label-free threshold, AUROC, lesion-wise detection rate,
for healthy volumes the false-positive volume at that threshold, and for DAL what its restoration makes of the
reference lesion. Tables: means per method, DAL against the thresholding baseline, and the ablations."""

from __future__ import annotations

import csv
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from disanatdetect import metrics
from disanatdetect.atlas import load_atlas
from disanatdetect.dal_parts import DAL_PARTS, part_setting
from disanatdetect.data_paths import DEFAULT_LABEL_MAPS
from disanatdetect.errors import InputError
from disanatdetect.io import Volume, read_volume
from disanatdetect.pipeline import AnomalyMethod, DetectionConfig, analyse_prepared, prepare_scan
from disanatdetect.spatial import mask_on_working_grid
from disanatdetect.synth.cases import synthetic_cases
from disanatdetect.synth.lesions import LESION_TYPES

# File names of each modality in the supported layouts: ours, BraTS 2021 (<case>_t1ce) and BraTS 2023 (<case>-t2f).
MODALITY_FILES = {
    "t1": ("t1", "_t1", "-t1n"),
    "t1c": ("t1c", "_t1ce", "-t1c"),
    "t2": ("t2", "_t2", "-t2w"),
    "flair": ("flair", "_flair", "-t2f"),
}
REFERENCE_FILES = ("reference", "_seg", "-seg")


@dataclass(frozen=True)
class SuiteConfig:
    """The synthetic suite: one case per lesion type and modality, and healthy volumes, from fixed seeds."""

    modalities: tuple[str, ...] = ("t1", "t2", "flair", "pd")
    lesions: tuple[str, ...] = LESION_TYPES
    healthy_per_modality: int = 1
    seed: int = 20_000  # disjoint from training and calibration seeds


@dataclass
class Case:
    source: str  # "real" or "synthetic"
    name: str
    modality: str
    image: Volume
    reference: Volume


@dataclass
class Evaluation:
    rows: list[dict] = field(default_factory=list)
    curves: dict = field(default_factory=lambda: defaultdict(list))  # (modality, method) -> [(scores, labels)]
    panels: dict = field(default_factory=dict)  # (source, case, modality) -> the axial slice of most lesion:
    # {"scan": image, "reference": mask, method: (pseudo-healthy, anomaly, mask)}


def _find(folder: Path, case: str, names: tuple[str, ...]) -> Path | None:
    for name in names:
        for candidate in (folder / f"{name}.nii.gz", folder / f"{case}{name}.nii.gz", folder / f"{name}.nii"):
            if candidate.exists():
                return candidate
    return None


def folder_cases(root: str | Path, modalities: tuple[str, ...] = tuple(MODALITY_FILES)) -> Iterator[Case]:
    """Cases of a BraTS-style folder: every sub-folder with at least one modality. A folder without a reference
    is a healthy case: every voxel it marks is a false positive."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder of cases; pass a folder with <case>/<modality>.nii.gz files.")
    found = False
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        reference_path = _find(folder, folder.name, REFERENCE_FILES)
        reference = read_volume(reference_path) if reference_path is not None else None
        for modality in modalities:
            path = _find(folder, folder.name, MODALITY_FILES[modality])
            if path is not None:
                found = True
                image = read_volume(path)
                healthy = image.with_array(np.zeros(image.shape, np.uint8))
                yield Case("real", folder.name, modality, image, reference if reference is not None else healthy)
    if not found:
        raise InputError(f"no case with an image was found in {root}.")


def healthy_scans(specifications: list[str]) -> Iterator[Case]:
    """Healthy cases from ``MODALITY:FILE`` specifications (scans outside a case folder, e.g. Colin27)."""
    for specification in specifications:
        modality, _, path = specification.partition(":")
        if modality not in MODALITY_FILES or not path:
            raise InputError(f"--healthy-scan {specification!r}: write it as MODALITY:FILE with MODALITY one of "
                             f"{', '.join(MODALITY_FILES)}.")
        image = read_volume(path)
        name = Path(path).name.split(".")[0]
        yield Case("real", name, modality, image, image.with_array(np.zeros(image.shape, np.uint8)))


HELD_OUT_SEED = 40_000  # disjoint from calibration's rendered scans (10,000 on), so the false positives are unseen


def held_out_healthy_scans(per_modality: int, modalities: tuple[str, ...], label_maps: str = DEFAULT_LABEL_MAPS,
                           holdout_subjects: int = 4, seed: int = HELD_OUT_SEED,
                           with_head: bool = False) -> Iterator[Case]:
    """Healthy scans rendered from the held-out label maps (subjects no model trains on) as calibration renders
    them, but from other seeds: out-of-sample healthy false positives per modality. ``with_head``: unstripped scans
    (:data:`~disanatdetect.synth.healthy_scans.SKULL_ON`), which measure brain extraction too."""
    from disanatdetect.synth.healthy_scans import SKULL_ON, HealthyScanConfig, render_healthy_scan
    from disanatdetect.synth.label_bank import load_bank, split_subjects

    try:
        held_out = split_subjects(label_maps, holdout_subjects)[1]
    except (FileNotFoundError, ValueError) as error:
        raise InputError(f"{error}; the held-out healthy scans need the training label maps.") from None
    atlas = load_atlas()
    bank = load_bank(held_out, atlas)
    for modality in modalities:
        for index in range(per_modality):
            subject = index % len(held_out)
            image = render_healthy_scan(bank, subject, modality, seed + index, atlas,
                                        SKULL_ON if with_head else HealthyScanConfig())
            name = f"{held_out[subject].name.split('.')[0]}-{seed + index}{'-head' if with_head else ''}"
            yield Case("held-out", name, modality, image,
                       image.with_array(np.zeros(image.shape, np.uint8)))


def synthetic_suite(config: SuiteConfig = SuiteConfig()) -> Iterator[Case]:
    atlas = load_atlas()
    index = 0
    for lesion in config.lesions + ("none",) * config.healthy_per_modality:
        index += 1
        name = f"{lesion}-{config.seed + index}" if lesion != "none" else f"healthy-{config.seed + index}"
        for case in synthetic_cases(atlas, config.seed + index, config.modalities, lesion):
            yield Case("synthetic", name, case.modality, case.image, case.lesion_mask)


def phi_correlation(image: np.ndarray, pseudo_healthy: np.ndarray, region: np.ndarray) -> float:
    """Pearson correlation of scan and PHI over ``region`` (the brain outside the lesion): 1 is a perfect PHI."""
    return round(float(np.corrcoef(image[region].astype(np.float64), pseudo_healthy[region])[0, 1]), 4)


def _case_metrics(anomaly: np.ndarray, mask: np.ndarray, reference: np.ndarray, brain: np.ndarray,
                  threshold: float, voxel_ml: float) -> dict:
    row = {"lesion_ml": round(float(mask.sum() * voxel_ml), 3),
           "false_positive_ml": round(metrics.false_positive_volume_ml(mask, reference, voxel_ml), 3)}
    if reference.any():
        best, best_threshold = metrics.best_dice(anomaly, reference, brain)
        row.update({
            "ap": metrics.average_precision(anomaly, reference, brain),
            "best_dice": best,
            "best_threshold": best_threshold,
            "dice": metrics.dice(mask & brain, reference & brain),
            "auroc": metrics.auroc(anomaly, reference, brain),
            "detection_rate": metrics.lesion_detection_rate(mask, reference),
        })
    return {key: round(value, 4) if isinstance(value, float) else value for key, value in row.items()}


def _restoration(result, lesion: np.ndarray, brain: np.ndarray, expected_tissue: np.ndarray) -> dict:
    """What the restoration makes of the reference lesion, on the working grid where the anatomy lives."""
    shares = metrics.restoration_shares(result.encoded, result.restored, expected_tissue, lesion, brain)
    return {key: round(value, 4) for key, value in shares.items()}


def evaluate(methods: list[AnomalyMethod], cases: Iterator[Case], progress=None,
             settings: DetectionConfig = DetectionConfig()) -> Evaluation:
    """Run every method on every case (with ``settings``, the modality set per case); returns rows (one per case x
    modality x method), PR data and panels."""
    atlas = load_atlas()
    expected_tissue = atlas.priors.argmax(0)  # the atlas's most likely tissue per working-grid voxel
    evaluation = Evaluation()
    for case in cases:
        config = replace(settings, modality=case.modality)
        started = time.perf_counter()
        prepared = prepare_scan(case.image, atlas, config)  # every case takes the detector's own path
        preparation_seconds = time.perf_counter() - started
        reference = case.reference.array > 0
        # the reference on the working grid, once per case, for the restoration shares of every DAL variant
        working_lesion = mask_on_working_grid(case.reference, atlas, prepared.transform) if reference.any() else None
        for method in methods:
            started = time.perf_counter()
            detection = analyse_prepared(method, prepared, atlas, config)
            threshold = detection.threshold
            anomaly, mask = detection.anomaly_map.array, detection.lesion_mask.array > 0
            brain, phi = prepared.input_brain, detection.pseudo_healthy
            seconds = time.perf_counter() - started
            voxel_ml = float(np.prod(case.image.spacing)) / 1000.0
            row = {"source": case.source, "case": case.name, "modality": case.modality, "method": method.name,
                   "threshold": round(float(threshold), 5), "seconds": round(seconds, 2),
                   "preparation_seconds": round(preparation_seconds, 2),
                   **_case_metrics(anomaly, mask, reference, brain, threshold, voxel_ml)}
            if getattr(method, "reconstructs", True):
                row["phi_correlation"] = phi_correlation(case.image.array, phi.array, brain & ~reference)
            if working_lesion is not None and detection.working_grid.restored is not None:
                row.update(_restoration(detection.working_grid, working_lesion, prepared.brain, expected_tissue))
            evaluation.rows.append(row)
            if reference.any():
                evaluation.curves[(case.source, case.modality, method.name)].append(
                    (anomaly[brain].astype(np.float32), reference[brain]))
            # one axial slice per case for its figure: whole volumes of every case and method would fill the memory
            z = int(np.argmax(reference.sum((1, 2)))) if reference.any() else reference.shape[0] // 2
            evaluation.panels.setdefault((case.source, case.name, case.modality), {
                "scan": np.array(case.image.array[z], np.float32), "reference": reference[z].copy()})
            evaluation.panels[(case.source, case.name, case.modality)][method.name] = (
                phi.array[z].copy(), anomaly[z].astype(np.float32), mask[z].copy())
            if progress is not None:
                progress(row)
    return evaluation


METRIC_COLUMNS = ("ap", "best_dice", "dice", "auroc", "detection_rate")


def _mean(values) -> str:
    values = [v for v in values if not np.isnan(v)]
    return f"{np.mean(values):.3f}" if values else "–"


def summary_table(rows: list[dict]) -> str:
    """Markdown table of means per source, modality and method, with the healthy false-positive volume."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["source"], row["modality"], row["method"])].append(row)
    lines = ["| source | modality | method | cases | AP | best Dice | Dice @ own threshold | AUROC | "
             "lesions found | healthy FP (mL) | s / volume |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (source, modality, method), group in groups.items():
        lesioned = [r for r in group if "ap" in r]
        healthy = [r for r in group if "ap" not in r]

        def mean(key, subset=lesioned):
            return _mean([r[key] for r in subset if key in r])

        lines.append(f"| {source} | {modality} | {method} | {len(lesioned)} | {mean('ap')} | {mean('best_dice')} | "
                     f"{mean('dice')} | {mean('auroc')} | {mean('detection_rate')} | "
                     f"{mean('false_positive_ml', healthy)} | {mean('seconds', group)} |")
    return "\n".join(lines)


def versus_baseline_table(rows: list[dict], method: str = "DAL", baseline: str = "Threshold",
                          source: str = "real", lesioned_prefix: str = "") -> str:
    """The release table: per modality, ``method`` / ``baseline`` mean AP and best Dice, the method's Dice at its
    own threshold, the cases it wins (best Dice, on the same case), its healthy false positives (mean and
    worst scan), and what its restoration makes of the reference lesions. ``lesioned_prefix`` keeps the lesioned
    cases whose name starts with it (``Brats18`` for the dev set's ten gliomas). Empty without rows to show."""
    rows = [r for r in rows if "ap" not in r or r["case"].startswith(lesioned_prefix)]
    by_key = {(r["source"], r["case"], r["modality"], r["method"]): r for r in rows}
    modalities = list(dict.fromkeys(r["modality"] for r in rows if r["source"] == source and r["method"] == method))
    lines = [f"| modality | cases | AP {method} / {baseline} | best Dice {method} / {baseline} | "
             f"Dice @ own threshold | cases won | healthy scans | healthy FP mean / worst (mL) | "
             "lesion as expected tissue: encoded / restored | changed by restoration: lesion / rest |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for modality in modalities:
        ours = [r for r in rows if (r["source"], r["modality"], r["method"]) == (source, modality, method)]
        pairs = [(r, by_key.get((source, r["case"], modality, baseline))) for r in ours if "ap" in r]
        pairs = [(r, b) for r, b in pairs if b is not None]
        healthy = [r["false_positive_ml"] for r in ours if "ap" not in r]
        if not pairs and not healthy:
            continue
        won = sum(r["best_dice"] > b["best_dice"] for r, b in pairs)

        def both(key: str) -> str:
            return f"{_mean([r[key] for r, _ in pairs])} / {_mean([b[key] for _, b in pairs])}"

        def of_ours(key: str) -> str:
            return _mean([r[key] for r, _ in pairs if key in r])

        worst = f"{max(healthy):.2f}" if healthy else "–"
        lines.append(f"| {modality} | {len(pairs)} | {both('ap')} | {both('best_dice')} | {of_ours('dice')} | "
                     f"{won} of {len(pairs)} | {len(healthy)} | {_mean(healthy)} / {worst} | "
                     f"{of_ours('lesion_expected_encoded')} / {of_ours('lesion_expected_restored')} | "
                     f"{of_ours('lesion_changed')} / {of_ours('healthy_changed')} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def paired_differences_table(rows: list[dict], method: str, baseline: str, source: str = "real",
                             lesioned_prefix: str = "", metrics_shown: tuple[str, ...] = ("ap", "best_dice")) -> str:
    """Per modality and metric, ``method`` minus ``baseline`` on the same lesioned cases: mean, standard deviation,
    smallest and largest difference, and the two-sided Wilcoxon signed-rank p-value of the pairs (1 where every
    difference is 0). Whether a candidate's gain over a release is more than the case-to-case spread."""
    from scipy.stats import wilcoxon

    lines = ["| modality | metric | cases | mean difference | sd | smallest | largest | Wilcoxon p |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    lesioned = {(r["case"], r["modality"], r["method"]): r for r in rows
                if r["source"] == source and "ap" in r and r["case"].startswith(lesioned_prefix)}
    for modality in dict.fromkeys(modality for _, modality, name in lesioned if name == method):
        cases = [case for case, m, name in lesioned if (m, name) == (modality, method)
                 and (case, modality, baseline) in lesioned]
        for metric in metrics_shown:
            differences = np.array([lesioned[case, modality, method][metric]
                                    - lesioned[case, modality, baseline][metric] for case in cases])
            if len(differences) < 2:
                continue
            p_value = wilcoxon(differences).pvalue if np.any(differences != 0) else 1.0
            lines.append(f"| {modality} | {metric} | {len(differences)} | {differences.mean():+.3f} | "
                         f"{differences.std(ddof=1):.3f} | {differences.min():+.3f} | {differences.max():+.3f} | "
                         f"{p_value:.3f} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def healthy_false_positive_table(rows: list[dict], methods: list[str], source: str = "real",
                                 limit_ml: float = 1.0) -> str:
    """Per modality and method, the false lesion volume on ``source``'s healthy scans (rows without AP): scans,
    mean, median, how many keep more than ``limit_ml``, worst. Empty without healthy rows."""
    lines = ["| modality | method | healthy scans | mean (mL) | median (mL) | "
             f"scans above {limit_ml:g} mL | worst (mL) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    healthy = [r for r in rows if r["source"] == source and "ap" not in r and r["method"] in methods]
    for modality in dict.fromkeys(r["modality"] for r in healthy):
        for method in methods:
            volumes = [r["false_positive_ml"] for r in healthy if (r["modality"], r["method"]) == (modality, method)]
            if volumes:
                lines.append(f"| {modality} | {method} | {len(volumes)} | {np.mean(volumes):.1f} | "
                             f"{np.median(volumes):.1f} | {sum(v > limit_ml for v in volumes)} | {max(volumes):.1f} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def _reference_of(method: str) -> str:
    """The row an ablation is measured against: the DAL trained with the same budget for a retrained ablation
    (``DAL w/o priors (retrained, 4000 steps)`` -> ``DAL (4000 steps)``), the released DAL for the others."""
    if "(retrained, " in method:
        return "DAL (" + method.split("(retrained, ")[1]
    if method.startswith("DAL (") and method.endswith(" steps)"):
        return method  # a reference itself: the released DAL has another budget, so no comparison
    return "DAL"


def ablation_table(rows: list[dict], source: str = "real") -> str:
    """Per DAL variant and modality: mean AP on the lesioned cases, and its change against the variant's
    reference (:func:`_reference_of`) on the same cases; a part earns its keep where removing it costs AP."""
    ap: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for row in rows:
        if row["source"] == source and "ap" in row and row["method"].startswith("DAL"):
            ap[(row["method"], row["modality"])][row["case"]] = row["ap"]
    methods = list(dict.fromkeys(method for method, _ in ap))
    modalities = list(dict.fromkeys(modality for _, modality in ap))
    lines = ["| variant | reference | " + " | ".join(f"{m} AP (change)" for m in modalities) + " |",
             "| --- | --- |" + " --- |" * len(modalities)]
    for method in methods:
        reference = _reference_of(method)
        if method == reference:
            continue
        cells = []
        for modality in modalities:
            ours, theirs = ap.get((method, modality), {}), ap.get((reference, modality), {})
            shared = [case for case in ours if case in theirs]
            change = np.mean([ours[c] - theirs[c] for c in shared]) if shared else np.nan
            cells.append(f"{np.mean([ours[c] for c in shared]):.3f} ({change:+.3f})" if shared else "–")
        lines.append(f"| {method} | {reference} | " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


TEXT_COLUMNS = ("source", "case", "modality", "method")


def write_csv(rows: list[dict], path: Path) -> Path:
    """Every row in one table, a column per key any row has; a key a row lacks is an empty cell."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_csv(path: str | Path) -> list[dict]:
    """The rows of a ``results.csv`` as :func:`evaluate` made them: numbers as floats, and an empty cell (a metric
    the row never had, such as AP on a healthy scan) absent from its row, so the tables read them as they were."""
    with open(path, newline="") as handle:
        return [{key: value if key in TEXT_COLUMNS else float(value) for key, value in row.items() if value != ""}
                for row in csv.DictReader(handle)]


def versus_release_rows(release: list[dict], candidate: list[dict], release_name: str, candidate_name: str,
                        method: str = "DAL") -> list[dict]:
    """``method``'s rows of two evaluations on the same cases, renamed ``release_name`` and ``candidate_name``, so
    that :func:`versus_baseline_table` sets a candidate model against the released one case by case (the
    candidate's healthy rows give its false positives)."""
    return [dict(row, method=name) for rows, name in ((release, release_name), (candidate, candidate_name))
            for row in rows if row["method"] == method]


def ablations(dal_method) -> list:
    """DAL variants from the same weights: without edge restoration (PHI from the encoded anatomy), with the anatomy
    read the other way (soft for a one-hot model, one-hot for a soft one), without the rule that anatomy-agreed CSF
    carries no score, and with the brain mask as extracted (not what the encoder sees of it). What each part is
    worth when the model is trained without it is :func:`retrained_ablations`'s job."""
    import copy

    hard = dal_method.bundle.model.config.hard_one_hot  # the variant reads the anatomy the other way
    variants = []
    for name, model_change, detection_change in (
            ("DAL w/o restoration", {"use_restoration": False}, {}),
            (f"DAL {part_setting('hard_one_hot', not hard).name}", {"hard_one_hot": not hard}, {}),
            ("DAL w/o CSF rule", {}, {"explain_csf": False}),
            ("DAL w/o encoder's brain", {}, {"brain_from_encoder": False})):
        variant = copy.copy(dal_method)
        model = copy.copy(dal_method.bundle.model)
        model.config = replace(model.config, **model_change)
        variant.bundle = replace(dal_method.bundle, model=model)
        variant.detection_overrides = detection_change
        variant.name = name
        variants.append(variant)
    return variants


def retrained_ablations(folder: str | Path, device, reference: dict | None = None) -> list:
    """Every DAL bundle in the sub-folders of ``folder`` (``<name>/manifest.json``), each named by the parts its
    training set unlike the release and by its steps: ``DAL w/o restoration (retrained, 3000 steps)``, and ``DAL
    (3000 steps)`` for a bundle of the release's design, the reference trained with the same budget.
    ``reference`` names the design's parts otherwise (``{"hard_one_hot": False, ...}``)."""
    from disanatdetect.bundle import load_bundle
    from disanatdetect.dal_inference import DALMethod
    from disanatdetect.models import DALConfig
    from disanatdetect.train import TrainConfig

    reference = {**TrainConfig().model.to_dict(), **(reference or {})}
    manifests = sorted(Path(folder).glob("*/manifest.json"))
    methods = []
    for manifest in manifests:
        bundle = load_bundle(manifest)  # on the CPU; DALMethod moves it to ``device``
        if bundle.manifest.get("model") != "dal":
            continue  # the autoencoder baselines may share the folder
        config = {**DALConfig().to_dict(), **bundle.manifest["model_config"]}  # older bundles name fewer parts
        changed = [part_setting(key, config[key]).name for key in DAL_PARTS if config[key] != reference[key]]
        steps = bundle.manifest.get("training", {}).get("steps", "?")
        method = DALMethod(bundle, device)
        method.name = f"DAL {' '.join(changed)} (retrained, {steps} steps)" if changed else f"DAL ({steps} steps)"
        methods.append(method)
    if not methods:
        raise InputError(f"no DAL bundle in the sub-folders of {folder}; train each ablation with 'disanatdetect "
                         "train --no-restoration' (or another part's flag) and put its bundle there.")
    return methods
