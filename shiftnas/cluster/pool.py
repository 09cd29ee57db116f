"""The Dask workers of one scheduler that advertise one resource, and the jobs shiftnas sends them.

Every kind of remote work has its own resource, so two kinds never share a worker slot unless the
user starts a worker with both: ``latency`` (one measurement at a time on the measuring device),
``eval`` (scoring architectures through the supernet) and ``train`` (one stand-alone training).
A worker advertises one unit per slot (``dask worker ADDRESS --resources "eval=1"``) and every job
asks for one unit.

Faults: a worker that dies mid-job is replaced by the scheduler, which re-runs the job on another
worker (up to ``distributed.scheduler.allowed-failures`` times, then the job fails with a clear
error); an exception raised by a job is retried ``retries`` times; no job result is awaited longer
than ``task_timeout`` seconds. At connect the pool checks that every worker runs the software
versions of this process (:func:`software_versions`) and names the fields that differ.

``distributed`` is an optional dependency (``pip install 'shiftnas[dask]'``), imported only here.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..config import HardwareConfig
from ..errors import ShiftnasError, one_line

TRAIN_RESOURCE = "train"  # workers started with --resources "train=1" run one training at a time
MISSING = "--dask needs the 'distributed' package: pip install 'shiftnas[dask]'"
VERSIONED = ("shiftnas", "torch", "onnxruntime", "numpy", "pymoo")  # packages whose versions must agree


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
TRIM_THRESHOLD_BYTES = 256 * 2**20
MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's largest
_MALLOC_RELAXED = False


def relax_malloc_trim() -> None:
    """Let this (worker) process keep freed memory (up to 256 MiB) and serve tensors up to 32 MiB from its heap.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also turns off glibc's
    adaptive mmap threshold: every tensor over 128 KiB PyTorch allocates is then a fresh mmap, faulted
    in page by page and unmapped when freed, and scoring a subnet on the CPU was measured 4x
    slower (52 s against 11 s for one subnet score; docs/scaling.md). Called at the start of every shiftnas job; glibc only (a no-op
    elsewhere)."""
    global _MALLOC_RELAXED
    if _MALLOC_RELAXED:
        return
    _MALLOC_RELAXED = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)  # the variable env disabled it: tensors were mmapped
    except (OSError, AttributeError):
        pass


def distributed_module():
    """``import distributed``, or the one-line error that says how to install it."""
    try:
        import distributed
    except ImportError:
        raise ShiftnasError(MISSING) from None
    return distributed


def software_versions() -> dict[str, str]:
    """Python and the versions of the packages that decide a result (compared across workers)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def version_mismatch(reference: dict[str, str], other: dict[str, str]) -> str:
    """``'torch: 2.14.1 vs 2.13.0, ...'`` for the fields that differ ('' when none)."""
    return ", ".join(
        f"{k}: {reference.get(k)} vs {other.get(k)}" for k in reference if reference.get(k) != other.get(k)
    )


