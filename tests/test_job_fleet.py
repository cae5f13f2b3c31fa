"""A fleet: two real servers sharing one PostgreSQL store (a throwaway cluster of Debian's
``postgresql``) and one results folder. A job submitted to one is polled and fetched from the
other; a hundred jobs sent to both at once all finish, each page read once; a server SIGKILLed
mid-job has its job finished by the other once its lease runs out."""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pdfs
import pytest
from conftest import Server, children_of, free_port, metric, start_server, wait_for_health, wait_until
from test_jobs import JobClient, ocr_config, page_texts, texts_of


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the postgres user there."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster; its URL."""
    binaries = _postgres_bin()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run does)")
    folder = Path(tempfile.mkdtemp(prefix="pxserve-pg-"))
    folder.chmod(0o755)
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    port = free_port()
    initdb = [str(binaries / "initdb"), "-D", str(data), "-U", "pxserve", "--auth=trust", "--no-sync"]
    subprocess.run(_as_postgres(initdb), check=True, capture_output=True)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = [
        str(binaries / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(folder / "log"),
        "-w",
        "start",
    ]
    subprocess.run(_as_postgres(start), check=True, capture_output=True)
    try:
        yield f"postgresql://pxserve@127.0.0.1:{port}/postgres"
    finally:
        stop = [str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
        subprocess.run(_as_postgres(stop), check=False, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def fleet(postgres: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    tmp = tmp_path_factory.mktemp("fleet")
    config = ocr_config(
        tmp, max_stream_pages=100, auth_metrics=False, jobs={"lease_s": 3, "results_dir": str(tmp / "shared")}
    )
    servers = [
        start_server(
            config, tmp, "--job-store", postgres, env={"PXSERVE_DATA_DIR": str(tmp / f"data-{i}")}, wait=False
        )
        for i in range(2)
    ]
    try:
        for server in servers:
            wait_for_health(server)
        yield servers
    finally:
        for server in servers:
            server.stop()


def test_a_job_submitted_to_one_server_is_polled_and_fetched_from_the_other(fleet: list[Server]) -> None:
    first, second = JobClient(fleet[0]), JobClient(fleet[1])
    job_id = first.job_id(pdfs.text_pages(page_texts(3)))
    status = second.wait(job_id)
    assert status["state"] == "done" and status["resultUrl"]["jsonUrl"].startswith(fleet[1].url)
    assert texts_of(second.result(status)) == page_texts(3)


def test_a_hundred_jobs_sent_to_two_servers_at_once_all_finish_each_page_read_once(
    fleet: list[Server],
) -> None:
    before = sum(metric(s, "pxserve_job_pages_total") for s in fleet)
    clients = [JobClient(s) for s in fleet]
    documents = {i: pdfs.text_pages([f"Job {i} page {p}" for p in (1, 2)]) for i in range(100)}
    with ThreadPoolExecutor(16) as pool:
        ids = dict(
            zip(documents, pool.map(lambda i: clients[i % 2].job_id(documents[i]), documents), strict=True)
        )
        statuses = dict(
            zip(ids, pool.map(lambda i: clients[(i + 1) % 2].wait(ids[i], 600), ids), strict=True)
        )
    for i, status in statuses.items():
        assert status["state"] == "done", status
        assert texts_of(clients[0].result(status)) == [f"Job {i} page 1", f"Job {i} page 2"]
    read = sum(metric(s, "pxserve_job_pages_total") for s in fleet) - before
    assert read == 200  # every page read once, by one server or the other


def test_a_server_killed_mid_job_has_its_job_finished_by_another(fleet: list[Server]) -> None:
    client = JobClient(fleet[0])
    count = 30
    job_id = client.job_id(pdfs.text_pages(page_texts(count)))
    wait_until(lambda: client.status(job_id)["extractProgress"]["extractedPages"] >= 2, 120, "two pages read")
    holder = next(s for s in fleet if re.search(rf"job {job_id} .*: running: on ", s.logs()))
    survivor = next(s for s in fleet if s is not holder)
    for pid in [holder.pid, *children_of(holder.pid)]:
        os.kill(pid, signal.SIGKILL)
    holder.process.wait()
    status = JobClient(survivor).wait(job_id, 300)
    assert status["state"] == "done", status
    assert texts_of(JobClient(survivor).result(status)) == page_texts(count)  # each page once, in order
    taken = re.search(rf"job {job_id} .*: running: on .*, from page (\d+)", survivor.logs())
    assert taken and int(taken.group(1)) >= 3  # it went on from the pages already read
