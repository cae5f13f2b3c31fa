"""Keeping the engines' own chatter out of pxserve's output."""

from __future__ import annotations

import os
import warnings


def quiet_engine_logs() -> None:
    """Call before importing paddle: its C++ info logs and a build-tool warning
    say nothing a server operator can act on."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    warnings.filterwarnings("ignore", message="No ccache found")
