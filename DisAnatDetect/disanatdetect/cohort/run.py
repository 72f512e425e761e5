"""Running a cohort: skip what is complete, distribute the rest over Dask workers, collect one row per scan.

On one machine a :class:`distributed.LocalCluster` on the loopback interface, sized so that workers x threads per
worker does not exceed the cores (nor the workers the memory); on many machines, any Dask cluster reached through
its scheduler's address (dask-jobqueue on SLURM, the Dask Helm chart on Kubernetes). A worker that dies mid-scan
loses only that scan's staged files; Dask runs the scan again on another worker, and records it as failed only
after it took down ``allowed_failures`` workers.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from disanatdetect.cohort import require_cohort_extra
from disanatdetect.cohort.inputs import Scan
from disanatdetect.cohort.outputs import (REPORT_NAME, TABLE_NAME, BidsDerivatives, CaseFolders,
                                          Provenance, ScanOutputs, clear_failure, completed_report, record_failure,
                                          recorded_failure, remove_outputs, row_from_report, run_lock)
from disanatdetect.cohort.report import ReportConfig, relative, write_html, write_table
from disanatdetect.errors import InputError

Layout = CaseFolders | BidsDerivatives
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class ClusterConfig:
    """Where the scans run; the defaults use this machine fully without oversubscribing it."""

    workers: int = 0  # local workers; 0: as many as cores // threads_per_worker and the memory allow (CPU), or GPUs
    threads_per_worker: int = 0  # torch and ITK threads of each worker; 0: 1 on CPU, the cores' share on a GPU
    scheduler: str | None = None  # address of an existing Dask scheduler (tcp://HOST:PORT); None: a local cluster
    # Room for the largest scan the tool accepts: detect peaks at 3.2 GB on a 512 x 512 x 400 scan.
    memory_per_worker_gb: float = 4.0
    # Workers a scan may take down (out of memory, killed) before it is recorded as failed instead of rerun.
    allowed_failures: int = 3
    dashboard_address: str = ":8787"  # Dask's dashboard on a local cluster, when bokeh is installed
    connect_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.workers < 0 or self.threads_per_worker < 0:
            raise InputError("--workers and --threads-per-worker take 0 (chosen for the machine) or a positive count.")


@dataclass(frozen=True)
class CohortConfig:
    """What a cohort run does; the defaults are the released settings."""

    model: str | None = None  # manifest.json of a model bundle; None: the shipped model
    device: str = "auto"
    modality: str | None = None  # None: each scan's own (its file name, CSV column or BIDS suffix)
    threshold: float | None = None  # None: the model's label-free threshold for the modality
    retry_failed: bool = False  # try scans that failed before on the same input again
    verify_inputs: bool = False  # recompute every input's checksum, even when its size and time are unchanged
    thumbnails: bool = True
    progress: bool = True
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    report: ReportConfig = field(default_factory=ReportConfig)


@dataclass
class CohortSummary:
    """What a run did, and where its table and report are."""

    rows: list[dict]
    processed: int  # scans run in this run (done or failed)
    skipped: int  # complete from an earlier run
    seconds: float  # the whole run: discovery checks, cluster start, processing, report
    workers: int
    threads_per_worker: int
    table: Path
    report: Path
    scans_per_worker: dict[str, int] = field(default_factory=dict)
    dashboard: str | None = None

    def count(self, status: str) -> int:
        return sum(row["status"] == status for row in self.rows)

    @property
    def scans_per_hour(self) -> float:
        """Scans processed per hour of this run, cluster start included."""
        return SECONDS_PER_HOUR * self.processed / self.seconds if self.processed and self.seconds else 0.0

    def line(self) -> str:
        text = (f"{len(self.rows)} scans: {self.count('done')} done ({self.skipped} complete from an earlier run), "
                f"{self.count('failed')} failed, {self.count('pending')} pending")
        if self.processed:
            text += (f"; {self.processed} processed in {self.seconds:.0f} s on {self.workers} worker(s) x "
                     f"{self.threads_per_worker or 'their'} thread(s): {self.scans_per_hour:.0f} scans/hour")
        return text


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which batch schedulers set), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def local_cluster_size(config: ClusterConfig, device: str) -> tuple[int, int]:
    """Workers and threads per worker of a local cluster: given ones, else the machine's without oversubscription.

    CPU: one thread per worker, as many workers as cores and memory allow (on 2 cores, 2 workers x 1 thread did 600
    scans/hour, 1 worker x 2 threads 426: registration runs on one thread, and torch scales less than linearly);
    given a number of workers, they share the cores. GPU: one worker per GPU, each with its share of the cores for
    the CPU stages.
    """
    import psutil
    import torch

    from disanatdetect.devices import resolve_device

    cores = usable_cores()
    if resolve_device(device).type == "cuda":
        workers = config.workers or max(1, torch.cuda.device_count())
        return workers, config.threads_per_worker or max(1, cores // workers)
    # Given workers share the cores; otherwise one thread each.
    threads = config.threads_per_worker or (max(1, cores // config.workers) if config.workers else 1)
    by_memory = int(psutil.virtual_memory().total / (config.memory_per_worker_gb * 2 ** 30))
    return config.workers or max(1, min(cores // threads, by_memory)), threads


def model_provenance(config: CohortConfig) -> Provenance:
    """Load and verify the model once here (a damaged bundle fails before any cluster starts); its provenance.

    The modality is the forced one, or "auto" to be replaced by each scan's own (:func:`scan_provenance`).
    """
    from disanatdetect.bundle import load_bundle

    bundle = load_bundle(config.model, device="cpu")
    return Provenance(bundle.version, bundle.manifest["sha256"], config.modality or "auto", config.threshold)


def scan_provenance(provenance: Provenance, config: CohortConfig, scan: Scan) -> Provenance:
    """What this scan's outputs must be made with: the forced modality, else the scan's own."""
    return replace(provenance, modality=config.modality or scan.modality)


def _dashboard(client) -> str | None:
    """The dashboard's address when the scheduler serves one (Dask's dashboard needs bokeh)."""
    try:
        return client.dashboard_link if "dashboard" in client.scheduler_info().get("services", {}) else None
    except Exception:  # noqa: BLE001 - the dashboard is a convenience; never fail a run for it
        return None


@contextlib.contextmanager
def connect(config: ClusterConfig, device: str,
            log: Callable[[str], None]) -> Iterator[tuple[object, int, int, str | None]]:
    """A Dask client: to ``config.scheduler``, or to a local cluster it starts (and stops) on the loopback interface.

    Yields the client, the number of workers, the threads per worker (0: each remote worker's own) and the
    dashboard's address (None when there is none).
    """
    import dask
    from distributed import Client, LocalCluster

    if config.scheduler:
        try:
            client = Client(config.scheduler, timeout=config.connect_timeout_s)
        except (OSError, TimeoutError, ValueError) as error:
            raise InputError(f"no Dask scheduler answers at {config.scheduler} ({error}); start one or check the "
                             "address.") from None
        workers = len(client.scheduler_info().get("workers", {}))
        log(f"connected to the Dask scheduler at {config.scheduler} ({workers} worker(s) now)")
        try:
            yield client, workers, config.threads_per_worker, _dashboard(client)
        finally:
            client.close()
        return
    workers, threads = local_cluster_size(config, device)
    cores = usable_cores()
    if workers * threads > cores:
        log(f"warning: {workers} workers x {threads} threads is more than the {cores} cores; scans will be slower "
            "than with fewer workers.")
    has_dashboard = importlib.util.find_spec("bokeh") is not None
    # The scheduler reads allowed-failures when it starts, so the setting must be in force while it is created.
    with dask.config.set({"distributed.scheduler.allowed-failures": config.allowed_failures}):
        # A worker runs one scan at a time (one Dask thread); its torch and ITK threads are set by the plugin.
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=config.dashboard_address if has_dashboard else None,
                               silence_logs=logging.ERROR)
    try:
        client = Client(cluster)
        try:
            yield client, workers, threads, _dashboard(client) if has_dashboard else None
        finally:
            client.close()
    finally:
        cluster.close()


def _base_row(scan: Scan, outputs: ScanOutputs, root: Path) -> dict:
    return {"scan": scan.key, "subject": scan.subject, "session": scan.session, "modality": scan.modality,
            "status": "pending", "input": str(scan.path), "report": relative(outputs.report, root),
            "thumbnail": relative(outputs.thumbnail, root)}


def _killed_row(base: dict, provenance: Provenance, allowed_failures: int) -> dict:
    return {**base, "status": "failed", "model_version": provenance.model_version,
            "processed_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "error": f"the scan took down {allowed_failures + 1} workers (each died while processing it, for example "
                     "out of memory); give workers more memory and rerun with --retry-failed."}


@dataclass
class _Plan:
    """Each scan's row so far, and the scans to process with the provenance their outputs must have."""

    rows: dict[str, dict]
    todo: list[tuple[Scan, ScanOutputs, Provenance]]
    skipped: int


def _plan(scans: list[Scan], layout: Layout, provenance: Provenance, config: CohortConfig) -> _Plan:
    """Sort the scans into complete (skipped), failed before on the same input (kept), and to do. Reads only."""
    rows: dict[str, dict] = {}
    todo = []
    skipped = 0
    for scan in scans:
        outputs = layout.outputs(scan)
        wanted = scan_provenance(provenance, config, scan)
        base = _base_row(scan, outputs, layout.root)
        report = completed_report(scan, outputs, wanted, config.verify_inputs)
        failure = None if report or config.retry_failed else recorded_failure(layout.root, scan, wanted,
                                                                               config.verify_inputs)
        if report is not None:
            rows[scan.key] = {**base, **row_from_report(report)}
            skipped += 1
        elif failure is not None:
            rows[scan.key] = {**base, "status": "failed", "model_version": provenance.model_version,
                              "seconds": failure.get("seconds"), "processed_at": failure.get("processed_at"),
                              "error": failure["error"]}
        else:
            rows[scan.key] = base
            todo.append((scan, outputs, wanted))
    return _Plan(rows, todo, skipped)


def _distribute(client, plan: _Plan, layout: Layout, staging: Path, threads: int, config: CohortConfig,
                base_provenance: Provenance) -> Counter:
    """Run the plan's scans on the cluster, updating its rows as they finish; scans per worker."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker
    from tqdm.auto import tqdm

    from disanatdetect.cohort.worker import PLUGIN_NAME, DetectorPlugin, one_line, process_scan

    model = str(Path(config.model).absolute()) if config.model else None  # workers may run in another folder
    client.register_plugin(DetectorPlugin(model, config.device, threads), name=PLUGIN_NAME)
    token = uuid.uuid4().hex[:8]  # task keys unique on a shared scheduler
    futures = {client.submit(process_scan, scan, outputs, staging, wanted, layout.extra_report(scan),
                             config.thumbnails, config.verify_inputs, pure=False,
                             key=f"disanatdetect-{token}-{index}"): (scan, outputs, wanted)
               for index, (scan, outputs, wanted) in enumerate(plan.todo)}
    per_worker: Counter = Counter()
    bar = tqdm(total=len(futures), unit="scan", desc="scans", disable=not config.progress, file=sys.stderr,
               dynamic_ncols=True)
    try:
        for future in as_completed(futures):
            scan, outputs, wanted = futures.pop(future)
            base = plan.rows[scan.key]
            try:
                row = {**base, **future.result()}
            except KilledWorker:
                row = _killed_row(base, base_provenance, config.cluster.allowed_failures)
            except Exception as error:  # noqa: BLE001 - the scan fails, the cohort goes on
                row = {**base, "status": "failed", "model_version": base_provenance.model_version,
                       "error": one_line(error)}
            plan.rows[scan.key] = row
            per_worker[row.get("worker", "?")] += 1
            if row["status"] == "done":
                clear_failure(layout.root, scan)
            else:
                remove_outputs(outputs)  # any there are from an earlier input or model: no longer this scan's
                record_failure(layout.root, scan, row, wanted)
                bar.set_postfix(failed=sum(r["status"] == "failed" for r in plan.rows.values()))
            bar.update()
    finally:
        bar.close()
        for future in futures:  # interrupted: nothing more is to run for this run
            future.cancel()
    return per_worker


def run_cohort(scans: list[Scan], layout: Layout, config: CohortConfig = CohortConfig(), process: bool = True,
               log: Callable[[str], None] = lambda message: print(message, file=sys.stderr)) -> CohortSummary:
    """Process every scan whose outputs are not complete and current, then write ``lesions.tsv`` and the report.

    With ``process=False`` nothing is run: the table and report are rebuilt from the outputs (BIDS ``group``).
    Failed scans are recorded and left alone on the next run unless ``config.retry_failed`` (or their input changed).
    The cluster starts before anything is written, so a scheduler that does not answer leaves no output behind;
    with nothing to do, no cluster starts at all.
    """
    require_cohort_extra()
    started = time.perf_counter()
    layout.check(scans)
    base_provenance = model_provenance(config)
    root = layout.root
    # Planned before the lock is taken: a scan another run completes meanwhile is found complete by its worker.
    plan = _plan(scans, layout, base_provenance, config)
    work = process and bool(plan.todo)
    per_worker: Counter = Counter()
    with connect(config.cluster, config.device, log) if work else contextlib.nullcontext((None, 0, 0, None)) as (
            client, workers, threads, dashboard):
        if dashboard:
            log(f"Dask dashboard: {dashboard}")
        layout.prepare()
        with run_lock(root) as staging:
            try:
                if client is not None and plan.todo:
                    per_worker = _distribute(client, plan, layout, staging, threads, config, base_provenance)
            finally:  # also when interrupted: the table then shows what is done and what is pending
                rows = [plan.rows[scan.key] for scan in scans]
                table = write_table(rows, root / TABLE_NAME)
                report = write_html(rows, root, root / REPORT_NAME, base_provenance.model_version, config.report)
    return CohortSummary(rows, sum(per_worker.values()), plan.skipped, time.perf_counter() - started, workers,
                         threads, table, report, dict(per_worker), dashboard)
