"""pxserve: a production server for PaddleX-style vision pipelines.

The code lives in folders that install under this namespace:
``pxserve.frontend`` (the aiohttp process), ``pxserve.workers`` (inference
processes), ``pxserve.shared`` (what both sides agree on) and
``pxserve.configs`` (pipeline YAML).
"""

from pathlib import Path

__version__ = "0.1.0"

# In a source checkout those folders sit beside this one, not inside it
# (setup.cfg maps them at install time). Searching the checkout's root as
# well keeps `python -m pxserve` and `python -m pytest` working from there.
_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "setup.cfg").is_file() and (_checkout / "frontend").is_dir():
    __path__.append(str(_checkout))
