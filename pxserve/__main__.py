"""``python -m pxserve`` is the same as the ``pxserve`` command."""

from pxserve.frontend.cli import main

raise SystemExit(main())
