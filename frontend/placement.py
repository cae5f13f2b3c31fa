"""Which workers to start: per device, how many, with how many threads."""

from __future__ import annotations

from dataclasses import dataclass

from pxserve.shared.config import ServingSettings
from pxserve.shared.devices import Device, usable_cpu_count

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
