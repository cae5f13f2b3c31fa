"""What the kernel says about a worker process: its memory and CPU time.

Read from /proc by the supervisor once a second, for the watchdog (a worker
that burns CPU is busy, not hung), for recycling workers that grew too big,
and for /metrics; and by a worker of itself after each batch, to know whether
it keeps more than ``max_kept_mb``. Off Linux every reading is 0, which turns
these checks off.
"""

from __future__ import annotations

import os
from pathlib import Path

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS = os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident memory now (0 when the process is gone)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of the process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14 and 15)
