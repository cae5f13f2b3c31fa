"""Where jobs' state lives: one small interface, on SQLite (one server) or PostgreSQL (a fleet).

A job is a row; its files (the upload, each page read, the result) live in
the results folder (frontend/jobs/files.py), never in the database. Servers
coordinate only through these rows: a server *claims* a pending job (or one
whose lease ran out: its server was killed) by writing its own id and a
lease into it in one transaction, renews the lease while it reads the job,
and every later write names that server, so a server that lost its hold
(a stall longer than the lease) can no longer change the job. PostgreSQL's
``FOR UPDATE SKIP LOCKED`` lets servers claim side by side without waiting
on each other; SQLite serialises writers with ``BEGIN IMMEDIATE``.

Both stores are synchronous and thread-safe; the front calls them through
``asyncio.to_thread`` so the event loop never waits on a disk or a socket.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from pxserve.shared.config import ConfigError

State = Literal["pending", "running", "done", "failed"]
STATES: tuple[State, ...] = ("pending", "running", "done", "failed")

_COLUMNS = """
    job_id TEXT PRIMARY KEY,
    log_id TEXT NOT NULL,
    batch_id TEXT,
    owner TEXT NOT NULL,
    model TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    request TEXT NOT NULL,
    pages TEXT,
    total_pages INTEGER NOT NULL,
    pages_done INTEGER NOT NULL,
    token TEXT NOT NULL,
    base_url TEXT NOT NULL,
    notes TEXT NOT NULL,
    input_name TEXT NOT NULL,
    input_bytes BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    lease_owner TEXT,
    lease_until DOUBLE PRECISION NOT NULL
