"""The manual: it builds with every link checked, loads nothing from another host, and its examples run.

Every ``python`` and ``bash`` block of README.md and docs/ is an example a reader will paste. They are
collected from the Markdown itself and run against one real server serving every pipeline, from the
repository's root (they read the tests' own files), with the server's port in place of 8080. A Python
example passes when it exits 0 (its ``assert``s hold); a bash example runs under ``set -euo pipefail``
and every JSON envelope it prints must say ``errorCode`` 0.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Server, start_server

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUNNABLE = {"python", "bash"}
# An element that makes the browser fetch something (not a link the reader may follow).
ASSET_ELSEWHERE = r"<(?:script|img|link|iframe|source)\b[^>]*\b(?:src|href)=\"(?:https?:)?//[^\"]+"
FENCE = re.compile(r"^```(\w*)\s*$")
EXAMPLE_TIMEOUT_S = 300
# Every pipeline an example calls, on one server.
PIPELINES = (
    "image_classification", "OCR", "table_recognition", "seal_recognition", "doc_preprocessor",
    "PP-StructureV3",
)  # fmt: skip


def examples() -> Iterator[tuple[str, str, str]]:
    """(where, language, code) of each runnable fenced block."""
    for page in PAGES:
        language, start, code = None, 0, []
        for number, line in enumerate(page.read_text().splitlines(), start=1):
            match = FENCE.match(line)
            if language is None and match:
                language, start, code = match.group(1), number, []
            elif language is not None and line.startswith("```"):
                if language in RUNNABLE:
                    yield f"{page.relative_to(ROOT)}:{start}", language, "\n".join(code) + "\n"
                language = None
            elif language is not None:
                code.append(line)


EXAMPLES = list(examples())


def test_examples_are_collected() -> None:
    """The collector finds the examples every page promises (so a broken fence cannot hide them)."""
    where = {name.split(":")[0] for name, _, _ in EXAMPLES}
    assert {"README.md", "docs/getting-started.md", "docs/pipelines/ocr.md", "docs/production.md"} <= where
    assert {language for _, language, _ in EXAMPLES} == RUNNABLE
    assert all("localhost:8080" in code for _, _, code in EXAMPLES), "every example calls the server"


def test_manual_builds_strict_and_offline(tmp_path: Path) -> None:
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    # The tables made from the code are there.
    assert "url_inputs.allow_hosts" in (site / "configuration" / "index.html").read_text()
    assert "pxserve_worker_rss_bytes" in (site / "production" / "index.html").read_text()
    tables = site / "pipelines" / "table-recognition" / "index.html"
    assert "useOcrResultsWithTableCells" in tables.read_text()
    assert (site / "benchmarks" / "results" / "throughput.png").is_file()
    # Nothing is loaded from another host: no script, stylesheet, font, icon or picture.
    foreign = []
    for page in site.rglob("*"):
        if page.suffix == ".html":
            text = page.read_text()
            foreign += re.findall(
                r"<(?:script|img|link|iframe|source)\b[^>]*\b(?:src|href)=\"(?:https?:)?//[^\"]+", text
            )
        elif page.suffix == ".css":
            foreign += re.findall(r"url\((?:['\"])?(?:https?:)?//[^)]+\)|@import\s+[^;]*//", page.read_text())
    assert foreign == []


@pytest.fixture(scope="module")
def every_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    more = [arg for name in PIPELINES[1:] for arg in ("--pipeline", name)]
    server = start_server(PIPELINES[0], tmp_path_factory.mktemp("docs-server"), *more)
    yield server
    server.stop()


@pytest.mark.parametrize(("language", "code"), [e[1:] for e in EXAMPLES], ids=[e[0] for e in EXAMPLES])
def test_example_runs(every_pipeline: Server, language: str, code: str) -> None:
    code = code.replace("localhost:8080", f"127.0.0.1:{every_pipeline.port}")
    command = (
        [sys.executable, "-c", code] if language == "python" else ["bash", "-euo", "pipefail", "-c", code]
    )
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT_S)
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    assert run.stdout.strip(), "an example shows its reader something"
    for line in run.stdout.splitlines():
        try:
            answer = json.loads(line)
        except ValueError:
            continue
        if isinstance(answer, dict) and "errorCode" in answer:
            assert answer["errorCode"] == 0, line[:500]
