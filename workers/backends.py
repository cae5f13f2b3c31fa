"""Inference backends: one batch of float32 NCHW in, the model's first output out.

Paddle Inference is the default. ``--use_hpip`` selects ONNX Runtime (the
high-performance backend issue adds it here, under the same protocol), so
the worker loop never knows which engine it drives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pxserve.shared.devices import Device
from pxserve.shared.model_dir import ModelDir


class BackendError(RuntimeError):
    """The backend could not load the model on the requested device."""


@dataclass(frozen=True, slots=True)
class BackendOptions:
    device: Device
    cpu_threads: int = 1


class InferenceBackend(Protocol):
    name: str

    def infer(self, batch: np.ndarray) -> np.ndarray: ...


class PaddleBackend:
    """Paddle Inference predictor; GPU cards are selected by CUDA_VISIBLE_DEVICES."""

    name = "paddle"

    def __init__(self, model: ModelDir, options: BackendOptions) -> None:
        from paddle import inference

        config = inference.Config(str(model.program), str(model.params))
        if options.device.kind == "gpu":
            import paddle

            if not paddle.device.is_compiled_with_cuda():
                raise BackendError("this Paddle build has no CUDA support; install paddlepaddle-gpu")
            config.enable_use_gpu(256, 0)  # the worker sees only its own card, as device 0
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(options.cpu_threads)
        config.disable_glog_info()
        config.switch_ir_optim(True)
        try:
            self._predictor = inference.create_predictor(config)
        except Exception as exc:  # Paddle raises several unrelated types here
            raise BackendError(f"Paddle Inference could not load {model.path}: {exc}") from exc
        self._input = self._predictor.get_input_handle(self._predictor.get_input_names()[0])
        self._output = self._predictor.get_output_handle(self._predictor.get_output_names()[0])

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self._input.reshape(list(batch.shape))
        self._input.copy_from_cpu(np.ascontiguousarray(batch, dtype=np.float32))
        self._predictor.run()
        return self._output.copy_to_cpu()


def create_backend(model: ModelDir, options: BackendOptions, use_hpip: bool) -> InferenceBackend:
    if use_hpip:
        raise BackendError("--use_hpip (ONNX Runtime) is not available in this build yet")
    return PaddleBackend(model, options)
