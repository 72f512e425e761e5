"""Command line: ``disanatdetect detect | batch | bids | demo | synth | train | calibrate | evaluate | benchmark``.

Every user-facing failure is one line on stderr and a non-zero exit; outputs are written completely or not at all.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

from disanatdetect import __version__
from disanatdetect.dal_parts import DAL_PARTS
from disanatdetect.data_paths import DEFAULT_HEALTHY_SCANS, DEFAULT_LABEL_MAPS
from disanatdetect.errors import InputError, ModelError
from disanatdetect.outputs import OUTPUT_NAMES, detection_report, write_outputs

EXIT_INPUT, EXIT_MODEL, EXIT_SYSTEM, EXIT_INTERRUPTED = 2, 3, 4, 130


class _Progress:
    """A stage-by-stage progress bar on stderr (tqdm), silent with --quiet."""

    def __init__(self, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=100, disable=not enabled, bar_format="{desc:<16} {percentage:3.0f}%|{bar}| {elapsed}",
                        file=sys.stderr)

    def __call__(self, stage: str, fraction: float) -> None:
        from disanatdetect.pipeline import STAGES

        position = STAGES.index(stage) if stage in STAGES else 0
        weights = (5, 30, 55, 10)  # rough share of the time per stage
        value = sum(weights[:position]) + weights[position] * fraction
        self.bar.set_description_str(stage)
        self.bar.update(max(0, value - self.bar.n))

    def close(self) -> None:
        self.bar.close()


class JsonProgress:
    """``detect --progress json``: progress as one JSON object per line on stdout, for a program that runs the CLI.

    The protocol: every line is a JSON object with

    - ``stage``: ``"preparing"``, ``"registering"``, ``"reconstructing"``, ``"post-processing"`` (the pipeline's
      stages, in this order), then ``"done"`` once all outputs are written;
    - ``fraction``: how much of that stage is done, from 0 to 1 (never decreasing within a stage);
    - ``message``: one line for a person.

    The last line of a successful run has stage ``"done"`` and fraction 1; nothing else is printed on stdout (stray
    prints of libraries are sent to stderr while the run lasts). A failure prints no ``"done"`` line, writes one
    ``error: ...`` line on stderr and exits non-zero, as without the option.
    """

    MESSAGES = {
        "preparing": "Reading the scan and finding the brain",
        "registering": "Registering to the atlas",
        "reconstructing": "Reconstructing the healthy brain",
        "post-processing": "Post-processing",
        "done": "Done",
    }

    def __init__(self, stream):
        self.stream = stream

    def __call__(self, stage: str, fraction: float, message: str | None = None) -> None:
        line = {"stage": stage, "fraction": round(min(max(float(fraction), 0.0), 1.0), 4),
                "message": message or self.MESSAGES.get(stage, stage)}
        self.stream.write(json.dumps(line) + "\n")
        self.stream.flush()  # the reader acts on each line as it comes

    def close(self) -> None:
        pass


def command_detect(args: argparse.Namespace) -> int:
    from disanatdetect.io import read_volume
    from disanatdetect.bundle import load_bundle
    from disanatdetect.devices import resolve_device
    from disanatdetect.pipeline import DetectionConfig, Detector

    out_dir = Path(args.out)
    if not args.overwrite:
        existing = [name for name in OUTPUT_NAMES if (out_dir / name).exists()]
        if existing:  # refuse before spending a minute of computation
            raise InputError(f"{out_dir} already holds {', '.join(existing)}; pass --overwrite or choose another "
                             "--out.")
    # demo runs this command with its own arguments, which have no --progress
    json_progress = JsonProgress(sys.stdout) if getattr(args, "progress", "bar") == "json" else None
    with contextlib.redirect_stdout(sys.stderr) if json_progress else contextlib.nullcontext():
        if json_progress:
            json_progress("preparing", 0.0)
        started = time.perf_counter()
        volume = read_volume(args.input)
        seconds_read = time.perf_counter() - started
        bundle = load_bundle(args.model, device=resolve_device(args.device))  # None: the shipped one
        detector = Detector(bundle, device=args.device)
        progress = json_progress or _Progress(not args.quiet)
        try:
            result = detector.detect(volume, DetectionConfig(modality=args.modality, threshold=args.threshold),
                                     progress=progress)
        finally:
            progress.close()
        write_outputs(out_dir, result, detection_report(result, args.input, volume, seconds_read), args.overwrite)
    if json_progress:
        json_progress("done", 1.0, f"{result.modality}: {len(result.lesions)} lesion(s), "
                                   f"{result.lesion_volume_ml:.1f} mL (threshold {result.threshold:.3f})")
    elif not args.quiet:
        print(f"{result.modality}: {len(result.lesions)} lesion(s), {result.lesion_volume_ml:.1f} mL "
              f"(threshold {result.threshold:.3f}); outputs in {out_dir}")
    return 0


# The real scan the demo runs on (package data, made by Resources/make_demo_scan.py; source and licence in its
# README.md): TCGA-DU-7294, FLAIR, cropped to the head, with a lesion reference on the same grid.
DEMO_SCAN_DIR = Path(__file__).resolve().parent / "data" / "demo"
DEMO_CASE = "TCGA-DU-7294"


def command_demo(args: argparse.Namespace) -> int:
    """``detect`` on the shipped real FLAIR (or, with --synthetic, on a synthetic case), a figure, and the Dice."""
    import shutil

    from disanatdetect.figures import detection_panel
    from disanatdetect.io import read_volume, write_volume
    from disanatdetect.metrics import dice

    started = time.perf_counter()
    out_dir = Path(args.out)
    if args.synthetic:
        from disanatdetect.atlas import load_atlas
        from disanatdetect.synth.cases import synthetic_case

        modality = args.modality or "flair"
        case = synthetic_case(load_atlas(), args.seed, modality, args.lesion)
        input_path = write_volume(case.image, out_dir / "input" / f"synthetic_{modality}.nii.gz")
        reference_path = write_volume(case.lesion_mask, out_dir / "input" / "reference.nii.gz")
        title = f"Synthetic {modality.upper()} with a {args.lesion} (seed {args.seed})"
    else:
        if args.modality not in (None, "flair"):
            raise InputError(f"the shipped demo scan is a FLAIR; --modality {args.modality} needs --synthetic.")
        modality = "flair"
        if not (DEMO_SCAN_DIR / "flair.nii.gz").is_file():
            raise InputError(f"the demo scan is missing from {DEMO_SCAN_DIR}; reinstall the package, or run "
                             "'disanatdetect demo --synthetic'.")
        # copies next to the outputs, so that the scan, its reference and the results open together
        (out_dir / "input").mkdir(parents=True, exist_ok=True)
        input_path = Path(shutil.copyfile(DEMO_SCAN_DIR / "flair.nii.gz",
                                          out_dir / "input" / f"{DEMO_CASE}_flair.nii.gz"))
        reference_path = Path(shutil.copyfile(DEMO_SCAN_DIR / "reference.nii.gz",
                                              out_dir / "input" / "reference.nii.gz"))
        title = f"{DEMO_CASE}, FLAIR (TCIA, CC BY 3.0)"
    args.input, args.out, args.overwrite, args.threshold = str(input_path), str(out_dir), True, None
    args.modality = modality
    command_detect(args)
    outputs = [read_volume(out_dir / name) for name in OUTPUT_NAMES[:3]]
    reference = read_volume(reference_path)
    overlap = dice(outputs[2].array > 0, reference.array > 0)
    volume_ml = json.loads((out_dir / OUTPUT_NAMES[3]).read_text())["lesion_volume_ml"]
    figure = detection_panel(out_dir / "demo.png", read_volume(input_path), *outputs, reference,
                             title=f"{title}: lesion mask {volume_ml:.1f} mL, Dice {overlap:.2f} against the reference")
    if not args.quiet:
        print(f"lesion volume {volume_ml:.1f} mL, Dice {overlap:.3f} against the reference "
              f"({time.perf_counter() - started:.1f} s); figure: {figure}")
    return 0


def command_synth(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from disanatdetect.atlas import load_atlas
    from disanatdetect.io import write_volume
    from disanatdetect.synth.cases import synthetic_case

    atlas = load_atlas()
    out_dir = Path(args.out)
    for index in tqdm(range(args.n), desc="synth", disable=args.quiet or args.n < 2, file=sys.stderr):
        case = synthetic_case(atlas, (args.seed, index), args.modality, args.lesion)
        stem = f"{args.lesion}_{args.modality}_{args.seed}_{index:03d}"
        write_volume(case.image, out_dir / f"{stem}_image.nii.gz")
        write_volume(case.lesion_mask, out_dir / f"{stem}_mask.nii.gz")
    if not args.quiet:
        print(f"{args.n} case(s) in {out_dir}")
    return 0


def new_run_config(args: argparse.Namespace):
    """The settings of a run that ``train`` starts: the release's, changed by the command line's options."""
    from disanatdetect.train import BaselineTrainConfig, TrainConfig, fit_batch_size

    settings = dict(out_dir=args.out, steps=args.steps, seed=args.seed, device=args.device, threads=args.threads,
                    label_maps=args.label_maps, precision=args.precision, max_minutes=args.max_minutes or 0.0,
                    export_bundle=not args.no_export)
    if args.model == "dal":
        config = TrainConfig(**settings)
        parts = {key: getattr(args, key) for key in DAL_PARTS if getattr(args, key) is not None}
        config.model = replace(config.model, **parts)
    else:
        config = BaselineTrainConfig(model_name=args.model, **settings)
    if args.batch_size:
        config.synthesis = replace(config.synthesis, batch_size=args.batch_size)
    elif config.device.startswith("cuda"):
        config.synthesis = replace(config.synthesis, batch_size=fit_batch_size(config))
    return config


def command_train(args: argparse.Namespace) -> int:
    from disanatdetect.train import export_bundle, load_run_config, train
    from disanatdetect.synth.label_bank import split_subjects

    out = Path(args.out)
    if args.resume:
        try:
            config = load_run_config(out)
        except FileNotFoundError as error:
            raise InputError(f"{error}; start a run with 'disanatdetect train --out {out}'") from None
        if args.max_minutes is not None:  # this piece's own limit (load_run_config drops the stopped one's)
            config.max_minutes = args.max_minutes
        if args.no_export:
            config.export_bundle = False
    else:
        if (out / "last.pt").exists() and not args.restart:
            raise InputError(f"{out} already holds a run; continue it with --resume, or start over with --restart")
        config = new_run_config(args)
    try:
        split_subjects(config.label_maps, config.holdout_subjects)
    except (FileNotFoundError, ValueError) as error:
        raise InputError(f"{error}; give a folder of label maps with --label-maps") from None
    log = (lambda message: None) if args.quiet else (lambda message: print(message, file=sys.stderr))
    checkpoint = train(config, resume=args.resume, progress=not args.quiet, log=log)
    if not config.export_bundle or torch_step(checkpoint) < config.steps:
        if not args.quiet:
            print(f"checkpoint: {checkpoint} (continue with: disanatdetect train --resume --out {args.out})")
        return 0
    command = "disanatdetect " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    manifest = export_bundle(checkpoint, config, Path(args.out) / "bundle", args.version, command)
    if not args.quiet:
        print(f"bundle: {manifest}")
    return 0


def torch_step(checkpoint: Path) -> int:
    """The step a training checkpoint was saved at."""
    import torch

    return int(torch.load(checkpoint, map_location="cpu", weights_only=True)["step"])


def command_calibrate(args: argparse.Namespace) -> int:
    from disanatdetect.bundle import DEFAULT_BUNDLE
    from disanatdetect.calibration import CalibrationConfig, recalibrate

    manifest = Path(args.model or DEFAULT_BUNDLE)
    config = CalibrationConfig(label_maps=args.label_maps,
                               real_scans=tuple(args.healthy_scans or (DEFAULT_HEALTHY_SCANS,)))
    if args.volumes is not None:
        config = replace(config, volumes_per_modality=args.volumes)
    thresholds = recalibrate(manifest, config)
    if not args.quiet:
        print(f"{manifest}: " + ", ".join(f"{name} {value:.3f}" for name, value in thresholds.items()))
    return 0


BASELINE_BUNDLES = Path(__file__).parent / "weights"


def _methods(names: list[str], device: str, with_ablations: bool, model: str | None = None) -> list:
    from disanatdetect.baselines import ReconstructionMethod, ThresholdMethod
    from disanatdetect.bundle import load_bundle
    from disanatdetect.dal_inference import DALMethod
    from disanatdetect.evaluate import ablations

    methods = []
    for name in names:
        if name == "dal":
            methods.append(DALMethod(load_bundle(model), device=device))
            if with_ablations:
                methods += ablations(methods[-1])
        elif name == "threshold":
            methods.append(ThresholdMethod())
        else:
            manifest = BASELINE_BUNDLES / name / "manifest.json"
            if not manifest.exists():
                raise InputError(f"the {name} baseline is not installed at {manifest}; build it with "
                                 f"'disanatdetect train --model {name}' and copy its bundle there.")
            methods.append(ReconstructionMethod(str(manifest), device))
    return methods


def command_evaluate(args: argparse.Namespace) -> int:
    from itertools import chain

    from disanatdetect import evaluate as harness
    from disanatdetect.figures import method_panels, precision_recall_curves

    if not args.cases and not args.synthetic and not args.healthy_scan and not args.held_out_healthy:
        raise InputError("nothing to evaluate; pass --cases DIR, --healthy-scan MODALITY:FILE, --held-out-healthy N "
                         "and/or --synthetic.")
    methods = _methods(args.methods.split(","), args.device, not args.no_ablations, args.model)
    if args.ablation_models:
        methods += harness.retrained_ablations(args.ablation_models, args.device)
    modalities = tuple(args.modalities.split(","))
    sources = [harness.folder_cases(folder, tuple(m for m in modalities if m in harness.MODALITY_FILES))
               for folder in args.cases or ()]
    if args.healthy_scan:
        sources.append(harness.healthy_scans(args.healthy_scan))
    if args.synthetic:
        suite = harness.SuiteConfig()
        sources.append(harness.synthetic_suite(replace(suite, modalities=tuple(
            m for m in suite.modalities if m in modalities))))
    if args.held_out_healthy:
        # the subjects the evaluated DAL model held out of its training (recorded in its manifest)
        dal = next((m for m in methods if hasattr(m, "bundle")), None)
        trained = dal.bundle.manifest.get("training", {}).get("config", {}) if dal is not None else {}
        label_maps = args.label_maps or trained.get("label_maps") or DEFAULT_LABEL_MAPS
        sources.append(harness.held_out_healthy_scans(args.held_out_healthy, modalities, label_maps,
                                                      trained.get("holdout_subjects", 4),
                                                      with_head=args.with_head))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def progress(row: dict) -> None:
        if not args.quiet:
            shown = {k: row[k] for k in ("ap", "best_dice", "dice", "false_positive_ml", "seconds") if k in row}
            print(f"{row['source']:9} {row['case']:16} {row['modality']:5} {row['method']:20} {shown}",
                  file=sys.stderr)

    started = time.perf_counter()
    from disanatdetect.pipeline import DetectionConfig

    settings = DetectionConfig()
    if args.n4:
        settings = replace(settings, normalisation=replace(settings.normalisation, n4_bias_correction=True))
    evaluation = harness.evaluate(methods, chain(*sources), progress, settings)
    names = [m.name for m in methods]
    harness.write_csv(evaluation.rows, out / "results.csv")
    table = harness.summary_table(evaluation.rows)
    versus = harness.versus_baseline_table(evaluation.rows, lesioned_prefix=args.table_cases)
    if versus:
        which = f"the real cases named {args.table_cases}*" if args.table_cases else "all real cases"
        table += f"\n\nDAL against the baseline per modality, lesions of {which}, every real healthy scan:\n\n" \
            + versus
    paired = harness.paired_differences_table(evaluation.rows, "DAL", "Threshold", lesioned_prefix=args.table_cases)
    if paired:
        table += "\n\nDAL minus the baseline, case by case:\n\n" + paired
    for source in dict.fromkeys(r["source"] for r in evaluation.rows if "ap" not in r):
        healthy = harness.healthy_false_positive_table(evaluation.rows, names, source)
        if healthy:
            table += f"\n\nFalse lesion on the healthy scans ({source}), at each method's own threshold:\n\n" \
                + healthy
    ablation = harness.ablation_table(evaluation.rows)
    if ablation:
        table += "\n\nAblations on real cases, mean AP and its change against the reference:\n\n" + ablation
    (out / "results.md").write_text(table + "\n")
    for (source, case, modality), panel in evaluation.panels.items():
        method_panels(out / "figures" / f"{source}_{case}_{modality}.png", panel, names,
                      f"{case} {modality.upper()}")
    if evaluation.curves:  # healthy scans alone have no lesion to draw a curve of
        precision_recall_curves(out / "pr_curves.png", evaluation.curves)
    print(table)
    print(f"\n{len(evaluation.rows)} rows in {time.perf_counter() - started:.0f} s; results in {out}")
    return 0


def command_benchmark(args: argparse.Namespace) -> int:
    from disanatdetect import benchmark as bench
    from disanatdetect.io import read_volume

    methods = _methods(args.methods.split(","), args.device, with_ablations=False, model=args.model)
    volume = read_volume(args.input) if args.input else bench.brats_like_volume()
    if args.size:
        try:
            size = tuple(int(n) for n in args.size.lower().split("x"))
        except ValueError:
            size = ()
        if len(size) != 3 or min(size) < 1:
            raise InputError(f"--size {args.size!r} is not three voxel counts; write it as 512x512x400.")
        volume = bench.resampled_to_size(volume, size)
    report = bench.benchmark(methods, volume, args.runs, args.warmup)
    table = bench.benchmark_table(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['input_shape']} voxels, {report['device']}, median of {report['runs']} runs, {report['date']}")
    print(table)
    return 0


def _cohort_config(args: argparse.Namespace):
    from disanatdetect.cohort.run import ClusterConfig, CohortConfig

    cluster = ClusterConfig(workers=args.workers, threads_per_worker=args.threads_per_worker, scheduler=args.scheduler)
    return CohortConfig(model=args.model, device=args.device, modality=args.modality, threshold=args.threshold,
                        retry_failed=args.retry_failed, verify_inputs=args.verify_inputs,
                        thumbnails=not args.no_thumbnails, progress=not args.quiet, cluster=cluster)


def _run_cohort(scans: list, layout, args: argparse.Namespace, process: bool = True) -> int:
    """Run (or, without ``process``, only report) a cohort; exit 0 when every scan is done, 2 when some failed."""
    from disanatdetect.cohort.run import run_cohort

    log = (lambda message: None) if args.quiet else (lambda message: print(message, file=sys.stderr))
    try:
        summary = run_cohort(scans, layout, _cohort_config(args), process, log)
    except KeyboardInterrupt:
        print("interrupted: the scans done so far are kept; run the same command again to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not args.quiet:
        print(summary.line())
        print(f"table: {summary.table}\nreport: {summary.report}")
    failed = summary.count("failed")
    if failed:
        print(f"error: {failed} of {len(summary.rows)} scans failed; their errors are in {summary.table}.",
              file=sys.stderr)
        return EXIT_INPUT
    return 0


def command_batch(args: argparse.Namespace) -> int:
    from disanatdetect.cohort import require_cohort_extra

    require_cohort_extra()
    from disanatdetect.cohort.inputs import scans_from_csv, scans_from_folder
    from disanatdetect.cohort.outputs import CaseFolders

    source = Path(args.input)
    if not source.exists():
        raise InputError(f"{source} does not exist; pass a folder of scans or a CSV list.")
    scans = scans_from_folder(source, exclude=args.out) if source.is_dir() else scans_from_csv(source)
    return _run_cohort(scans, CaseFolders(args.out), args)


def command_bids(args: argparse.Namespace) -> int:
    from disanatdetect.cohort import require_cohort_extra

    require_cohort_extra(bids=True)
    from disanatdetect.cohort.inputs import scans_from_bids
    from disanatdetect.cohort.outputs import BidsDerivatives

    scans = scans_from_bids(args.bids_dir, args.participant_label, args.session_label, args.suffix)
    return _run_cohort(scans, BidsDerivatives(args.output_dir, args.bids_dir), args,
                       process=args.analysis_level == "participant")


def _add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="manifest.json of a model bundle other than the shipped one (default: the shipped DAL)")


def _add_cohort_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``batch`` and ``bids``: the detection settings, the cluster and resuming."""
    from disanatdetect.synth.contrast import MODALITIES

    parser.add_argument("--modality", default=None, choices=("auto",) + MODALITIES,
                        help="analyse every scan as this contrast (default: each scan's own: its file name, CSV "
                             "column or BIDS suffix, else auto)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threshold", type=float, default=None,
                        help="anomaly-map threshold (default: the model's label-free threshold for the modality)")
    _add_model_option(parser)
    parser.add_argument("--workers", type=int, default=0,
                        help="local Dask workers (default: as many as the cores and memory allow; one per GPU)")
    parser.add_argument("--threads-per-worker", type=int, default=0,
                        help="torch and ITK threads of each worker (default: 1 on CPU; workers x threads never "
                             "exceed the cores by default)")
    parser.add_argument("--scheduler", default=None,
                        help="address of a running Dask scheduler (tcp://HOST:PORT) instead of a local cluster")
    parser.add_argument("--retry-failed", action="store_true", help="run the scans that failed before again")
    parser.add_argument("--verify-inputs", action="store_true",
                        help="recompute every input's checksum to decide what is complete (default: only for "
                             "inputs whose size or modification time changed)")
    parser.add_argument("--no-thumbnails", action="store_true", help="no thumbnails in the HTML report")
    parser.add_argument("--quiet", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    from disanatdetect.synth.contrast import MODALITIES
    from disanatdetect.synth.lesions import LESION_TYPES

    parser = argparse.ArgumentParser(prog="disanatdetect", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"disanatdetect {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    detect = commands.add_parser("detect", help="find anomalies in a brain MRI volume")
    detect.add_argument("input", help="NIfTI, NRRD or MHA file, or a DICOM folder")
    detect.add_argument("--out", required=True, help="output folder")
    detect.add_argument("--modality", default="auto", choices=("auto",) + MODALITIES)
    detect.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    detect.add_argument("--threshold", type=float, default=None,
                        help="anomaly-map threshold (default: the model's label-free threshold for the modality)")
    detect.add_argument("--overwrite", action="store_true", help="replace existing outputs in --out")
    _add_model_option(detect)
    detect.add_argument("--quiet", action="store_true")
    detect.add_argument("--progress", default="bar", choices=("bar", "json"),
                        help="bar: a progress bar on stderr (none with --quiet); json: one JSON object per line on "
                             "stdout with 'stage' (preparing, registering, reconstructing, post-processing, then "
                             "done once the outputs are written), 'fraction' of that stage (0 to 1) and "
                             "'message', and nothing else on stdout; for programs that run this command")
    detect.set_defaults(run=command_detect)

    demo = commands.add_parser("demo", help="detect on a shipped real FLAIR scan (TCGA-DU-7294) and draw a figure")
    demo.add_argument("--out", default="disanatdetect-demo")
    demo.add_argument("--synthetic", action="store_true",
                      help="run on a synthetic case (--modality, --lesion, --seed) instead of the shipped scan")
    demo.add_argument("--modality", default=None, choices=MODALITIES,
                      help="contrast of the synthetic case (default flair; the shipped scan is a FLAIR)")
    demo.add_argument("--lesion", default="tumour", choices=LESION_TYPES, help="with --synthetic")
    demo.add_argument("--seed", type=int, default=1, help="with --synthetic")
    demo.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    _add_model_option(demo)
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(run=command_demo)

    synth = commands.add_parser("synth", help="write synthetic cases (image and exact lesion mask)")
    synth.add_argument("--out", required=True)
    synth.add_argument("--n", type=int, default=1)
    synth.add_argument("--modality", default="flair", choices=MODALITIES + ("random",))
    synth.add_argument("--lesion", default="tumour", choices=LESION_TYPES + ("none",))
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--quiet", action="store_true")
    synth.set_defaults(run=command_synth)

    evaluation = commands.add_parser("evaluate", help="benchmark DAL and the baselines on cases with references")
    evaluation.add_argument("--cases", action="append", help="BraTS-style folder: <case>/<modality>.nii.gz + "
                            "reference (a case without one is healthy); repeat for several folders")
    evaluation.add_argument("--healthy-scan", action="append", metavar="MODALITY:FILE",
                            help="a healthy scan outside any case folder (e.g. t1:ch2bet.nii.gz); repeatable")
    _add_model_option(evaluation)
    evaluation.add_argument("--n4", action="store_true",
                            help="N4 bias correction of every scan before normalising (to measure it)")
    evaluation.add_argument("--synthetic", action="store_true", help="add the fixed-seed synthetic suite")
    evaluation.add_argument("--held-out-healthy", type=int, default=0, metavar="N",
                            help="add N healthy scans per modality rendered from the held-out label maps "
                                 "(seeds apart from calibration's): out-of-sample healthy false positives")
    evaluation.add_argument("--with-head", action="store_true",
                            help="render the --held-out-healthy scans unstripped (head, eyes, noise; thick slices "
                                 "or 1 mm): healthy false positives through brain extraction")
    evaluation.add_argument("--label-maps", default=None,
                            help="the training label maps, for --held-out-healthy (default: the model's own)")
    evaluation.add_argument("--out", default="evaluation")
    evaluation.add_argument("--methods", default="dal,threshold,ae,dae")
    evaluation.add_argument("--modalities", default="t1,t1c,t2,flair,pd")
    evaluation.add_argument("--no-ablations", action="store_true")
    evaluation.add_argument("--table-cases", default="", metavar="PREFIX",
                            help="count only the lesioned real cases whose name starts with PREFIX in the table of "
                                 "DAL against the baseline (e.g. Brats18); all rows stay in results.csv")
    evaluation.add_argument("--ablation-models", metavar="DIR", default=None,
                            help="a folder of DAL bundles trained as ablations (<name>/manifest.json each), "
                                 "evaluated beside the others")
    evaluation.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    evaluation.add_argument("--quiet", action="store_true")
    evaluation.set_defaults(run=command_evaluate)

    bench = commands.add_parser("benchmark", help="seconds per stage and peak memory, DAL beside the baselines")
    bench.add_argument("input", nargs="?", default=None, help="a scan (default: synthetic 240x240x155 FLAIR)")
    bench.add_argument("--methods", default="dal,threshold,ae,dae")
    bench.add_argument("--runs", type=int, default=5)
    bench.add_argument("--warmup", type=int, default=1)
    bench.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    bench.add_argument("--out", default=None, help="write the JSON report here")
    bench.add_argument("--size", default=None, help="resample the scan to IxJxK voxels first (e.g. 512x512x400)")
    _add_model_option(bench)
    bench.set_defaults(run=command_benchmark)

    training = commands.add_parser("train", help="train DAL on synthetic healthy data and write a model bundle")
    training.add_argument("--model", default="dal", choices=("dal", "ae", "dae"),
                          help="DAL, or a learned baseline (convolutional / denoising autoencoder)")
    training.add_argument("--out", default="runs/dal", help="the run's folder: checkpoint, logs, curves, bundle")
    training.add_argument("--label-maps", default=DEFAULT_LABEL_MAPS,
                          help="folder of SynthSeg-style label maps (NIfTI) the training anatomy comes from")
    training.add_argument("--steps", type=int, default=1000)
    training.add_argument("--seed", type=int, default=0)
    training.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    training.add_argument("--precision", default="bf16", choices=("bf16", "fp32"),
                          help="autocast of the networks' forward passes (losses stay float32)")
    training.add_argument("--batch-size", type=int, default=0,
                          help="anatomies per step (default: 8 on CPU, sized to the GPU's memory on CUDA)")
    training.add_argument("--threads", type=int, default=0)
    training.add_argument("--max-minutes", type=float, default=None,
                          help="stop after this wall time with a checkpoint; --resume continues (with no limit "
                               "unless given again)")
    training.add_argument("--resume", action="store_true",
                          help="continue the run in --out with the settings it was started with")
    training.add_argument("--restart", action="store_true", help="start over, replacing the run in --out")
    training.add_argument("--no-export", action="store_true",
                          help="do not calibrate and write a bundle at the end (a resumed run remembers it)")
    training.add_argument("--version", default="0.0.0-dev",
                          help="version written into the bundle (a release gives its own, e.g. 2.0.0)")
    for key, settings in DAL_PARTS.items():  # unset: the released model's setting (TrainConfig)
        either = training.add_mutually_exclusive_group()
        for value, setting in zip((True, False), settings):
            either.add_argument(setting.flag, dest=key, action="store_const", const=value, default=None,
                                help=setting.meaning)
    training.add_argument("--quiet", action="store_true")
    training.set_defaults(run=command_train)

    calibration = commands.add_parser("calibrate", help="recalibrate a bundle's label-free thresholds in place")
    _add_model_option(calibration)
    calibration.add_argument("--label-maps", default=DEFAULT_LABEL_MAPS,
                             help="the training's label maps: healthy scans are rendered from its held-out subjects")
    calibration.add_argument("--healthy-scans", action="append", default=None, metavar="DIR",
                             help="case folder of real healthy scans to add (repeatable; default: "
                                  f"{DEFAULT_HEALTHY_SCANS} where it exists)")
    calibration.add_argument("--volumes", type=int, default=None,
                             help="rendered healthy scans per modality (default: the release's 20)")
    calibration.add_argument("--quiet", action="store_true")
    calibration.set_defaults(run=command_calibrate)

    batch = commands.add_parser("batch", help="detect on every scan of a folder or CSV list, resumable, on Dask",
                                description="Outputs go to OUT/<scan>/ as detect writes them, with OUT/lesions.tsv "
                                            "and OUT/report.html; a rerun skips the scans already complete.")
    batch.add_argument("input", help="a folder of scans (flat, or one subfolder per case) or a CSV list "
                                     "'path,modality[,subject,session]'")
    batch.add_argument("--out", required=True, help="output folder")
    _add_cohort_options(batch)
    batch.set_defaults(run=command_batch)

    bids = commands.add_parser("bids", help="BIDS App: detect on a BIDS dataset's anatomical scans, write derivatives",
                               description="participant: process the scans into BIDS derivatives with lesions.tsv "
                                           "and report.html; group: rebuild the table and report only.")
    bids.add_argument("bids_dir", help="root of the BIDS dataset (read only)")
    bids.add_argument("output_dir", help="the derivatives dataset to write (e.g. BIDS_DIR/derivatives/disanatdetect)")
    bids.add_argument("analysis_level", choices=("participant", "group"))
    bids.add_argument("--participant-label", "--participant_label", nargs="+", default=None,
                      help="subjects to process, with or without 'sub-' (default: all)")
    bids.add_argument("--session-label", "--session_label", nargs="+", default=None,
                      help="sessions to process, with or without 'ses-' (default: all)")
    bids.add_argument("--suffix", nargs="+", default=["FLAIR", "T2w", "T1w", "PDw"],
                      help="anatomical contrasts to process (a T1w with a ce- entity is read as T1c)")
    _add_cohort_options(bids)
    bids.set_defaults(run=command_bids)
    return parser


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # SIGTERM (a scheduler stopping the job) is handled like Ctrl-C: temporaries are removed on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return args.run(args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT
    except ModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_MODEL
    except OSError as error:  # disk full, no permission, a folder where a file should be
        where = f" ({error.filename})" if error.filename else ""
        print(f"error: {error.strerror or error}{where}; check the output folder's permissions and free space.",
              file=sys.stderr)
        return EXIT_SYSTEM
    except KeyboardInterrupt:
        print("interrupted: no output was written.", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
