"""Latency measured on remote Dask workers that own a device, one measurement at a time.

Why not pymoo's ``DaskParallelization``: it ships the whole Problem (supernet included) with
every task. Here a task carries only ONNX bytes, an input shape and a :class:`LatencyConfig`
(latency.md §6.1), and each result is a small :class:`LatencyResult`.

Running a device worker
-----------------------
On a host that can reach every device (or anywhere)::

    dask scheduler                      # listens on tcp://SCHEDULER:8786

On each measuring device::

    dask worker tcp://SCHEDULER:8786 --nthreads 1 --resources "latency=1"

The worker advertises one unit of the ``latency`` resource and every measurement asks for one
unit, so a worker runs at most one measurement at a time even if it has more threads:
measurements never disturb each other (a concurrent job on the measuring host inflates the
median 2-5x, latency.md §6.1). Only workers with the resource receive measurements; all of
them should be the same kind of device (checked by :meth:`DaskMeasurer.fingerprint`).

``distributed`` is an optional dependency (``pip install 'shiftnas[dask]'``); it is imported
only when a :class:`DaskMeasurer` is created.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from shiftnas.cluster.pool import DaskPool
from shiftnas.config import LatencyConfig
from shiftnas.errors import ShiftnasError
from shiftnas.hardware.fingerprint import HardwareFingerprint, fingerprint_of
from shiftnas.hardware.latency import LatencyResult, ModelUnderTest, measure_latency

RESOURCE = "latency"


def measure_job(job: tuple, references: Sequence[ModelUnderTest] = ()) -> LatencyResult:
    """Run on a worker: ``measure_latency(onnx_bytes, input_shape_chw, cfg, references)``.

    ``job`` is ``(onnx_bytes, input_shape_chw, cfg)``; keep it small (ONNX bytes, never a torch
    model); send the references once with ``DaskMeasurer.map(..., shared=references)``. The
    result's fingerprint is the worker's.
    """
    onnx_bytes, input_shape_chw, cfg = job
    return measure_latency(onnx_bytes, tuple(int(d) for d in input_shape_chw), cfg, references)


class DaskMeasurer(DaskPool):
    """The Dask workers that own the ``latency`` resource (capacity 1 each): one measurement at a time.

    ``address`` is a scheduler address (``tcp://host:8786``) or an existing
    ``distributed.Client`` (which is then not closed by :meth:`close`).
    """

    def __init__(
        self,
        address: Any,
        resource: str = RESOURCE,
        timeout: float = 10,
        task_timeout: float | None = 600.0,
        check_versions: bool = True,
    ) -> None:
        super().__init__(address, resource, timeout, task_timeout, retries=0, check_versions=check_versions)

    def fingerprint(
        self, cfg: LatencyConfig, probe: Callable[[LatencyConfig], HardwareFingerprint] = fingerprint_of
    ) -> HardwareFingerprint:
        """The device fingerprint for ``cfg``, computed by ``probe`` on every resource worker; all must agree."""
        if not self.workers():
            raise ShiftnasError(f"no Dask worker at {self.address} has the '{self.resource}' resource")
        fps: dict[str, HardwareFingerprint] = self.on_each_worker(probe, cfg)
        (first_worker, first), *others = fps.items()
        for w, fp in others:
            if fp != first:
                a, b = first.as_dict(), fp.as_dict()
                diff = ", ".join(f"{k}: {a[k]!r} vs {b[k]!r}" for k in a if a[k] != b[k])
                raise ShiftnasError(
                    f"the '{self.resource}' workers are different devices ({first_worker} vs {w}: {diff}); "
                    "a latency objective must come from one kind of device"
                )
        return first

    def __enter__(self) -> DaskMeasurer:
        return self
