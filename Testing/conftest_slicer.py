"""Fixtures for the Slicer adapter and module tests (loaded with ``pytest_plugins = ["conftest_slicer"]``).

- ``slicerApp``: the Qt-free Slicer application of :mod:`slicer_scene` (one per test session).
- ``flairPath``: the real FLAIR scan of case TCGA-DU-7294.
- ``temporaryRoot``: an empty folder for the detection's temporary files, so tests can prove none is left behind.
- ``fakePython``: writes an executable that stands in for Slicer's Python as the child process (to make a child
  that crashes, prints garbage or starts children of its own).
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from slicer_scene import addModulePath, createSlicerApplication

pytest.importorskip("slicer", reason="the slicer-core package (Slicer's MRML libraries) is not installed")


@pytest.fixture(scope="session")
def slicerApp():
    addModulePath()
    return createSlicerApplication()


@pytest.fixture(scope="session")
def flairPath(real_data) -> Path:
    return real_data / "TCGA-DU-7294" / "flair.nii.gz"


@pytest.fixture
def temporaryRoot(tmp_path) -> Path:
    folder = tmp_path / "temporary"
    folder.mkdir()
    return folder


@pytest.fixture
def fakePython(tmp_path):
    """``fakePython(name, body)``: an executable script; ``body`` is Python run by this interpreter, or a shell script
    when it starts with ``#!/bin/sh``."""
    if os.name == "nt":
        pytest.skip("the stand-in interpreter is a POSIX script")

    def make(name: str, body: str) -> str:
        path = tmp_path / name
        text = body if body.startswith("#!/bin/sh") else f"#!{sys.executable}\n{body}"
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        return str(path)

    return make
