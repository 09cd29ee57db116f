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

from shiftnas.config import LatencyConfig
from shiftnas.errors import ShiftnasError
from shiftnas.hardware.fingerprint import HardwareFingerprint, fingerprint_of
from shiftnas.hardware.latency import LatencyResult, ModelUnderTest, measure_latency

RESOURCE = "latency"

_MISSING = "--dask needs the 'distributed' package: pip install 'shiftnas[dask]'"


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ShiftnasError(_MISSING) from None
    return distributed


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def measure_job(job: tuple, references: Sequence[ModelUnderTest] = ()) -> LatencyResult:
    """Run on a worker: ``measure_latency(onnx_bytes, input_shape_chw, cfg, references)``.

    ``job`` is ``(onnx_bytes, input_shape_chw, cfg)``; keep it small (ONNX bytes, never a torch
    model); send the references once with ``DaskMeasurer.map(..., shared=references)``. The
    result's fingerprint is the worker's.
    """
    onnx_bytes, input_shape_chw, cfg = job
    return measure_latency(onnx_bytes, tuple(int(d) for d in input_shape_chw), cfg, references)


class DaskMeasurer:
    """Sends measurement jobs to the Dask workers that own ``resource`` (capacity 1 each).

    ``address`` is a scheduler address (``tcp://host:8786``) or an existing
    ``distributed.Client`` (which is then not closed by :meth:`close`).
    """

    def __init__(self, address: Any, resource: str = RESOURCE, timeout: float = 10) -> None:
        distributed = _distributed()
        self.resource = resource
        if isinstance(address, distributed.Client):
            self.client = address
            self._owns_client = False
            self.address = str(getattr(address.scheduler, "address", address))
        else:
            self.address = str(address)
            try:
                self.client = distributed.Client(self.address, timeout=timeout)
            except Exception as exc:  # OSError / TimeoutError / ValueError for a bad address
                raise ShiftnasError(f"cannot reach the Dask scheduler at {self.address}: {_one_line(exc)}") from None
            self._owns_client = True
        try:
            if not self.workers():
                raise ShiftnasError(
                    f"no Dask worker at {self.address} has the '{resource}' resource (tasks would wait "
                    f"forever); start one on the measuring device with: dask worker {self.address} "
                    f'--nthreads 1 --resources "{resource}=1"'
                )
        except BaseException:
            self.close()
            raise

    def workers(self) -> list[str]:
        """Addresses of the workers that currently advertise the resource."""
        # n_workers=-1: recent versions list only the first 5 workers by default
        try:
            info = self.client.scheduler_info(n_workers=-1)
        except TypeError:  # distributed < 2025.4 has no n_workers argument and lists all
            info = self.client.scheduler_info()
        return sorted(
            addr for addr, w in info.get("workers", {}).items() if (w.get("resources") or {}).get(self.resource, 0) >= 1
        )

    @property
    def n_workers(self) -> int:
        return len(self.workers())

    def fingerprint(
        self, cfg: LatencyConfig, probe: Callable[[LatencyConfig], HardwareFingerprint] = fingerprint_of
    ) -> HardwareFingerprint:
        """The device fingerprint for ``cfg``, computed by ``probe`` on every resource worker; all must agree."""
        workers = self.workers()
        if not workers:
            raise ShiftnasError(f"no Dask worker at {self.address} has the '{self.resource}' resource")
        futures = [
            self.client.submit(
                probe, cfg, resources={self.resource: 1}, workers=[w], allow_other_workers=False, pure=False
            )
            for w in workers
        ]
        fps: list[HardwareFingerprint] = self._gather(futures)
        first = fps[0]
        for w, fp in zip(workers[1:], fps[1:]):
            if fp != first:
                a, b = first.as_dict(), fp.as_dict()
                diff = ", ".join(f"{k}: {a[k]!r} vs {b[k]!r}" for k in a if a[k] != b[k])
                raise ShiftnasError(
                    f"the '{self.resource}' workers are different devices ({workers[0]} vs {w}: {diff}); "
                    "a latency objective must come from one kind of device"
                )
        return first

    def map(self, fn: Callable[..., Any], items: Sequence[Any], shared: Any = None) -> list:
        """``[fn(item) for item in items]``, each call on a resource worker; results in order.

        ``shared`` (e.g. the reference models) is sent to every worker once and passed as
        ``fn(item, shared)``, instead of travelling with each job. An exception raised by ``fn``
        on a worker is re-raised here with its own type; the remaining jobs are then cancelled.
        """
        extra = () if shared is None else (self.client.scatter(shared, broadcast=True, hash=False),)
        futures = [self.client.submit(fn, item, *extra, resources={self.resource: 1}, pure=False) for item in items]
        return self._gather(futures)

    def _gather(self, futures: list) -> list:
        try:
            return list(self.client.gather(futures))
        except BaseException:
            self.client.cancel(futures)
            raise

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> DaskMeasurer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
