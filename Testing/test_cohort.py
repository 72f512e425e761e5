"""Cohorts: batch and BIDS-App runs on a real Dask LocalCluster (loopback), real pybids and real NIfTI files."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel
import numpy as np
import pytest

pytest.importorskip("distributed")
pytest.importorskip("bids")

from disanatdetect.cli import OUTPUT_NAMES, main  # noqa: E402
from disanatdetect.cohort.inputs import scans_from_bids, scans_from_csv, scans_from_folder  # noqa: E402
from disanatdetect.cohort.report import read_table  # noqa: E402
from disanatdetect.cohort.worker import KILL_HOOK_VARIABLE  # noqa: E402
from disanatdetect.io import Volume, write_volume  # noqa: E402
from disanatdetect.synth.cases import synthetic_case, synthetic_cases  # noqa: E402

# The test dataset: six scans that should succeed, in three layouts of BIDS entities, and one damaged file.
GOOD_SCANS = {
    "sub-01/ses-1/anat/sub-01_ses-1_FLAIR.nii.gz": (1, "flair"),
    "sub-01/ses-2/anat/sub-01_ses-2_FLAIR.nii.gz": (2, "flair"),
    "sub-02/anat/sub-02_FLAIR.nii.gz": (3, "flair"),
    "sub-02/anat/sub-02_T2w.nii.gz": (3, "t2"),
    "sub-03/anat/sub-03_T1w.nii.gz": (4, "t1"),
    "sub-03/anat/sub-03_ce-gadolinium_T1w.nii.gz": (4, "t1c"),
}
CORRUPT_SCAN = "sub-04/anat/sub-04_FLAIR.nii.gz"
KILLED_SCAN = "sub-02_T2w"  # the worker processing it is killed once, after staging its outputs
WORKERS = 2


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


def _bids_args(bids: Path, out: Path, model: Path, *extra: str, quiet: bool = True) -> list[str]:
    return ["bids", str(bids), str(out), "participant", "--model", str(model), "--device", "cpu", *extra] + (
        ["--quiet"] if quiet else [])


@pytest.fixture(scope="module")
def bids_dataset(tmp_path_factory, atlas) -> Path:
    """A small BIDS dataset of synthetic lesioned scans (int16, as scanners write them) and one truncated file."""
    root = tmp_path_factory.mktemp("bids")
    (root / "dataset_description.json").write_text(json.dumps({"Name": "synthetic", "BIDSVersion": "1.10.0"}))
    seeds: dict[int, list[tuple[str, str]]] = {}
    for relpath, (seed, modality) in GOOD_SCANS.items():
        seeds.setdefault(seed, []).append((relpath, modality))
    for seed, entries in seeds.items():
        for (relpath, _), case in zip(entries, synthetic_cases(atlas, seed, [m for _, m in entries])):
            image = case.image
            write_volume(Volume((image.array * 1000).astype(np.int16), image.spacing, image.origin, image.direction),
                         root / relpath)
    whole = (root / "sub-02/anat/sub-02_FLAIR.nii.gz").read_bytes()
    (root / CORRUPT_SCAN).parent.mkdir(parents=True)
    (root / CORRUPT_SCAN).write_bytes(whole[: len(whole) // 2])  # a transfer cut in the middle
    return root


@pytest.fixture(scope="module")
def first_run(bids_dataset, tiny_bundle, tmp_path_factory):
    """The main run: 2 local workers over the dataset, one worker killed mid-scan; returns what it left."""
    out = bids_dataset / "derivatives" / "disanatdetect"
    marker = tmp_path_factory.mktemp("hook") / "killed"
    inputs = {path: _digest(path) for path in bids_dataset.rglob("*.nii.gz")}
    summary = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(summary):
        patch.setenv(KILL_HOOK_VARIABLE, f"{KILLED_SCAN}={marker}")  # workers inherit it when they start
        code = main(_bids_args(bids_dataset, out, tiny_bundle, "--workers", str(WORKERS), quiet=False))
    return {"code": code, "out": out, "marker": marker, "inputs": inputs, "summary": summary.getvalue(),
            "rows": {row["scan"]: row for row in read_table(out / "lesions.tsv")}}


@pytest.fixture(scope="module")
def cluster():
    """A running local Dask cluster reached by address, as a SLURM or Kubernetes cluster would be."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as local:
        yield local.scheduler_address


