"""Convert a Paddle model directory to ONNX once, for ``--use_hpip``.

The front runs ``python -m pxserve.workers.onnx_convert MODEL_DIR TARGET``
in a child process (paddle2onnx imports paddle, which the front never does)
and caches the result under a hash of the model's files, so a second start
does not convert again.
"""

from __future__ import annotations

import json
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

    assert model.program is not None and model.params is not None
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".onnx-", dir=target.parent.parent))
    try:
        program, params = model.program, model.params
        if model.is_legacy_program:
            program, params = translate_legacy_program(model, staging)
        staged = staging / target.name
        # No post-export optimizer: paddle2onnx's default (Polygraphy) does not
        # see onnxruntime-gpu as onnxruntime and pip-installs the latter at run
        # time, and its onnxoptimizer pass list is broken in 2.1. ONNX Runtime
        # folds constants and fuses ops itself when it loads the model.
        paddle2onnx.export(
            str(program),
            str(params),
            str(staged),
            opset_version=ONNX_OPSET,
            enable_onnx_checker=True,
            optimize_tool="None",
        )
        if not staged.is_file():
            raise RuntimeError("paddle2onnx wrote no file")
        repair_scalar_concats(staged)
        try:
            staging.rename(target.parent)  # atomic: the keyed folder appears whole
        except OSError:
            if not target.is_file():  # someone else finished first: theirs is as good
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def translate_legacy_program(model: ModelDir, folder: Path) -> tuple[Path, Path]:
    """``inference.pdmodel`` -> PIR ``.json`` that paddle2onnx 2.1 can read under Paddle 3.3.

    paddle2onnx translates old programs itself, but Paddle 3.3's translator
    writes the ``scale`` of interpolation ops (PP-OCR's detector upsamples)
    as doubles, and paddle2onnx's parser accepts only floats there
    ("the 0th elementwise MUST be ir::FloatAttribute"; Paddle issue 77757).
    So translate here, with paddle2onnx's own helpers, and store those
    scales as floats (exact: they are small ratios such as 2.0).
    """
    import paddle
    from paddle2onnx import convert as p2o

    executor = paddle.static.Executor(paddle.CPUPlace())
    with paddle.pir_utils.OldIrGuard():
        program, _, _ = paddle.static.load_inference_model(str(model.program.with_suffix("")), executor)
    translated = paddle.pir.translate_to_pir(program.desc)
    p2o.load_parameter(translated)
    prefix = folder / "translated"
    p2o.save_program(translated, str(prefix))
    program_path = prefix.with_suffix(".json")
    document = json.loads(program_path.read_text(encoding="utf-8"))
    _floats_for_interp_scales(document)
    program_path.write_text(json.dumps(document), encoding="utf-8")
    return program_path, prefix.with_suffix(".pdiparams")


def repair_scalar_concats(path: Path) -> int:
    """Give rank 1 to scalars that paddle2onnx concatenates with vectors.

    When it builds a reshape target from a mix of vectors and single
    dimensions (PP-OCR's recognizer does), paddle2onnx 2.1 can leave a
    dimension as a rank-0 tensor, and ONNX Runtime refuses the whole model
    ("All inputs to Concat must have same rank"). Unsqueezing those inputs
    is what the graph meant. Returns how many were repaired.
    """
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    ranks = {}
    for info in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        if info.type.tensor_type.HasField("shape"):
            ranks[info.name] = len(info.type.tensor_type.shape.dim)
    axes_name = "pxserve.unsqueeze_axes_0"
    repaired = 0
    nodes = []
    for node in model.graph.node:
        input_ranks = [ranks.get(name) for name in node.input]
        if node.op_type == "Concat" and 0 in input_ranks and 1 in input_ranks:
            for position, name in enumerate(node.input):
                if ranks.get(name) == 0:
                    lifted = f"{name}.pxserve_rank1"
                    nodes.append(helper.make_node("Unsqueeze", [name, axes_name], [lifted]))
                    node.input[position] = lifted
                    repaired += 1
        nodes.append(node)
    if repaired:
        model.graph.initializer.append(numpy_helper.from_array(np.array([0], dtype=np.int64), axes_name))
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        onnx.save(model, str(path))
    return repaired


def _floats_for_interp_scales(node: object) -> None:
    if isinstance(node, dict):
        if str(node.get("#", "")).endswith("_interp"):
            for attribute in node.get("A", []):
                value = attribute.get("AT", {})
                if attribute.get("N") == "scale" and isinstance(value.get("D"), list):
                    for element in value["D"]:
                        if element.get("#") == "0.a_f64":
                            element["#"] = "0.a_f32"
        for child in node.values():
            _floats_for_interp_scales(child)
    elif isinstance(node, list):
        for child in node:
            _floats_for_interp_scales(child)


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
