"""pxserve: a production server for PaddleX-style vision pipelines.

The code lives in three folders that install under this namespace:
``pxserve.frontend`` (the aiohttp process), ``pxserve.workers`` (inference
processes) and ``pxserve.shared`` (what both sides agree on).
"""

__version__ = "0.1.0"
