"""Supernet training as N processes under ``torchrun``: ``shiftnas train --nproc N`` runs its own command
line again that way; ``shiftnas run`` with ``train.processes > 1`` runs ``shiftnas train`` on its run
directory's config, then searches in its own process."""

from __future__ import annotations

import os
import subprocess
import sys

from ..config import RunConfig
from ..errors import ShiftnasError


def arguments_without_nproc(argv: list[str]) -> list[str]:
    """``argv`` without its ``--nproc N`` / ``--nproc=N``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def refuse_landmarks_under_torchrun(cfg: RunConfig, processes: int) -> None:
    """One line instead of a training that would fail in every rank."""
    if processes > 1 and cfg.landmarks.table:
        raise ShiftnasError(
            "landmark regularization does not run under torchrun yet; train it in one process "
            "(train.processes=1, --nproc 1)"
        )


# torchrun's own entry point, in a process that ends with this one (its ranks end with it in turn); a failed
# rank's error is printed by the rank, so torchrun's report of it becomes one line instead of its traceback
_TORCHRUN_TIED_TO_PARENT = """import runpy, sys
from shiftnas.engine.training.distributed import die_with_parent
die_with_parent(int(sys.argv[1]))
sys.argv = ["torchrun", *sys.argv[2:]]
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
try:
    runpy.run_module("torch.distributed.run", run_name="__main__", alter_sys=True)
except ChildFailedError as exc:
    rank, failure = exc.get_first_failure()
    sys.exit(f"torchrun: rank {rank} failed first (exit code {failure.exitcode})")
"""


def torchrun(nproc: int, threads: int, arguments: list[str]) -> None:
    """``shiftnas ARGUMENTS`` as ``nproc`` processes on this machine (``torchrun --standalone``), each with
    ``threads`` torch threads; one line if they fail. Killing this process ends them (on Linux)."""
    command = [sys.executable, "-c", _TORCHRUN_TIED_TO_PARENT, str(os.getpid())]
    command += ["--standalone", "--nproc_per_node", str(nproc)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    status = subprocess.run([*command, "-m", "shiftnas", *arguments], env=env, check=False).returncode
    if status != 0:
        raise ShiftnasError(
            f"supernet training in {nproc} processes (torchrun) failed with exit status {status}; "
            "its output is above (re-running the command resumes it)"
        )


def relaunch_under_torchrun(nproc: int, threads: int) -> None:
    """Run this command line (less ``--nproc``) as ``nproc`` processes; one line if they fail."""
    torchrun(nproc, threads, arguments_without_nproc(sys.argv[1:]))
