"""Convert a Paddle model directory to ONNX once, for ``--use_hpip``.

The front runs ``python -m pxserve.workers.onnx_convert MODEL_DIR TARGET``
in a child process (paddle2onnx imports paddle, which the front never does)
and caches the result under a hash of the model's files, so a second start
does not convert again.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pxserve.shared.cache import ONNX_OPSET
from pxserve.shared.logs import quiet_engine_logs
from pxserve.shared.model_dir import ModelDir


def convert(model: ModelDir, target: Path) -> Path:
    import paddle2onnx

    target.parent.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".onnx-", dir=target.parent.parent))
    try:
        staged = staging / target.name
        # No post-export optimizer: paddle2onnx's default (Polygraphy) does not
        # see onnxruntime-gpu as onnxruntime and pip-installs the latter at run
        # time, and its onnxoptimizer pass list is broken in 2.1. ONNX Runtime
        # folds constants and fuses ops itself when it loads the model.
        paddle2onnx.export(
            str(model.program),
            str(model.params),
            str(staged),
            opset_version=ONNX_OPSET,
            enable_onnx_checker=True,
            optimize_tool="None",
        )
        if not staged.is_file():
            raise RuntimeError("paddle2onnx wrote no file")
        try:
            staging.rename(target.parent)  # atomic: the keyed folder appears whole
        except OSError:
            if not target.is_file():  # someone else finished first: theirs is as good
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    quiet_engine_logs()
    if len(args) != 2:
        print("usage: python -m pxserve.workers.onnx_convert MODEL_DIR TARGET", file=sys.stderr)
        return 2
    logging.disable(logging.INFO)  # paddle2onnx is chatty at INFO
    model = ModelDir.load(args[0])
    started = time.monotonic()
    try:
        convert(model, Path(args[1]))
    except Exception as exc:  # the front shows this line to the user
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"pxserve: onnx: cannot convert {model.model_name}: {reason}", file=sys.stderr)
        return 1
    print(
        f"pxserve: onnx: converted {model.model_name} in {time.monotonic() - started:.1f} s", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
