"""Property-based fuzzing of everything a user can hand the tool: files, arrays and geometry.

Each input either runs to complete outputs or is refused with one ``InputError`` sentence (exit code 2, one line on
stderr, nothing written); no other exception may escape, the input file never changes, and a damaged file is
refused within a bounded time.

CI runs a bounded, derandomised number of examples. A longer, random run multiplies every test's examples:

    DISANATDETECT_FUZZ_SCALE=10 python3 -m pytest Testing/test_fuzz.py -q -p no:cacheprovider
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from disanatdetect.cli import OUTPUT_NAMES, main
from disanatdetect.errors import InputError
from disanatdetect.io import READABLE_SUFFIXES, Volume, read_volume
from disanatdetect.scan_checks import validate_input

FUZZ_SCALE = int(os.environ.get("DISANATDETECT_FUZZ_SCALE", "1"))
DTYPES = (np.uint8, np.int8, np.int16, np.uint16, np.int32, np.float32, np.float64)


def fuzz_settings(examples: int, deadline_ms: int | None = None):
    """``examples`` per scale unit; CI (scale 1) is derandomised so that it is reproducible."""
    return settings(max_examples=examples * FUZZ_SCALE, deadline=deadline_ms, derandomize=FUZZ_SCALE == 1,
                    database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def read_and_validate(path: Path) -> Volume | None:
    """The first two things ``detect`` does with a file; ``None`` when it was refused with an InputError."""
    try:
        volume = read_volume(path)
        validate_input(volume)
        return volume
    except InputError as error:
        message = str(error)
        assert message and "\n" not in message and "Traceback" not in message
        return None


# --- Bytes: arbitrary files and damaged real ones -----------------------------------------------------------------

@fuzz_settings(100, deadline_ms=10_000)
@given(content=st.binary(max_size=4096), suffix=st.sampled_from(READABLE_SUFFIXES))
def test_arbitrary_bytes_are_read_or_refused(content, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"scan{suffix}"
        path.write_bytes(content)
        read_and_validate(path)
        assert path.read_bytes() == content


@functools.cache
def valid_file(suffix: str) -> bytes:
    """The bytes of a small, valid brain-like scan in one of the readable formats."""
    rng = np.random.default_rng(7)
    z, y, x = np.indices((18, 24, 20))
    inside = ((z - 9) / 8) ** 2 + ((y - 12) / 11) ** 2 + ((x - 10) / 9) ** 2 < 1
    array = np.where(inside, rng.normal(600, 120, inside.shape), 0).astype(np.int16)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"scan{suffix}"
        sitk.WriteImage(sitk.GetImageFromArray(array), str(path), useCompression=suffix != ".nii")
        return path.read_bytes()


# NIfTI-1 header fields that say how much data follows and how to read it: (offset, struct format).
NIFTI_FIELDS = {"dim0": (40, "h"), "dim1": (42, "h"), "dim2": (44, "h"), "dim3": (46, "h"), "dim4": (48, "h"),
                "datatype": (70, "h"), "bitpix": (72, "h"), "pixdim1": (80, "f"), "pixdim3": (88, "f"),
                "vox_offset": (108, "f"), "scl_slope": (112, "f"), "qform_code": (252, "h")}


@fuzz_settings(100, deadline_ms=10_000)
@given(suffix=st.sampled_from([".nii", ".nii.gz", ".nrrd", ".mha"]), keep=st.floats(0.0, 1.0),
       flips=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(1, 255)), max_size=4))
def test_truncated_or_corrupted_files_are_refused_or_read(suffix, keep, flips):
    original = valid_file(suffix)
    data = bytearray(original)
    for position, mask in flips:
        data[position % len(data)] ^= mask
    data = bytes(data[:round(len(data) * keep)])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"scan{suffix}"
        path.write_bytes(data)
        volume = read_and_validate(path)
        if not flips and len(data) < len(original) and suffix in (".nii", ".nii.gz"):
            assert volume is None, "a truncated NIfTI file must be refused, not padded"


@fuzz_settings(100, deadline_ms=10_000)
@given(field=st.sampled_from(sorted(NIFTI_FIELDS)), integer=st.integers(-32768, 32767),
       real=st.one_of(st.floats(width=32, allow_nan=True, allow_infinity=True), st.floats(-1e9, 1e9, width=32)),
       compressed=st.booleans())
def test_nifti_headers_that_lie_are_refused_or_read(field, integer, real, compressed):
    offset, code = NIFTI_FIELDS[field]
    data = bytearray(valid_file(".nii"))
    struct.pack_into("<" + code, data, offset, integer if code == "h" else real)
    payload = gzip.compress(bytes(data)) if compressed else bytes(data)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("scan.nii.gz" if compressed else "scan.nii")
        path.write_bytes(payload)
        volume = read_and_validate(path)
        if volume is not None:  # every voxel read came from the file, at one byte or more each
            assert volume.array.size <= len(data) - 348


# --- Arrays and geometry: the Python API's check ---------------------------------------------------------------------

def rotation(a: float, b: float, c: float) -> np.ndarray:
    """The rotation by ``a``, ``b``, ``c`` radians about x, y and z in turn."""
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    about_x = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    about_y = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    about_z = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return about_z @ about_y @ about_x


@st.composite
def geometry(draw):
    spacing = tuple(draw(st.one_of(st.floats(0.05, 20.0), st.sampled_from([0.0, -1.0, float("nan"), float("inf")])))
                    for _ in range(3))
    origin = tuple(draw(st.floats(-1e4, 1e4)) for _ in range(3))
    kind = draw(st.sampled_from(["rotation", "rotation", "flip", "singular", "nan"]))
    direction = rotation(*[draw(st.floats(-np.pi, np.pi)) for _ in range(3)])
    if kind == "flip":
        direction = direction @ np.diag([1, -1, 1])
    elif kind == "singular":
        direction[2] = direction[1]
    elif kind == "nan":
        direction[0, 0] = np.nan
    return spacing, origin, direction, kind


@st.composite
def scan_arrays(draw, max_side: int = 40, dimensions=(3,)):
    """Arrays as scans come, or fail to come: noise, a brain-like blob, a label map, a constant; NaN and Inf."""
    ndim = draw(st.sampled_from(dimensions))
    scan_like = draw(st.sampled_from([True, True, True, False]))
    side = st.integers(max_side // 2, max_side) if scan_like else st.integers(1, max_side)
    shape = tuple(draw(side) for _ in range(ndim))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    pattern = draw(st.sampled_from(["blob", "blob", "noise", "labels", "constant"]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    level = draw(st.sampled_from([1e-6, 1.0, 100.0, 1000.0, 1e6]))
    values = rng.normal(level, level / 4, shape)
    if pattern == "blob":
        centre = np.array(shape) / 2
        radius = np.sqrt(sum(((index - c) / max(c, 0.5)) ** 2 for index, c in zip(np.indices(shape), centre)))
        values = np.where(radius < 0.8, values, 0)
    elif pattern == "labels":
        values = rng.integers(0, 5, shape).astype(float)
    elif pattern == "constant":
        values = np.full(shape, level)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = np.clip(np.round(values), info.min, info.max)
    array = values.astype(dtype)
    if dtype.kind == "f" and draw(st.booleans()):
        flat = array.reshape(-1)
        flat[rng.integers(0, flat.size, draw(st.integers(1, 3)))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return array


@fuzz_settings(200, deadline_ms=5_000)
@given(array=scan_arrays(), placed=geometry())
def test_validation_accepts_or_refuses_any_volume(array, placed):
    spacing, origin, direction, kind = placed
    try:
        validate_input(Volume(array, spacing, origin, direction))
    except InputError as error:
        assert "\n" not in str(error)
        return
    assert kind in ("rotation", "flip") and all(np.isfinite(spacing)) and min(spacing) > 0
    assert np.isfinite(array).all() and array.max() > array.min()


# --- The whole command: files in, four outputs or one sentence out -----------------------------------------------

def write_scan(array: np.ndarray, spacing, origin, direction, path: Path) -> None:
    """NRRD keeps NaN and every dtype; 2D and 4D arrays are written as such."""
    image = sitk.GetImageFromArray(array, isVector=False)
    if array.ndim == 3:
        image.SetSpacing(spacing)
        image.SetOrigin(origin)
        image.SetDirection(tuple(direction.ravel()))
    sitk.WriteImage(image, str(path))


@fuzz_settings(16)
@given(array=scan_arrays(max_side=48, dimensions=(3, 3, 3, 2, 4)),
       spacing=st.tuples(*[st.floats(0.3, 6.0)] * 3), placed=geometry())
def test_detect_gives_outputs_or_one_sentence(array, spacing, placed):
    _, origin, direction, kind = placed
    if kind not in ("rotation", "flip"):  # ITK cannot even write such a header; the API test covers them
        direction = np.eye(3)
    with tempfile.TemporaryDirectory() as folder:
        path, out = Path(folder) / "scan.nrrd", Path(folder) / "out"
        write_scan(array, spacing, origin, direction, path)
        before = path.read_bytes()
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            code = main(["detect", str(path), "--out", str(out), "--device", "cpu", "--quiet"])
        message = stderr.getvalue().strip()
        event("outputs written" if code == 0 else message.split(";")[0][:60])
        assert path.read_bytes() == before
        if code == 0:
            assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_NAMES)
            mask = read_volume(out / "lesion_mask.nii.gz")
            assert mask.shape == array.shape and set(np.unique(mask.array)) <= {0, 1}
        else:
            assert code == 2, message
            assert message.startswith("error: ") and len(message.splitlines()) == 1, message
            assert not out.exists()


@pytest.mark.parametrize("offset", [float("inf"), float("nan"), -352.0])
def test_impossible_data_offset_is_refused(tmp_path, offset):
    data = bytearray(valid_file(".nii"))
    struct.pack_into("<f", data, 108, offset)
    path = tmp_path / "scan.nii"
    path.write_bytes(bytes(data))
    assert read_and_validate(path) is None


@pytest.mark.parametrize("claimed", [(4097, 16, 16), (1024, 1024, 1024)])
def test_huge_dimensions_in_a_tiny_file_are_refused_before_reading(tmp_path, claimed):
    data = bytearray(valid_file(".nii"))
    for axis, size in enumerate(claimed):
        struct.pack_into("<h", data, 42 + 2 * axis, min(size, 32767))
    path = tmp_path / "huge.nii.gz"
    path.write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(InputError, match="crop or downsample"):
        read_volume(path)
