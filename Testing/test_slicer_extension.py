"""What the Slicer Extensions Index and a first run in Slicer need: catalog entry, screenshot, sample data, atlas.

The catalog entry is validated against the constraints of Slicer's extension catalog entry schema, restated in
``Resources/slicer-extension-catalog-entry-schema.json`` (its source is named there).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from slicer_scene import MODULE_DIR, addModulePath

REPOSITORY = MODULE_DIR.parent
CATALOG_ENTRY = REPOSITORY / "Resources" / "DisAnatDetect.json"
CATALOG_SCHEMA = REPOSITORY / "Resources" / "slicer-extension-catalog-entry-schema.json"
RAW_URL = re.compile(r"^https://raw\.githubusercontent\.com/[^/]+/[^/]+/[^/]+/(?P<path>.+)$")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SUBPROCESS_TIMEOUT_SECONDS = 120


def cmakeField(name: str) -> str:
    match = re.search(rf'set\({name} "([^"]*)"\)', (REPOSITORY / "CMakeLists.txt").read_text(encoding="utf-8"))
    assert match, f"{name} is not set in CMakeLists.txt"
    return match.group(1)


def test_catalog_entry_validates_against_the_schema_and_agrees_with_cmake():
    jsonschema = pytest.importorskip("jsonschema")
    entry = json.loads(CATALOG_ENTRY.read_text(encoding="utf-8"))
    schema = json.loads(CATALOG_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.validate(entry, schema)
    assert "slicer-extension-catalog-entry-schema-v1.0.2.json" in entry["$schema"]
    assert entry["category"] == cmakeField("EXTENSION_CATEGORY")
    assert entry["build_dependencies"] == cmakeField("EXTENSION_DEPENDS").split(";")
    # The validator does catch a wrong entry (an unknown key, a missing one).
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**entry, "homepage": "x"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({key: value for key, value in entry.items() if key != "scm_url"}, schema)


@pytest.mark.parametrize("field", ["EXTENSION_SCREENSHOTURLS", "EXTENSION_ICONURL"])
def test_extension_image_urls_name_png_files_of_the_repository(field):
    for url in cmakeField(field).split(" "):
        match = RAW_URL.match(url)
        assert match, url
        path = REPOSITORY / match.group("path")
        assert path.is_file(), f"{field} names {path}, which does not exist"
        assert path.read_bytes()[:len(PNG_SIGNATURE)] == PNG_SIGNATURE


def test_sample_data_registration_matches_its_file_and_has_a_thumbnail(real_data):
    addModulePath()
    from DisAnatDetectLib import sampledata

    scan = real_data / "TCGA-DU-7294" / "flair.nii.gz"
    assert hashlib.sha256(scan.read_bytes()).hexdigest() == sampledata.SAMPLE_SHA256
    assert sampledata.SAMPLE_CHECKSUM == f"SHA256:{sampledata.SAMPLE_SHA256}"
    assert sampledata.SAMPLE_URL.endswith("/" + sampledata.SAMPLE_FILE_NAME)
    thumbnail = MODULE_DIR / "Resources" / sampledata.SAMPLE_THUMBNAIL
    assert thumbnail.read_bytes()[:len(PNG_SIGNATURE)] == PNG_SIGNATURE
    assert f"Resources/{sampledata.SAMPLE_THUMBNAIL}" in (MODULE_DIR / "CMakeLists.txt").read_text().split()
    assert "CC BY" in sampledata.SAMPLE_LICENCE and "TCIA" in sampledata.SAMPLE_SOURCE


def test_shipped_atlas_loads_without_nilearn_or_a_cache(tmp_path):
    """A fresh install (Slicer included) reads the prebuilt atlas: no nilearn, no nibabel, nothing in the cache."""
    code = ("import sys\n"
            "sys.modules['nilearn'] = sys.modules['nibabel'] = None\n"
            "from disanatdetect.atlas import load_atlas\n"
            "atlas = load_atlas()\n"
            "print(atlas.priors.shape, round(float(atlas.priors.sum(0).mean()), 4))\n")
    environment = {**os.environ, "DISANATDETECT_CACHE": str(tmp_path / "cache")}
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment,
                               timeout=SUBPROCESS_TIMEOUT_SECONDS)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip() == "(4, 104, 128, 112) 1.0"
    assert not (tmp_path / "cache").exists()


def test_shipped_atlas_is_what_the_code_builds():
    pytest.importorskip("nilearn")
    from disanatdetect.atlas import PACKAGED_ATLAS_DIR, AtlasConfig, _build

    config = AtlasConfig()
    shipped = np.load(PACKAGED_ATLAS_DIR / f"atlas-{config.key()}.npz")
    template, priors = _build(config)
    np.testing.assert_array_equal(shipped["template"], template)
    np.testing.assert_array_equal(shipped["priors"], priors)
    assert "McConnell Brain Imaging Centre" in str(shipped["notice"])


def test_readme_section_says_how_the_module_runs():
    addModulePath()
    from DisAnatDetectLib import sampledata

    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("<!-- SLICER-SECTION-START -->"):readme.index("<!-- SLICER-SECTION-END -->")]
    text = " ".join(section.split())
    for needed in ("child process", "Cancel", "GPU memory", sampledata.SAMPLE_NAME, "waitForCompletion",
                   "--progress json"):
        assert needed in text, needed