def test_every_scan_is_processed_once_and_a_corrupt_one_fails_alone(first_run, bids_dataset):
    rows = first_run["rows"]
    keys = [Path(relpath).name.removesuffix(".nii.gz") for relpath in GOOD_SCANS]
    assert first_run["code"] == 2  # the run finished, and says that one scan failed
    # each scan's task completed once (the killed worker's scan only on its second worker), on both workers
    assert "7 scans: 6 done (0 complete from an earlier run), 1 failed, 0 pending; 7 processed" in \
        first_run["summary"] and f"on {WORKERS} worker(s) x 1 thread(s)" in first_run["summary"]
    assert sorted(rows) == sorted(keys + ["sub-04_FLAIR"])
    assert all(rows[key]["status"] == "done" for key in keys)
    failed = rows["sub-04_FLAIR"]
    assert failed["status"] == "failed" and "truncated" in failed["error"] and "\n" not in failed["error"]
    assert rows["sub-03_ce-gadolinium_T1w"]["modality"] == "t1c" and rows["sub-02_T2w"]["modality"] == "t2"
    for key in keys:
        report = json.loads((first_run["out"] / rows[key]["report"]).read_text())
        assert report["cohort"]["scan"] == key  # each scan's outputs are its own
        assert report["cohort"]["input_sha256"] == _digest(Path(rows[key]["input"]))
    assert {path: _digest(path) for path in first_run["inputs"]} == first_run["inputs"]  # inputs only read


def test_a_killed_worker_loses_no_scan_and_leaves_no_partial_output(first_run):
    out = first_run["out"]
    assert first_run["marker"].exists()  # the hook did kill a worker in the middle of that scan
    assert first_run["rows"][KILLED_SCAN]["status"] == "done"
    assert not list((out / ".disanatdetect").glob("staging*/**/*.*"))
    assert not [name for name in _files(out) if "partial" in name or Path(name).name.startswith(".")
                and not name.startswith(".disanatdetect/")]
    expected = {"dataset_description.json", "lesions.tsv", "report.html",
                "figures/lesion_volumes.png", ".disanatdetect/lock", "logs/failed/sub-04_FLAIR.json"}
    for relpath in GOOD_SCANS:
        folder, name = relpath.rsplit("/", 1)
        prefix, suffix = name.removesuffix(".nii.gz").rsplit("_", 1)
        expected |= {f"{folder}/{prefix}_desc-pseudohealthy_{suffix}.nii.gz",
                     f"{folder}/{prefix}_desc-anomaly_{suffix}.nii.gz",
                     f"{folder}/{prefix}_label-lesion_desc-{suffix}_mask.nii.gz",
                     f"{folder}/{prefix}_label-lesion_desc-{suffix}_mask.json",
                     f"figures/{prefix}_{suffix}.png"}
    assert _files(out) == expected


def test_derivatives_are_found_by_pybids_with_their_entities(first_run, bids_dataset):
    from bids import BIDSLayout
    from bids.layout import Query

    layout = BIDSLayout(bids_dataset, derivatives=True)
    derivatives = layout.derivatives.get_pipeline("DisAnatDetect")
    assert len(derivatives.get(desc="pseudohealthy", extension=".nii.gz")) == len(GOOD_SCANS)
    for source in layout.get(scope="raw", datatype="anat", extension=".nii.gz"):
        if source.relpath == CORRUPT_SCAN:
            continue
        entities = {key: source.get_entities().get(key, Query.NONE) for key in ("subject", "session", "ceagent")}
        suffix = source.entities["suffix"]
        phi = derivatives.get(desc="pseudohealthy", suffix=suffix, extension=".nii.gz", **entities)
        anomaly = derivatives.get(desc="anomaly", suffix=suffix, extension=".nii.gz", **entities)
        mask = derivatives.get(label="lesion", desc=suffix, suffix="mask", extension=".nii.gz", **entities)
        assert len(phi) == len(anomaly) == len(mask) == 1, source.relpath  # one each, with the source's entities
        sidecar = derivatives.get_metadata(mask[0].path)
        assert sidecar["Sources"] == [f"bids:raw:{source.relpath}"]
        assert sidecar["lesion_count"] == len(sidecar["lesions"])
        reference = nibabel.load(source.path)
        for output in phi + anomaly + mask:
            image = nibabel.load(output.path)
            assert image.shape == reference.shape
            np.testing.assert_allclose(image.affine, reference.affine, atol=1e-4)


