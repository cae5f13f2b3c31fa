#!/usr/bin/env bash
# Build a virtual environment with PaddleX 3.4.3 basic serving, for the
# side-by-side benchmark. 3.4.3 is the comparison version: 3.6 and 3.7
# answer HTTP 500 to every image-classification request.
#
#   bash benchmarks/paddlex_setup.sh [VENV_DIR]    (default: benchmarks/.paddlex-venv)
set -euo pipefail
venv="${1:-$(dirname "$0")/.paddlex-venv}"
python3.11 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet "paddlex[cv,serving]==3.4.3" "paddlepaddle==3.3.1"
# The OCR pipeline's own needs (PaddleX imports them lazily, so the serving
# extra does not pull them in).
"$venv/bin/pip" install --quiet imagesize pyclipper python-bidi shapely
echo "PaddleX 3.4.3 is in $venv; benchmarks/run.py finds it there."
