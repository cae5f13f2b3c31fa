"""Packaging: the top-level folders install as ``pxserve.<folder>`` (one import namespace).

Everything else about the package is in setup.cfg. Packages and their data
files are found here by walking the folders, so a new pipeline's modules
(``workers/<pipeline>/``), weights and configs are installed without
editing a list.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
FOLDERS = {
    "pxserve": "pxserve",
    "pxserve.frontend": "frontend",
    "pxserve.workers": "workers",
    "pxserve.shared": "shared",
    "pxserve.configs": "configs",
}
SKIP = {"__pycache__"}


def _is_package(folder: Path) -> bool:
    return (folder / "__init__.py").is_file()


def _data_files(folder: Path) -> list[str]:
    """Files of a package that are not code, with those of its plain (non-package) subfolders."""
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or path.suffix in (".py", ".pyc") or SKIP & set(relative.parts):
            continue
        between = [folder / Path(*relative.parts[:i]) for i in range(1, len(relative.parts))]
        if not any(_is_package(p) for p in between):  # a subpackage lists its own
            found.append(relative.as_posix())
    return found


def find_packages() -> tuple[dict[str, str], dict[str, list[str]]]:
    """(package -> folder, package -> data files) for every package under FOLDERS."""
    packages: dict[str, str] = {}
    data: dict[str, list[str]] = {}
    for name, top in FOLDERS.items():
        for init in sorted((ROOT / top).rglob("__init__.py")):
            folder = init.parent
            relative = folder.relative_to(ROOT / top)
            if SKIP & set(relative.parts):
                continue
            package = ".".join([name, *relative.parts])
            packages[package] = folder.relative_to(ROOT).as_posix()
            files = _data_files(folder)
            if files:
                data[package] = files
    return packages, data


PACKAGES, PACKAGE_DATA = find_packages()

setup(packages=list(PACKAGES), package_dir=PACKAGES, package_data=PACKAGE_DATA)
