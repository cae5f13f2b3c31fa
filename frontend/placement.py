"""Which workers to start: per device, how many, with how many threads."""

from __future__ import annotations

from dataclasses import dataclass

from pxserve.shared.config import MiB, ServingSettings
from pxserve.shared.devices import Device, usable_cpu_count, usable_memory_bytes

# An "auto" CPU plan never starts more worker processes than this; each one
# holds a copy of the model, so more would cost memory for no throughput.
MAX_AUTO_CPU_WORKERS = 8
GPU_QUEUE_DELAY_S = 0.002


@dataclass(frozen=True, slots=True)
class Placement:
    device: Device
    cpu_threads: int
    max_queue_delay_s: float


def plan_workers(
    devices: list[Device], serving: ServingSettings, cpu_threads: int | None = None
) -> list[Placement]:
    """One Placement per worker process, never oversubscribing CPU cores.

    ``cpu_threads`` (from ``--hpi_config``) overrides ``Serving.cpu_threads``.
    """
    if cpu_threads is not None:
        serving = serving.model_copy(update={"cpu_threads": cpu_threads})
    cores = usable_cpu_count()
    plan: list[Placement] = []
    for device in devices:
        if device.kind == "cpu":
            count = (
                min(cores, MAX_AUTO_CPU_WORKERS)
                if serving.instances_per_device == "auto"
                else serving.instances_per_device
            )
            threads = max(1, cores // count) if serving.cpu_threads == "auto" else serving.cpu_threads
            delay = 0.0
        else:
            count = 1 if serving.instances_per_device == "auto" else serving.instances_per_device
            threads = 1 if serving.cpu_threads == "auto" else serving.cpu_threads
            delay = GPU_QUEUE_DELAY_S
        if serving.max_queue_delay_ms != "auto":
            delay = serving.max_queue_delay_ms / 1000.0
        plan.extend(Placement(device, threads, delay) for _ in range(count))
    return plan


# An "auto" memory limit lets the workers together use this share of the
# machine's memory; the rest is for the front, a recycled worker's successor
# while it loads, and the system.
WORKER_MEMORY_SHARE = 0.75


def worker_memory_limit(serving: ServingSettings, workers: int, machine_bytes: int | None = None) -> int:
    """Resident bytes past which a worker is recycled (0: never)."""
    if serving.max_worker_memory_mb != "auto":
        return int(serving.max_worker_memory_mb * MiB)
    machine = usable_memory_bytes() if machine_bytes is None else machine_bytes
    return int(machine * WORKER_MEMORY_SHARE / max(workers, 1))


# What an "auto" max_kept_mb lets a worker keep between batches above its size at rest.
KEPT_AUTO_MB = 1536


def kept_memory_limit(serving: ServingSettings) -> int:
    """Bytes a worker may keep between batches above its size at rest (Serving.max_kept_mb)."""
    chosen = KEPT_AUTO_MB if serving.max_kept_mb == "auto" else serving.max_kept_mb
    return int(chosen * MiB)


class SharedMemoryError(RuntimeError):
    """The rings cannot fit in the shared memory this machine offers."""


@dataclass(frozen=True, slots=True)
class RingSizes:
    request_bytes: int
    response_bytes: int


# A ring carries records of up to half its capacity, so the request ring must
# hold two of the largest images a body can carry; results are small, but a
# visualization (at most 2048 px, JPEG) needs a few MiB.
MIN_RESPONSE_RING = 8 * MiB
SHM_HEADROOM = 0.9


def size_rings(workers: int, serving: ServingSettings, free_bytes: int) -> RingSizes:
    """The configured ring sizes, shrunk to fit ``free_bytes`` if they must be.

    Docker gives containers 64 MB of /dev/shm by default; finding out at
    startup beats a bus error when a ring is first filled.
    """
    smallest = RingSizes(2 * (serving.max_body_bytes * 3 // 4) + MiB, MIN_RESPONSE_RING)
    wanted = RingSizes(
        max(int(serving.request_ring_mb * MiB), smallest.request_bytes),  # any allowed image must fit
        max(int(serving.response_ring_mb * MiB), smallest.response_bytes),
    )
    budget = int(free_bytes * SHM_HEADROOM)
    if workers * (wanted.request_bytes + wanted.response_bytes) <= budget:
        return wanted
    per_worker = budget // workers
    if smallest.request_bytes + smallest.response_bytes > per_worker:
        need = workers * (smallest.request_bytes + smallest.response_bytes) / SHM_HEADROOM
        raise SharedMemoryError(
            f"{workers} worker(s) need at least {need / MiB:.0f} MiB of shared memory for their rings "
            f"(with max_body_mb={serving.max_body_mb:g}), but /dev/shm has {free_bytes / MiB:.0f} MiB free; "
            "raise it (docker run --shm-size=1g, or a larger tmpfs) or lower Serving.max_body_mb or "
            "Serving.instances_per_device"
        )
    spare = per_worker - smallest.request_bytes - smallest.response_bytes
    return RingSizes(
        min(wanted.request_bytes, smallest.request_bytes + spare * 3 // 4),
        min(wanted.response_bytes, smallest.response_bytes + spare // 4),
    )