def test_outputs_equal_detect_for_the_same_input(first_run, bids_dataset, tiny_bundle, tmp_path):
    import torch

    source = bids_dataset / "sub-01/ses-1/anat/sub-01_ses-1_FLAIR.nii.gz"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers run; on a shared machine one thread is also the faster
    try:
        assert main(["detect", str(source), "--out", str(tmp_path), "--model", str(tiny_bundle), "--modality",
                     "flair", "--device", "cpu", "--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)
    folder = first_run["out"] / "sub-01/ses-1/anat"
    cohort = [folder / f"sub-01_ses-1_desc-{desc}_FLAIR.nii.gz" for desc in ("pseudohealthy", "anomaly")]
    cohort.append(folder / "sub-01_ses-1_label-lesion_desc-FLAIR_mask.nii.gz")
    for name, path in zip(OUTPUT_NAMES[:3], cohort):
        ours, theirs = nibabel.load(path), nibabel.load(tmp_path / name)
        assert ours.get_data_dtype() == theirs.get_data_dtype()
        np.testing.assert_array_equal(np.asarray(ours.dataobj), np.asarray(theirs.dataobj))
        np.testing.assert_array_equal(ours.affine, theirs.affine)
    ours = json.loads((folder / "sub-01_ses-1_label-lesion_desc-FLAIR_mask.json").read_text())
    theirs = json.loads((tmp_path / "report.json").read_text())
    for field in ("modality", "threshold", "lesion_count", "lesion_volume_ml", "lesions", "model_version"):
        assert ours[field] == theirs[field], field


def test_a_rerun_skips_everything_and_leaves_failed_scans_alone(first_run, bids_dataset, tiny_bundle, capsys):
    out = first_run["out"]
    before = {path: path.stat().st_mtime_ns for path in out.rglob("*.nii.gz")}
    code = main(_bids_args(bids_dataset, out, tiny_bundle, "--workers", str(WORKERS), quiet=False))
    captured = capsys.readouterr()
    assert code == 2  # the failed scan is still failed, and not retried without --retry-failed
    assert "7 scans: 6 done (6 complete from an earlier run), 1 failed, 0 pending" in captured.out
    assert "processed" not in captured.out.split("\n")[0]  # nothing ran: no cluster, no scan
    assert {path: path.stat().st_mtime_ns for path in out.rglob("*.nii.gz")} == before
    rows = {row["scan"]: row for row in read_table(out / "lesions.tsv")}
    assert rows == first_run["rows"]  # the same table, failed scan and its time included


def test_the_group_level_rebuilds_table_and_report_only(first_run, bids_dataset, tiny_bundle):
    out = first_run["out"]
    (out / "lesions.tsv").unlink()
    (out / "report.html").unlink()
    args = _bids_args(bids_dataset, out, tiny_bundle)
    args[3] = "group"
    assert main(args) == 2
    assert {row["scan"]: row for row in read_table(out / "lesions.tsv")} == first_run["rows"]
    assert (out / "report.html").exists()


def test_changed_inputs_are_redone_and_a_failed_one_retried_on_request(first_run, bids_dataset, tiny_bundle,
                                                                        atlas, cluster, capsys):
    out = first_run["out"]
    changed = bids_dataset / "sub-02/anat/sub-02_FLAIR.nii.gz"
    image = synthetic_case(atlas, 9, "flair", "tumour").image
    write_volume(Volume((image.array * 1000).astype(np.int16), image.spacing, image.origin, image.direction),
                 changed)
    damaged = bids_dataset / "sub-03/anat/sub-03_T1w.nii.gz"  # done before, now cut short: its outputs must go
    damaged.write_bytes(damaged.read_bytes()[:1000])
    mask = out / "sub-02/anat/sub-02_label-lesion_desc-FLAIR_mask.json"
    assert json.loads(mask.read_text())["cohort"]["input_sha256"] != _digest(changed)
    code = main(_bids_args(bids_dataset, out, tiny_bundle, "--scheduler", cluster, "--retry-failed", quiet=False))
    assert code == 2
    assert "5 done (4 complete from an earlier run), 2 failed, 0 pending; 3 processed" in capsys.readouterr().out
    rows = {row["scan"]: row for row in read_table(out / "lesions.tsv")}
    assert rows["sub-02_FLAIR"]["status"] == "done"
    assert json.loads(mask.read_text())["cohort"]["input_sha256"] == _digest(changed)
    assert rows["sub-04_FLAIR"]["status"] == "failed"  # retried (one of the 3 processed), and failed again
    assert rows["sub-03_T1w"]["status"] == "failed"
    left = sorted(path.name for path in (out / "sub-03/anat").iterdir())
    assert left and all("_ce-gadolinium_" in name for name in left)  # only its post-contrast sibling's outputs
    assert not (out / "figures/sub-03_T1w.png").exists()
    unchanged = set(rows) - {"sub-02_FLAIR", "sub-03_T1w", "sub-04_FLAIR"}
    assert all(rows[key] == first_run["rows"][key] for key in unchanged)  # not touched


def test_a_csv_list_gets_the_command_line_layout(bids_dataset, first_run, tiny_bundle, cluster, tmp_path):
    listing = tmp_path / "scans.csv"
    anat = bids_dataset / "sub-01/ses-1/anat"
    listing.write_text(f"path,modality,subject,session\n{anat / 'sub-01_ses-1_FLAIR.nii.gz'},flair,p1,s1\n"
                       f"{anat / 'sub-01_ses-1_FLAIR.nii.gz'},flair,p2,\n")
    out = tmp_path / "out"
    assert main(["batch", str(listing), "--out", str(out), "--model", str(tiny_bundle), "--device", "cpu",
                 "--scheduler", cluster, "--no-thumbnails", "--quiet"]) == 0
    assert sorted(p.name for p in (out / "p1/s1/sub-01_ses-1_FLAIR").iterdir()) == sorted(OUTPUT_NAMES)
    assert sorted(p.name for p in (out / "p2/sub-01_ses-1_FLAIR").iterdir()) == sorted(OUTPUT_NAMES)
    mask = nibabel.load(out / "p1/s1/sub-01_ses-1_FLAIR/lesion_mask.nii.gz")
    bids_mask = nibabel.load(first_run["out"] / "sub-01/ses-1/anat/sub-01_ses-1_label-lesion_desc-FLAIR_mask.nii.gz")
    np.testing.assert_array_equal(np.asarray(mask.dataobj), np.asarray(bids_mask.dataobj))
    assert [row["status"] for row in read_table(out / "lesions.tsv")] == ["done", "done"]


def _chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def test_the_html_report_opens_in_a_headless_browser_and_sorts(first_run, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium to open the report with (apt-get install chromium)")
    out = first_run["out"]
    page = (out / "report.html").as_uri() + "#sort=lesion_volume_ml&desc"
    result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}",
                             "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom", page],
                            capture_output=True, text=True, timeout=120)
    dom = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r'<html[^>]*data-errors="0"', dom) and re.search(r'<html[^>]*data-ready="true"', dom)
    assert "Uncaught" not in result.stderr
    order = re.findall(r'<a href="[^"]+\.json">([^<]+)</a>', dom)
    rows = read_table(out / "lesions.tsv")
    by_volume = sorted(rows, key=lambda row: float(row["lesion_volume_ml"] or "-inf"), reverse=True)
    assert order == [row["scan"] for row in by_volume]  # the page's script sorted the table by volume
    assert "truncated" in dom  # the failed scan is listed with its error


