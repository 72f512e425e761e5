#!/usr/bin/env python3
"""Regenerate the file lists of the DisAnatDetect scripted module's CMakeLists.txt.

Slicer's ``slicerMacroBuildScriptedModule`` needs every Python script and every
resource file of a module named explicitly. This script walks the module folder
``DisAnatDetect/`` and rewrites the two lists between the marker comments

    # BEGIN GENERATED MODULE_PYTHON_SCRIPTS
    # END GENERATED MODULE_PYTHON_SCRIPTS
    # BEGIN GENERATED MODULE_PYTHON_RESOURCES
    # END GENERATED MODULE_PYTHON_RESOURCES

in ``DisAnatDetect/CMakeLists.txt``. Everything outside the markers is kept.

Scripts:   DisAnatDetect.py, DisAnatDetectLib/**/*.py, disanatdetect/**/*.py
Resources: Resources/Icons/*.png, Resources/UI/*.ui,
           disanatdetect/weights/*, disanatdetect/data/*, disanatdetect/data/*/*

Usage (from anywhere):

    python3 Resources/update_module_cmake.py            # rewrite the lists
    python3 Resources/update_module_cmake.py --check    # exit 1 if they are stale
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

MODULE_NAME = "DisAnatDetect"
INDENT = "  "

SCRIPT_GLOBS = (
    f"{MODULE_NAME}.py",
    f"{MODULE_NAME}Lib/**/*.py",
    "disanatdetect/**/*.py",
)

RESOURCE_GLOBS = (
    "Resources/Icons/*.png",
    "Resources/UI/*.ui",
    "disanatdetect/weights/*",
    "disanatdetect/data/*",
    "disanatdetect/data/*/*",
)

# Never listed: caches, compiled files, editor and OS leftovers.
SKIP_DIR_NAMES = {"__pycache__", ".pytest_cache", ".hypothesis", ".ipynb_checkpoints"}
SKIP_SUFFIXES = {".pyc", ".pyo", ".orig", ".rej", ".swp", ".tmp"}


def _default_root() -> Path:
    return Path(__file__).resolve().parent.parent


def _wanted(path: Path, module_dir: Path) -> bool:
    rel = path.relative_to(module_dir)
    if not path.is_file():
        return False
    if any(part in SKIP_DIR_NAMES or part.startswith(".") for part in rel.parts):
        return False
    if path.suffix in SKIP_SUFFIXES or path.name.endswith("~"):
        return False
    return True


def _collect(module_dir: Path, patterns: tuple[str, ...], exclude_py: bool = False) -> list[str]:
    found: set[str] = set()
    for pattern in patterns:
        for path in module_dir.glob(pattern):
            if not _wanted(path, module_dir):
                continue
            if exclude_py and path.suffix == ".py":
                # Python files are scripts, not resources.
                continue
            found.add(path.relative_to(module_dir).as_posix())
    # Sorted by path components (case-sensitive), so each folder stays together.
    return sorted(found, key=lambda p: p.split("/"))


def collect_scripts(module_dir: Path) -> list[str]:
    return _collect(module_dir, SCRIPT_GLOBS)


def collect_resources(module_dir: Path) -> list[str]:
    return _collect(module_dir, RESOURCE_GLOBS, exclude_py=True)


def _check_entry(entry: str) -> None:
    # CMake list items are separated by whitespace and ';'; quoting would work but
    # keeping names plain keeps the file readable and the build portable.
    bad = set(entry) & set(' \t;"()#$\\')
    if bad:
        raise SystemExit(
            f"error: module file name {entry!r} contains {''.join(sorted(bad))!r}; rename it"
        )


def replace_block(text: str, name: str, entries: list[str]) -> str:
    begin = f"# BEGIN GENERATED {name}"
    end = f"# END GENERATED {name}"
    lines = text.splitlines(keepends=True)
    try:
        b = next(i for i, line in enumerate(lines) if line.strip() == begin)
        e = next(i for i, line in enumerate(lines) if i > b and line.strip() == end)
    except StopIteration:
        raise SystemExit(
            f"error: markers '{begin}' / '{end}' not found in the module CMakeLists.txt"
        ) from None
    indent = lines[b][: len(lines[b]) - len(lines[b].lstrip())] or INDENT
    for entry in entries:
        _check_entry(entry)
    body = [f"{indent}{entry}\n" for entry in entries]
    return "".join(lines[: b + 1] + body + lines[e:])


def render(cmake_text: str, module_dir: Path) -> str:
    text = replace_block(cmake_text, "MODULE_PYTHON_SCRIPTS", collect_scripts(module_dir))
    text = replace_block(text, "MODULE_PYTHON_RESOURCES", collect_resources(module_dir))
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if DisAnatDetect/CMakeLists.txt is out of date",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=_default_root(),
        help="repository root (default: the parent of this script's folder)",
    )
    args = parser.parse_args(argv)

    module_dir = args.root.resolve() / MODULE_NAME
    cmake_file = module_dir / "CMakeLists.txt"
    if not cmake_file.is_file():
        print(f"error: {cmake_file} not found", file=sys.stderr)
        return 2

    current = cmake_file.read_text(encoding="utf-8")
    wanted = render(current, module_dir)

    if args.check:
        if current == wanted:
            print(f"{cmake_file.relative_to(args.root.resolve()).as_posix()} is up to date")
            return 0
        diff = difflib.unified_diff(
            current.splitlines(keepends=True),
            wanted.splitlines(keepends=True),
            fromfile=f"{MODULE_NAME}/CMakeLists.txt (current)",
            tofile=f"{MODULE_NAME}/CMakeLists.txt (expected)",
        )
        sys.stderr.write("".join(diff))
        print(
            f"error: {MODULE_NAME}/CMakeLists.txt is stale; "
            "run: python3 Resources/update_module_cmake.py",
            file=sys.stderr,
        )
        return 1

    if current != wanted:
        with open(cmake_file, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(wanted)
        print(f"updated {MODULE_NAME}/CMakeLists.txt")
    else:
        print(f"{MODULE_NAME}/CMakeLists.txt already up to date")
    n_scripts = len(collect_scripts(module_dir))
    n_resources = len(collect_resources(module_dir))
    print(f"{n_scripts} scripts, {n_resources} resources")
    return 0


if __name__ == "__main__":
    sys.exit(main())
