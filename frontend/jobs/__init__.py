"""PaddleOCR's job API: submit a file, poll the job, fetch a JSONL result (docs/jobs.md).

``routes.py`` speaks HTTP, ``submission.py`` checks what a submit means, ``store.py`` keeps the
jobs' state (SQLite or PostgreSQL), ``files.py`` their files, and ``runner.py`` reads them
through the engine, as one more client of it beside the PaddleX routes.
"""
