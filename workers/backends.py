"""Inference backends: one batch of float32 NCHW in, the model's first output out
(:meth:`infer`); or, for models with several inputs and outputs (PaddleX's
detection exports take ``image``, ``im_shape`` and ``scale_factor`` and
return boxes and a box count), named inputs in, every output out (:meth:`run`).

Paddle Inference is the default. ``--use_hpip`` selects ONNX Runtime on the
model converted by paddle2onnx (CUDA on a GPU, optionally TensorRT), under
the same protocol, so the worker loop never knows which engine it drives.

Memory is bounded by design. Both engines keep the memory a call needed
for the next one, so a worker that once read a large page would hold that
page's activations (2.4 GB for a 1248x1600 page with Paddle) for ever, and
more for each new shape. Measured on PP-OCRv4's detector on this project's
2-core machine, over 28 page sizes one after another:

* Paddle, as PaddleX configures it (oneDNN cache of 10 shapes, memory
  optimisation): 2.4-2.6 GB; plus releasing intermediate tensors and the
  allocator's pool after each large call: 0.7 GB flat (``_release``).
* ONNX Runtime: its arena keeps the high-water mark (0.74 GB here, 7 GB
  with eight pages in one call); shrinking the arena after a run (a run
  option) holds 0.1-0.25 GB, while turning the arena off cost 60% more
  time. Memory patterns only pay for fixed shapes: off.

Releasing after *every* large call cost each page 8-11% of its time on
either engine (its activations allocated and page-faulted in again), so a
call keeps its memory when it has the shape of the large call before it
(:class:`ReleasePolicy`): the same bound, one shape's memory, at the speed
of a warm engine for the pages of one document. That one shape's memory goes
back too once the worker is at rest (``release()``, called by the worker).
On a crowded machine (no idle cores lent: the other workers are at work)
ONNX Runtime gives back after every large call instead: there each worker's
kept shape adds up (632-656 vs 256-271 MiB a worker under c=4 pages, for
2-6% of the pages/s), while a lone request keeps its speed. Paddle does
not: its detector call after a release took a third longer (0.54 -> 0.72 s
on the A4 page), against ONNX Runtime's 14%.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from pxserve.shared.core_shares import Cores, OwnCores
from pxserve.shared.devices import Device
from pxserve.shared.model_dir import ModelDir

log = logging.getLogger("pxserve.backends")


class BackendError(RuntimeError):
    """The backend could not load the model on the requested device."""


ENGINES = ("paddle", "onnxruntime", "tensorrt")
# oneDNN kernels cached per input shape, as PaddleX sets it (unbounded otherwise).
MKLDNN_CACHE_SHAPES = 10
# A call's memory is given back only after calls this large (a page at the
# detector, 4 MB of input and more): releasing after every small call (a text
# line, a photo) made the next one allocate again, and cost 20-30% of photo
# throughput in benchmarks/ocr.py, for memory a small call barely uses.
RELEASE_ABOVE_VALUES = 1 << 20


class ReleasePolicy:
    """When a large call's memory goes back: after a call whose input shapes differ from the
    previous large call's, so a worker holds at most one shape's memory between calls; and
    after every large call made on a crowded machine.

    The pages of one PDF, or photos from one camera, share a shape; those calls keep
    what the first of them allocated. Small calls never release (see
    ``RELEASE_ABOVE_VALUES``). Measured in-process on the A4 page (1271x1644) over 28
    sizes of it: the same resident memory after each page as releasing every time
    (336 vs 309 MB ONNX Runtime, 1479 vs 1479 MB Paddle), pages 8% (ONNX Runtime) and
    11% (Paddle) faster.

    A call on a crowded machine (``crowded``: no idle cores were lent to it, the other
    workers are at work) gives its memory back even when the next one has its shape: under
    load every worker's kept memory adds up, while a lone request's pages keep theirs
    (docs/performance.md, "Memory at rest").
    """

    def __init__(self) -> None:
        self._kept: tuple[tuple[int, ...], ...] | None = None

    def release_after(self, inputs: list[np.ndarray], crowded: bool = False) -> bool:
        """Whether the call about to run with ``inputs`` should give its memory back after."""
        if sum(v.size for v in inputs) < RELEASE_ABOVE_VALUES:
            return False
        if crowded:
            self._kept = None
            return True
        shapes = tuple(v.shape for v in inputs)
        if shapes == self._kept:
            return False
        self._kept = shapes
        return True

    def forget(self) -> None:
        """The kept memory was given back: the next large call, whatever its shape, is a new one."""
        self._kept = None


@dataclass(frozen=True, slots=True)
class BackendOptions:
    device: Device
    cpu_threads: int = 1
    engine: str = "paddle"  # one of ENGINES
    onnx_path: str | None = None  # the converted model, for ONNX Runtime
    # On a CPU, the thread counts a call may ask for (shared/core_shares.py): the engine
    # loads the model once per count. Empty: ``cpu_threads`` only.
    thread_counts: tuple[int, ...] = ()

    @property
    def counts(self) -> tuple[int, ...]:
        if self.device.kind != "cpu" or not self.thread_counts:
            return (self.cpu_threads,)
        return self.thread_counts


def _fitting(counts: Iterable[int], threads: int | None) -> int:
    """The largest loaded thread count not above ``threads`` (the smallest when None)."""
    counts = sorted(counts)
    if threads is None:
        return counts[0]
    return max((c for c in counts if c <= threads), default=counts[0])


class InferenceBackend(Protocol):
    """``threads``: how many CPU threads this call may use (one of ``thread_counts``, the
    counts it loaded; None: the fewest). Ignored on a GPU."""

    name: str
    input_names: list[str]
    output_names: list[str]
    thread_counts: tuple[int, ...]

    def infer(self, batch: np.ndarray, threads: int | None = None) -> np.ndarray: ...

    def run(self, inputs: dict[str, np.ndarray], threads: int | None = None) -> list[np.ndarray]: ...

    def release(self) -> None:
        """Give back what the model keeps between calls (its last large shape's memory)."""


class MeteredBackend:
    """A backend that remembers the batch sizes it ran, for /metrics per model, and runs
    each call on the cores the worker may use for it now (shared/core_shares.py)."""

    def __init__(self, backend: InferenceBackend, model_name: str, cores: Cores | None = None) -> None:
        self.backend = backend
        self.name = backend.name
        self.model_name = model_name
        self.cores = cores or OwnCores(1)
        self.batch_sizes: list[int] = []
        self.threads: list[int] = []  # the threads each call ran on

    @property
    def input_names(self) -> list[str]:
        return self.backend.input_names

    @property
    def output_names(self) -> list[str]:
        return self.backend.output_names

    def infer(self, batch: np.ndarray, threads: int | None = None) -> np.ndarray:
        self.batch_sizes.append(int(batch.shape[0]))
        with self.cores.call(max(self.backend.thread_counts)) as granted:
            self.threads.append(granted)
            return self.backend.infer(batch, granted)

    def run(self, inputs: dict[str, np.ndarray], threads: int | None = None) -> list[np.ndarray]:
        first = inputs[self.input_names[0]]
        self.batch_sizes.append(int(first.shape[0]) if first.ndim else 1)
        with self.cores.call(max(self.backend.thread_counts)) as granted:
            self.threads.append(granted)
            return self.backend.run(inputs, granted)

    def release(self) -> None:
        self.backend.release()

    def take_batch_sizes(self) -> list[int]:
        sizes, self.batch_sizes = self.batch_sizes, []
        return sizes

    def take_threads(self) -> list[int]:
        threads, self.threads = self.threads, []
        return threads


class _OnOnnxRuntime(Exception):
    """The call must be made again: the model now runs on ONNX Runtime."""


def _onednn_cannot(exc: Exception) -> bool:
    """Whether Paddle failed in its oneDNN pass for PIR programs (the failure PaddleX's PP-OCRv5
    exports meet), and not on the input: Paddle's other errors mention oneDNN kernels too."""
    return "ConvertPirAttribute2RuntimeAttribute" in str(exc)


class PaddleBackend:
    """Paddle Inference predictor; GPU cards are selected by CUDA_VISIBLE_DEVICES."""

    name = "paddle"

    def __init__(self, model: ModelDir, options: BackendOptions) -> None:
        if model.program is None or model.params is None:
            raise BackendError(
                f"{model.path} holds only inference.onnx; serve it with --use_hpip (ONNX Runtime)"
            )
        if options.device.kind == "gpu":
            import paddle

            if not paddle.device.is_compiled_with_cuda():
                raise BackendError("this Paddle build has no CUDA support; install paddlepaddle-gpu")
        self._model, self._options = model, options
        # Paddle 3.3 turns oneDNN on for PIR programs by itself, and its oneDNN pass cannot
        # run some of them (PaddleX's PP-OCRv5 exports: "ConvertPirAttribute2RuntimeAttribute
        # not support"). Such a model runs on ONNX Runtime from then on, where the front gave
        # its conversion (``onnx_path``); otherwise it is loaded again without oneDNN (2-3x
        # slower), the first time it fails.
        self._may_drop_onednn = options.device.kind == "cpu" and not model.is_legacy_program
        self._onnx: OnnxRuntimeBackend | None = None
        self._release_policy = ReleasePolicy()
        self._load(onednn=True)

    @property
    def thread_counts(self) -> tuple[int, ...]:
        """The worker's own threads only: Paddle does not borrow idle cores. A predictor per
        thread count (Paddle sets its threads per predictor) lowered page p50 at c=1 by 0-37%
        but raised its workers' peak memory by 18% (OCR) to 55% (tables), each predictor
        keeping its own oneDNN kernels and tensors (benchmarks/results/ab_idle.json)."""
        return self._onnx.thread_counts if self._onnx is not None else (self._options.cpu_threads,)

    def _load(self, onednn: bool) -> None:
        from paddle import inference

        model, options = self._model, self._options
        config = inference.Config(str(model.program), str(model.params))
        if options.device.kind == "gpu":
            config.enable_use_gpu(256, 0)  # the worker sees only its own card, as device 0
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(options.cpu_threads)
            if model.is_legacy_program:
                # oneDNN runs these (PP-OCR's exports) 3-4x faster than plain
                # CPU kernels, but only on the old IR: under PIR, Paddle 3.3's
                # oneDNN pass fails on them, which is PaddleX's 500 on CPU.
                config.enable_new_ir(False)
                config.enable_mkldnn()
                config.set_mkldnn_cache_capacity(MKLDNN_CACHE_SHAPES)
                # Reuses buffers within a run (a page's peak: 2.4 -> 0.8 GB);
                # Paddle 3.3 has no such pass for PIR programs.
                config.enable_memory_optim()
            elif not onednn:
                config.disable_mkldnn()
        config.disable_glog_info()
        config.switch_ir_optim(True)
        try:
            self._predictor = inference.create_predictor(config)
        except Exception as exc:  # Paddle raises several unrelated types here
            raise BackendError(f"Paddle Inference could not load {model.path}: {exc}") from exc
        self.input_names = list(self._predictor.get_input_names())
        self.output_names = list(self._predictor.get_output_names())
        self._input = self._predictor.get_input_handle(self.input_names[0])
        self._output = self._predictor.get_output_handle(self.output_names[0])

    def _run(self) -> None:
        try:
            self._predictor.run()
        except Exception as exc:
            if not self._may_drop_onednn:
                raise
            if self._options.onnx_path and _onednn_cannot(exc):
                self._may_drop_onednn = False
                log.warning(
                    "%s: Paddle's oneDNN cannot run this model (%s); running it on ONNX Runtime",
                    self._model.model_name,
                    str(exc).splitlines()[0][:160],
                )
                self._onnx = OnnxRuntimeBackend(self._options.onnx_path, self._options)
                self._predictor = self._input = self._output = None  # Paddle's copy is freed
                self.name = "paddle -> onnxruntime"
                raise _OnOnnxRuntime from None
            log.warning(
                "%s: Paddle's oneDNN cannot run this model (%s); running it without oneDNN",
                self._model.model_name,
                str(exc).splitlines()[0][:160],
            )
            self._may_drop_onednn = False
            inputs = {n: self._predictor.get_input_handle(n).copy_to_cpu() for n in self.input_names}
            self._load(onednn=False)
            for name, value in inputs.items():
                handle = self._predictor.get_input_handle(name)
                handle.reshape(list(value.shape))
                handle.copy_from_cpu(value)
            self._predictor.run()
        self._may_drop_onednn = False  # it ran: oneDNN (or not) is settled for this model

    def infer(self, batch: np.ndarray, threads: int | None = None) -> np.ndarray:
        if self._onnx is not None:
            return self._onnx.infer(batch, threads)
        self._input.reshape(list(batch.shape))
        self._input.copy_from_cpu(np.ascontiguousarray(batch, dtype=np.float32))
        try:
            self._run()
        except _OnOnnxRuntime:
            return self.infer(batch, threads)
        output = self._output.copy_to_cpu()
        if self._release_policy.release_after([batch]):
            self._release()
        return output

    def run(self, inputs: dict[str, np.ndarray], threads: int | None = None) -> list[np.ndarray]:
        """Every named input (each in the dtype the model takes), every output in the model's order."""
        _check_inputs(self.input_names, inputs)
        if self._onnx is not None:
            return self._onnx.run(inputs, threads)
        for name, value in inputs.items():
            handle = self._predictor.get_input_handle(name)
            handle.reshape(list(value.shape))
            handle.copy_from_cpu(np.ascontiguousarray(value))
        try:
            self._run()
        except _OnOnnxRuntime:
            return self.run(inputs, threads)
        outputs = [self._predictor.get_output_handle(n).copy_to_cpu() for n in self.output_names]
        if self._release_policy.release_after(list(inputs.values())):
            self._release()
        return outputs

    def _release(self) -> None:
        """Give back what this call needed: its intermediate tensors, then the pool."""
        self._predictor.clear_intermediate_tensor()
        self._predictor.try_shrink_memory()

    def release(self) -> None:
        if self._onnx is not None:
            self._onnx.release()
        elif self._predictor is not None:
            self._release()
            self._release_policy.forget()


class OnnxRuntimeBackend:
    """ONNX Runtime session: CPU, CUDA (the worker's only visible card) or TensorRT."""

    name = "onnxruntime"

    def __init__(self, onnx_path: str, options: BackendOptions) -> None:
        import onnxruntime as ort

        providers = self._providers(ort.get_available_providers(), options)
        # One session per thread count (a session's thread pool is fixed when it is made).
        self._sessions = {n: self._create(ort, onnx_path, providers, n) for n in options.counts}
        self.thread_counts = tuple(self._sessions)
        self._session = self._sessions[_fitting(self._sessions, None)]
        wanted = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
        if wanted not in self._session.get_providers():
            raise BackendError(f"ONNX Runtime could not start {wanted} (is CUDA installed and usable?)")
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]
        self._input, self._output = self.input_names[0], self.output_names[0]
        # Hand the arena's memory back after a large run of a new shape (CPU arena; a
        # GPU's arena is left as it is: not measured here).
        self._keep, self._shrink = ort.RunOptions(), ort.RunOptions()
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self._release_policy = ReleasePolicy() if options.device.kind == "cpu" else None
        # The smallest call so far (its feeds copied), run again by release(): ONNX Runtime
        # shrinks an arena only at the end of a run.
        self._smallest: tuple[int, dict[str, np.ndarray]] | None = None

    @staticmethod
    def _create(ort: Any, onnx_path: str, providers: list, threads: int) -> Any:
        session_options = ort.SessionOptions()
        if providers == ["CPUExecutionProvider"]:
            # Every session of the worker (each model, each thread count) allocates from one
            # arena, so a page's activations are held once, not once per session: sessions
            # of one model at 1 and 2 threads held 778 MB after a page each, 501 MB sharing.
            _share_one_cpu_arena(ort)
            session_options.add_session_config_entry("session.use_env_allocators", "1")
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session_options.intra_op_num_threads = threads
        session_options.inter_op_num_threads = 1
        # Spinning threads would keep burning the cores other workers need.
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session_options.log_severity_level = 3
        session_options.enable_mem_pattern = False  # shapes vary from call to call
        try:
            return ort.InferenceSession(onnx_path, session_options, providers=providers)
        except Exception as exc:
            raise BackendError(f"ONNX Runtime could not load {onnx_path}: {exc}") from exc

    @staticmethod
    def _providers(available: list[str], options: BackendOptions) -> list:
        if options.device.kind != "gpu":
            return ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" not in available:
            raise BackendError("this ONNX Runtime has no CUDA support; install onnxruntime-gpu")
        chain: list = [("CUDAExecutionProvider", {"device_id": 0})]
        if options.engine == "tensorrt":
            if "TensorrtExecutionProvider" not in available:
                raise BackendError("this ONNX Runtime has no TensorRT support")
            chain.insert(0, ("TensorrtExecutionProvider", {"device_id": 0}))
        return chain

    def infer(self, batch: np.ndarray, threads: int | None = None) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return self._call({self._input: batch}, [self._output], threads)[0]

    def run(self, inputs: dict[str, np.ndarray], threads: int | None = None) -> list[np.ndarray]:
        """Every named input (each in the dtype the model takes), every output in the model's order."""
        _check_inputs(self.input_names, inputs)
        feeds = {name: np.ascontiguousarray(value) for name, value in inputs.items()}
        return self._call(feeds, self.output_names, threads)

    def _call(self, feeds: dict[str, np.ndarray], outputs: list[str], threads: int | None) -> list:
        session = self._sessions[_fitting(self._sessions, threads)]
        policy = self._release_policy
        shrink = policy is not None and policy.release_after(list(feeds.values()), self._crowded(threads))
        results = list(session.run(outputs, feeds, self._shrink if shrink else self._keep))
        if policy is not None:
            _CPU_ARENA.runs_since_shrink = 0 if shrink else _CPU_ARENA.runs_since_shrink + 1
            values = sum(v.size for v in feeds.values())
            if self._smallest is None or values < self._smallest[0]:
                self._smallest = (values, {name: value.copy() for name, value in feeds.items()})
        return results

    def _crowded(self, threads: int | None) -> bool:
        """Whether a call granted ``threads`` runs on a crowded machine: no idle cores were
        lent to it (shared/core_shares.py), so the other workers are at work. A worker that
        owns every core, or a call not made through the worker's cores (None), is not."""
        counts = self.thread_counts
        return len(counts) > 1 and threads is not None and threads <= min(counts)

    def release(self) -> None:
        """Shrink the arena (shared by every session of the worker) to what is in use: the
        smallest call so far, run again with the shrink option (a warm-up's: milliseconds).
        Once is enough for every model of the worker: the next ones find nothing run since."""
        if self._release_policy is None or self._smallest is None:
            return  # a GPU's arena is left as it is: not measured here
        self._release_policy.forget()
        if _CPU_ARENA.runs_since_shrink:
            session = self._sessions[_fitting(self._sessions, None)]
            session.run(self.output_names, self._smallest[1], self._shrink)
            _CPU_ARENA.runs_since_shrink = 0


@dataclass
class _CpuArena:
    """The worker's one CPU arena, shared by every ONNX Runtime session in the process."""

    registered: bool = False
    runs_since_shrink: int = 0  # none: a release has nothing to give back, and costs nothing


_CPU_ARENA = _CpuArena()


def _share_one_cpu_arena(ort: Any) -> None:
    """Register the process's one CPU arena with ONNX Runtime's environment (once)."""
    if not _CPU_ARENA.registered:
        memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(memory, ort.OrtArenaCfg({}))
        _CPU_ARENA.registered = True


def _check_inputs(expected: list[str], inputs: dict[str, np.ndarray]) -> None:
    if set(inputs) != set(expected):
        raise BackendError(f"the model takes inputs {expected}, was given {sorted(inputs)}")


def create_backend(model: ModelDir, options: BackendOptions) -> InferenceBackend:
    if options.engine == "paddle":
        return PaddleBackend(model, options)
    if options.engine not in ENGINES:
        raise BackendError(f"unknown engine {options.engine!r}; expected one of {', '.join(ENGINES)}")
    if not options.onnx_path:
        raise BackendError("ONNX Runtime needs the converted model; none was given")
    return OnnxRuntimeBackend(options.onnx_path, options)
