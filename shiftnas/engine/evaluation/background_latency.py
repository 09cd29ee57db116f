"""Latency measured in a child process while this process scores accuracy (``hardware.background``).

A search evaluates each architecture's accuracy (PyTorch, ``threads`` threads) and its latency (ONNX
Runtime, ``hardware.intra_threads`` threads) one after the other, so on a machine with a core to spare
one core idles through the whole search. Here a child process (this module run as a plain
``python -c`` subprocess, so a caller's script is never re-run in it) gets a population's
architectures as soon as they are proposed, exports each subnet (stitched from cached blocks; the
subnet is built from its own copy of the supernet only where a block is not cached) and times it, while
this process scores their accuracies: the search waits only for the slower of the two. The child starts
at the first job (not during training) with the weights as they are then; a subnet's graph, not its
weight values, sets its latency.

What it costs: the measurement shares the machine with the accuracy work on the other core
(``bench/results/background_latency.md``). Results are stored in the latency cache by this process,
under the same key (hardware fingerprint and protocol) as a measurement made here.
"""

from __future__ import annotations

import os
import pickle
import queue
import subprocess
import sys
import tempfile
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Sequence

import torch
from torch import nn

from ...config import LatencyConfig
from ...errors import ShiftnasError, one_line
from ...hardware import LatencyProfiler, LatencyResult
from ...hardware.latency import ModelUnderTest
from ...hardware.stitch import Subnet, subnet_recipe
from ...search_spaces import Arch, SearchSpace, arch_from_dict, space_from_description
from .latency import latency_metrics

_POLL_S = 0.2  # how often a wait for the child checks that it is still alive


@dataclass
class ChildSetup:
    """What the measuring child needs, sent once when it starts."""

    space: dict[str, Any]  # SearchSpace.describe()
    num_classes: int
    state_dict: dict[str, torch.Tensor]
    cfg: LatencyConfig
    references: list[ModelUnderTest]


def _child_main(jobs: BinaryIO, results: BinaryIO) -> None:
    """The child: read the setup, build the supernet, then measure ``(arch dict, chw)`` jobs in order until
    told to stop (``None`` or the end of ``jobs``), answering each with ``(ok, result or error line)``."""
    torch.set_num_threads(1)
    setup: ChildSetup = pickle.load(jobs)
    space = space_from_description(setup.space)
    supernet = space.build_supernet(setup.num_classes)
    supernet.load_state_dict(setup.state_dict)
    supernet.eval()
    profiler = LatencyProfiler(setup.cfg, references=setup.references)  # no cache: the parent stores each answer
    while True:
        try:
            job = pickle.load(jobs)
        except EOFError:  # the parent is gone
            return
        if job is None:
            return
        arch_dict, chw = job
        try:
            arch = arch_from_dict(arch_dict)
            answer: tuple[bool, Any] = (True, profiler.profile(arch.key(), subnet_recipe(space, supernet, arch), chw))
        except Exception as exc:  # sent back and raised in the parent as one line
            answer = (False, one_line(exc))
        pickle.dump(answer, results)
        results.flush()