"""


@dataclass
class Job:
    """One submitted file and what became of it."""

    job_id: str
    log_id: str  # the submit request's, named in every log line about the job
    owner: str  # a hash of the API key that submitted it ("" without keys): others cannot see it
    model: str  # as the client named it
    pipeline: str  # the served pipeline that reads it
    request: dict[str, Any]  # the pipeline's request fields, validated at submit (no file)
    pages: list[int] | None  # 0-based pages to read (pageRanges); None: all
    total_pages: int  # pages it will read
    token: str  # the secret folder name its files are served under
    base_url: str  # scheme and host its client reached us at, for the URLs it is given
    input_name: str
    input_bytes: int
    notes: list[str] = field(default_factory=list)  # said in the status and the result
    batch_id: str | None = None
    state: State = "pending"
    error: str | None = None
    pages_done: int = 0
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    lease_owner: str | None = None
    lease_until: float = 0.0

    def row(self) -> dict[str, Any]:
        values = asdict(self)
        for name in ("request", "pages", "notes"):
            values[name] = json.dumps(values[name])
        return values

    @classmethod
    def of_row(cls, row: dict[str, Any]) -> Job:
        values = dict(row)
        for name in ("request", "pages", "notes"):
            values[name] = json.loads(values[name]) if values[name] is not None else None
        return cls(**values)


_NAMES = [f.name for f in fields(Job)]


class JobStore(ABC):
    """Jobs' rows. Every method is one short transaction."""

    placeholder = "?"

    @abstractmethod
    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor inside a transaction that commits on success (rows as dicts)."""

    def _sql(self, text: str) -> str:
        return text.replace("?", self.placeholder)

    def open(self) -> None:
        with self.transaction() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS jobs ({_COLUMNS})")
            cur.execute("CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, created_at)")
            cur.execute("CREATE INDEX IF NOT EXISTS jobs_by_batch ON jobs (batch_id)")
            cur.execute("CREATE INDEX IF NOT EXISTS jobs_by_token ON jobs (token)")

    def close(self) -> None:
        return None

    def add(self, job: Job) -> None:
        row = job.row()
        marks = ", ".join([self.placeholder] * len(_NAMES))
        with self.transaction() as cur:
            cur.execute(f"INSERT INTO jobs ({', '.join(_NAMES)}) VALUES ({marks})", [row[n] for n in _NAMES])

    def get(self, job_id: str) -> Job | None:
        with self.transaction() as cur:
            cur.execute(self._sql("SELECT * FROM jobs WHERE job_id = ?"), (job_id,))
            row = cur.fetchone()
        return Job.of_row(row) if row else None

    def by_token(self, token: str) -> Job | None:
        with self.transaction() as cur:
            cur.execute(self._sql("SELECT * FROM jobs WHERE token = ?"), (token,))
            row = cur.fetchone()
        return Job.of_row(row) if row else None

    def in_batch(self, batch_id: str, owner: str) -> list[Job]:
        with self.transaction() as cur:
            cur.execute(
                self._sql("SELECT * FROM jobs WHERE batch_id = ? AND owner = ? ORDER BY created_at, job_id"),
                (batch_id, owner),
            )
            return [Job.of_row(r) for r in cur.fetchall()]

    def claim(self, server: str, lease_s: float, pipelines: list[str]) -> Job | None:
        """The oldest job of one of ``pipelines`` no live server holds, now held by ``server``:
        pending, or running with its lease run out (its server died; it goes on from its last
        page read)."""
        now = time.time()
        served = ", ".join([self.placeholder] * len(pipelines))
        with self.transaction() as cur:
            cur.execute(
                self._sql(
                    "SELECT job_id FROM jobs WHERE state IN ('pending', 'running') AND lease_until < ? "
                    f"AND pipeline IN ({served}) ORDER BY created_at, job_id LIMIT 1{self.skip_locked}"
                ),
                (now, *pipelines),
            )
            row = cur.fetchone()
            if row is None:
                return None
            cur.execute(
                self._sql(
                    "UPDATE jobs SET state = 'running', lease_owner = ?, lease_until = ?, "
                    "started_at = COALESCE(started_at, ?) WHERE job_id = ?"
                ),
                (server, now + lease_s, now, row["job_id"]),
            )
            cur.execute(self._sql("SELECT * FROM jobs WHERE job_id = ?"), (row["job_id"],))
            return Job.of_row(cur.fetchone())

    skip_locked = ""

    def renew(self, job_id: str, server: str, lease_s: float) -> bool:
        """Extend ``server``'s hold on a running job; False if it lost it (taken over, cancelled)."""
        return self._update_held(job_id, server, "lease_until = ?", (time.time() + lease_s,))

    def progress(self, job_id: str, server: str, pages_done: int) -> bool:
        return self._update_held(job_id, server, "pages_done = ?", (pages_done,))

    def finish(self, job_id: str, server: str, state: State, error: str | None = None) -> bool:
        return self._update_held(
            job_id,
            server,
            "state = ?, error = ?, finished_at = ?, lease_owner = NULL, lease_until = 0",
            (state, error, time.time()),
        )

    def release(self, job_id: str, server: str) -> bool:
        """Give a running job back (this server stops): any server may go on with it at once."""
        return self._update_held(job_id, server, "lease_owner = NULL, lease_until = 0", ())

    def holders(self) -> dict[str, str]:
        """Running jobs and the server holding each."""
        with self.transaction() as cur:
            cur.execute(
                "SELECT job_id, lease_owner FROM jobs WHERE state = 'running' AND lease_owner IS NOT NULL"
            )
            return {r["job_id"]: r["lease_owner"] for r in cur.fetchall()}

    def _update_held(self, job_id: str, server: str, assignments: str, values: tuple) -> bool:
        with self.transaction() as cur:
            cur.execute(
                self._sql(
                    f"UPDATE jobs SET {assignments} "
                    "WHERE job_id = ? AND lease_owner = ? AND state = 'running'"
                ),
                (*values, job_id, server),
            )
            return cur.rowcount == 1

    def cancel(self, job_id: str, message: str) -> bool:
        """Fail a job that has not finished; its server sees it at its next page and stops."""
        with self.transaction() as cur:
            cur.execute(
                self._sql(
                    "UPDATE jobs SET state = 'failed', error = ?, finished_at = ?, lease_owner = NULL, "
                    "lease_until = 0 WHERE job_id = ? AND state IN ('pending', 'running')"
                ),
                (message, time.time(), job_id),
            )
            return cur.rowcount == 1

    def finished_before(self, moment: float, limit: int = 500) -> list[Job]:
        with self.transaction() as cur:
            cur.execute(
                self._sql(
                    "SELECT * FROM jobs WHERE state IN ('done', 'failed') AND finished_at < ? "
                    "ORDER BY finished_at LIMIT ?"
                ),
                (moment, limit),
            )
            return [Job.of_row(r) for r in cur.fetchall()]

    def delete(self, job_id: str) -> None:
        with self.transaction() as cur:
            cur.execute(self._sql("DELETE FROM jobs WHERE job_id = ?"), (job_id,))

    def census(self) -> tuple[dict[str, int], float | None]:
        """Jobs by state, and when the oldest pending job was submitted (for metrics and limits)."""
        with self.transaction() as cur:
            cur.execute("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
            counts = {state: 0 for state in STATES} | {r["state"]: int(r["n"]) for r in cur.fetchall()}
            cur.execute("SELECT MIN(created_at) AS oldest FROM jobs WHERE state = 'pending'")
            row = cur.fetchone()
        return counts, (row["oldest"] if row else None)


class SqliteJobStore(JobStore):
    """One server's jobs in a file of its data directory: nothing to install or run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level None: transactions are begun here, explicitly (BEGIN IMMEDIATE takes the
        # write lock at once, so two claims can never pick the same row).
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        super().open()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        assert self._db is not None, "open() the store first"
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield _DictRows(cur)
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")


class _DictRows:
    """A sqlite3 cursor whose rows read as dicts, as psycopg's ``dict_row`` does."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Any = ()) -> None:
        self._cursor.execute(sql, params)

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def fetchone(self) -> dict[str, Any] | None:
        row = self._cursor.fetchone()
        return dict(row) if row is not None else None

    def fetchall(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._cursor.fetchall()]


class PostgresJobStore(JobStore):
    """A fleet's jobs in PostgreSQL (psycopg 3, a small connection pool)."""

    placeholder = "%s"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: Any = None

    def open(self) -> None:
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        self._pool = ConnectionPool(
            self.url, min_size=1, max_size=4, kwargs={"row_factory": dict_row}, open=False, timeout=10
        )
        self._pool.open(wait=True, timeout=10)
        with self.transaction() as cur:  # servers starting together must not race to create the table
            cur.execute("SELECT pg_advisory_xact_lock(5163)")
            cur.execute(f"CREATE TABLE IF NOT EXISTS jobs ({_COLUMNS})")
            cur.execute("CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, created_at)")
            cur.execute("CREATE INDEX IF NOT EXISTS jobs_by_batch ON jobs (batch_id)")
            cur.execute("CREATE INDEX IF NOT EXISTS jobs_by_token ON jobs (token)")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        assert self._pool is not None, "open() the store first"
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield cur


def open_store(location: str | None, data_dir: Path) -> JobStore:
    """The store a setting names: a ``postgresql://`` URL, else SQLite under ``data_dir``."""
    store: JobStore
    if location and location.startswith(("postgresql://", "postgres://")):
        store = PostgresJobStore(location)
    else:
        store = SqliteJobStore(Path(location).expanduser() if location else data_dir / "jobs.sqlite3")
    try:
        store.open()
    except Exception as exc:  # a database that cannot be reached or opened: one line at startup
        shown = re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", location or str(data_dir / "jobs.sqlite3"))
        raise ConfigError(f"jobs.store: cannot open {shown}: {str(exc).strip().splitlines()[0]}") from None
    return store
