"""Cohorts: detection over a folder, a list or a BIDS dataset, resumable, reported, scaled out with Dask.

- :mod:`~disanatdetect.cohort.inputs` finds the scans (folder, CSV, BIDS through pybids);
- :mod:`~disanatdetect.cohort.outputs` names, writes and checks each scan's outputs (the command line's layout or
  BIDS derivatives);
- :mod:`~disanatdetect.cohort.worker` is what runs on a Dask worker: the model loaded once, one scan at a time;
- :mod:`~disanatdetect.cohort.run` discovers, skips what is complete, distributes the rest and collects the rows;
- :mod:`~disanatdetect.cohort.report` writes the cohort table (``lesions.tsv``) and the HTML report.

Dask and pybids come with the optional extra ``cohort``; :func:`require_cohort_extra` says what to install when they
are missing. Nothing here imports them at import time.
"""

from __future__ import annotations

from disanatdetect.errors import InputError

INSTALL_HINT = 'pip install "disanatdetect[cohort]"'


def require_cohort_extra(bids: bool = False) -> None:
    """Raise :class:`InputError` with one sentence when Dask (and, with ``bids``, pybids) cannot be imported."""
    missing = []
    for module, package in (("distributed", "dask[distributed]"),) + ((("bids", "pybids"),) if bids else ()):
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise InputError(f"cohort runs need {' and '.join(missing)}, which are not installed; install them with: "
                         f"{INSTALL_HINT}")