def test_folder_discovery_finds_cases_and_leaves_annotations_and_outputs_out(tmp_path):
    (tmp_path / "case-a").mkdir()
    (tmp_path / "case-b").mkdir()
    for name in ("case-a/flair.nii.gz", "case-a/t2.nii.gz", "case-a/reference.nii.gz", "case-b/scan_T1w.nrrd",
                 "loose_pd.mha", ".hidden.nii.gz", "out/case-a/flair/pseudo_healthy.nii.gz"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    scans = scans_from_folder(tmp_path, exclude=tmp_path / "out")
    assert [(scan.key, scan.modality) for scan in scans] == [
        ("loose_pd", "pd"), ("case-a/flair", "flair"), ("case-a/t2", "t2"), ("case-b", "t1")]


def test_csv_lists_are_checked_line_by_line(tmp_path):
    listing = tmp_path / "list.csv"
    listing.write_text("scans/a.nii.gz,FLAIR,01,1\nscans/b.nii.gz,,02\n")
    scans = scans_from_csv(listing)
    assert [(s.key, s.modality, s.path) for s in scans] == [("01/1/a", "flair", tmp_path / "scans/a.nii.gz"),
                                                            ("02/b", "auto", tmp_path / "scans/b.nii.gz")]
    listing.write_text("a.nii.gz,t3\n")
    with pytest.raises(ValueError, match="line 1: modality 't3'"):
        scans_from_csv(listing)
    listing.write_text("x/a.nii.gz,t1,01\ny/a.nii.gz,t1,01\n")
    with pytest.raises(ValueError, match="lines 1 and 2 would share the outputs '01/a'"):
        scans_from_csv(listing)


def test_bids_discovery_filters_participants_sessions_and_suffixes(bids_dataset):
    chosen = scans_from_bids(bids_dataset, ["sub-01", "03"], None, ["FLAIR", "T1w"])
    assert [(s.key, s.modality) for s in chosen] == [
        ("sub-01_ses-1_FLAIR", "flair"), ("sub-01_ses-2_FLAIR", "flair"), ("sub-03_T1w", "t1"),
        ("sub-03_ce-gadolinium_T1w", "t1c")]
    assert [s.key for s in scans_from_bids(bids_dataset, None, ["2"])] == ["sub-01_ses-2_FLAIR"]


@pytest.mark.parametrize("args,message", [
    (lambda d, o: ["bids", str(d), str(o), "participant", "--participant-label", "07"], "has no subject 07"),
    (lambda d, o: ["bids", str(d), str(o), "participant", "--suffix", "T2star"], "not an anatomical contrast"),
    (lambda d, o: ["bids", str(d), str(d), "participant"], "is the BIDS dataset itself"),
    (lambda d, o: ["bids", str(d / "sub-01"), str(o), "participant"], "is not a BIDS dataset"),
    (lambda d, o: ["batch", str(d), "--out", str(o)], "is a BIDS dataset"),
    (lambda d, o: ["batch", str(o / "missing.csv"), "--out", str(o)], "does not exist"),
])
def test_bad_cohort_input_is_one_line(bids_dataset, tmp_path, capsys, args, message):
    code = main(args(bids_dataset, tmp_path / "out") + ["--quiet"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and error.startswith("error: ") and message in error and len(error.splitlines()) == 1


def test_without_the_extra_one_sentence_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if dask[distributed] were not installed
    code = main(["batch", str(tmp_path), "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1
    assert 'pip install "disanatdetect[cohort]"' in error


def test_the_local_cluster_fills_the_machine_without_oversubscribing_it():
    from disanatdetect.cohort.run import ClusterConfig, local_cluster_size, usable_cores

    cores = usable_cores()
    workers, threads = local_cluster_size(ClusterConfig(), "cpu")
    assert threads == 1 and 1 <= workers <= cores
    assert local_cluster_size(ClusterConfig(workers=1), "cpu") == (1, cores)  # one worker gets every core
    assert local_cluster_size(ClusterConfig(memory_per_worker_gb=1e6), "cpu") == (1, 1)  # memory bounds workers
    with pytest.raises(ValueError, match="--workers"):
        ClusterConfig(workers=-1)
