"""An older commit, importable as ``pxserve`` without installing it.

A ``git worktree`` of the revision, and a folder to put on PYTHONPATH whose
``pxserve`` package links to that tree's frontend/, workers/, shared/ and
configs/: the layout setup.cfg installs, so a server started with it runs the
old code against this environment's engines. Used by the A/B benchmarks.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def commit_of(revision: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", revision], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()


def importable(revision: str, work: Path) -> tuple[str, Path]:
    """``revision``'s short hash, and the folder that imports it as pxserve."""
    commit = commit_of(revision)
    tree, shim = work / f"tree-{commit}", work / f"shim-{commit}"
    if not tree.is_dir():
        subprocess.run(["git", "worktree", "add", "-f", str(tree), commit], cwd=ROOT, check=True)
    package = shim / "pxserve"
    package.mkdir(parents=True, exist_ok=True)
    for source in (tree / "pxserve").glob("*.py"):
        shutil.copy(source, package / source.name)
    for folder in ("frontend", "workers", "shared", "configs"):
        link = package / folder
        if not link.exists():
            link.symlink_to(tree / folder)
    return commit, shim