def usable_cpus() -> int:
    """The CPUs this process may use: its affinity where the OS tells it, capped by a cgroup v2 CPU quota
    (a container started with ``--cpus``)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return cpus


# The child's first lines: answers go to a copy of stdout and fd 1 to stderr before anything is imported (a
# library's stray print must not land in the answers); this package first on the path, ahead of the cwd.
_BOOTSTRAP = """import os, sys
answers = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)
sys.path.insert(0, sys.argv[1])
from shiftnas.engine.evaluation.background_latency import _child_main
_child_main(sys.stdin.buffer, answers)
"""


def _start_child() -> tuple[subprocess.Popen, BinaryIO]:
    """The measuring child, a plain subprocess (so the caller's own script is never re-run in it, guarded
    by ``if __name__ == "__main__"`` or not), its errors in a temporary file."""
    root = str(Path(__file__).resolve().parents[3])  # the folder holding the shiftnas package
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    stderr = tempfile.TemporaryFile()
    own_group: dict[str, Any] = (  # Ctrl-C goes to this process only, which then stops the child
        {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if os.name == "nt" else {"start_new_session": True}
    )
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", _BOOTSTRAP, root],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            **own_group,
        )
    except OSError as exc:
        stderr.close()
        raise ShiftnasError(
            f"cannot start the latency measuring process: {one_line(exc)}; use --set hardware.background=off"
        ) from None
    return child, stderr


class BackgroundLatency:
    """A :class:`~.latency.LatencySource` that measures in one child process, a population ahead.

    ``prefetch`` queues a population's uncached architectures for the child; ``latency`` waits for one of
    them (queueing it first if it was not prefetched). The child measures in queue order and each answer is
    cached as it arrives. ``close`` stops the child; a later job starts a new one.
    """

    parallel = True
    needs_models = False  # ``prefetch`` items carry no model: the child makes its own

    def __init__(self, profiler: LatencyProfiler, space: SearchSpace, supernet: nn.Module, num_classes: int) -> None:
        self.profiler, self._space, self._supernet, self._num_classes = profiler, space, supernet, num_classes
        self._child: subprocess.Popen | None = None  # started on the first job (not during training)
        self._reset()

    def _reset(self) -> None:
        self._outbox: queue.Queue[Any] = queue.Queue()  # to the child, by the writer thread
        self._results: queue.Queue[tuple[bool, Any] | None] = queue.Queue()  # from it, by the reader thread
        self._sent: deque[tuple[str, tuple[int, ...]]] = deque()  # sent, in order, answer not yet received
        self._done: dict[str, LatencyResult] = {}  # received and cached, not yet asked for
        self._write_error: str | None = None  # why the writer thread stopped early
        self._threads: list[threading.Thread] = []

    def _start(self) -> None:
        """Start the child with the supernet's weights as they are now."""
        setup = ChildSetup(
            self._space.describe(),
            self._num_classes,
            {k: v.detach().cpu().clone() for k, v in self._supernet.state_dict().items()},
            self.profiler.cfg,
            list(self.profiler.references),
        )
        self._child, self._stderr = _start_child()
        self._outbox.put(setup)  # written while the child imports torch: this process goes on
        for target, name in ((self._write_all, "writer"), (self._read, "reader")):
            thread = threading.Thread(target=target, args=(self._child,), daemon=True, name=f"shiftnas-latency-{name}")
            thread.start()
            self._threads.append(thread)

    def _read(self, child: subprocess.Popen) -> None:
        """The reader thread: the child's answers, in order, then ``None`` when its output ends."""
        results = self._results  # this child's (``close`` makes new queues for the next one)
        try:
            while True:
                results.put(pickle.load(child.stdout))
        except Exception:  # EOF, a broken stream: the child is gone or going
            results.put(None)

    def _write_all(self, child: subprocess.Popen) -> None:
        """The writer thread: the setup, then each job, in order; ``None`` closes the child's input (it
        then returns). If a write fails the child is stopped, so that ``_receive`` reports it."""
        outbox = self._outbox  # this child's (``close`` makes new queues for the next one)
        try:
            while (message := outbox.get()) is not None:
                pickle.dump(message, child.stdin)
                child.stdin.flush()
            child.stdin.close()
        except (OSError, ValueError):  # a broken pipe (the child died), a closed stream: reported by _receive
            pass
        except Exception as exc:  # a message that cannot be pickled, out of memory: the child would wait forever
            self._write_error = one_line(exc)
            child.kill()

    def _queue(self, arch: Arch, chw: Sequence[int]) -> None:
        key, shape = arch.key(), tuple(int(d) for d in chw)
        waiting = any(k == key for k, _ in self._sent)
        if waiting or key in self._done or self.profiler.lookup(key, shape) is not None:
            return
        if self._child is None:
            self._start()
        self._outbox.put((arch.to_dict(), shape))
        self._sent.append((key, shape))

    def _gone(self) -> ShiftnasError:
        """The error for a child that stopped: its exit code and why (the writer's error or its last stderr line)."""
        try:
            code = self._child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        why = self._write_error
        if why is None:
            self._stderr.seek(0)
            lines = [ln.strip() for ln in self._stderr.read().decode(errors="replace").splitlines() if ln.strip()]
            why = lines[-1] if lines else None
        self.close()
        return ShiftnasError(
            f"the latency measuring process stopped (exit code {code}){f': {why}' if why else ''}; "
            "measure in this process with --set hardware.background=off"
        )

    def _receive(self) -> None:
        """Wait for the child's next answer (it answers in the order of ``_sent``) and cache it."""
        while True:
            try:
                answer = self._results.get(timeout=_POLL_S)
                break
            except queue.Empty:
                if self._child.poll() is not None and self._results.empty():
                    raise self._gone() from None
        if answer is None:
            raise self._gone()
        ok, payload = answer
        key, shape = self._sent.popleft()
        if not ok:
            raise ShiftnasError(f"latency measurement of {key} failed: {payload}")
        self._done[key] = self.profiler.store(key, shape, payload)

    def prefetch(self, items: list[tuple[Arch, Subnet | None, tuple[int, ...]]]) -> None:
        for arch, _, chw in items:
            self._queue(arch, chw)

    def latency(self, arch: Arch, model: nn.Module, chw: Sequence[int], mmacs: float) -> dict[str, Any]:
        key, shape = arch.key(), tuple(int(d) for d in chw)
        if key not in self._done:
            hit = self.profiler.lookup(key, shape)
            if hit is not None:
                return latency_metrics(hit)
            self._queue(arch, shape)
            while key not in self._done:
                self._receive()
        return latency_metrics(self._done.pop(key))

    def close(self) -> None:
        """Stop the child (at once if it is still measuring: what it has not finished is dropped); a later
        job starts a new one."""
        child, self._child = self._child, None
        if child is None:
            return
        if child.poll() is None:
            if self._sent:
                child.kill()
            else:
                self._outbox.put(None)  # the end of its jobs: it returns
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self._outbox.put(None)  # ends the writer thread if it still waits
        for thread in self._threads:
            thread.join(timeout=5)
        for stream in (child.stdin, child.stdout, self._stderr):
            try:
                stream.close()
            except (OSError, ValueError):
                pass
        self._reset()
