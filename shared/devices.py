"""Device specs (PaddleX's ``--device`` syntax) and the cores we may use.

Nothing here imports paddle: the front decides placement from what the
system says, and each worker confirms its device when it loads the model.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path


class DeviceError(ValueError):
    """A device spec that is malformed or names hardware we cannot use."""


@dataclass(frozen=True, slots=True)
class Device:
    kind: str  # "cpu" or "gpu"
    index: int | None = None

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"


def usable_cpu_count() -> int:
    """Cores this process may run on: affinity mask and cgroup quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        count = min(count, max(1, math.floor(quota)))
    return max(1, count)


def _cgroup_cpu_quota() -> float | None:
    v2 = Path("/sys/fs/cgroup/cpu.max")
    try:
        if v2.exists():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        v1_quota = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
        v1_period = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
        if v1_quota.exists():
            quota_us = int(v1_quota.read_text())
            return None if quota_us <= 0 else quota_us / int(v1_period.read_text())
    except (OSError, ValueError):
        return None
    return None


def visible_gpu_count() -> int:
    """NVIDIA GPUs the driver exposes (0 without a driver)."""
    gpus = Path("/proc/driver/nvidia/gpus")
    try:
        return len(list(gpus.iterdir())) if gpus.is_dir() else 0
    except OSError:
        return 0


def _installed(distribution: str) -> bool:
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def gpu_usable(use_hpip: bool) -> bool:
    """A GPU driver is present and the chosen backend has a CUDA build."""
    if visible_gpu_count() == 0:
        return False
    return _installed("onnxruntime-gpu") if use_hpip else _installed("paddlepaddle-gpu")


def default_device(use_hpip: bool) -> str:
    return "gpu" if gpu_usable(use_hpip) else "cpu"


def parse_devices(spec: str) -> list[Device]:
    """``cpu``, ``gpu``, ``gpu:N`` or ``gpu:N,M`` -> a list of devices."""
    spec = spec.strip().lower()
    if spec == "cpu":
        return [Device("cpu")]
    kind, _, indexes = spec.partition(":")
    if kind != "gpu":
        raise DeviceError(f"unknown device {spec!r}: use cpu, gpu, gpu:N or gpu:N,M")
    if not indexes:
        count = visible_gpu_count()
        return [Device("gpu", i) for i in range(max(count, 1))]
    try:
        numbers = [int(part) for part in indexes.split(",")]
    except ValueError:
        raise DeviceError(f"bad GPU list in {spec!r}: expected numbers like gpu:0,1") from None
    if any(n < 0 for n in numbers) or len(set(numbers)) != len(numbers):
        raise DeviceError(f"bad GPU list in {spec!r}: indexes must be distinct and >= 0")
    return [Device("gpu", n) for n in numbers]


def usable_memory_bytes() -> int:
    """Memory this process may use: the machine's, or its cgroup's limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
        break
    return total
