"""The clients people call PaddleOCR from, installed from PyPI into an environment of their own
(made once, then cached), pointed at a real pxserve: PaddleOCR 3.7's SDK (sync and async, OCR,
documents, page ranges, batches) and CLI, LangChain's loader and Haystack's converter through
``--job-model-alias`` (they can only name PaddleOCR-VL), and the official MCP server over stdio
for basic serving. Each must get the text of a known document."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pdfs
import pytest
import requests
import yaml
from conftest import Server, start_server, wait_until

# Pinned: the versions whose protocol ../docs/jobs.md describes.
CLIENTS = (
    "paddleocr==3.7.0",
    "langchain-paddleocr==0.2.2",
    "paddleocr-haystack==3.0.0",
    "paddleocr-mcp==0.8.5",
)
KEY = "client-key"
ARTICLE = Path(__file__).parent / "data" / "structure" / "article_one_column.pdf"
TITLE = "Small Mountain Rivers in a Warming Climate"
LAST_WORDS = "the valleys are deeper"  # the article's second page ends so
PAGES = ["Page 1 alpha", "Page 2 bravo", "Page 3 delta"]


def clients_python() -> Path:
    """The clients' environment: made with pip on first use, kept in the user's cache."""
    key = hashlib.sha256(" ".join(CLIENTS).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pxserve-tests"
    folder = cache / f"job-clients-{key}"
    python = folder / "bin" / "python"
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f"job-clients-{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "ready").exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
            install = [str(python), "-m", "pip", "install", "--quiet", *CLIENTS]
            done = subprocess.run(install, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                pytest.skip(f"the clients could not be installed from PyPI: {done.stderr.strip()[-400:]}")
            (folder / "ready").write_text("\n".join(CLIENTS))
    return python


@pytest.fixture(scope="module")
def python() -> Path:
    return clients_python()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("clients")
    structure = yaml.safe_load((resources.files("pxserve.configs") / "PP-StructureV3.yaml").read_text())
    # paddleocr-mcp always sends useChartRecognition: true; this server has no chart model.
    structure["Serving"] = {**(structure.get("Serving") or {}), "unserved_switches": "turn_off"}
    (tmp / "structure.yaml").write_text(yaml.safe_dump(structure))
    serving = {"pipelines": ["OCR", str(tmp / "structure.yaml")], "Serving": {"auth_metrics": False}}
    (tmp / "serving.yaml").write_text(yaml.safe_dump(serving))
    # No API keys: paddleocr-mcp's self-hosted mode sends none (the job API's keys: tests/test_jobs.py).
    env = {"PXSERVE_DATA_DIR": str(tmp / "data")}
    running = start_server(
        tmp / "serving.yaml", tmp, "--job-model-alias", "PaddleOCR-VL-1.6=PP-StructureV3", env=env
    )
    (tmp / "three.pdf").write_bytes(pdfs.text_pages(["Page 1 alpha", "Page 2 bravo", "Page 3 delta"]))
    yield running
    running.stop()


def run_client(python: Path, script: str, server: Server, *args: str) -> Any:
    """Run ``script`` in the clients' environment; it prints one JSON value last."""
    env = {**os.environ, "PADDLEOCR_BASE_URL": server.url, "PADDLEOCR_ACCESS_TOKEN": KEY}
    done = subprocess.run(
        [str(python), "-c", textwrap.dedent(script), server.url, *args],
        capture_output=True, text=True, timeout=600, env=env, cwd=server.log_path.parent,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.stderr[-3000:]}\n--- server ---\n{server.logs()[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_paddleocr_sdk_reads_pages_documents_and_batches(python: Path, server: Server) -> None:
    found = run_client(
        python,
        """
        import asyncio, json, sys
        from paddleocr import AsyncPaddleOCRClient, PaddleOCRClient
        client = PaddleOCRClient(base_url=sys.argv[1])
        ocr = client.ocr(file_path="three.pdf", page_ranges="2-3")
        document = client.parse_document(file_path=sys.argv[2])  # its default model: PaddleOCR-VL-1.6

        async def batch():
            async with AsyncPaddleOCRClient(base_url=sys.argv[1]) as aclient:
                jobs = [await aclient.submit_ocr(file_path="three.pdf", batch_id="b1", page_ranges=str(i))
                        for i in (1, 3)]
                results = [await aclient.wait_ocr_result(job) for job in jobs]
                status = await aclient.get_batch_status("b1")
                texts = [r.pages[0].pruned_result["rec_texts"] for r in results]
                return texts, [j.state for j in status.jobs]

        texts, states = asyncio.run(batch())
        print(json.dumps({
            "ocr": [p.pruned_result["rec_texts"] for p in ocr.pages],
            "pages": ocr.data_info["numPages"],
            "markdown": [p.markdown_text for p in document.pages],
            "images": [p.markdown_images for p in document.pages],
            "batch": texts, "states": states,
        }))
        """,
        server,
        str(ARTICLE),
    )
    assert found["ocr"] == [["Page 2 bravo"], ["Page 3 delta"]] and found["pages"] == 2
    assert len(found["markdown"]) == 2 and found["markdown"][0].startswith(f"# {TITLE}")
    assert LAST_WORDS in found["markdown"][1]
    for images in found["images"]:
        for url in images.values():  # pictures by absolute URL, fetched without a key
            assert url.startswith(server.url) and requests.get(url, timeout=10).status_code == 200
    assert found["batch"] == [["Page 1 alpha"], ["Page 3 delta"]] and found["states"] == ["done", "done"]


def test_paddleocr_cli_reads_a_pdf(python: Path, server: Server) -> None:
    command = [str(python.parent / "paddleocr"), "api", "--model_type", "ocr", "--file_path", "three.pdf"]
    command += ["--base_url", server.url, "--token", KEY, "--output", "cli.json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=server.log_path.parent)
    assert done.returncode == 0, done.stderr
    result = json.loads((server.log_path.parent / "cli.json").read_text())
    assert [p["prunedResult"]["rec_texts"] for p in result["pages"]] == [[t] for t in PAGES]


def test_langchain_and_haystack_read_a_document_through_the_alias(python: Path, server: Server) -> None:
    found = run_client(
        python,
        """
        import json, sys
        from pydantic import SecretStr
        from langchain_paddleocr import PaddleOCRVLLoader
        from haystack.utils import Secret
        from haystack_integrations.components.converters.paddleocr import PaddleOCRVLDocumentConverter
        key = "client-key"
        loaded = PaddleOCRVLLoader(sys.argv[2], access_token=SecretStr(key), base_url=sys.argv[1]).load()
        converter = PaddleOCRVLDocumentConverter(base_url=sys.argv[1], access_token=Secret.from_token(key))
        converted = converter.run(sources=[sys.argv[2]])["documents"]
        found = {"langchain": [d.page_content for d in loaded], "haystack": [d.content for d in converted]}
        print(json.dumps(found))
        """,
        server,
        str(ARTICLE),
    )
    for client in (
        "langchain",
        "haystack",
    ):  # each returns one document for the file (Haystack skips failures)
        assert len(found[client]) == 1, found
        assert TITLE in found[client][0] and LAST_WORDS in found[client][0]


def test_the_mcp_server_reads_documents_and_text_over_basic_serving(python: Path, server: Server) -> None:
    script = """
        import asyncio, json, os, sys
        from fastmcp import Client
        from fastmcp.client.transports import StdioTransport

        async def ask(model, path):
            command = sys.executable.replace("/python", "/paddleocr_mcp")
            arguments = ["--ppocr_source", "self_hosted", "--self-hosted-base-url", sys.argv[1]]
            arguments += ["--model", model]
            async with Client(StdioTransport(command=command, args=arguments)) as client:
                tool = (await client.list_tools())[0].name
                answer = await client.call_tool(tool, {"input_data": path}, raise_on_error=False)
                return answer.is_error, " ".join(getattr(c, "text", "") for c in answer.content)

        print(json.dumps({m: asyncio.run(ask(m, p)) for m, p in
                          [("PP-StructureV3", sys.argv[2]), ("PP-OCRv6", os.path.abspath("three.pdf"))]}))
        """
    found = run_client(python, script, server, str(ARTICLE))
    failed, text = found["PP-StructureV3"]
    assert not failed and TITLE in text, text
    failed, text = found["PP-OCRv6"]
    assert not failed and all(p in text for p in PAGES), text


def test_a_done_document_job_offers_markdown_and_says_what_read_it(server: Server) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    payload = json.dumps({"promptLabel": "ocr", "temperature": 0.2, "useDocUnwarping": False})
    form = {"model": "PaddleOCR-VL-1.6", "optionalPayload": payload, "pageRanges": "2"}
    with ARTICLE.open("rb") as upload:
        response = requests.post(
            f"{server.url}/api/v2/ocr/jobs", data=form, files={"file": upload}, headers=headers
        )
    job_id = response.json()["data"]["jobId"]
    url = f"{server.url}/api/v2/ocr/jobs/{job_id}"
    status = wait_until(
        lambda: (s := requests.get(url, headers=headers).json()["data"])["state"] == "done" and s,
        240,
        "the job",
    )
    assert any("read by PP-StructureV3" in n for n in status["notes"])
    line = json.loads(requests.get(status["resultUrl"]["jsonUrl"], timeout=10).text.splitlines()[0])
    info = line["result"]["jobInfo"]
    assert info["pipeline"] == "PP-StructureV3" and "promptLabel, temperature" in " ".join(info["notes"])
    markdown = requests.get(url, headers={**headers, "Accept": "text/markdown"}, timeout=30)
    assert markdown.headers["Content-Type"].startswith("text/markdown") and LAST_WORDS in markdown.text
    assert TITLE not in markdown.text  # page 2 only
    zipped = requests.get(status["resultUrl"]["jsonUrl"], headers={"Accept": "application/zip"}, timeout=30)
    assert zipped.status_code == 200 and zipped.content[:2] == b"PK"