class DaskPool:
    """The workers at ``address`` that own ``resource`` (capacity 1 each), and jobs sent to them.

    ``address`` is a scheduler address (``tcp://host:8786``) or an existing ``distributed.Client``
    (which :meth:`close` then leaves open). ``task_timeout`` (seconds, None: no limit) bounds the
    wait for any job; ``retries`` is how often a job that raised is re-run before its error is raised.
    ``require_workers=False`` accepts a scheduler without such workers (check :attr:`n_workers`).
    """

    def __init__(
        self,
        address: Any,
        resource: str,
        timeout: float = 10,
        task_timeout: float | None = 600.0,
        retries: int = 0,
        check_versions: bool = True,
        require_workers: bool = True,
    ) -> None:
        distributed = distributed_module()
        self.resource, self.task_timeout, self.retries = resource, task_timeout, retries
        if isinstance(address, distributed.Client):
            self.client, self._owns_client = address, False
            self.address = str(getattr(address.scheduler, "address", address))
        else:
            self.address = str(address)
            try:
                self.client = distributed.Client(self.address, timeout=timeout)
            except Exception as exc:  # OSError / TimeoutError / ValueError for a bad address
                raise ShiftnasError(f"cannot reach the Dask scheduler at {self.address}: {one_line(exc)}") from None
            self._owns_client = True
        try:
            if require_workers and not self.workers():
                raise ShiftnasError(
                    f"no Dask worker at {self.address} has the '{resource}' resource (jobs would wait "
                    f"forever); start one with: dask worker {self.address} --nthreads 1 "
                    f'--resources "{resource}=1"'
                )
            if check_versions:
                self.check_versions()
        except BaseException:
            self.close()
            raise

    def workers(self) -> list[str]:
        """Addresses of the workers that currently advertise the resource."""
        try:  # n_workers=-1: recent versions list only the first 5 workers by default
            info = self.client.scheduler_info(n_workers=-1)
        except TypeError:  # distributed < 2025.4 has no n_workers argument and lists all
            info = self.client.scheduler_info()
        return sorted(
            addr for addr, w in info.get("workers", {}).items() if (w.get("resources") or {}).get(self.resource, 0) >= 1
        )

    @property
    def n_workers(self) -> int:
        return len(self.workers())

    def on_each_worker(self, fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
        """``{worker: fn(*args)}``, run once on every resource worker."""
        workers = self.workers()
        futures = [
            self.client.submit(
                fn, *args, resources={self.resource: 1}, workers=[w], allow_other_workers=False, pure=False
            )
            for w in workers
        ]
        return dict(zip(workers, self.gather(futures)))

    def check_versions(self, expected: dict[str, str] | None = None) -> None:
        """Every resource worker runs ``expected`` (default: this process's) Python, shiftnas, torch,
        ONNX Runtime, numpy and pymoo."""
        here = expected if expected is not None else software_versions()
        for worker, theirs in self.on_each_worker(software_versions).items():
            diff = version_mismatch(here, theirs)
            if diff:
                raise ShiftnasError(
                    f"Dask worker {worker} runs other software than this process ({diff}); "
                    "install the same versions on every worker"
                )

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """One job on a resource worker: a future."""
        return self.client.submit(fn, *args, resources={self.resource: 1}, pure=False, retries=self.retries)

    def share(self, value: Any) -> Any:
        """Send ``value`` to every worker once; pass the returned future to jobs instead of the value."""
        # wrapped: Dask scatters a bare list or tuple element by element (and fails on an empty one)
        return self.client.scatter([value], broadcast=True, hash=False)[0]

    def map(self, fn: Callable[..., Any], items: Sequence[Any], shared: Any = None) -> list:
        """``[fn(item) for item in items]``, each call on a resource worker; results in order.

        ``shared`` is sent to every worker once and passed as ``fn(item, shared)`` instead of
        travelling with each job. An exception raised by ``fn`` on a worker is re-raised here with
        its own type; the remaining jobs are then cancelled.
        """
        extra = () if shared is None else (self.share(shared),)
        return self.gather([self.submit(fn, item, *extra) for item in items])

    def gather(self, futures: list) -> list:
        """The futures' results in order; past ``task_timeout`` a one-line error (jobs cancelled)."""
        distributed = distributed_module()
        try:
            if self.task_timeout is not None and futures:
                try:
                    distributed.wait(futures, timeout=self.task_timeout)
                except TimeoutError:
                    raise ShiftnasError(self._timeout_message(sum(not f.done() for f in futures))) from None
            return list(self.client.gather(futures))
        except BaseException:
            self.client.cancel(futures)
            raise

    def as_completed(self, futures: Sequence[Any]) -> Iterator[Any]:
        """The futures as they finish; a one-line error when none finishes within ``task_timeout`` s."""
        distributed = distributed_module()
        pending = set(futures)
        try:
            while pending:
                try:
                    done, pending = distributed.wait(pending, timeout=self.task_timeout, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    raise ShiftnasError(self._timeout_message(len(pending))) from None
                yield from done
        except BaseException:
            self.client.cancel(list(pending))
            raise

    def _timeout_message(self, pending: int) -> str:
        return (
            f"{pending} Dask job(s) on '{self.resource}' workers did not finish within {self.task_timeout:g} s "
            f"({self.n_workers} such worker(s) connected to {self.address}); raise hardware.dask_timeout_s "
            "(profile: --dask-timeout) or start more workers"
        )

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> DaskPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def training_pool(address: str, hardware: HardwareConfig) -> DaskPool:
    """The ``train`` workers at ``address`` (ground truth, fine-tuning), with the config's timeout and retries."""
    return DaskPool(address, TRAIN_RESOURCE, task_timeout=hardware.dask_timeout_s, retries=hardware.dask_retries)
