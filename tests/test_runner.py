"""The classification runner: one request's failure stays that request's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import image_b64, solid

from pxserve.shared.config import load_pipeline_config
from pxserve.shared.devices import Device
from pxserve.shared.messages import Task
from pxserve.shared.model_dir import ModelDir
from pxserve.shared.pipelines import LoadedModel, RunnerContext, get_pipeline
from pxserve.workers.classification import ClassificationRunner

ROOT = Path(__file__).resolve().parents[1]


class RaisesOnBlack:
    """An engine stand-in that fails any batch containing an all-black image."""

    name = "raises-on-black"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.calls.append(len(batch))
        if (batch.reshape(len(batch), -1).max(axis=1) <= 0).any():
            raise RuntimeError("kernel failure")
        return np.tile(np.array([0.7, 0.2, 0.1], np.float32), (len(batch), 1))


def task(request_id: int, color: tuple[int, int, int]) -> Task:
    import base64

    return Task(request_id, {"topk": 1, "visualize": False}, base64.b64decode(image_b64(solid(color))))


def test_a_failing_input_fails_alone(tiny_model_dir: Path) -> None:
    backend = RaisesOnBlack()
    pipeline = get_pipeline(load_pipeline_config("image_classification"))
    loaded = LoadedModel(ModelDir.load(tiny_model_dir), backend, Device("cpu"))  # type: ignore[arg-type]
    runner = ClassificationRunner({pipeline.sub_module: loaded}, pipeline, RunnerContext())
    tasks = [task(1, (200, 0, 0)), task(2, (0, 0, 0)), task(3, (0, 200, 0)), Task(4, {"topk": 1}, b"junk")]
    outcomes = runner.run(tasks)
    assert [(o.request_id, o.status) for o in outcomes] == [(1, 200), (2, 500), (3, 200), (4, 422)]
    assert backend.calls == [3, 1, 1, 1]  # the batch, then one by one


def test_engine_errors_are_summarised_by_the_line_that_names_them() -> None:
    from pxserve.shared.errors import one_line

    paddle_style = ValueError("In user code:\n\n    InvalidArgumentError: shapes differ\n    [Hint: ...]")
    assert one_line(paddle_style) == "InvalidArgumentError: shapes differ"
    assert one_line(RuntimeError("out of memory\nat frame 3")) == "RuntimeError: out of memory"
    assert one_line(KeyError()) == "KeyError"


def test_shared_code_never_imports_worker_code() -> None:
    """shared/ is what both sides of the process boundary load: a pipeline names its runner
    (``Pipeline.runner``) and the worker side imports it, never the other way round."""
    import ast

    def runtime_nodes(tree: ast.AST):  # what runs: not the ``if TYPE_CHECKING:`` blocks
        for node in ast.iter_child_nodes(tree):
            if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
                continue
            yield node
            yield from runtime_nodes(node)

    offenders = []
    for path in sorted((ROOT / "shared").rglob("*.py")):
        for node in runtime_nodes(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.startswith("pxserve.workers")]
    assert offenders == []
