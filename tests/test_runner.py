"""The classification runner: one request's failure stays that request's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import image_b64, solid

from pxserve.shared.messages import Task
from pxserve.shared.model_dir import ModelDir
from pxserve.shared.pipelines.image_classification import ClassificationRunner


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
    runner = ClassificationRunner(ModelDir.load(tiny_model_dir), backend)
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
